"""A start that waits for a quiet host: before a job's measured passes, its process looks at what other
processes do on its cores and, while they use more than the job's contended threshold, waits (bounded).

Why before the measured passes and not before the job: data loading and compiling are the job's own CPU and
would only lengthen the look; the moment that matters is the one its steady window starts from. Why bounded: a
host busy for good must not hold a job for ever; past the bound the job trains anyway and its window is judged
as always (``workers.contention``), so a repeat measured on a busy host is marked, never silently kept. The
farm's own processes (worker, fork server, a local Redis) are not "others" (``workers.contention.farm_pids``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.contention import farm_pids, window_now

LOOK_S = 0.5
"""One look at the host: long enough to see a busy core (50 clock ticks of 10 ms), short enough to cost a job
half a second on a quiet host."""

BACKOFF_S = (1.0, 2.0, 4.0, 8.0)
"""Pauses between looks while the host is busy (then the last, repeated): a compile beside the job ends in
seconds, a training run in minutes."""


@dataclass(frozen=True)
class Look:
    """One look at the host: others' share of the job's cores, the hypervisor's steal, other processes on the
    job's GPU."""

    others: float
    steal: float = 0.0
    gpu_others: int = 0

    def busy(self, threshold: float) -> bool:
        return self.others > threshold or self.steal > threshold or self.gpu_others > 0

    def text(self) -> str:
        parts = [f"others {self.others:.0%} CPU"]
        if self.steal > 0.005:
            parts.append(f"steal {self.steal:.0%}")
        if self.gpu_others:
            parts.append(f"{self.gpu_others} other process(es) on the GPU")
        return ", ".join(parts)


def look_at_host(seconds: float, farm: list[int], gpu: Any = None) -> Look:
    """Others' CPU and the steal on this process's cores over ``seconds``, and other processes on its GPU."""
    figures = window_now(seconds, farm)
    gpu_others = 0
    if gpu is not None:
        try:
            gpu_others = len(gpu.sample().get("other_pids", []))
        except Exception:  # noqa: BLE001 - a probe that fails leaves the CPU figures
            gpu_others = 0
    return Look(figures.get("cpu_others", 0.0), figures.get("cpu_steal", 0.0), gpu_others)


@dataclass(frozen=True)
class QuietWait:
    """What the wait did: seconds spent (looks included), whether the host was quiet when it ended, and the
    others' CPU share of the job's cores at the last look."""

    waited_s: float
    quiet: bool
    others: float
    looks: int

    def figures(self) -> dict[str, Any]:
        return {"quiet_wait_s": self.waited_s, "quiet_reached": self.quiet, "quiet_others_cpu": self.others}


def wait_for_quiet(
    threshold: float,
    max_wait_s: float,
    emit: Callable[[dict[str, Any]], None],
    look: Callable[[], Look] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    gpu: Any = None,
) -> QuietWait | None:
    """Wait, at most ``max_wait_s``, until others use at most ``threshold`` of this process's cores (and the
    hypervisor steals no more, and no other process uses the job's GPU, probed by ``gpu``); None when no wait is
    asked for (``max_wait_s`` 0). Each busy look is told (``emit``: ``farm status`` shows it)."""
    if max_wait_s <= 0:
        return None
    farm = farm_pids()
    look = look or (lambda: look_at_host(LOOK_S, farm, gpu))
    started = time.perf_counter()
    looks = 0
    while True:
        seen = look()
        looks += 1
        waited = time.perf_counter() - started
        if not seen.busy(threshold):
            break
        left = max_wait_s - waited
        if left <= 0:
            emit({"event": "waiting", "note": ""})
            return QuietWait(waited, False, seen.others, looks)
        emit({"event": "waiting", "note": f"waiting for a quiet host ({seen.text()})", "others": seen.others})
        sleep(min(BACKOFF_S[min(looks - 1, len(BACKOFF_S) - 1)], left))
    emit({"event": "waiting", "note": ""})  # also clears a note an earlier attempt of the job left
    return QuietWait(waited, True, seen.others, looks)
