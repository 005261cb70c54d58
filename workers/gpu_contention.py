"""Who else used the job's GPU, and whether its clocks were held down, read through NVML while the job trains.

NVML (``nvidia-ml-py``, imported as ``pynvml``) is optional: on a CPU job, a host without NVIDIA's driver or a
worker without the package, :func:`gpu_probe` returns None and the job records CPU figures only. NVML reads
the driver's counters; it does not create a CUDA context, so probing does not disturb the job's device or the
fork server's "no device touched" rule (the probe opens only in the training child, after the fork).
"""

from __future__ import annotations

import os
from typing import Any

from workers.contention import process_tree

# NVML's clock event ("throttle") reasons that mean the GPU ran slower than it could for someone else's
# reason: heat, power, or another GPU of a sync-boost group. Idle and application-clock settings are not.
THROTTLE_REASONS = {
    0x0000000000000004: "power cap",
    0x0000000000000008: "hardware slowdown",
    0x0000000000000010: "sync boost",
    0x0000000000000020: "software thermal",
    0x0000000000000040: "hardware thermal",
    0x0000000000000080: "power brake",
}


class GpuProbe:
    """Reads the job's GPUs at each :meth:`sample`: the first one's utilisation, SM clock and throttle reasons;
    on every one of them (a data-parallel job holds several), other processes and the job's own memory as the
    driver counts it."""

    def __init__(self, nvml: Any, handle: Any, handles: list[Any] | None = None) -> None:
        self.nvml = nvml
        self.handle = handle
        self.handles = handles or [handle]
        try:
            self.max_sm_mhz = nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM) or None
        except Exception:  # noqa: BLE001 - some boards do not report it
            self.max_sm_mhz = None

    def _reasons(self) -> int:
        nvml = self.nvml
        for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            getter = getattr(nvml, name, None)
            if getter is not None:
                return int(getter(self.handle))
        return 0

    def sample(self) -> dict[str, Any]:
        nvml, handle = self.nvml, self.handle
        own = process_tree(os.getpid())  # the job's own processes on the GPU are not "others"
        others: dict[int, int] = {}
        own_mb = []
        for gpu in self.handles:
            processes = self._processes(gpu)
            for p in processes:
                if p.pid not in own:
                    others[p.pid] = others.get(p.pid, 0) + (getattr(p, "usedGpuMemory", None) or 0)
            own_mb.append(sum(getattr(p, "usedGpuMemory", None) or 0 for p in processes if p.pid in own) / 2**20)
        sm = nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)
        return {
            "utilization": nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0,
            "sm_clock_ratio": (sm / self.max_sm_mhz) if self.max_sm_mhz else None,
            "reasons": self._reasons(),
            "other_pids": sorted(others),
            "other_memory_mb": sum(others.values()) / 2**20,
            "own_memory_mb": max(own_mb, default=0.0),  # the fullest of the job's GPUs
        }

    def _processes(self, gpu: Any) -> list[Any]:
        found = []
        for name in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            try:
                found.extend(getattr(self.nvml, name)(gpu))
            except Exception:  # noqa: BLE001 - not supported on every board
                continue
        return found


def gpu_probe(device: str, nvml: Any = None, count: int = 1) -> GpuProbe | None:
    """A probe of the ``count`` GPUs this job may see (the first of ``CUDA_VISIBLE_DEVICES``), or None when the
    job is not a GPU job or NVML is not available. ``nvml`` is the ``pynvml`` module (given in tests)."""
    if device != "gpu":
        return None
    try:
        if nvml is None:
            import pynvml

            nvml = pynvml
        nvml.nvmlInit()
        listed = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        handles = [_handle(nvml, v) for v in (listed or [str(i) for i in range(count)])[:count]]
        return GpuProbe(nvml, handles[0], handles)
    except Exception:  # noqa: BLE001 - no driver, no package, no such device: CPU figures only
        return None


def _handle(nvml: Any, visible: str) -> Any:
    """NVML's handle of one ``CUDA_VISIBLE_DEVICES`` entry: a UUID (as the worker pins them) or an index."""
    if visible.startswith(("GPU-", "MIG-")):
        return nvml.nvmlDeviceGetHandleByUUID(visible)
    return nvml.nvmlDeviceGetHandleByIndex(int(visible))


def sampled_peak_mb(samples: list[dict[str, Any]]) -> float | None:
    """The most GPU memory the driver saw the job's processes hold on one of its GPUs, in MiB (None: no sample
    saw any). It counts what the framework reserved, not what it used (JAX reserves 75% of the GPU at start):
    the fallback where the framework keeps no counter of its own."""
    peak = max((float(s.get("own_memory_mb") or 0.0) for s in samples), default=0.0)
    return peak or None


def gpu_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The window's GPU figures: other processes seen at any sample, their largest memory, mean utilisation and
    SM clock ratio, and every throttle reason that was active at some sample."""
    if not samples:
        return {}
    mask = 0
    for s in samples:
        mask |= int(s.get("reasons") or 0)
    others = sorted({pid for s in samples for pid in s.get("other_pids", [])})
    ratios = [s["sm_clock_ratio"] for s in samples if s.get("sm_clock_ratio") is not None]
    return {
        "other_processes": len(others),
        "other_pids": others[:20],
        "other_memory_mb": max(s.get("other_memory_mb", 0.0) for s in samples),
        "utilization": sum(s.get("utilization", 0.0) for s in samples) / len(samples),
        "sm_clock_ratio": sum(ratios) / len(ratios) if ratios else None,
        "sm_clock_ratio_min": min(ratios) if ratios else None,
        "throttle_reasons": [name for bit, name in THROTTLE_REASONS.items() if mask & bit],
        "samples": len(samples),
    }
