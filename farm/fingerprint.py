"""Where a result was measured: host facts, physical GPUs and the keys that group comparable results.

A benchmark number means nothing without the machine and software it came from, so every result carries a
fingerprint. This module is shared by the worker, the training child and the submit/report side, so it must
stay light: it never imports TensorFlow, Keras, JAX or torch (not even lazily). GPUs are read from
``nvidia-smi`` in a subprocess rather than from a framework, which also works when the installed framework
build cannot see the GPU -- exactly the situation a fingerprint should expose, not hide.

Sizes are in GB as ``nvidia-smi`` and GPU vendors mean them (binary: 1 GB = 1024**3 bytes), so an
"80GB" H100 reads 79.6 and not 85.5.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict

import farm

_GIB = 1024**3
_CUDA_VERSION_RE = re.compile(r"CUDA Version:\s*([0-9]+(?:\.[0-9]+)*)")
# What nvidia-smi prints for a field a GPU or driver does not report.
_NA_VALUES = frozenset({"", "n/a", "[n/a]", "[not supported]", "not supported", "[unknown error]"})
FRAMEWORKS = ("jax", "tensorflow", "torch")
"""Keras backends whose framework version is part of a software key."""

NVIDIA_SMI_QUERY = ["--query-gpu=index,name,memory.total,uuid,driver_version", "--format=csv,noheader,nounits"]


class GPUInfo(BaseModel):
    """One physical GPU as ``nvidia-smi`` reports it (all of them, regardless of CUDA_VISIBLE_DEVICES)."""

    model_config = ConfigDict(extra="forbid")

    index: int
    name: str
    memory_gb: float
    uuid: str | None = None
    driver: str | None = None
    cuda: str | None = None


def cpu_model() -> str:
    """The CPU's marketing name, which is what makes two CPU results comparable (or not).

    ``/proc/cpuinfo`` is the only place Linux gives the full name; ``platform.processor()`` is often empty
    or just the architecture there, so it is only a fallback for other systems.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _usable_cores() -> int | None:
    """CPUs this process may run on (cgroup cpusets and taskset shrink it below the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the benchfarm source tree, or None when benchfarm does not run from a git checkout.

    Cached because it cannot change during a process's life and a worker asks for it per job. The top level
    of the repository must be the directory holding the ``farm`` package: a benchfarm installed into a
    virtualenv that happens to live inside some other checkout must not report that checkout's commit.
    """
    package_dir = Path(farm.__file__).resolve().parent
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],  # noqa: S607 - whichever git the user has on PATH
            cwd=package_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = proc.stdout.split()
    if proc.returncode != 0 or len(lines) != 2:
        return None
    toplevel, commit = lines
    try:
        if Path(toplevel).resolve() != package_dir.parent:
            return None
    except OSError:
        return None
    return commit if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit) else None


def host_facts() -> dict[str, Any]:
    """Facts about this host and benchfarm itself, recorded with every result.

    ``cpu_cores_usable`` is beside the host-wide counts because a container or taskset limited to a few
    CPUs runs like a smaller machine, and its results must not be grouped with the full host's.
    """
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    return {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_cores_logical": logical,
        "cpu_cores_physical": physical,
        "cpu_cores_usable": _usable_cores() or logical,
        "ram_gb": round(psutil.virtual_memory().total / _GIB, 1),
        "benchfarm": farm.__version__,
        "git_commit": git_commit(),
    }


def _field(value: str) -> str | None:
    value = value.strip()
    return None if value.lower() in _NA_VALUES else value


def parse_nvidia_smi_csv(text: str) -> list[GPUInfo]:
    """Parse ``nvidia-smi --query-gpu=index,name,memory.total,uuid,driver_version --format=csv,noheader,nounits``.

    Pure so tests can feed it sample output. Lines that are not GPU rows (driver errors such as "NVIDIA-SMI
    has failed ...", warnings) are skipped, so garbage gives []. A GPU whose memory is not reported gets
    0.0 GB, which no memory requirement accepts: routing a job to it on a guess would be worse.
    """
    gpus: list[GPUInfo] = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 5:
            continue
        # GPU names carry no commas today; if one ever does, the name is everything between index and memory.
        index_s, name, memory_s, uuid, driver = fields[0], ",".join(fields[1:-3]).strip(), *fields[-3:]
        try:
            index = int(index_s)
        except ValueError:
            continue
        if index < 0 or not _field(name):
            continue
        try:
            memory_gb = round(float(memory_s) / 1024, 1)  # MiB -> GB (binary, as nvidia-smi means it)
        except ValueError:
            memory_gb = 0.0
        gpus.append(GPUInfo(index=index, name=name, memory_gb=memory_gb, uuid=_field(uuid), driver=_field(driver)))
    return gpus


def parse_cuda_version(text: str) -> str | None:
    """The driver's CUDA version from plain ``nvidia-smi``'s header ("CUDA Version: 12.4"), if present."""
    m = _CUDA_VERSION_RE.search(text)
    return m.group(1) if m else None


def _run_nvidia_smi(exe: str, args: list[str], timeout: float) -> str | None:
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def query_nvidia_smi(timeout: float = 5.0) -> list[GPUInfo]:
    """All physical NVIDIA GPUs on this host, or [] when there is no working ``nvidia-smi``.

    CUDA_VISIBLE_DEVICES is deliberately ignored: the worker decides which GPU a job is pinned to, and it
    needs the full list to do so. A hung driver makes ``nvidia-smi`` block, hence the timeout per call.
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    out = _run_nvidia_smi(exe, NVIDIA_SMI_QUERY, timeout)
    gpus = parse_nvidia_smi_csv(out) if out else []
    if not gpus:
        return []
    header = _run_nvidia_smi(exe, [], timeout)
    cuda = parse_cuda_version(header) if header else None
    return [g.model_copy(update={"cuda": cuda}) for g in gpus]


def hardware_key(facts: dict[str, Any], gpus: list[GPUInfo] | None, device: str) -> str:
    """A short human-readable key: results with equal keys ran on comparable hardware.

    CPU jobs: ``"cpu:<model> x<cores>"`` with the cores the process could use. GPU jobs:
    ``"gpu:<name>"``, where ``gpus`` are the GPUs the job was pinned to (not every GPU on the host);
    ``" x<n>"`` is added for several identical GPUs and distinct models are joined with ``" + "``.
    """
    if device == "cpu":
        cores = facts.get("cpu_cores_usable") or facts.get("cpu_cores_logical") or "?"
        return f"cpu:{facts.get('cpu_model') or 'unknown'} x{cores}"
    if device == "gpu":
        if not gpus:
            return "gpu:unknown"
        counts: dict[str, int] = {}
        for g in gpus:
            counts[g.name] = counts.get(g.name, 0) + 1
        return "gpu:" + " + ".join(name if n == 1 else f"{name} x{n}" for name, n in sorted(counts.items()))
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'gpu'")


def software_key(versions: dict[str, str], *, harness: str | None = None, workload: str | None = None) -> str:
    """A short key of the versions that change a benchmark's speed, e.g. ``"py3.11.7 keras3.15.1
    tensorflow2.21.0 benchfarm0.1.0+abc123 cifar10_mlp@1f2e3d4c"``.

    Python first, then Keras, then whichever backend frameworks are present, sorted by name, then the harness
    (benchfarm's version and commit: a change to how the farm times a job can change its numbers) and the
    workload's definition hash (a changed model is another benchmark). Other entries (numpy, CUDA libraries,
    ...) stay in the result's ``versions`` but out of the key, so it stays short.
    """
    parts: list[str] = []
    if versions.get("python"):
        parts.append(f"py{versions['python']}")
    if versions.get("keras"):
        parts.append(f"keras{versions['keras']}")
    parts.extend(f"{name}{versions[name]}" for name in sorted(FRAMEWORKS) if versions.get(name))
    if harness:
        parts.append(f"benchfarm{harness}")
    if workload:
        parts.append(workload)
    return " ".join(parts)


__all__ = [
    "GPUInfo",
    "cpu_model",
    "git_commit",
    "hardware_key",
    "host_facts",
    "parse_cuda_version",
    "parse_nvidia_smi_csv",
    "query_nvidia_smi",
    "software_key",
]
