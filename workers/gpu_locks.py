"""One job per GPU, whichever worker runs it: a host-wide lock per GPU, held for the whole of each job.

A GPU box runs a worker pinned to each GPU and, where the operator asks (``farm worker --gpu-groups 4``), workers
pinned to groups of GPUs for data-parallel jobs. A group worker's GPUs are also single workers' GPUs: before a
job, every GPU worker takes the lock of each GPU it is pinned to (``flock`` on a file per GPU, named by the GPU's
UUID, in order, so two workers never wait on each other in a circle), and gives them back when the job's process
has ended. An 8-GPU box thus runs one 4-GPU job and four 1-GPU jobs at once, never two jobs on one GPU; a worker
whose GPU is taken waits, its lease kept alive by its heartbeat, and stops waiting when its job is cancelled or
its lease lost. A worker that dies loses its locks with its life.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

LOCK_DIR = Path(os.environ.get("BENCHFARM_GPU_LOCK_DIR") or "/tmp/benchfarm-gpu-locks")  # noqa: S108 - host-wide by design
"""Where the per-GPU lock files live: one directory per host, shared by every worker on it (the tests name their
own with ``BENCHFARM_GPU_LOCK_DIR``)."""

POLL_S = 0.2


class GpuWaitStopped(Exception):
    """The job was cancelled, or its lease lost, while its worker waited for its GPUs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@contextmanager
def gpus_held(
    gpu_keys: list[str], should_stop: Callable[[], str | None] = lambda: None, directory: Path | None = None
) -> Iterator[float]:
    """Hold the lock of each GPU in ``gpu_keys`` (UUIDs, or indices where there is none) for the block; yields
    the seconds waited for them. GpuWaitStopped when ``should_stop`` gives a reason while waiting."""
    folder = directory or LOCK_DIR
    held: list[IO[bytes]] = []
    started = time.monotonic()
    try:
        if gpu_keys:
            folder.mkdir(parents=True, exist_ok=True)
        for key in sorted(set(gpu_keys)):
            lock = open(folder / f"{_safe(key)}.lock", "ab")  # noqa: SIM115 - held until the block ends
            held.append(lock)
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    reason = should_stop()
                    if reason:
                        raise GpuWaitStopped(reason) from None
                    time.sleep(POLL_S)
        yield time.monotonic() - started
    finally:
        for taken in held:
            taken.close()  # the lock goes with the file


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:100] or "gpu"
