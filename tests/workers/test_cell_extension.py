"""A cell measured to a precision grows in the farm (workers/cell_extension.py): against a real Redis, with real
Celery messages, then through a real worker: the repeats a cell needs are added once each, claimed through the
outbox and sent, never past the cap, also when two workers judge one cell at once or one dies between steps."""

from __future__ import annotations

import json
import statistics
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import yaml

from farm.job import JobEnvelope, JobSpec
from farm.ledger import Ledger
from farm.precision import Precision
from farm.queue import job_queue, make_app
from farm.result import JobResult
from farm.settings import FarmSettings
from farm.store import Store
from tests.faults.helpers import FAST, Farm
from tests.helpers import succeeded_job
from workers.cell_extension import extend_cell, repeat_of

SWEEP_ID = "prec-1"


def cell(precision: Precision) -> JobSpec:
    return JobSpec(sweep="prec", workload="fashion_mnist_mlp", data="synthetic", train_samples=100, precision=precision)


def result(job: JobSpec, per_s: float, **fields: object) -> JobResult:
    """A succeeded repeat of ``job`` with a steady throughput of ``per_s`` samples a second."""
    return succeeded_job(job, SWEEP_ID, 100 / per_s, train_samples_used=100, **fields)[1]


@pytest.fixture
def farm_parts(redis_url: str) -> Iterator[tuple[Store, Ledger, object]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client)
    app = make_app(FarmSettings(broker_url=redis_url))
    yield store, Ledger(store), app
    client.close()


def start(store: Store, job: JobSpec, repeats: int) -> list[JobEnvelope]:
    """The sweep as a submit leaves it: the cell's first ``repeats`` jobs stored and claimed."""
    envelopes = [JobEnvelope.for_job(repeat_of(job, k), SWEEP_ID) for k in range(repeats)]
    store.save_sweep(SWEEP_ID, {"sweep_id": SWEEP_ID, "name": "prec"}, envelopes)
    Ledger(store).claim([(e.job_id, job_queue(job)) for e in envelopes])
    return envelopes


def queued(store: Store, job: JobSpec) -> list[str]:
    return [json.loads(m)["headers"]["id"] for m in store.r.lrange(job_queue(job), 0, -1)]


def test_a_wide_cell_gets_the_repeats_it_needs_once_each(farm_parts) -> None:
    store, ledger, app = farm_parts
    job = cell(Precision(ci=0.02, min_repeats=4, max_repeats=8, max_invalid=0))
    envelopes = start(store, job, 4)
    for env, per_s in zip(envelopes[:3], [100.0, 130.0, 80.0], strict=True):
        assert store.record_result(result(env.job, per_s))
    ext = extend_cell(store, ledger, app, envelopes[3], result(envelopes[3].job, 115.0))
    assert not ext.verdict.met and ext.verdict.more >= 1
    expected = [repeat_of(job, k).job_id for k in range(4, 4 + min(ext.verdict.more, 4))]
    assert ext.added == expected and sorted(ext.sent) == sorted(expected)
    assert store.sweep_job_ids(SWEEP_ID) == [e.job_id for e in envelopes] + expected
    assert sorted(queued(store, job)) == sorted(expected)  # the first four were claimed by "submit", not sent here
    assert all(store.state(j).get("state") == "queued" for j in expected)
    again = extend_cell(store, ledger, app, envelopes[3], result(envelopes[3].job, 115.0))
    assert again.added == [] and again.sent == []  # judged again (a re-run of the job): nothing twice


def test_a_tight_cell_adds_nothing_and_a_failed_repeat_stops_it(farm_parts) -> None:
    store, ledger, app = farm_parts
    job = cell(Precision(ci=0.05, min_repeats=4))
    envelopes = start(store, job, 4)
    for env in envelopes[:3]:
        assert store.record_result(result(env.job, 100.0))
    ext = extend_cell(store, ledger, app, envelopes[3], result(envelopes[3].job, 100.5))
    assert ext.verdict.met and ext.added == []

    wide = cell(Precision(ci=0.001, min_repeats=4))
    envelopes = start(store, wide, 4)
    for env, per_s in zip(envelopes[:3], [100.0, 150.0, 70.0], strict=True):
        assert store.record_result(result(env.job, per_s))
    failed = result(envelopes[3].job, 90.0).model_copy(update={"status": "failed", "error": "boom"})
    ext = extend_cell(store, ledger, app, envelopes[3], failed)
    assert ext.added == [] and "failed" in ext.verdict.reason


def test_an_invalid_repeat_is_replaced_and_a_too_short_one_stops_the_cell_saying_what_suffices(farm_parts) -> None:
    store, ledger, app = farm_parts
    job = cell(Precision(ci=0.05, min_repeats=4, max_invalid=3))
    envelopes = start(store, job, 4)
    for env in envelopes[:3]:
        assert store.record_result(result(env.job, 100.0))
    throttled = result(envelopes[3].job, 100.0, valid=False, invalid_reasons=["the CPU clock changed by 30% …"])
    ext = extend_cell(store, ledger, app, envelopes[3], throttled)
    assert ext.verdict.n_valid == 3 and ext.verdict.n_invalid == 1
    assert ext.added == [repeat_of(job, 4).job_id]  # the invalid repeat does not count: one more to reach 4 valid

    short = cell(Precision(ci=0.05, min_repeats=4, max_invalid=3)).model_copy(update={"sweep": "prec-short"})
    envelopes = start(store, short, 4)
    reason = "steady window too short to time (0.40 s, under 1 s): run 6 epochs, or 4,000 samples with 3 epochs"
    too_short = result(envelopes[0].job, 100.0, valid=False, invalid_reasons=[reason])
    ext = extend_cell(store, ledger, app, envelopes[0], too_short)
    assert ext.added == [] and ext.verdict.reason == reason  # another repeat would be as short


def test_two_workers_judging_one_cell_at_once_add_each_repeat_once(redis_url: str, farm_parts) -> None:
    store, _, _ = farm_parts
    job = cell(Precision(ci=0.001, min_repeats=4, max_repeats=12, max_invalid=0))
    envelopes = start(store, job, 4)
    for env, per_s in zip(envelopes[:2], [100.0, 140.0], strict=True):
        assert store.record_result(result(env.job, per_s))
    added: list[list[str]] = []
    barrier = threading.Barrier(2)

    def judge(env: JobEnvelope, per_s: float) -> None:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        mine = Store(client)
        barrier.wait()
        ext = extend_cell(mine, Ledger(mine), make_app(FarmSettings(broker_url=redis_url)), env, result(env.job, per_s))
        added.append(ext.added)
        client.close()

    threads = [threading.Thread(target=judge, args=(envelopes[i], p)) for i, p in ((2, 70.0), (3, 120.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = store.sweep_job_ids(SWEEP_ID)
    assert len(ids) == len(set(ids)) <= 12
    new = ids[4:]
    assert sorted(added[0] + added[1]) == sorted(new)  # each added by one of them
    assert sorted(queued(store, job)) == sorted(new)  # and sent once


def test_a_judgement_that_died_before_claiming_is_finished_by_the_next(farm_parts) -> None:
    store, ledger, app = farm_parts
    job = cell(Precision(ci=0.001, min_repeats=4, max_repeats=6, max_invalid=0))
    envelopes = start(store, job, 4)
    stranded = JobEnvelope.for_job(repeat_of(job, 4), SWEEP_ID)
    assert store.add_jobs(SWEEP_ID, [stranded]) == [stranded.job_id]  # added, then the worker died
    assert store.add_jobs(SWEEP_ID, [stranded]) == []  # once
    for env, per_s in zip(envelopes[:3], [100.0, 150.0, 70.0], strict=True):
        assert store.record_result(result(env.job, per_s))
    ext = extend_cell(store, ledger, app, envelopes[3], result(envelopes[3].job, 120.0))
    assert stranded.job_id in ext.sent and stranded.job_id in queued(store, job)
    assert len(store.sweep_job_ids(SWEEP_ID)) <= 6


def test_never_past_the_cap_however_noisy(farm_parts) -> None:
    store, ledger, app = farm_parts
    precision = Precision(ci=0.001, min_repeats=4, max_repeats=6, max_invalid=2)
    job = cell(precision)
    start(store, job, 4)
    rng = np.random.default_rng(1)
    for _ in range(10):  # every job of the cell recorded, each judged first, noisy and sometimes contended
        for job_id in store.sweep_job_ids(SWEEP_ID):
            if store.result(job_id) is None:
                env = store.envelopes([job_id])[0]
                assert env is not None
                r = result(env.job, float(rng.uniform(50, 150)), contended=bool(rng.uniform() < 0.3))
                extend_cell(store, ledger, app, env, r)
                assert store.record_result(r)
    ids = store.sweep_job_ids(SWEEP_ID)
    assert len(ids) == len(set(ids)) <= precision.most_jobs
    results = [store.result(j) for j in ids]
    valid = [r for r in results if r is not None and not r.contended]
    assert len(valid) <= precision.max_repeats


@pytest.mark.slow
def test_through_a_real_worker_each_cell_stops_where_its_target_says(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    """Two cells: one that stops at its minimum, one no real run meets (it grows to its cap); every job runs
    once, nothing is left queued. No repeat is marked contended here (the mark's threshold is out of reach:
    replacing invalid repeats is checked above), so the counts do not depend on how busy the machine is."""
    farm = Farm(redis_url, tmp_path)
    start_worker("w1", FARM_CONTENTION_CPU_THRESHOLD="10", **FAST)
    path = tmp_path / "precise.yaml"
    base = {"backend": "jax", "data": "synthetic", "train_samples": 256, "test_samples": 16, "epochs": 3}
    path.write_text(
        yaml.safe_dump(
            {
                "name": "precise",
                "defaults": base,
                "jobs": [
                    {
                        "workload": "fashion_mnist_mlp",
                        "params": {"hidden_layers": 1, "units": 8},
                        # Met or capped at its minimum, however busy the machine (a judgement's own outcome is
                        # checked above): it never grows.
                        "precision": {"ci": 0.5, "min_repeats": 4, "max_repeats": 4},
                    },
                    {
                        "workload": "fashion_mnist_mlp",
                        "params": {"hidden_layers": 1, "units": 9},
                        "precision": {"ci": 0.00001, "min_repeats": 4, "max_repeats": 6, "max_invalid": 0},
                    },
                ],
            }
        )
    )
    sid = farm.submit(path)
    assert len(farm.jobs(sid)) == 8
    farm.wait_all_recorded(sid, 300)
    ids = farm.jobs(sid)
    per_cell: dict[int, list[tuple[int, float | None, bool]]] = {}
    for job_id in ids:
        r = farm.result(job_id)
        per_s = r["train_samples_used"] / statistics.median(e["wall_s"] for e in r["epochs"][1:])
        per_cell.setdefault(r["job"]["params"]["units"], []).append((r["job"]["repeat"], per_s, r["contended"]))
    repeats = {k: sorted(rep for rep, _, _ in v) for k, v in per_cell.items()}
    # the loose cell kept its 4, the tight one grew to its cap of 6
    assert repeats == {8: [0, 1, 2, 3], 9: [0, 1, 2, 3, 4, 5]}, per_cell
    assert len(ids) == len(set(ids)) == 10 and farm.statuses(sid) == {"succeeded": 10}
    ledger = farm.check_ledger(sid)
    assert ledger["lost"] == 0 and ledger["recorded_twice"] == 0 and ledger["concurrent_runs"] == 0
