"""Jobs that end badly on purpose: over their time limit, raising, cancelled and resumed, flushed from the
broker and resumed, and a bad machine that must not burn the sweep."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.faults.helpers import FAST, Farm, wait_running
from tests.helpers import wait_for, write_sweep


def test_time_limit_records_timed_out_and_worker_goes_on(farm: Farm, start_worker, tmp_path: Path) -> None:
    worker = start_worker("w1", **FAST)
    sid = farm.submit(write_sweep(tmp_path, "too-long", jobs=1, epochs=10_000, samples=256, time_limit_s=12))
    job_id = farm.jobs(sid)[0]
    farm.wait_all_recorded(sid, 120)
    result = farm.result(job_id)
    assert result["status"] == "timed_out" and "time limit of 12 s" in result["error"]
    # The worker serves the next job.
    sid2 = farm.submit(write_sweep(tmp_path, "after-timeout", jobs=1, epochs=2, samples=128))
    farm.wait_all_recorded(sid2, 120)
    assert farm.statuses(sid2) == {"succeeded": 1} and worker.proc.poll() is None


def test_job_raising_is_retried_then_recorded_failed(farm: Farm, start_worker, tmp_path: Path) -> None:
    start_worker("w1", FARM_MAX_ATTEMPTS="2", **FAST)
    # Real data that this machine does not have: the training code raises.
    sid = farm.submit(write_sweep(tmp_path, "raises", jobs=1, epochs=1, data="real"))
    job_id = farm.jobs(sid)[0]
    farm.wait_all_recorded(sid, 120)
    result = farm.result(job_id)
    assert result["status"] == "failed" and "DataUnavailable" in result["error"] and result["attempt"] == 2
    assert [r["ended"] for r in farm.runs(job_id) if r["event"] == "end"] == ["failed", "failed"]


def test_cancel_then_resume(farm: Farm, start_worker, tmp_path: Path) -> None:
    start_worker("w1", **FAST)
    # The job that runs first is long enough (about 0.02 s an epoch here) that it cannot finish before `farm
    # cancel` reaches it on a busy machine: with 60 epochs it once did, its success was dropped for the cancel's
    # record, and the resume ran it to success a second time. The queued ones are short: the resume runs all four.
    path = write_sweep(tmp_path, "cancel-me", jobs=4, epochs=1)
    spec = yaml.safe_load(path.read_text())
    spec["jobs"][0]["epochs"] = 600
    path.write_text(yaml.safe_dump(spec))
    sid = farm.submit(path)
    ids = farm.jobs(sid)
    wait_running(farm, ids[0], min_epoch=1)
    out = farm.cli("cancel", sid)
    assert out["cancelled"] == 4 and out["running_stopped"] == 1 and out["removed_messages"] == 3
    assert farm.r.llen("farm.cpu.be-jax") == 0
    wait_for(
        lambda: farm.state(ids[0]).get("state") == "cancelled" and any(r["event"] == "end" for r in farm.runs(ids[0])),
        30,
        "the running job to stop",
    )
    assert farm.statuses(sid) == {"cancelled": 4}

    resumed = farm.cli("resume", sid)
    assert resumed["enqueued"] == 4 and resumed["succeeded"] == 0
    farm.wait_all_recorded(sid, 300)
    assert farm.statuses(sid) == {"succeeded": 4}
    assert all(len(farm.r.lrange(f"farm:history:{j}", 0, -1)) == 1 for j in ids)  # the cancelled records
    again = farm.cli("resume", sid)
    assert again["enqueued"] == 0 and again["succeeded"] == 4
    ledger = farm.check_ledger(sid)
    assert ledger["lost"] == 0 and ledger["recorded_twice"] == 0 and ledger["concurrent_runs"] == 0


def test_resume_after_broker_flush_enqueues_exactly_the_missing(farm: Farm, start_worker, tmp_path: Path) -> None:
    sid = farm.submit(write_sweep(tmp_path, "flushed", jobs=3, epochs=2, samples=128))
    # Someone flushes the queue before any worker came: the jobs' state says queued but no message exists.
    assert farm.r.delete("farm.cpu.be-jax") == 1
    assert farm.cli("resume", sid)["enqueued"] == 3
    assert farm.cli("resume", sid)["enqueued"] == 0  # they are on the queue now: nothing twice
    start_worker("w1", **FAST)
    farm.wait_all_recorded(sid, 300)
    assert farm.statuses(sid) == {"succeeded": 3}
    assert farm.check_ledger(sid)["recorded_twice"] == 0


def test_bad_machine_stops_taking_jobs_and_others_finish_the_sweep(farm: Farm, start_worker, tmp_path: Path) -> None:
    # A machine whose framework is broken: JAX does not import there, so every job's process fails before it is
    # ready. That is the machine's fault (a job's own failures, such as a dataset the machine lacks, are not).
    broken = tmp_path / "broken-site" / "jax"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this machine has a broken JAX install')\n")
    bad = start_worker("bad", PYTHONPATH=str(broken.parent), **FAST)
    sid = farm.submit(write_sweep(tmp_path, "needs-jax", jobs=4, epochs=1, samples=64))
    wait_for(lambda: any(w.get("quarantined") for w in farm.cli("workers")), 180, "the bad worker to stop")
    status = farm.cli("status", sid)
    assert "bad" in status["quarantined_workers"]
    assert "framework's import" in status["quarantined_workers"]["bad"]
    start_worker("good", **FAST)
    farm.wait_all_recorded(sid, 300)
    assert farm.statuses(sid) == {"succeeded": 4}
    assert all(farm.result(j)["worker"] == "good" for j in farm.jobs(sid))
    assert bad.proc.poll() is None  # alive, but not taking jobs
