"""Stored rows: reports read a compact row per result (its measurements, and a reference to the values it
shares with other rows), written in the same transaction as the full result; a row that is missing, of another
layout, damaged or whose shared part is gone is rebuilt from the full record."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pandas as pd
import pytest
import redis

from farm.columns import RESULT_COLUMNS
from farm.job import JobEnvelope, JobSpec
from farm.reports.aggregate import aggregate, columns_frame, results_frame
from farm.result import EpochRecord, JobResult, JobStatus
from farm.rows import NOT_ENQUEUED, result_row, spec_row
from farm.rowstore import COMPACT_FORMAT, OWN_COLUMNS, SHARED_COLUMNS, sweep_columns
from farm.store import Store
from tests.helpers import throwaway_redis

SWEEP = "s-1"


@pytest.fixture
def store(redis_url: str) -> Iterator[Store]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield Store(client)
    client.close()


def envelopes(n: int, **kw) -> list[JobEnvelope]:
    return [
        JobEnvelope.for_job(
            JobSpec(sweep="s", workload="cifar10_mlp", data="synthetic", epochs=3, repeat=i, **kw), SWEEP
        )
        for i in range(n)
    ]


def result(env: JobEnvelope, per_s: float = 100.0, status: JobStatus = JobStatus.succeeded, **kw) -> JobResult:
    return JobResult(
        job_id=env.job_id,
        sweep_id=SWEEP,
        job=env.job,
        status=status,
        train_samples_used=int(per_s),
        epochs=[EpochRecord(epoch=e, wall_s=1.0) for e in (1, 2, 3)],
        error=None if status == JobStatus.succeeded else "boom",
        **kw,
    )


def expected_frame(store: Store, envs: list[JobEnvelope]) -> pd.DataFrame:
    """The tidy frame built the slow, obvious way: every full result parsed, every other job from its spec."""
    rows = []
    for env in envs:
        r = store.result(env.job_id)
        if r is not None:
            d = result_row(r)
        else:
            d = {**spec_row(env.job, env.job_id, SWEEP), "status": store.state(env.job_id).get("state") or NOT_ENQUEUED}
        d["sweep_id"] = SWEEP
        rows.append([d.get(c) for c in RESULT_COLUMNS])
    return results_frame(rows)


def read_frame(store: Store) -> pd.DataFrame:
    return columns_frame(sweep_columns(store, SWEEP))


def read_rows(store: Store) -> list[list]:
    """:func:`sweep_columns` as rows (one list per job, values in ``RESULT_COLUMNS`` order), for
    :func:`results_frame`: the row-wise path must give the frame the column-wise one gives."""
    columns = sweep_columns(store, SWEEP)
    return [list(row) for row in zip(*(columns[c].tolist() for c in RESULT_COLUMNS), strict=True)]


def every_column(store: Store, job_id: str) -> list:
    """A job's row with every column in it, after a layout tag this farm does not know (a row written by an
    older farm, or a future one): read back, it must be rebuilt from the full result."""
    row = result_row(store.result(job_id))
    return ["r0000000", *(row.get(c) for c in RESULT_COLUMNS)]


def assert_rows_match_results(store: Store) -> None:
    """The row index never holds a row whose full result is missing, nor one that describes another result."""
    for key in store.r.scan_iter(match=store.k("row", "*")):
        job_id = key.rsplit(":", 1)[1]
        full = store.result(job_id)
        assert full is not None, f"row without a result: {job_id}"
        raw = json.loads(store.r.get(key))
        assert raw[0] == COMPACT_FORMAT
        part = json.loads(store.r.hget(store.k("rowparts"), raw[1]))
        stored = {**dict(zip(OWN_COLUMNS, raw[2:], strict=True)), **dict(zip(SHARED_COLUMNS, part, strict=True))}
        want = json.loads(json.dumps(result_row(full), default=str))
        assert stored == {c: want[c] for c in stored}


def test_rows_fast_path_and_fallbacks() -> None:
    with throwaway_redis(appendonly=False) as srv:
        store = Store(redis.Redis.from_url(srv.url, decode_responses=True))
        envs = envelopes(3)
        store.save_sweep(SWEEP, {"name": "s"}, envs)
        for env, per_s in zip(envs[:2], (100.0, 200.0), strict=True):
            store.record_result(result(env, per_s))
        # A row of an older layout (a dict) is rebuilt from the full result.
        store.r.set(store.k("row", envs[1].job_id), json.dumps({"job_id": envs[1].job_id}))
        df = results_frame(read_rows(store))
        assert list(df.job_id) == [e.job_id for e in envs]
        assert list(df.status) == ["succeeded", "succeeded", "not_enqueued"]
        assert list(df.steady_samples_per_s[:2]) == [100.0, 200.0]
        assert (df.sweep_id == SWEEP).all()


def test_a_result_is_recorded_with_its_compact_row_and_shared_part(store: Store) -> None:
    envs = envelopes(4)
    store.save_sweep(SWEEP, {"name": "s"}, envs)
    for i, env in enumerate(envs):
        r = result(env, 100.0, worker="w1", versions={"keras": "3.1", "python": "3.11"})
        r.epochs[2].wall_s = 1.0 + i / 10  # measurements differ; what the repeats share does not
        assert store.record_result(r)
    raws = [store.r.get(store.k("row", e.job_id)) for e in envs]
    assert all(json.loads(r)[0] == COMPACT_FORMAT for r in raws)
    # Four repeats of one cell on one worker share one part.
    assert store.r.hlen(store.k("rowparts")) == 1
    assert len(raws[0]) < 0.6 * len(json.dumps(every_column(store, envs[0].job_id)[1:], default=str))
    pd.testing.assert_frame_equal(read_frame(store), expected_frame(store, envs))
    pd.testing.assert_frame_equal(results_frame(read_rows(store)), expected_frame(store, envs))
    assert_rows_match_results(store)


def test_a_second_result_for_a_job_changes_nothing(store: Store) -> None:
    (env,) = envelopes(1)
    store.save_sweep(SWEEP, {"name": "s"}, [env])
    assert store.record_result(result(env, 100.0))
    assert not store.record_result(result(env, 999.0, status=JobStatus.failed))
    df = read_frame(store)
    assert list(df.status) == ["succeeded"] and list(df.steady_samples_per_s) == [100.0]
    assert store.r.llen(store.k("history", env.job_id)) == 0
    assert_rows_match_results(store)


def record_at_once(stores: list[Store], results: list[JobResult]) -> list[bool]:
    """Each store records its result in a thread of its own, all released at the same moment; whether each won."""
    barrier = threading.Barrier(len(stores))
    won = [False] * len(stores)

    def record(i: int) -> None:
        barrier.wait()
        won[i] = stores[i].record_result(results[i])

    threads = [threading.Thread(target=record, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


def test_two_workers_recording_one_job_at_once_leave_one_result_and_its_row(redis_url: str) -> None:
    (env,) = envelopes(1)
    for attempt in range(10):
        clients = [redis.Redis.from_url(redis_url, decode_responses=True) for _ in range(2)]
        stores = [Store(c) for c in clients]
        stores[0].r.delete(stores[0].k("result", env.job_id), stores[0].k("row", env.job_id))
        won = record_at_once(stores, [result(env, 100.0 + 100 * i + attempt) for i in range(2)])
        assert sum(won) == 1
        stored = stores[0].result(env.job_id)
        assert stored.steady_samples_per_s == 100.0 + 100 * won.index(True) + attempt
        assert_rows_match_results(stores[0])
        for c in clients:
            c.close()


def test_archive_removes_the_row_with_the_result_and_a_new_result_replaces_it(store: Store) -> None:
    envs = envelopes(2)
    store.save_sweep(SWEEP, {"name": "s"}, envs)
    store.record_result(result(envs[0], 100.0))
    store.record_result(result(envs[1], 50.0, status=JobStatus.failed))
    rep = aggregate(read_frame(store))
    assert list(rep.n) == [1] and list(rep.n_failed) == [1]

    assert store.archive_results([envs[1].job_id]) == 1
    assert store.archive_results([envs[1].job_id]) == 0  # archived once
    assert store.r.llen(store.k("history", envs[1].job_id)) == 1
    assert store.raw_rows([envs[1].job_id]) == [None] and not store.has_result(envs[1].job_id)
    assert_rows_match_results(store)
    store.set_state(envs[1].job_id, JobStatus.queued)
    df = read_frame(store)
    assert list(df.status) == ["succeeded", "queued"]
    pd.testing.assert_frame_equal(df, expected_frame(store, envs))

    assert store.record_result(result(envs[1], 300.0))
    df = read_frame(store)
    assert list(df.status) == ["succeeded", "succeeded"]
    assert list(df.steady_samples_per_s) == [100.0, 300.0]
    rep = aggregate(df)
    assert list(rep.n) == [2] and list(rep.n_failed) == [0]
    assert_rows_match_results(store)


def test_rows_of_an_unknown_layout_are_rebuilt_from_the_full_result(store: Store) -> None:
    envs = envelopes(3)
    store.save_sweep(SWEEP, {"name": "s"}, envs)
    for env in envs:
        store.record_result(result(env, 100.0))
    for env in envs[:2]:
        store.r.set(store.k("row", env.job_id), json.dumps(every_column(store, env.job_id), default=str))
    pd.testing.assert_frame_equal(read_frame(store), expected_frame(store, envs))


def test_damaged_rows_and_missing_parts_fall_back_to_the_full_result(store: Store) -> None:
    envs = envelopes(7)
    store.save_sweep(SWEEP, {"name": "s"}, envs)
    for i, env in enumerate(envs[:6]):
        store.record_result(result(env, 100.0 * (i + 1), worker=f"w{i}"))
    store.r.set(store.k("row", envs[0].job_id), '["' + COMPACT_FORMAT + '", "unterminated')
    store.r.set(store.k("row", envs[1].job_id), json.dumps([COMPACT_FORMAT, "x", 1]))  # too short
    row = json.loads(store.r.get(store.k("row", envs[2].job_id)))
    store.r.hdel(store.k("rowparts"), row[1])  # its shared part is gone
    store.r.delete(store.k("row", envs[3].job_id))  # no row at all
    df = read_frame(store)
    pd.testing.assert_frame_equal(df, expected_frame(store, envs))
    assert list(df.steady_samples_per_s[:6]) == [100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
    assert df.status.iloc[6] == NOT_ENQUEUED


def test_mixed_layouts_keep_the_sweeps_job_order(store: Store) -> None:
    envs = envelopes(8)
    store.save_sweep(SWEEP, {"name": "s"}, envs)
    for i, env in enumerate(envs):
        if i % 4 != 3:
            store.record_result(result(env, 10.0 * (i + 1)))
    for env in envs[1::4]:
        store.r.set(store.k("row", env.job_id), json.dumps(every_column(store, env.job_id), default=str))
    store.r.delete(store.k("row", envs[2].job_id))
    df = read_frame(store)
    assert list(df.job_id) == [e.job_id for e in envs]
    pd.testing.assert_frame_equal(df, expected_frame(store, envs))
    # A job whose envelope is gone (and that has no result) is left out, as before.
    store.r.delete(store.k("job", envs[3].job_id))
    assert list(read_frame(store).job_id) == [e.job_id for i, e in enumerate(envs) if i != 3]


def test_an_empty_sweep_and_one_without_results(store: Store) -> None:
    store.save_sweep("empty", {"name": "e"}, [])
    df = columns_frame(sweep_columns(store, "empty"))
    assert list(df.columns) == RESULT_COLUMNS and df.empty
    envs = envelopes(2)
    store.save_sweep(SWEEP, {"name": "s"}, envs)
    pd.testing.assert_frame_equal(read_frame(store), expected_frame(store, envs))


def test_recording_many_results_at_once_is_recording_each(store: Store) -> None:
    envs = envelopes(7)
    store.save_sweep(SWEEP, {"name": "s"}, envs)
    assert store.record_result(result(envs[0], 100.0))
    batch = [result(env, 10.0 * (i + 1)) for i, env in enumerate(envs)]
    batch.append(result(envs[1], 999.0, status=JobStatus.failed))  # the same job again in one batch
    assert store.record_results(batch, chunk=3) == [False, True, True, True, True, True, True, False]
    df = read_frame(store)
    assert list(df.steady_samples_per_s) == [100.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
    assert store.state(envs[1].job_id)["state"] == "succeeded"
    pd.testing.assert_frame_equal(df, expected_frame(store, envs))
    assert_rows_match_results(store)


def test_a_row_that_is_not_one_json_value_shifts_no_other_row(store: Store) -> None:
    envs = envelopes(3)
    store.save_sweep(SWEEP, {"name": "s"}, envs)
    for i, env in enumerate(envs):
        store.record_result(result(env, 100.0 * (i + 1)))
    # Parsed together with the others, '1, [row]' would give the next job this job's row.
    key = store.k("row", envs[0].job_id)
    store.r.set(key, "1, " + store.r.get(key))
    df = read_frame(store)
    assert list(df.steady_samples_per_s) == [100.0, 200.0, 300.0]
    pd.testing.assert_frame_equal(df, expected_frame(store, envs))
