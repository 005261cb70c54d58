"""``farm forget``'s core on a real redis-server: a finished sweep is deleted whole, nothing of another sweep is
touched, jobs shared with a sweep of the same name stay, a sweep that may still run or record is refused with
nothing deleted, an interrupted forget finishes when run again, and a worker drops a leftover message of a
forgotten job without writing anything."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis

from farm.job import JobEnvelope
from farm.ledger import Lease, Ledger, Outcome
from farm.lifecycle import SweepBusy, cancel_sweep, forget_sweep
from farm.result import JobResult, JobStatus
from farm.settings import FarmSettings
from farm.store import Store
from farm.submit import submit
from farm.sweep import Sweep, load_sweep_data


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(redis.Redis.from_url(redis_url, decode_responses=True))


def sweep(name: str, repeats: int = 2, units: tuple[int, ...] = (8, 16)) -> Sweep:
    return load_sweep_data(
        {
            "name": name,
            "repeats": repeats,
            "defaults": {"backend": "jax", "data": "synthetic", "epochs": 2, "train_samples": 64},
            "matrix": {"params.units": list(units)},
            "jobs": [{"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1}}],
        },
        "test",
    )


def submitted(store: Store, url: str, s: Sweep, *, finish: bool = True) -> list[JobEnvelope]:
    """The sweep submitted (its messages on the queue, as no worker runs here) and, with ``finish``, a recorded
    succeeded result for every job, a run log and, for one job, an archived earlier result."""
    submit(s, FarmSettings(broker_url=url), store=store)
    envs = s.envelopes()
    if finish:
        first = envs[0]
        store.record_result(result(first, JobStatus.failed))
        store.archive_results([first.job_id])
        store.record_results([result(e) for e in envs])
        for e in envs:
            store.log_run(e.job_id, worker="w1", attempt=1)
    return envs


def result(env: JobEnvelope, status: JobStatus = JobStatus.succeeded) -> JobResult:
    return JobResult(job_id=env.job_id, sweep_id=env.sweep_id, job=env.job, status=status, worker="w1")


def dump(store: Store, match: str = "*") -> dict[str, Any]:
    """Every key of the store matching ``match`` with its value, for before/after comparisons."""
    out: dict[str, Any] = {}
    for key in store.r.scan_iter(match):
        kind = store.r.type(key)
        if kind == "string":
            out[key] = store.r.get(key)
        elif kind == "hash":
            out[key] = store.r.hgetall(key)
        elif kind == "list":
            out[key] = store.r.lrange(key, 0, -1)
        elif kind == "set":
            out[key] = sorted(store.r.smembers(key))
        elif kind == "zset":
            out[key] = store.r.zrange(key, 0, -1)
    return out


def mentions(store: Store, ids: list[str]) -> list[str]:
    """Keys whose name holds any of these ids, or sets and sorted sets of the farm that list one."""
    found = [k for k in store.r.scan_iter("*") if any(i in k for i in ids)]
    for key in (store.k("running"), store.k("outbox"), store.k("inflight"), store.k("sweeps")):
        members = store.r.smembers(key) if store.r.type(key) == "set" else store.r.zrange(key, 0, -1)
        found += [f"{key} lists {m}" for m in members if m in ids]
    return found


def queued_job_ids(store: Store) -> list[str]:
    """The job ids of the messages on every queue the farm has noted (its jobs' queues name their backend)."""
    out = []
    for queue in store.known_queues() or []:
        for raw in store.r.lrange(queue, 0, -1):
            body = json.loads(base64.b64decode(json.loads(raw)["body"]))
            out.append(body[0][0]["job_id"])
    return out


def test_a_finished_sweep_is_deleted_whole_and_another_is_untouched(store: Store, redis_url: str) -> None:
    a = sweep("lab-a")
    b = sweep("lab-b", units=(8, 32))
    envs_a = submitted(store, redis_url, a)
    envs_b = submitted(store, redis_url, b)
    ids_a = [e.job_id for e in envs_a]
    b_keys = {k: v for k, v in dump(store).items() if any(e.job_id in k for e in envs_b) or b.sweep_id in k}
    assert len(b_keys) > 4 * len(envs_b)
    assert mentions(store, [*ids_a, a.sweep_id])  # the sweep is there to be forgotten

    out = forget_sweep(store, a.sweep_id)

    assert (out.deleted, out.kept, out.withdrawn) == (len(ids_a), 0, len(ids_a))
    assert mentions(store, [*ids_a, a.sweep_id]) == []
    assert store.resolve_sweep("lab-a") is None and store.sweep_manifest(a.sweep_id) is None
    now = dump(store)
    assert {k: now.get(k) for k in b_keys} == b_keys  # every key of the other sweep, value for value
    assert sorted(queued_job_ids(store)) == sorted(e.job_id for e in envs_b)
    assert store.sweep_ids() == [b.sweep_id]


def test_jobs_shared_with_a_sweep_of_the_same_name_stay_until_that_one_goes(store: Store, redis_url: str) -> None:
    small = sweep("nightly", repeats=1)
    big = sweep("nightly", repeats=3)  # the same name: its first repeats are the same jobs
    submitted(store, redis_url, small)
    envs_big = submitted(store, redis_url, big)
    assert small.sweep_id != big.sweep_id

    out = forget_sweep(store, small.sweep_id)

    assert (out.deleted, out.kept) == (0, len(small.jobs))
    assert store.sweep_ids() == [big.sweep_id]
    assert all(store.have_results([e.job_id for e in envs_big]))
    assert all(r is not None and r.status == JobStatus.succeeded for r in store.results([e.job_id for e in envs_big]))

    out = forget_sweep(store, big.sweep_id)
    assert (out.deleted, out.kept) == (len(envs_big), 0)
    assert mentions(store, [e.job_id for e in envs_big]) == []


def test_a_sweep_that_may_still_run_or_record_is_refused_and_nothing_is_deleted(store: Store, redis_url: str) -> None:
    s = sweep("busy")
    envs = submitted(store, redis_url, s, finish=False)
    before = dump(store)
    with pytest.raises(SweepBusy, match=rf"{len(envs)} job\(s\) without a result.*farm cancel.*nothing was deleted"):
        forget_sweep(store, s.sweep_id)
    assert dump(store) == before

    # Cancelled: every job has a result, but a worker still holds one job's lease while it stops the run.
    lease = Ledger(store).take(envs[0].job_id, "w1", 30.0)
    assert isinstance(lease, Lease)
    cancel_sweep(store, s.sweep_id)
    before = dump(store)
    with pytest.raises(SweepBusy, match=r"1 job\(s\) whose worker is still stopping them"):
        forget_sweep(store, s.sweep_id)
    assert dump(store) == before

    Ledger(store).release(lease)
    assert forget_sweep(store, s.sweep_id).deleted == len(envs)
    # The generation counter stays: a worker paused since it held that lease still cannot record.
    assert [k for k in store.r.scan_iter("*") if envs[0].job_id in k] == [store.k("gen", envs[0].job_id)]
    assert not Ledger(store).record(lease, result(envs[0]))
    assert mentions(store, [e.job_id for e in envs[1:]] + [s.sweep_id]) == []


def test_an_interrupted_forget_finishes_when_run_again(store: Store, redis_url: str) -> None:
    s = sweep("halfway", repeats=3)
    envs = submitted(store, redis_url, s)
    ids = [e.job_id for e in envs]
    store.delete_jobs(ids[: len(ids) // 2])  # where a killed `farm forget` may have stopped
    assert store.resolve_sweep("halfway") == s.sweep_id

    out = forget_sweep(store, s.sweep_id)

    assert out.deleted == len(ids)
    assert mentions(store, [*ids, s.sweep_id]) == []


def test_a_worker_drops_a_message_of_a_forgotten_job_and_writes_nothing(store: Store, redis_url: str) -> None:
    from workers.execute import JobExecutor

    s = sweep("gone", repeats=1, units=(8,))
    [env] = submitted(store, redis_url, s)
    forget_sweep(store, s.sweep_id)
    before = dump(store)

    executor = JobExecutor(store, FarmSettings(broker_url=redis_url), "w1")
    assert executor.handle(env.model_dump(mode="json")) == Outcome.unknown.value
    assert dump(store) == before


def test_a_forgotten_sweep_submitted_again_runs_again_from_scratch(store: Store, redis_url: str) -> None:
    s = sweep("again", repeats=1)
    envs = submitted(store, redis_url, s)
    forget_sweep(store, s.sweep_id)
    store.r.delete(*(store.known_queues() or ["farm.cpu"]))

    out = submit(s, FarmSettings(broker_url=redis_url), store=store)

    assert out.enqueued == len(envs)
    assert store.sweep_ids() == [s.sweep_id]
    assert not any(store.have_results([e.job_id for e in envs]))
    assert sorted(queued_job_ids(store)) == sorted(e.job_id for e in envs)


def test_a_same_name_sweep_saved_while_forgetting_makes_it_start_over_and_keep_the_shared_jobs(
    store: Store, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = sweep("race", repeats=1)
    big = sweep("race", repeats=2)
    envs_small = submitted(store, redis_url, small)
    real = Store.delete_jobs
    calls: list[int] = []

    def submit_meanwhile(self: Store, job_ids: list[str], **kw: Any) -> bool:
        if not calls:  # the other sweep is saved after forget read the sweeps, before it deleted a thing
            submit(big, FarmSettings(broker_url=redis_url), store=store)
        calls.append(len(job_ids))
        return real(self, job_ids, **kw)

    monkeypatch.setattr(Store, "delete_jobs", submit_meanwhile)
    out = forget_sweep(store, small.sweep_id)

    assert calls == [len(envs_small), 0]  # the first pass was stopped; the second had nothing of its own
    assert (out.deleted, out.kept) == (0, len(envs_small))
    assert all(store.have_results([e.job_id for e in envs_small]))
    assert all(store.knows_jobs([e.job_id for e in big.envelopes()]))


def test_submit_restores_an_envelope_deleted_while_it_was_saving(
    store: Store, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A forget's delete that lands between a same-name submit's save and its claim: the claim finds the job
    without a result, and submit stores its envelope again before it sends, so the worker runs it."""
    small = sweep("late", repeats=1)
    big = sweep("late", repeats=2)
    envs_small = submitted(store, redis_url, small)
    store.r.delete(*(store.known_queues() or ["farm.cpu"]))
    real = Ledger.claim

    def deleted_first(self: Ledger, jobs: list[tuple[str, str]], chunk: int = 1000) -> set[str]:
        store.delete_jobs([e.job_id for e in envs_small])
        return real(self, jobs, chunk)

    monkeypatch.setattr(Ledger, "claim", deleted_first)
    out = submit(big, FarmSettings(broker_url=redis_url), store=store)

    ids = [e.job_id for e in big.envelopes()]
    assert out.enqueued == len(ids)
    assert all(store.knows_jobs(ids))
    assert sorted(queued_job_ids(store)) == sorted(ids)
