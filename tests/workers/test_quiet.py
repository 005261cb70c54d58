"""The wait for a quiet host (workers.quiet) and the farm's own processes not counted as others
(workers.contention, workers.own_processes): what the wait tells and records, bounded, off when asked."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
import redis

from farm import defaults
from farm.embedded import EmbeddedRedis
from farm.precision import Precision, contention_threshold
from farm.store import Store
from workers.contention import CLOCK_TICKS, ancestors, cpu_window, farm_pids, job_cores, self_ticks, take_sample
from workers.own_processes import is_redis_server, local_redis
from workers.quiet import Look, look_at_host, wait_for_quiet


def scripted(levels: list[float]) -> Any:
    """A look that sees these others' shares in turn (then the last)."""
    it = iter(levels)
    last = [levels[-1]]

    def look() -> Look:
        last[0] = next(it, last[0])
        return Look(last[0])

    return look


def test_a_quiet_host_starts_at_once_and_says_nothing_is_waited_for() -> None:
    events: list[dict[str, Any]] = []
    waited = wait_for_quiet(0.05, 60, events.append, look=scripted([0.01]), sleep=lambda s: None)
    assert waited is not None and waited.quiet and waited.looks == 1
    assert events == [{"event": "waiting", "note": ""}]  # a stale note of an earlier attempt is cleared


def test_a_busy_host_is_waited_for_and_each_busy_look_is_told() -> None:
    events: list[dict[str, Any]] = []
    slept: list[float] = []
    waited = wait_for_quiet(0.05, 60, events.append, look=scripted([0.45, 0.3, 0.02]), sleep=slept.append)
    assert waited is not None and waited.quiet and waited.looks == 3 and waited.others == 0.02
    notes = [e["note"] for e in events]
    assert notes == ["waiting for a quiet host (others 45% CPU)", "waiting for a quiet host (others 30% CPU)", ""]
    assert slept == [1.0, 2.0]  # backing off
    assert waited.figures()["quiet_reached"] is True


def test_the_wait_is_bounded_and_the_job_goes_on() -> None:
    events: list[dict[str, Any]] = []
    clock = [0.0]
    real = time.perf_counter

    def sleep(s: float) -> None:
        clock[0] += s

    time.perf_counter = lambda: real() + clock[0]  # type: ignore[assignment]
    try:
        waited = wait_for_quiet(0.05, 10, events.append, look=scripted([0.9]), sleep=sleep)
    finally:
        time.perf_counter = real  # type: ignore[assignment]
    assert waited is not None and not waited.quiet and waited.others == 0.9
    assert 10 <= waited.waited_s < 11
    assert events[-1] == {"event": "waiting", "note": ""}


def test_steal_and_another_process_on_the_gpu_are_busy_too() -> None:
    assert Look(0.0, steal=0.3).busy(0.05) and Look(0.0, gpu_others=1).busy(0.05) and not Look(0.01).busy(0.05)
    assert Look(0.02, 0.3, 2).text() == "others 2% CPU, steal 30%, 2 other process(es) on the GPU"

    class Gpu:
        def sample(self) -> dict[str, Any]:
            return {"other_pids": [101, 102]}

    seen = look_at_host(0.05, [], Gpu())
    assert seen.gpu_others == 2 and seen.busy(1.0)


def test_no_wait_when_turned_off() -> None:
    assert wait_for_quiet(0.05, 0, lambda e: pytest.fail("told"), look=lambda: pytest.fail("looked")) is None


def test_the_threshold_follows_the_precision_asked_for() -> None:
    assert contention_threshold(None, 0.2) == 0.2
    assert contention_threshold(Precision(ci=0.05), 0.2) == pytest.approx(0.05 / defaults.CONTENTION_SLOWDOWN)
    assert contention_threshold(Precision(ci=0.5), 0.1) == 0.1  # never looser than the farm's setting
    assert contention_threshold(Precision(ci=0.001), 0.2) == defaults.CONTENTION_FLOOR
    assert contention_threshold(Precision(ci=0.02), 10.0, explicit=True) == 10.0  # a lab's own setting rules


def test_the_processes_above_a_job_are_the_farms_own() -> None:
    code = "import json, workers.contention as c; print(json.dumps(c.ancestors(__import__('os').getpid())))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    chain = [int(p) for p in out.stdout.strip().strip("[]").split(",")]
    assert chain[0] == os.getpid() and 1 not in chain
    assert os.getppid() in farm_pids() and os.getpid() not in farm_pids()
    assert ancestors(os.getpid()) == chain[1:]
    assert self_ticks(os.getpid()) > 0 and self_ticks(2**22 + 7) == 0


def test_a_busy_farm_process_is_not_others() -> None:
    """The same moments read twice, once with a busy process named as the farm's: the others' share drops by
    exactly that process's CPU (whatever else loads the machine: only the difference is asserted)."""
    # Started through a shell that exits at once, so the hog is not below this process (its tree is its own).
    started = subprocess.run(
        ["/bin/sh", "-c", f"{sys.executable} -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    hog = int(started.stdout)
    cores = job_cores()
    try:
        time.sleep(0.2)
        a, a_farm, hog_a = take_sample(cores, os.getpid()), take_sample(cores, os.getpid(), [hog]), self_ticks(hog)
        time.sleep(1.0)
        b, b_farm, hog_b = take_sample(cores, os.getpid()), take_sample(cores, os.getpid(), [hog]), self_ticks(hog)
    finally:
        os.kill(hog, 9)
    counted = cpu_window([a, b], a.at, b.at, len(cores))
    excluded = cpu_window([a_farm, b_farm], a_farm.at, b_farm.at, len(cores))
    assert counted is not None and excluded is not None
    hog_share = (hog_b - hog_a) / CLOCK_TICKS / (b.at - a.at) / len(cores)
    assert hog_b > hog_a  # it ran
    assert counted["cpu_others"] - excluded["cpu_others"] == pytest.approx(hog_share, abs=0.03)


def test_the_worker_names_a_local_redis(tmp_path: Any) -> None:
    with EmbeddedRedis(tmp_path / "r") as server:
        store = Store(redis.Redis.from_url(server.url, decode_responses=True))
        pids = local_redis(store)
        assert server.proc is not None and pids == [server.proc.pid] and is_redis_server(pids[0])
    assert not is_redis_server(os.getpid())
