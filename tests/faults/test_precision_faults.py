"""A cell measured to a precision keeps growing through crashes: workers killed with SIGKILL mid-job while its
repeats are judged and added end with the cell exactly at its cap — not over it, not stalled short of it — with
every repeat recorded once (farm.precision, workers/cell_extension.py)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import yaml

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


def test_a_cell_growing_through_worker_kills_ends_exactly_at_its_cap(farm: Farm, start_worker, tmp_path: Path) -> None:
    workers = {name: start_worker(name, **STEADY) for name in ("w1", "w2")}
    path = tmp_path / "precise.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "precise-kills",
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
    sid = farm.submit(path)
    killed = 0
    for _ in range(2):  # kill whichever worker is training a repeat, then let the lab restart it
        victim = training_repeat(farm, sid, 180)["worker"]
        workers[victim].stop(signal.SIGKILL)
        killed += 1
        workers[victim] = start_worker(victim, **STEADY)
    wait_for(
        lambda: len(farm.jobs(sid)) >= 6 and all(farm.result(j) for j in farm.jobs(sid)),
        300,
        "the cell to reach its cap with every repeat recorded",
    )
    ids = farm.jobs(sid)
    assert len(ids) == len(set(ids)) == 6, ids
    assert farm.statuses(sid) == {"succeeded": 6}
    assert sorted(farm.result(j)["job"]["repeat"] for j in ids) == list(range(6))
    ledger = farm.check_ledger(sid)
    assert ledger["lost"] == 0 and ledger["recorded_twice"] == 0 and ledger["concurrent_runs"] == 0, ledger
    assert killed == 2
