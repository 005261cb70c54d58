"""Will a job fit in a worker's memory? A framework-free estimate, checked at submit against the live workers.

A job that needs more memory than the largest live worker of its device kind has would only fail on every
worker that takes it (and be retried, and quarantine the machines): it is refused before it is queued. The
estimate is a lower bound (see ``farm.workloads._mlp.mlp_memory_bytes``), so a refusal is never wrong; the
workers' own figures come from their registry entries: ``gpus[].memory_gb`` for a GPU worker, the host's
``ram_gb`` for a CPU worker. A job of a kind no live worker reports is left to the "unserved" check.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from farm import workloads
from farm.errors import Problem

if TYPE_CHECKING:
    from farm.job import JobSpec
    from farm.sweep import Sweep

HELD = "held"
DOWNLOAD = "download"
MISSING = "missing"
"""What a worker says of each real dataset in its registry entry (``datasets``): its archives are on that machine
(``held``), they are not but the worker may fetch them (``download``: whether the network lets it is learnt only
by trying), or neither (``missing``: a job that needs it would fail there)."""

GIB = 2**30
"""Workers report memory in GiB (``nvidia-smi``'s MiB / 1024, psutil's bytes / 2**30), which the farm calls GB."""


def estimate_bytes(job: JobSpec) -> int | None:
    """Bytes the job's training needs at the least; None when its workload gives no estimate."""
    return _estimate(job.workload, json.dumps(job.params, sort_keys=True), job.batch_size)


@functools.lru_cache(maxsize=4096)
def _estimate(workload: str, params_json: str, batch_size: int) -> int | None:
    # Cached by content: a sweep's repeats and its matrix cells share a handful of model shapes.
    wl = workloads.get(workload)
    if wl.memory_estimate is None:
        return None
    return wl.memory_estimate(wl.validate_params(json.loads(params_json)), batch_size)


def _number(value: Any) -> float | None:
    """A positive finite memory figure from a registry entry (written by workers, so checked, not trusted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def worker_memory_gb(worker: dict[str, Any]) -> tuple[str, float | None]:
    """(device kind, memory in GB) of one registry entry: a pinned GPU's memory, or the host's RAM."""
    gpus = worker.get("gpus")
    if isinstance(gpus, list) and gpus:
        sizes = [_number(g.get("memory_gb")) for g in gpus if isinstance(g, dict)]
        return "gpu", max((s for s in sizes if s is not None), default=None)
    return "cpu", _number(worker.get("ram_gb"))


def largest_memory_gb(workers: list[dict[str, Any]]) -> dict[str, float]:
    """Device kind -> the largest memory a live worker of that kind reports."""
    largest: dict[str, float] = {}
    for worker in workers:
        if not isinstance(worker, dict):
            continue
        kind, memory = worker_memory_gb(worker)
        if memory is not None:
            largest[kind] = max(memory, largest.get(kind, 0.0))
    return largest


def describe(nbytes: int) -> str:
    """A memory size for people: MB under a GB, GB with one decimal above."""
    return f"{nbytes / 2**20:.0f} MB" if nbytes < GIB else f"{nbytes / GIB:.1f} GB"


def too_big(sweep: Sweep, workers: list[dict[str, Any]], limit: int = 20) -> list[Problem]:
    """One problem per sweep cell whose estimate exceeds the largest live worker of its device kind (the first
    ``limit`` of them, then one line counting the rest)."""
    largest = largest_memory_gb(workers)
    problems = []
    for job in sweep.jobs:
        if job.repeat or job.device not in largest:
            continue
        need = estimate_bytes(job)
        if need is None or need / GIB <= largest[job.device]:
            continue
        where = sweep.origins.get(job.job_id, f"job {job.job_id}")
        memory, worker = ("GPU memory", "GPU worker") if job.device == "gpu" else ("memory", "CPU worker (RAM)")
        problems.append(
            Problem(
                where,
                f"needs about {need / GIB:.1f} GB of {memory} at batch size {job.batch_size} "
                "(weights, gradients, optimizer state, activations), more than the "
                f"{largest[job.device]:g} GB of the largest live {worker}",
            )
        )
    if len(problems) > limit:
        problems[limit:] = [Problem("", f"and {len(problems) - limit} more job(s) too large for every live worker")]
    return problems


def needed_dataset(job: JobSpec) -> str | None:
    """The real dataset a job trains on (None for synthetic data)."""
    if job.data != "real":
        return None
    wl = workloads.get(job.workload)
    return wl.data_spec(wl.validate_params(job.params)).real


@dataclass(frozen=True)
class DataShortfall:
    """Jobs of one queue that need a real dataset no live worker serving that queue holds."""

    dataset: str
    queue: str
    job_ids: tuple[str, ...]
    download: bool
    """Some of those workers may download it (a warning: the job may still fail); else none can (refused)."""

    def __str__(self) -> str:
        jobs = f"{len(self.job_ids)} job(s) on {self.queue} need the {self.dataset} dataset"
        if self.download:
            return f"{jobs}, which no live worker serving them holds: they will try to download it"
        return (
            f"{jobs}, which no live worker serving them holds or may download: put its archives in a worker's "
            "data_dir (FARM_DATA_DIR) and restart it, or train on data: synthetic"
        )


def data_shortfalls(sweep: Sweep, workers: list[dict[str, Any]], key_prefix: str) -> list[DataShortfall]:
    """The sweep's jobs whose real dataset no live worker that serves their queue holds, by dataset and queue.

    A job no live worker serves at all is left to the "unserved" check; a worker that does not say what it holds
    (one older than this check) is taken to hold everything, as it was before it could say."""
    from farm.queue import job_queue

    serving = [w for w in workers if isinstance(w, dict) and not w.get("quarantined")]
    short: dict[tuple[str, str, bool], list[str]] = {}
    for job in sweep.jobs:
        name = needed_dataset(job)
        if name is None:
            continue
        queue = job_queue(job, key_prefix)
        states = [_dataset_state(w, name) for w in serving if queue in (w.get("queues") or [])]
        if not states or any(s in (HELD, None) for s in states):
            continue
        short.setdefault((name, queue, DOWNLOAD in states), []).append(job.job_id)
    return [DataShortfall(n, q, tuple(ids), d) for (n, q, d), ids in sorted(short.items())]


def _dataset_state(worker: dict[str, Any], name: str) -> str | None:
    datasets = worker.get("datasets")
    if not isinstance(datasets, dict):
        return None
    state = datasets.get(name)
    return state if state in (HELD, DOWNLOAD, MISSING) else MISSING
