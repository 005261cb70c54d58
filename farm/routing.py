"""Which queue a job goes to, derived from what it asks of the hardware.

Queues are named after device tags (``farm.cpu``, ``farm.gpu``, ``farm.gpu.h100``, ``farm.host.lab3``); a
worker consumes the queue of every tag it has, so a job lands only on a worker that satisfies it. Nobody
maintains a queue list by hand.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from farm.job import JobSpec

if TYPE_CHECKING:
    from farm.fingerprint import GPUInfo

QUEUE_PREFIX = "farm."


_SLUG_NOISE = re.compile(
    r"^(nvidia|tesla|geforce|quadro|graphics|gpu|generation|pcie|nvl|sxm\d*|hbm\d*e?|\d+(\.\d+)?(gb|g))$")


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


def derive_tags(gpus: list["GPUInfo"], host: str) -> list[str]:
    """The queue tags this worker serves: "cpu" always; "gpu" and "gpu.<model>" per distinct model if it has
    GPUs; "host.<name>.cpu|gpu" so a job can be pinned to one machine. Deterministic order: cpu, gpu, gpu.* sorted,
    host.*, so the same machine always subscribes to the same queues."""
    tags = ["cpu"]
    if gpus:
        tags.append("gpu")
        tags.extend(f"gpu.{slug}" for slug in sorted({gpu_model_slug(g.name) for g in gpus}))
    tags.append(f"host.{host_slug(host)}.cpu")
    if gpus:
        tags.append(f"host.{host_slug(host)}.gpu")
    return tags




def gpu_model_tag(model: str) -> str:
    """The tag for a requested GPU model: the same slug a worker derives from its device's name."""
    return f"gpu.{gpu_model_slug(model)}"


def required_tag(job: JobSpec) -> str:
    """The most specific tag a job needs: host beats GPU model beats device kind."""
    req = job.requires
    if req.host:
        return f"host.{host_slug(req.host)}.{job.device}"
    if job.device == "gpu" and req.gpu_model:
        return gpu_model_tag(req.gpu_model)
    return job.device


def queue_for(job: JobSpec) -> str:
    return QUEUE_PREFIX + required_tag(job)


def queue_for_tag(tag: str) -> str:
    return QUEUE_PREFIX + tag
