"""Who else used the machine while a job was measured: CPU time of other processes on the job's cores, the
hypervisor's steal, CPU pressure (PSI) and CPU frequency, sampled from /proc in a thread of the training child.

Why from the child and from /proc: the child knows exactly which cores it may use (its affinity) and which
processes are its own (itself and its descendants), and reading a few small /proc files twice a second costs a
fraction of a millisecond each time, so the sampler does not disturb what it measures (its own CPU time is
recorded with the figures). The farm's own processes (the fork server, the worker and whatever started it above
the job, and a Redis on the same host) are not "others": the job does not pay for its own harness twice. Per-CPU
lines of /proc/stat are summed over the job's cores only, so on a big host
the other cores' tenants do not count; PSI's "some" time says how long runnable tasks waited for a CPU, which
also catches contention that /proc/stat cannot attribute (a CPU quota, another cgroup). The GPU side, when the
job has a GPU, comes from NVML (``workers.gpu_contention``).

An epoch is **disturbed** when, over its span, other processes used more than the contention threshold of the
cores the job may use, or the hypervisor stole more than that, or (on a GPU job) another process used the job's
GPU or its clocks were throttled by heat or power. The repeat's steady figure is the median of its undisturbed
steady epochs (the epochs after the first; ``farm.result``), so a neighbour that comes for one epoch costs that
epoch, not the repeat; the job is **contended** only when every steady epoch was disturbed (:func:`settle`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSample:
    """One reading: when, the job cores' busy and steal ticks, the job's own CPU ticks, PSI 'some' µs."""

    at: float
    busy: int
    steal: int
    own: int
    pressure_us: int | None
    freq_ratio: float | None


def job_cores() -> list[int]:
    """The CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def read_cpu_ticks(cores: list[int]) -> tuple[int, int]:
    """(busy, steal) ticks summed over ``cores`` from /proc/stat; busy excludes idle, iowait and steal."""
    wanted = {f"cpu{c}" for c in cores}
    busy = steal = 0
    with open("/proc/stat", "rb") as f:
        for line in f:
            if not line.startswith(b"cpu"):
                break
            fields = line.split()
            if fields[0].decode() not in wanted:
                continue
            user, nice, system, _idle, _iowait, irq, softirq, st = (int(v) for v in fields[1:9])
            busy += user + nice + system + irq + softirq
            steal += st
    return busy, steal


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ≥ 3.5 lists them per thread)."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                    kids.extend(int(k) for k in f.read().split())
            except OSError:
                continue
    except OSError:
        pass
    return kids


def process_ticks(pid: int) -> int:
    """CPU ticks of one process (all its threads) and of the children it has reaped; 0 if it is gone.

    The reaped children's share (cutime + cstime) matters: a subprocess the job starts and waits for (a compiler,
    a loader, the bare script a benchmark times) leaves the tree when it exits, and without its ticks moving to
    its parent's count the job's own work would turn into "other processes" at that moment.
    """
    return sum(_cpu_fields(pid)[:4])  # utime, stime, cutime, cstime


def self_ticks(pid: int) -> int:
    """CPU ticks of one process itself (utime + stime, no reaped children); 0 if it is gone."""
    return sum(_cpu_fields(pid)[:2])


def _cpu_fields(pid: int) -> list[int]:
    """utime, stime, cutime, cstime of a process from /proc/PID/stat (after its name, which may hold spaces and
    parentheses); zeros when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return [0, 0, 0, 0]
    return [int(v) for v in stat[stat.rindex(b")") + 2 :].split()[11:15]]


def ancestors(pid: int) -> list[int]:
    """The processes above ``pid`` up to (not including) init: the fork server, the worker, ``farm run``."""
    chain: list[int] = []
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            pid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            return chain
        if pid <= 1 or pid in chain:
            return chain
        chain.append(pid)


FARM_PIDS_ENV = "FARM_FARM_PIDS"
"""Processes of the farm itself on this host that are not above the job (its Redis), comma-separated: the
worker finds them (``workers.own_processes``) and its job's process counts their CPU as the farm's, not others'."""


def farm_pids() -> list[int]:
    """The farm's own processes a job must not count as others: those above it, and those the worker named."""
    named = [int(p) for p in os.environ.get(FARM_PIDS_ENV, "").split(",") if p.strip().isdigit()]
    return sorted(set(ancestors(os.getpid())) | set(named))


def process_tree(root: int) -> set[int]:
    """``root`` and every process below it: the job's own processes."""
    pids: set[int] = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid not in pids:
            pids.add(pid)
            stack.extend(_children(pid))
    return pids


def tree_ticks(root: int) -> int:
    """CPU ticks of ``root`` and every process below it: the job's own work."""
    return sum(process_ticks(pid) for pid in process_tree(root))


def read_pressure_us(path: str = "/proc/pressure/cpu") -> int | None:
    """PSI's cumulative 'some' stall time in µs (tasks waiting for a CPU), or None where the kernel has none."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(b"some"):
                    return int(line.rsplit(b"total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def read_freq_ratio(cores: list[int]) -> float | None:
    """Mean current/maximum frequency of ``cores`` where cpufreq is exposed (bare metal); None elsewhere."""
    ratios = []
    for c in cores:
        base = f"/sys/devices/system/cpu/cpu{c}/cpufreq"
        try:
            with open(f"{base}/scaling_cur_freq") as cur, open(f"{base}/cpuinfo_max_freq") as top:
                ratios.append(int(cur.read()) / int(top.read()))
        except (OSError, ValueError, ZeroDivisionError):
            return None
    return sum(ratios) / len(ratios) if ratios else None


def take_sample(cores: list[int], root: int, farm: list[int] | tuple[int, ...] = ()) -> CpuSample:
    """One reading; ``own`` holds the job's tree and the farm's own processes ``farm`` (their own ticks only:
    a worker that reaps an earlier job's process must not add that job's CPU at that moment)."""
    busy, steal = read_cpu_ticks(cores)
    own = tree_ticks(root) + sum(self_ticks(pid) for pid in farm)
    return CpuSample(time.perf_counter(), busy, steal, own, read_pressure_us(), read_freq_ratio(cores))


def cpu_window(samples: list[CpuSample], start: float, end: float, cores: int) -> dict[str, Any] | None:
    """What other processes did on the job's cores between ``start`` and ``end`` (perf_counter seconds).

    Fractions are of the job's cores over the window: ``cpu_others`` 0.5 on a 2-core job means another
    process used one core's worth of CPU the whole time. ``cpu_others_peak`` is the largest over any one
    sampling interval, so a short burst shows even when the mean is low.
    """
    inside = [s for s in samples if start - 1e-6 <= s.at <= end + 1e-6]
    # The samples just outside bound the window where no sample falls on its edge: an interval that straddles an
    # edge counts in full.
    before = [s for s in samples if s.at < start] if not inside or inside[0].at > start + 1e-6 else []
    after = [s for s in samples if s.at > end] if not inside or inside[-1].at < end - 1e-6 else []
    points = ([before[-1]] if before else []) + inside + ([after[0]] if after else [])
    if len(points) < 2:
        return None
    span = points[-1].at - points[0].at
    if span <= 0:
        return None
    capacity = span * cores * CLOCK_TICKS

    def others(a: CpuSample, b: CpuSample) -> float:
        return max(0, (b.busy - a.busy) - (b.own - a.own))

    peak = 0.0
    for a, b in pairwise(points):
        if b.at > a.at:
            peak = max(peak, others(a, b) / ((b.at - a.at) * cores * CLOCK_TICKS))
    first, last = points[0], points[-1]
    out: dict[str, Any] = {
        "window_s": span,
        "cores": cores,
        "cpu_others": others(first, last) / capacity,
        "cpu_others_peak": peak,
        "cpu_steal": (last.steal - first.steal) / capacity,
        "cpu_own": (last.own - first.own) / capacity,
        "samples": len(points),
    }
    if first.pressure_us is not None and last.pressure_us is not None:
        out["cpu_pressure"] = (last.pressure_us - first.pressure_us) / 1e6 / span
    freqs = [s.freq_ratio for s in points if s.freq_ratio is not None]
    if freqs:
        out["cpu_freq_ratio"] = sum(freqs) / len(freqs)
        out["cpu_freq_low"], out["cpu_freq_high"] = min(freqs), max(freqs)
    return out


def judge(figures: dict[str, Any], threshold: float) -> list[str]:
    """The reasons a job's window counts as contended (empty: it does not)."""
    reasons = []
    others = figures.get("cpu_others")
    if others is not None and others > threshold:
        reasons.append(f"other processes used {others:.0%} of the job's {figures.get('cores')} core(s)")
    steal = figures.get("cpu_steal")
    if steal is not None and steal > threshold:
        reasons.append(f"the hypervisor stole {steal:.0%} of the job's cores")
    gpu = figures.get("gpu") or {}
    if gpu.get("other_processes"):
        reasons.append(f"{gpu['other_processes']} other process(es) on the job's GPU")
    if gpu.get("throttle_reasons"):
        reasons.append("the GPU was throttled: " + ", ".join(gpu["throttle_reasons"]))
    return reasons


class ContentionSampler:
    """Samples the machine in a thread while the job trains; the figures are computed for any window after.

    ``period_s`` of 0.5 s keeps the cost near 0.1 ms of CPU per second and still resolves a 1 s burst. A GPU
    probe (``sample() -> dict``), when given, is read at the same moments.
    """

    def __init__(self, period_s: float = 0.5, gpu_probe: Any = None) -> None:
        self.period_s = period_s
        self.cores = job_cores()
        self.root = os.getpid()
        self.farm = farm_pids()
        self.samples: list[CpuSample] = []
        self.gpu_probe = gpu_probe
        self.gpu_samples: list[tuple[float, dict[str, Any]]] = []
        self.cost_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="farm-contention")

    def _sample(self) -> None:
        c0 = time.thread_time()
        try:
            self.samples.append(take_sample(self.cores, self.root, self.farm))
            if self.gpu_probe is not None:
                self.gpu_samples.append((time.perf_counter(), self.gpu_probe.sample()))
        except Exception:  # noqa: BLE001 - a sampler must never fail the job it watches
            pass
        self.cost_s += time.thread_time() - c0

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def start(self) -> ContentionSampler:
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sample()

    def epochs(
        self,
        bounds: list[tuple[float, float]],
        threshold: float,
        gpu_summary: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """One verdict per epoch span in ``bounds`` (:meth:`window`'s, each judged on its own)."""
        return [self.window(start, end, threshold, gpu_summary) for start, end in bounds]

    def gpu_readings(self) -> list[dict[str, Any]]:
        """Every GPU reading taken, in order (what :func:`workers.gpu_contention.sampled_peak_mb` reads)."""
        return [reading for _, reading in self.gpu_samples]

    def window(
        self,
        start: float,
        end: float,
        threshold: float,
        gpu_summary: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The figures of ``[start, end]`` with the verdict: ``{"contended": bool, "reasons": [...], ...}``."""
        figures = cpu_window(self.samples, start, end, len(self.cores)) or {}
        if gpu_summary is not None and self.gpu_samples:
            inside = [g for t, g in self.gpu_samples if start <= t <= end] or [g for _, g in self.gpu_samples]
            figures["gpu"] = gpu_summary(inside)
        figures["sampler_cpu_s"] = self.cost_s
        reasons = judge(figures, threshold)
        gpu = figures.get("gpu") or {}
        return {
            "figures": figures,
            "contended": bool(reasons),
            "reasons": reasons,
            "throttled": bool(gpu.get("throttle_reasons")),
        }


def settle(steady: dict[str, Any], per_epoch: list[dict[str, Any]]) -> dict[str, Any]:
    """The job's verdict from its whole steady window's and each steady epoch's: contended only when no steady
    epoch was left undisturbed (the undisturbed ones carry the figure; ``farm.validity`` checks they are long
    enough to time). The whole window's figures stay as measured; each epoch's verdict is kept in its record."""
    if not per_epoch:
        return steady
    if all(e["contended"] for e in per_epoch):
        return {**steady, "contended": True, "reasons": steady["reasons"] or per_epoch[0]["reasons"]}
    throttled = any(e["throttled"] for e in per_epoch if not e["contended"])
    return {**steady, "contended": False, "reasons": [], "throttled": throttled}


def window_now(seconds: float, farm: list[int] | tuple[int, ...] = ()) -> dict[str, Any]:
    """What other processes (not this one, its descendants or ``farm``) did on this process's cores over the next
    ``seconds`` (:func:`cpu_window`'s figures; empty if unreadable): a job's look for a quiet host."""
    cores = job_cores()
    a = take_sample(cores, os.getpid(), farm)
    time.sleep(seconds)
    b = take_sample(cores, os.getpid(), farm)
    return cpu_window([a, b], a.at, b.at, len(cores)) or {}


def others_cpu_now(seconds: float = 1.0) -> float:
    """Share of this machine's cores (those this process may use) that other processes used over the next
    ``seconds``: ``farm worker``'s start-up warning."""
    return float(window_now(seconds).get("cpu_others", 0.0))
