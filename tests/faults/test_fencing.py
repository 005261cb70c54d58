"""A worker paused (SIGSTOP on the worker process alone) past its lease: the job runs elsewhere, the paused
worker's training process stops by itself, and on SIGCONT the paused worker records nothing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from tests.faults.helpers import FAST, Farm, wait_running
from tests.helpers import wait_for, write_sweep


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for its paused parent counts: it no longer runs)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_paused_worker_never_records_and_its_child_stops(farm: Farm, start_worker, tmp_path: Path) -> None:
    paused = start_worker("paused", **FAST)
    sid = farm.submit(write_sweep(tmp_path, "paused", jobs=1, epochs=400))
    job = farm.jobs(sid)[0]
    child = int(wait_running(farm, job, min_epoch=2)["child_pid"])
    os.kill(paused.proc.pid, signal.SIGSTOP)  # the worker only: its training process is in a session of its own
    try:
        # The child hears no keep-alive and stops itself, a heartbeat before the lease expires.
        wait_for(lambda: gone(child), 15, "the paused worker's training process to stop")
        start_worker("rightful", **FAST)
        wait_for(
            lambda: farm.state(job).get("worker") == "rightful" and farm.state(job).get("state") == "running",
            120,
            "the job to run on the other worker",
        )
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    wait_for(lambda: "this run is abandoned" in paused.text(), 60, "the paused worker to give the run up")
    farm.wait_all_recorded(sid, 400)
    result = farm.result(job)
    assert result is not None and result["status"] == "succeeded" and result["worker"] == "rightful"
    ends = [r for r in farm.runs(job) if r["event"] == "end" and r["worker"] == "paused"]
    assert any(r["ended"] == "lease_lost" for r in ends), farm.runs(job)
    assert farm.check_ledger(sid) == {"jobs": 1, "recorded": 1, "lost": 0, "recorded_twice": 0, "concurrent_runs": 0}
    assert paused.proc.poll() is None  # and it goes on serving
