"""Workers and training processes dying mid-job: the job runs again, is recorded once, never twice at once."""

from __future__ import annotations

import functools
import os
import signal
import time
from pathlib import Path

from tests.faults.helpers import FAST, Farm, wait_running
from tests.helpers import wait_for, write_sweep

TRIALS = 3


def running_elsewhere(farm: Farm, job_id: str, victim: str) -> bool:
    state = farm.state(job_id)
    return state.get("state") == "running" and state["worker"] != victim


def training_in_attempt(farm: Farm, job_id: str, attempt: int) -> bool:
    state = farm.state(job_id)
    return state.get("attempt") == str(attempt) and bool(state.get("child_pid")) and int(state.get("epoch") or 0) >= 1


def attempt_over(farm: Farm, job_id: str, attempt: int) -> bool:
    state = farm.state(job_id)
    return state.get("state") != "running" or state.get("attempt") != str(attempt)


def test_kill9_worker_mid_job_reruns_elsewhere(farm: Farm, start_worker, tmp_path: Path) -> None:
    workers = {name: start_worker(name, **FAST) for name in ("w1", "w2")}
    recovery = []
    for trial in range(TRIALS):
        sid = farm.submit(write_sweep(tmp_path, f"kill9-{trial}", jobs=1, epochs=40))
        job_id = farm.jobs(sid)[0]
        victim = wait_running(farm, job_id, min_epoch=2)["worker"]
        killed_at = time.time()
        workers[victim].stop(signal.SIGKILL)
        wait_for(
            functools.partial(running_elsewhere, farm, job_id, victim),
            90,
            "the job to run again on the other worker",
            interval=0.2,
        )
        recovery.append(time.time() - killed_at)
        farm.wait_all_recorded(sid, 180)
        result = farm.result(job_id)
        assert result["status"] == "succeeded" and result["worker"] != victim and result["attempt"] == 2
        ends = [r["ended"] for r in farm.runs(job_id) if r["event"] == "end"]
        assert ends == ["lost", "succeeded"], farm.runs(job_id)
        ledger = farm.check_ledger(sid)
        assert ledger["lost"] == 0 and ledger["recorded_twice"] == 0 and ledger["concurrent_runs"] == 0, ledger
        workers[victim] = start_worker(victim, **FAST)  # the lab restarts it
    print(f"\nworker kill -9: {TRIALS} trials, death → running again: " + ", ".join(f"{s:.1f} s" for s in recovery))


def test_killed_training_process_reruns(farm: Farm, start_worker, tmp_path: Path) -> None:
    worker = start_worker("w1", **FAST)
    # Long enough that the kill lands mid-run, however busy the machine (30 epochs once ended before it).
    sid = farm.submit(write_sweep(tmp_path, "child-kill", jobs=1, epochs=100))
    job_id = farm.jobs(sid)[0]
    st = wait_running(farm, job_id, min_epoch=2)
    os.kill(int(st["child_pid"]), signal.SIGKILL)  # as the OOM killer would
    farm.wait_all_recorded(sid, 180)
    result = farm.result(job_id)
    assert result["status"] == "succeeded" and result["attempt"] == 2
    ends = [r["ended"] for r in farm.runs(job_id) if r["event"] == "end"]
    assert ends == ["failed", "succeeded"]
    assert worker.proc.poll() is None
    assert farm.check_ledger(sid)["concurrent_runs"] == 0


def test_a_job_that_always_dies_is_given_up(farm: Farm, start_worker, tmp_path: Path) -> None:
    start_worker("w1", FARM_MAX_ATTEMPTS="2", **FAST)
    sid = farm.submit(write_sweep(tmp_path, "always-dies", jobs=1, epochs=10_000, samples=256))
    job_id = farm.jobs(sid)[0]
    for attempt in (1, 2):
        wait_for(
            functools.partial(training_in_attempt, farm, job_id, attempt),
            120,
            f"attempt {attempt}",
            interval=0.2,
        )
        os.kill(int(farm.state(job_id)["child_pid"]), signal.SIGKILL)
        wait_for(
            functools.partial(attempt_over, farm, job_id, attempt),
            60,
            "the kill to be noticed",
            interval=0.2,
        )
    farm.wait_all_recorded(sid, 60)
    result = farm.result(job_id)
    assert result["status"] == "failed" and "SIGKILL" in result["error"]
