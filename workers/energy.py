"""How much energy each epoch of a job took, where the hardware says it: the CPU package's RAPL counters (the
kernel's powercap interface) for a CPU job, the GPU's total-energy counter (NVML) for a GPU job.

Both are cumulative counters the hardware keeps; a thread reads them a few times a second while the job trains,
and each epoch's energy is the counter's rise between the epoch's start and end (read between samples by linear
interpolation). The figures are software readings, not a wall-socket meter and not MLPerf's power measurement:
RAPL counts a whole CPU package (every process on it, the uncore and, on some parts, the DRAM beside it), NVML
one GPU board. Where no counter is readable, the job records why instead of a number: absent, never zero.

``BENCHFARM_POWERCAP_ROOT`` points the RAPL reader at another tree than ``/sys/class/powercap`` (the tests' stand-in).
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

POWERCAP_ROOT = Path("/sys/class/powercap")

PERIOD_S = 0.1
"""Counter reads per second while training: RAPL's files cost microseconds; a 1-s epoch gets ten readings."""

FIRM_TRIES, FIRM_PAUSE_S = 20, 0.01
"""The first and last readings are tried again on a failed read (a counter file being rewritten, a busy NVML)."""


class EnergyCounter(Protocol):
    """A cumulative energy counter: its name, its reading in joules, and the value at which it wraps to 0."""

    name: str
    wrap_j: float | None

    def read_j(self) -> float: ...


@dataclass
class RaplDomain:
    """One RAPL package domain of the powercap tree (``intel-rapl:0``, named ``package-0``; AMD's packages are
    listed the same way)."""

    path: Path
    name: str
    wrap_j: float | None

    def read_j(self) -> float:
        return int((self.path / "energy_uj").read_text()) / 1e6


def rapl_domains(root: Path | None = None) -> tuple[list[RaplDomain], str | None]:
    """The readable package domains under the powercap tree, or none and why."""
    root = root or Path(os.environ.get("BENCHFARM_POWERCAP_ROOT") or POWERCAP_ROOT)
    zones = sorted(p for p in root.glob("*-rapl:*") if p.name.count(":") == 1) if root.is_dir() else []
    if not zones:
        return [], f"no RAPL package domain under {root} (the kernel's powercap interface)"
    domains, unreadable = [], []
    for zone in zones:
        try:
            name = (zone / "name").read_text().strip() or zone.name
            wrap = (zone / "max_energy_range_uj").read_text().strip()
            domain = RaplDomain(zone, name, int(wrap) / 1e6 if wrap else None)
            domain.read_j()
        except (OSError, ValueError) as e:
            unreadable.append(f"{zone.name}: {getattr(e, 'strerror', None) or e}")
            continue
        domains.append(domain)
    if not domains:
        return [], (
            f"RAPL energy counters not readable ({'; '.join(unreadable)}); since Linux 5.10 only root may read "
            "energy_uj"
        )
    return domains, None


@dataclass
class NvmlEnergy:
    """A GPU's total energy since its driver loaded (NVML, millijoules; does not wrap in practice)."""

    nvml: Any
    handle: Any
    name: str = "nvml gpu"
    wrap_j: float | None = None

    def read_j(self) -> float:
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)) / 1e3


def counters_for(device: str, gpu_probe: Any = None) -> tuple[list[EnergyCounter], str | None]:
    """What measures a job's energy on ``device``: the NVML counter of each GPU the job holds (through its GPU
    probe; a data-parallel job's energy is all of its GPUs'), or the CPU packages' RAPL domains; none, and why,
    where neither can be read."""
    if device == "gpu":
        if gpu_probe is None:
            return [], "NVML is not available here (nvidia-ml-py, or NVIDIA's driver): no GPU energy counter"
        handles = list(getattr(gpu_probe, "handles", None) or [gpu_probe.handle])
        names = ["nvml gpu"] if len(handles) == 1 else [f"nvml gpu {i}" for i in range(len(handles))]
        counters = [NvmlEnergy(gpu_probe.nvml, h, name) for h, name in zip(handles, names, strict=True)]
        for counter in counters:
            try:
                counter.read_j()
            except Exception as e:  # noqa: BLE001 - older boards lack the counter (NVML_ERROR_NOT_SUPPORTED)
                return [], f"the GPU's energy counter is not readable through NVML: {e}"
        return list(counters), None
    domains, why = rapl_domains()
    return list(domains), why


@dataclass
class EnergySampler:
    """Reads ``counters`` in a thread while the job trains; :meth:`epoch_joules` turns the readings into each
    epoch's energy. Wraps are unwound as they are seen (a counter that fell wrapped once)."""

    counters: list[EnergyCounter]
    period_s: float = PERIOD_S
    times: list[float] = field(default_factory=list)
    joules: list[float] = field(default_factory=list)
    _last: list[float] = field(default_factory=list)
    _offset: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> bool:
        try:
            raw = [c.read_j() for c in self.counters]
        except Exception:  # noqa: BLE001 - a sampler must never fail the job it watches
            return False
        if not self._last:
            self._last, self._offset = list(raw), [0.0] * len(raw)
        for i, (value, counter) in enumerate(zip(raw, self.counters, strict=True)):
            if value < self._last[i] and counter.wrap_j:
                self._offset[i] += counter.wrap_j
            self._last[i] = value
        self.times.append(time.perf_counter())
        self.joules.append(sum(v + o for v, o in zip(raw, self._offset, strict=True)))
        return True

    def _sample_surely(self) -> None:
        """A reading the epochs' bounds depend on (the first, before training; the last, after it): one failed
        read there would leave the first or last epoch without energy, so try a few times."""
        for _ in range(FIRM_TRIES):
            if self._sample():
                return
            time.sleep(FIRM_PAUSE_S)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def start(self) -> EnergySampler:
        if self.counters:
            self._sample_surely()
            self._thread = threading.Thread(target=self._run, daemon=True, name="farm-energy")
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2)
            self._sample_surely()

    def at(self, t: float) -> float | None:
        """The counters' total at ``t`` (a perf_counter time), between the readings around it; None outside."""
        if len(self.times) < 2 or not self.times[0] <= t <= self.times[-1]:
            return None
        i = min(bisect.bisect_right(self.times, t), len(self.times) - 1)
        t0, t1 = self.times[i - 1], self.times[i]
        j0, j1 = self.joules[i - 1], self.joules[i]
        return j0 if t1 == t0 else j0 + (j1 - j0) * (t - t0) / (t1 - t0)

    def epoch_joules(self, bounds: list[tuple[float, float]]) -> list[float | None]:
        """Each epoch's energy from its (start, end) perf_counter bounds; None where the readings do not cover it."""
        out: list[float | None] = []
        for start, end in bounds:
            a, b = self.at(start), self.at(end)
            out.append(None if a is None or b is None else max(b - a, 0.0))
        return out


def record_energy(sampler: EnergySampler, records: list[dict[str, Any]], bounds: list[tuple[float, float]]) -> None:
    """Put each epoch's energy (joules) into its timing record, as ``energy_j``."""
    for record, joules in zip(records, sampler.epoch_joules(bounds), strict=False):
        record["energy_j"] = joules


def energy_figures(counters: list[EnergyCounter], why: str | None) -> dict[str, Any]:
    """What the result says of its energy: which counters were read, or why none was."""
    if not counters:
        return {"energy_source": None, "energy_missing": why}
    return {"energy_source": "+".join(c.name for c in counters), "energy_missing": None}
