"""A job's memory, on the worker: an estimate for any Keras model, the hard limit on the job's process, and the
words for a job that ran out.

The submit side refuses what its framework-free estimates show too big (``farm.feasibility``); plugins need
not give one. Here, in the job's process, the built model itself is measured (every layer's output shape) before
``fit`` allocates anything, so a job that cannot fit fails at once with its estimate. What the estimate misses
is caught by the limit: the job's process runs under ``RLIMIT_DATA`` (private writable memory: the heap,
numpy's and the frameworks' buffers, but not the address ranges JAX and TensorFlow reserve without using, which
``RLIMIT_AS`` would count), so an allocation past it fails in the job and the host stays up.

Every out-of-memory failure's error starts with ``out of memory`` (:data:`OOM_PREFIX`).
"""

from __future__ import annotations

import math
import os
import resource
import signal
from typing import Any

OOM_PREFIX = "out of memory"
"""How every out-of-memory failure's error begins, whichever way it was recognised."""

LIMIT_ENV = "FARM_JOB_MEMORY_LIMIT"
"""The job's memory limit in bytes, set by the supervisor in the child's environment ("0": none)."""

OPTIMIZER_SLOTS: dict[str, int] = {
    "sgd": 0,
    "adam": 2,
    "adamw": 2,
    "adamax": 2,
    "nadam": 2,
    "lamb": 2,
    "lion": 1,
    "rmsprop": 1,
    "adagrad": 1,
    "adadelta": 2,
    "ftrl": 2,
}
"""Values of state per trained parameter, by optimizer class; an optimizer not named here counts 2 (Adam's)."""

_OOM_MARKERS = (
    "resource_exhausted",
    "resourceexhausted",
    "out of memory",
    "std::bad_alloc",
    "cannot allocate memory",
    "unable to allocate",
    "failed to allocate",
)
"""What frameworks say when an allocation fails (XLA, TensorFlow, numpy, the C++ runtime, the kernel)."""


class OutOfMemory(MemoryError):
    """A job whose estimate exceeds its limit: refused before ``fit`` allocates."""


def gb(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MB"


# -- the estimate ------------------------------------------------------------------------------------------------


def _dtype_bytes(dtype: Any) -> int:
    name = str(getattr(dtype, "name", dtype) or "float32")
    for size, marks in ((8, ("64",)), (2, ("16",)), (1, ("int8", "uint8", "bool"))):
        if any(m in name for m in marks):
            return size
    return 4


def _layers(model: Any) -> list[Any]:
    """Every layer, nested models' layers included (a model used as a layer is counted through its layers)."""
    out = []
    for layer in getattr(model, "layers", []):
        out.extend(_layers(layer) if getattr(layer, "layers", None) else [layer])
    return out


def _tensor_bytes(tensor: Any) -> int:
    """Bytes of one sample of a symbolic tensor: its shape without the batch (an unknown dimension counts 1)."""
    shape = getattr(tensor, "shape", None)
    if shape is None:
        return 0
    return math.prod(int(d) if d else 1 for d in tuple(shape)[1:]) * _dtype_bytes(getattr(tensor, "dtype", None))


def layer_output_bytes(model: Any) -> list[int]:
    """Bytes per sample of each layer's outputs, every call of a shared layer counted."""
    import keras

    sizes = []
    for layer in _layers(model):
        for node in getattr(layer, "_inbound_nodes", []):
            outputs = keras.tree.flatten(getattr(node, "output_tensors", []))
            sizes.append(sum(_tensor_bytes(t) for t in outputs))
    return sizes


def optimizer_slots(optimizer: Any) -> int:
    name = type(optimizer).__name__.lower()
    if name == "sgd":
        return 1 if getattr(optimizer, "momentum", 0) else 0
    return OPTIMIZER_SLOTS.get(name, 2)


def estimate_training_bytes(model: Any, batch_size: int, optimizer: Any = None, training: bool = True) -> int:
    """Bytes a step of this model needs at the least: its float32 weights (with their gradients and the
    optimizer's state when training) and, for one batch, every layer's output (kept for the backward pass) plus
    the gradients of the largest two (the backward pass holds one layer's incoming and outgoing gradient)."""
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    frozen = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    outputs = layer_output_bytes(model)
    if not training:
        return (trainable + frozen) * 4 + batch_size * max(outputs, default=0) * 2
    state = (trainable * (2 + optimizer_slots(optimizer)) + frozen) * 4
    largest = sum(sorted(outputs)[-2:])
    return state + batch_size * (sum(outputs) + largest)


# -- the limit ---------------------------------------------------------------------------------------------------


def limit_from_env() -> int | None:
    """The job's memory limit in bytes (None: no limit), as the supervisor set it."""
    try:
        value = int(os.environ.get(LIMIT_ENV, "0"))
    except ValueError:
        return None
    return value if value > 0 else None


def apply_limit(limit: int | None) -> str | None:
    """Put this process (and what it starts) under ``limit`` bytes of private writable memory; the limit's
    description, or None when there is none or the kernel refused it."""
    if limit is None:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (ValueError, OverflowError, OSError):
        return None
    return f"RLIMIT_DATA of {gb(limit)} on the training process"


def check_fits(model: Any, batch_size: int, optimizer: Any, training: bool, device: str, emit: Any) -> None:
    """Estimate the built model's memory, say it (a ``memory`` event: a later failure quotes it), and refuse
    a CPU job whose estimate is above its limit before anything is allocated. (A GPU job's activations live in
    the device's memory, which the framework itself reports when it runs out.)"""
    estimate = estimate_training_bytes(model, batch_size, optimizer, training)
    limit = limit_from_env()
    emit({"event": "memory", "estimate_bytes": estimate, "batch_size": batch_size})
    if device == "cpu" and limit is not None and estimate > limit:
        raise OutOfMemory(
            f"{OOM_PREFIX}: the model needs about {gb(estimate)} at batch size {batch_size} (weights, gradients, "
            f"optimizer state, activations), more than this job's limit (RLIMIT_DATA of {gb(limit)}); "
            "refused before training"
        )


# -- the words ---------------------------------------------------------------------------------------------------


def looks_out_of_memory(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in _OOM_MARKERS)


def describe_exception(e: BaseException) -> str | None:
    """The error of a job that raised because memory ran out (``out of memory: ...``), else None."""
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, OutOfMemory):
        return str(e)
    if isinstance(e, MemoryError) or looks_out_of_memory(text):
        return f"{OOM_PREFIX}: {text[:2000]}"
    return None


def describe_exit(returncode: int, stderr_tail: str, oom_killed: bool) -> str | None:
    """Why a job's process that died without a word ran out of memory, or None if nothing says it did: the
    kernel's OOM killer chose it (SIGKILL), or the C++ runtime aborted on a failed allocation (SIGABRT)."""
    if returncode == -signal.SIGKILL and oom_killed:
        return f"{OOM_PREFIX}: the training process was killed by the kernel's OOM killer"
    if returncode < 0 and looks_out_of_memory(stderr_tail[-4000:]):
        return f"{OOM_PREFIX}: the training process was killed by signal {-returncode} after a failed allocation"
    return None


def with_estimate(error: str, memory: dict[str, Any]) -> str:
    """An out-of-memory error with the job's estimate and the limit that applied, where the child said them."""
    if not error.startswith(OOM_PREFIX) or "(estimated" in error or "refused before training" in error:
        return error  # the worker's own refusal says its estimate and limit already
    estimate, limit = memory.get("estimate_bytes"), memory.get("limit_bytes")
    parts = [f"estimated {gb(estimate)} at batch size {memory.get('batch_size')}"] if estimate else []
    parts.append(f"limit: RLIMIT_DATA of {gb(limit)}" if limit else "no memory limit on the job")
    first, _, rest = error.partition("\n")
    return f"{first} ({'; '.join(parts)})" + (f"\n{rest}" if rest else "")


def oom_kills() -> int | None:
    """The kernel's count of OOM kills since boot (``/proc/vmstat``), to tell its kills from others."""
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def peak_host_mb(status: str = "/proc/self/status") -> float | None:
    """This process's peak resident memory in MiB: the kernel's high-water mark (``VmHWM``), which counts what the
    process touched from its start, including the pages a forked training process shares with its fork server
    (they are its memory too). Where /proc is not readable, ``getrusage``'s ``ru_maxrss`` (KiB on Linux)."""
    try:
        with open(status, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # "VmHWM:   123456 kB"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (OSError, ValueError):
        return None


# -- device memory and capacity ----------------------------------------------------------------------------------


def peak_device_mb(backend: str, device: str, devices: int = 1, sampled_mb: float | None = None) -> float | None:
    """The job's peak memory on its fullest GPU in MiB (a data-parallel job holds ``devices``), by its framework's
    own counter (JAX's ``peak_bytes_in_use``, TensorFlow's ``get_memory_info()["peak"]``, torch's
    ``max_memory_allocated``), else ``sampled_mb``, what NVML saw its processes hold while it trained; None on a
    CPU job (its device memory is the host's: :func:`peak_host_mb`) or where neither says."""
    if device != "gpu":
        return None
    peaks = [_peak_or_none(backend, i) for i in range(max(devices, 1))]
    counted = [float(p) for p in peaks if isinstance(p, (int, float)) and p > 0]
    if counted:
        return max(counted) / 2**20
    return sampled_mb if sampled_mb else None


def _peak_or_none(backend: str, index: int) -> Any:
    """One GPU's peak, or None where the framework cannot give it: a figure missing, never a failed job, and one
    GPU's missing counter does not lose the others'."""
    try:
        return _framework_peak(backend, index)
    except Exception:  # noqa: BLE001
        return None


def _framework_peak(backend: str, index: int) -> Any:
    """The framework's own high-water mark of GPU ``index`` of the job's, in bytes (None where it keeps none)."""
    if backend == "jax":
        import jax

        return (jax.local_devices()[index].memory_stats() or {}).get("peak_bytes_in_use")
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.config.experimental.get_memory_info(f"GPU:{index}").get("peak")
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated(index) if torch.cuda.is_available() else None
    return None


def memory_capacity_mb(device: str, gpu_probe: Any = None, limit: int | None = None) -> float | None:
    """What the job's memory figure is measured against, in MiB: its GPU's memory (NVML), or for a CPU job the
    memory it may use (its limit, else the host's RAM, whichever is smaller)."""
    if device == "gpu":
        if gpu_probe is None:
            return None
        try:
            return float(gpu_probe.nvml.nvmlDeviceGetMemoryInfo(gpu_probe.handle).total) / 2**20
        except Exception:  # noqa: BLE001 - a board or driver without the figure
            return None
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        ram = 0
    sizes = [s for s in (ram, limit or 0) if s > 0]
    return min(sizes) / 2**20 if sizes else None
