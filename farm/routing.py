"""Which queue a job goes to, derived from what it asks of the hardware.

Queues are named after requirement tags: ``farm.cpu``, ``farm.gpu``, ``farm.gpu.model-h100``,
``farm.gpu.mem-40``, ``farm.gpu.model-h100.mem-80.host-lab3``, ``farm.cpu.host-lab3``, for a Keras backend
other than the default (TensorFlow) ``farm.cpu.be-jax``, and for a plugin workload ``farm.cpu.wl-tiny_cnn``. A job's
tag spells all
it asks for in one canonical order; a worker pinned to one GPU consumes the queue of every combination its
GPU satisfies, so a job lands only on a worker that satisfies all of it. Nobody maintains a queue list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from farm import workloads
from farm.job import JobSpec

if TYPE_CHECKING:
    from farm.fingerprint import GPUInfo


_SLUG_NOISE = re.compile(
    r"^(nvidia|tesla|geforce|quadro|graphics|gpu|generation|pcie|nvl|sxm\d*|hbm\d*e?|\d+(\.\d+)?(gb|g))$"
)


def gpu_model_slug(name: str) -> str:
    """A short, stable tag for a GPU model: "NVIDIA H100 80GB HBM3" -> "h100", "NVIDIA GeForce RTX 4090" ->
    "rtx4090", "Tesla V100-SXM2-16GB" -> "v100".

    Vendor and brand words, memory sizes and form factors are dropped (memory is routed on separately by
    ``min_gpu_memory_gb``); the remaining tokens are joined, so "RTX 4090" and "GTX 1080 Ti" keep their
    series and suffix. Unrecognisable names give "unknown" rather than an empty tag.
    """
    tokens = re.split(r"[^a-z0-9.]+", name.lower())
    kept = [t for t in tokens if t and not _SLUG_NOISE.match(t)]
    slug = re.sub(r"[^a-z0-9]", "", "".join(kept))
    return slug or "unknown"


def host_slug(host: str) -> str:
    """The host name as a tag: lowercase, anything but [a-z0-9-] replaced by "-"."""
    return re.sub(r"[^a-z0-9-]", "-", host.lower()) or "unknown"


MEMORY_STEPS_GB = (4, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 141, 192, 256)
"""GPU memory classes a job may ask for: ``min_gpu_memory_gb`` rounds up to the next step, and a GPU serves a
step when it has at least 97% of it (an "80 GB" H100 reports 79.6 GiB)."""

MEMORY_TOLERANCE = 0.97


def memory_step(min_gb: float) -> int:
    """The memory class a requirement rounds up to (beyond the largest step: the requirement itself)."""
    for step in MEMORY_STEPS_GB:
        if min_gb <= step:
            return step
    return int(-(-min_gb // 1))


def memory_steps_of(memory_gb: float) -> list[int]:
    return [s for s in MEMORY_STEPS_GB if memory_gb >= MEMORY_TOLERANCE * s]


DEFAULT_BACKEND: str = JobSpec.model_fields["backend"].default
"""The Keras backend a job gets when it names none: its jobs carry no backend tag, so a farm of TensorFlow workers
keeps the queue names it had before workers could offer other backends."""


def compose_tag(
    device: str,
    model: str | None = None,
    memory: int | None = None,
    host: str | None = None,
    workload: str | None = None,
    backend: str | None = None,
    gpus: int = 1,
) -> str:
    """The one canonical spelling of a requirement: ``gpu[.gpus-K][.model-M][.mem-N][.host-H][.be-B][.wl-W]``.
    ``backend`` is left out for the default one (:data:`DEFAULT_BACKEND`); ``gpus-K`` for a job on one GPU."""
    parts = [device]
    if gpus > 1:
        parts.append(f"gpus-{gpus}")
    if model:
        parts.append(f"model-{model}")
    if memory:
        parts.append(f"mem-{memory}")
    if host:
        parts.append(f"host-{host}")
    if backend and backend != DEFAULT_BACKEND:
        parts.append(f"be-{backend}")
    if workload:
        parts.append(f"wl-{workload}")
    return ".".join(parts)


def with_plugins(tags: list[str], plugins: list[str]) -> list[str]:
    """A worker's tags extended by the plugin workloads it has: each hardware tag as it is (jobs of the built-in
    workloads, which every worker has), then each hardware tag with each plugin's ``wl-`` part."""
    return [*tags, *(f"{tag}.wl-{name}" for name in sorted(plugins) for tag in tags)]


def with_backends(tags: list[str], backends: Iterable[str]) -> list[str]:
    """A worker's hardware tags for the Keras backends it offers: the plain tags for the default backend, each tag
    with a ``be-`` part for each other one. A job is thereby only ever queued where a worker can import its backend:
    one queue carries one backend's jobs. Plugin ``wl-`` parts come after (:func:`with_plugins`), as in
    :func:`compose_tag`."""
    offered = set(backends)
    plain = tags if DEFAULT_BACKEND in offered else []
    others = sorted(offered - {DEFAULT_BACKEND})
    return [*plain, *(f"{tag}.be-{name}" for name in others for tag in tags)]


def cpu_tags(host: str) -> list[str]:
    return [compose_tag("cpu"), compose_tag("cpu", host=host_slug(host))]


def gpu_tags(gpu: GPUInfo, host: str) -> list[str]:
    """Every requirement one GPU satisfies: each combination of (any or its model) × (any or a memory class it
    has) × (any host or this one). A worker pinned to this GPU consumes all their queues."""
    models = [None, gpu_model_slug(gpu.name)]
    memories = [None, *memory_steps_of(gpu.memory_gb)]
    hosts = [None, host_slug(host)]
    return [compose_tag("gpu", m, mem, h) for m in models for mem in memories for h in hosts]


def derive_tags(gpus: list[GPUInfo], host: str) -> list[str]:
    """The tags of this machine as a whole (what ``farm devices`` shows): CPU tags, and for GPUs the tags
    that every one of the given GPUs satisfies (a worker is pinned to one GPU, so its tags are exact)."""
    tags = cpu_tags(host)
    if gpus:
        per_gpu = [gpu_tags(g, host) for g in gpus]
        common = set(per_gpu[0]).intersection(*per_gpu[1:])
        tags += [t for t in per_gpu[0] if t in common]
    return tags


def required_tag(job: JobSpec) -> str:
    """The tag a job needs: its device plus every requirement it states, in the canonical spelling. A plugin
    workload is a requirement too (not every worker has it installed); the shipped workloads are not. So is a Keras
    backend other than the default (not every worker offers it: ``FARM_BACKENDS``, what is installed)."""
    req = job.requires
    gpu = job.device == "gpu"
    return compose_tag(
        job.device,
        model=gpu_model_slug(req.gpu_model) if gpu and req.gpu_model else None,
        memory=memory_step(req.min_gpu_memory_gb) if gpu and req.min_gpu_memory_gb else None,
        host=host_slug(req.host) if req.host else None,
        workload=job.workload if workloads.get(job.workload).is_plugin else None,
        backend=job.backend,
        gpus=job.devices if gpu else 1,  # several GPUs of one host: only a worker holding that many serves it
    )
