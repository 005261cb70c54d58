"""Which worker processes a machine runs, and what each serves.

One worker per GPU, pinned to it (its jobs see exactly that GPU); a GPU box does not also run CPU jobs unless
asked (a CPU job would steal the cores that feed the GPUs and skew both numbers); a machine without GPUs runs
one CPU worker. Tags, hence queues, come from the hardware: see :mod:`farm.routing`.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from farm import defaults
from farm.fingerprint import GPUInfo
from farm.queue import tag_queue
from farm.routing import DEFAULT_BACKEND, cpu_tags, gpu_tags, with_backends, with_plugins


class PlanError(ValueError):
    """A worker selection that does not fit this machine (e.g. a GPU index it does not have)."""


@dataclass
class WorkerPlan:
    """What one worker process serves: its name, tags (hence queues: the farm's ``key_prefix`` names them) and,
    when pinned, its GPU ids."""

    name: str
    tags: list[str]
    gpu_ids: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    key_prefix: str = defaults.KEY_PREFIX

    @property
    def queues(self) -> list[str]:
        return [tag_queue(t, self.key_prefix) for t in self.tags]

    @property
    def kind(self) -> str:
        return "gpu" if self.gpu_ids else "cpu"


def select_gpus(gpus: list[GPUInfo], selection: str) -> list[GPUInfo]:
    """``all`` or a comma-separated list of GPU indices (as ``nvidia-smi`` numbers them)."""
    if selection.strip().lower() == "all":
        return list(gpus)
    by_index = {str(g.index): g for g in gpus}
    chosen = []
    for part in (p.strip() for p in selection.split(",")):
        if part not in by_index:
            have = ", ".join(sorted(by_index)) or "none"
            raise PlanError(f"--gpus: no GPU with index {part!r} on this machine (have: {have})")
        chosen.append(by_index[part])
    return chosen


def plan_workers(
    gpus: list[GPUInfo],
    *,
    selection: str = "all",
    cpu_only: bool = False,
    allow_cpu_jobs: bool = False,
    name: str | None = None,
    host: str | None = None,
    info: dict[str, Any] | None = None,
    plugins: list[str] | None = None,
    key_prefix: str = defaults.KEY_PREFIX,
    backends: Sequence[str] = (DEFAULT_BACKEND,),
    gpu_groups: Sequence[int] = (),
) -> list[WorkerPlan]:
    """One plan per worker process this machine runs. ``plugins``: the plugin workloads installed here; each
    worker also consumes their queues (see :func:`farm.routing.with_plugins`). ``backends``: the Keras backends
    it offers; it consumes the queues of those only (see :func:`farm.routing.with_backends`), so a job never reaches
    a worker that cannot import its backend. ``key_prefix``: the farm's, which names its queues (see
    :func:`farm.queue.queue_prefix`). ``gpu_groups``: sizes of GPU groups that also get a worker each (for jobs
    spanning that many GPUs): consecutive selected GPUs, as many groups as fit; their GPUs keep their own workers,
    and the host's GPU locks (workers.gpu_locks) keep two jobs off one GPU."""
    host = host or socket.gethostname()
    extra = plugins or []
    info = info or {}
    base = name or host
    cpu = WorkerPlan(
        name=name if (name and (cpu_only or not gpus)) else f"cpu@{base}" if not name else f"{name}-cpu",
        tags=with_plugins(with_backends(cpu_tags(host), backends), extra),
        info={**info, "gpus": []},
        key_prefix=key_prefix,
    )
    if cpu_only or not gpus:
        return [cpu]
    plans = [
        WorkerPlan(
            name=f"gpu{g.index}@{base}" if not name else f"{name}-gpu{g.index}",
            tags=with_plugins(with_backends(gpu_tags(g, host), backends), extra),
            gpu_ids=[str(g.index)],
            info={**info, "gpus": [g.model_dump()]},
            key_prefix=key_prefix,
        )
        for g in select_gpus(gpus, selection)
    ]
    plans += group_plans(select_gpus(gpus, selection), gpu_groups, host, base, name, info, extra, key_prefix, backends)
    if allow_cpu_jobs:
        plans.append(cpu)
    return plans


def group_plans(
    selected: list[GPUInfo],
    sizes: Sequence[int],
    host: str,
    base: str,
    name: str | None,
    info: dict[str, Any],
    plugins: list[str],
    key_prefix: str,
    backends: Sequence[str],
) -> list[WorkerPlan]:
    """A worker per group of ``size`` consecutive GPUs, for each size: it serves the ``gpus-N`` queues of the
    requirements every GPU of its group meets (a 4-GPU job asking for H100s goes to a group of four H100s)."""
    plans = []
    for size in sorted(set(sizes)):
        if size < 2 or size > len(selected):
            raise PlanError(f"--gpu-groups {size}: a group spans 2 to {len(selected)} GPUs (the GPUs selected here)")
        for start in range(0, len(selected) - size + 1, size):
            group = selected[start : start + size]
            per_gpu = [gpu_tags(g, host) for g in group]
            common = [t for t in per_gpu[0] if all(t in tags for tags in per_gpu[1:])]
            tags = [t.replace("gpu", f"gpu.gpus-{size}", 1) for t in common]
            label = f"gpu{group[0].index}-{group[-1].index}"
            plans.append(
                WorkerPlan(
                    name=f"{label}@{base}" if not name else f"{name}-{label}",
                    tags=with_plugins(with_backends(tags, backends), plugins),
                    gpu_ids=[str(g.index) for g in group],
                    info={**info, "gpus": [g.model_dump() for g in group]},
                    key_prefix=key_prefix,
                )
            )
    return plans
