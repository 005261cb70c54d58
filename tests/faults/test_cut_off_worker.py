"""A worker that cannot reach Redis for longer than its lease stops its training process within about two
leases, instead of training on until Redis answers again (when another worker may long have taken the job).

Redis is paused with SIGSTOP: it still accepts connections and never answers, as a cut link looks from the
worker. The worker's Redis timeout is the shortest allowed (2 s), so each failed renewal returns well within the
lease and its heartbeat loop keeps turning: the case where a worker that sent keep-alives regardless kept its
child alive for as long as the cut lasted."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from farm.embedded import EmbeddedRedis
from tests.faults.helpers import FAST, Farm, wait_running
from tests.faults.test_fencing import gone
from tests.helpers import wait_for, write_sweep

LEASE_S = float(FAST["FARM_LEASE_TTL_S"])


def test_a_run_cut_off_from_redis_past_its_lease_stops_and_the_job_runs_again_once(
    redis_server: EmbeddedRedis, farm: Farm, start_worker, tmp_path: Path
) -> None:
    worker = start_worker("cut-off", **FAST, FARM_REDIS_TIMEOUT_S="2")
    sid = farm.submit(write_sweep(tmp_path, "cut", jobs=1, epochs=150))
    job = farm.jobs(sid)[0]
    child = int(wait_running(farm, job, min_epoch=2)["child_pid"])
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    paused_at = time.monotonic()
    try:
        # The lease cannot be renewed; a lease after the last renewal the keep-alives stop, and the child stops
        # itself a keep-alive timeout (here 3 s) later. Well before Redis answers again.
        wait_for(lambda: gone(child), 6 * LEASE_S, "the cut-off run's training process to stop")
        stopped_after = time.monotonic() - paused_at
        assert worker.proc.poll() is None, worker.text()[-3000:]
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    print(f"\nthe cut-off run stopped {stopped_after:.1f} s after Redis stopped answering (lease {LEASE_S:g} s)")
    # Redis is back: the job is put back (by the worker, or by a reaper once the lease is seen expired) and runs
    # again; one result, no overlapping runs.
    farm.wait_all_recorded(sid, 400)
    result = farm.result(job)
    assert result is not None and result["status"] == "succeeded", result
    assert farm.check_ledger(sid) == {"jobs": 1, "recorded": 1, "lost": 0, "recorded_twice": 0, "concurrent_runs": 0}
    assert worker.proc.poll() is None, worker.text()[-3000:]
