"""Redis stopped and restarted (append-only file on) in the middle of a sweep: nothing queued or recorded is
lost, and workers carry on by themselves."""

from __future__ import annotations

import time
from pathlib import Path

from farm.embedded import EmbeddedRedis
from tests.faults.helpers import FAST, Farm, wait_running
from tests.helpers import write_sweep


def test_redis_restart_mid_sweep(redis_server: EmbeddedRedis, farm: Farm, start_worker, tmp_path: Path) -> None:
    worker = start_worker("w1", **FAST)
    sid = farm.submit(write_sweep(tmp_path, "through-restart", jobs=4, epochs=30))
    ids = farm.jobs(sid)
    wait_running(farm, ids[0], min_epoch=2)
    redis_server.stop()  # SIGTERM: Redis writes its append-only file and exits
    time.sleep(3)  # the worker keeps training meanwhile, its heartbeats failing
    redis_server.start()  # same socket, same data directory: the AOF is replayed
    farm.wait_all_recorded(sid, 400)
    assert farm.statuses(sid) == {"succeeded": 4}
    ledger = farm.check_ledger(sid)
    assert ledger == {"jobs": 4, "recorded": 4, "lost": 0, "recorded_twice": 0, "concurrent_runs": 0}
    assert worker.proc.poll() is None
