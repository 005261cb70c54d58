"""A cell measured to a precision keeps growing through crashes: workers killed with SIGKILL mid-job, or Redis
killed with SIGKILL and restarted on its data, while its repeats are judged and added, end with the cell exactly
at its cap — not over it, not stalled short of it — with every repeat recorded once (farm.precision,
workers/cell_extension.py)."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import yaml

from farm.embedded import EmbeddedRedis
from tests.faults.helpers import FAST, Farm
from tests.helpers import wait_for

# No repeat is marked contended (out-of-reach threshold): the cell's size depends on the crashes only.
STEADY = {"FARM_CONTENTION_CPU_THRESHOLD": "10", **FAST}


def running_job(farm: Farm, sid: str) -> dict | None:
    """The state of a job of the sweep that is training (past its second epoch), if any."""
    for job_id in farm.jobs(sid):
        state = farm.state(job_id)
        if state.get("state") == "running" and int(state.get("epoch") or 0) >= 2:
            return state
    return None


def training_repeat(farm: Farm, sid: str, timeout: float) -> dict:
    """Wait for a repeat of the sweep to be training; its state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = running_job(farm, sid)
        if state is not None:
            return state
        time.sleep(0.2)
    raise AssertionError(f"no repeat of {sid} was training within {timeout:.0f} s")


def precise_cell(tmp_path: Path, name: str) -> Path:
    """A sweep of one cell whose target no real run meets: it grows from 4 repeats to its cap of 6 valid ones."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "defaults": {"backend": "jax", "data": "synthetic", "train_samples": 2000, "test_samples": 16},
                "jobs": [
                    {
                        "workload": "fashion_mnist_mlp",
                        "params": {"hidden_layers": 1, "units": 8},
                        "epochs": 30,
                        # No real run is this precise: the cell grows to its cap of 6 valid repeats.
                        "precision": {"ci": 0.00001, "min_repeats": 4, "max_repeats": 6, "max_invalid": 0},
                    }
                ],
            }
        )
    )
    return path


def cell_done(farm: Farm, sid: str) -> bool:
    """The cell has its six repeats, each with a result."""
    ids = farm.jobs(sid)
    return len(ids) >= 6 and all(farm.result(j) for j in ids)


def assert_exactly_at_the_cap(farm: Farm, sid: str) -> None:
    """Six repeats, 0–5, each recorded once, no run lost or overlapping another."""
    try:
        wait_for(lambda: cell_done(farm, sid), 300, "the cell to reach its cap with every repeat recorded")
    except TimeoutError as e:
        states = {j: (farm.state(j), bool(farm.result(j))) for j in farm.jobs(sid)}
        raise AssertionError(f"{e}: {states}") from None
    ids = farm.jobs(sid)
    assert len(ids) == len(set(ids)) == 6, ids
    assert farm.statuses(sid) == {"succeeded": 6}
    assert sorted(farm.result(j)["job"]["repeat"] for j in ids) == list(range(6))
    ledger = farm.check_ledger(sid)
    assert ledger["lost"] == 0 and ledger["recorded_twice"] == 0 and ledger["concurrent_runs"] == 0, ledger


def test_a_cell_growing_through_worker_kills_ends_exactly_at_its_cap(farm: Farm, start_worker, tmp_path: Path) -> None:
    workers = {name: start_worker(name, **STEADY) for name in ("w1", "w2")}
    sid = farm.submit(precise_cell(tmp_path, "precise-kills"))
    killed = 0
    for _ in range(2):  # kill whichever worker is training a repeat, then let the lab restart it
        victim = training_repeat(farm, sid, 180)["worker"]
        workers[victim].stop(signal.SIGKILL)
        killed += 1
        workers[victim] = start_worker(victim, **STEADY)
    assert killed == 2
    assert_exactly_at_the_cap(farm, sid)


def test_a_cell_growing_through_redis_kills_ends_exactly_at_its_cap(
    redis_server: EmbeddedRedis, farm: Farm, start_worker, tmp_path: Path
) -> None:
    """Redis SIGKILLed at random moments while repeats are recorded and the cell is judged and extended (the
    farm's shipped ``appendfsync always``), restarted on the same data: nothing added twice, nothing stranded."""
    seed = int(os.environ.get("FARM_PRECISION_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\nFARM_PRECISION_SEED={seed}")
    rng = random.Random(seed)  # noqa: S311 - a schedule to replay, not a secret
    for name in ("w1", "w2"):
        start_worker(name, **STEADY)
    sid = farm.submit(precise_cell(tmp_path, "precise-redis-kills"))
    kills = 0
    while kills < 4 and not cell_done(farm, sid):  # every kill lands while the cell is still growing
        time.sleep(rng.uniform(0.5, 3.0))
        redis_server.kill()
        time.sleep(rng.uniform(0.1, 1.0))
        redis_server.start()
        kills += 1
    assert kills >= 2, "the cell finished before Redis was killed twice"
    assert_exactly_at_the_cap(farm, sid)
