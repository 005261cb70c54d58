"""The job ledger against a real Redis: leases carry a generation that fences out a displaced holder, and the
outbox makes a job's message a debt that cannot be forgotten."""

from __future__ import annotations

import time

import pytest
import redis

from farm.job import JobEnvelope
from farm.ledger import Lease, Ledger
from farm.queue import make_app
from farm.result import JobResult, JobStatus
from farm.settings import FarmSettings
from farm.store import Store
from farm.sweep import load_sweep
from tests.helpers import REPO

SEED = REPO / "examples" / "seed.yaml"


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(redis.Redis.from_url(redis_url, decode_responses=True))


@pytest.fixture
def app(redis_url: str):  # type: ignore[no-untyped-def]
    return make_app(FarmSettings(broker_url=redis_url), ["farm.cpu", "farm.gpu"])


@pytest.fixture
def envelopes(store: Store) -> list[JobEnvelope]:
    sweep = load_sweep(SEED)
    envs = sweep.envelopes()
    store.save_sweep(sweep.sweep_id, {"name": "seed"}, envs)
    return envs


def result(env: JobEnvelope, worker: str, status: JobStatus = JobStatus.succeeded) -> JobResult:
    return JobResult(job_id=env.job_id, sweep_id=env.sweep_id, job=env.job, status=status, worker=worker)


def expire(store: Store, job_id: str) -> None:
    """What a paused or cut-off holder's lease does when nobody renews it."""
    store.r.pexpire(store.k("lease", job_id), 1)
    time.sleep(0.01)


def test_a_held_lease_is_not_taken_and_attempts_count(store: Store, envelopes: list[JobEnvelope]) -> None:
    ledger, job = Ledger(store), envelopes[0].job_id
    first = ledger.take(job, "a", 30)
    assert isinstance(first, Lease) and first.attempt == 1
    assert ledger.take(job, "b", 30) == first.token  # the holder's token, not a lease
    assert store.r.sismember(store.k("running"), job)
    ledger.release(first)
    second = ledger.take(job, "b", 30)
    assert isinstance(second, Lease) and second.generation > first.generation and second.attempt == 2


def test_a_displaced_holder_can_neither_renew_nor_record(store: Store, envelopes: list[JobEnvelope], app) -> None:
    ledger, env = Ledger(store), envelopes[0]
    paused = ledger.take(env.job_id, "paused", 30)
    assert isinstance(paused, Lease)
    expire(store, env.job_id)
    requeued = ledger.reap(app, "reaper", lease_ttl_s=30, interval_s=1, max_attempts=3, outbox_grace_s=30)
    assert requeued == [env.job_id]
    rightful = ledger.take(env.job_id, "rightful", 30)
    assert isinstance(rightful, Lease)

    # The paused worker wakes up: its lease is gone for good, whatever order things happen in.
    assert not ledger.renew(paused, 30)
    assert not ledger.holds(paused)
    assert not ledger.record(paused, result(env, "paused"))
    assert ledger.requeue(app, paused, env, "late failure", max_attempts=3) == "fenced"
    assert not ledger.give_up(paused, env, "late give-up", 1)
    # Nor can it write its run's progress over the state of the run that replaced it.
    assert store.update_progress(env.job_id, generation=rightful.generation, epoch=1, heartbeat_at=1.0)
    assert not store.update_progress(env.job_id, generation=paused.generation, epoch=7, heartbeat_at=2.0)
    state = store.state(env.job_id)
    assert (state["epoch"], state["heartbeat_at"]) == ("1", "1.0")
    assert store.r.sismember(store.k("running"), env.job_id)  # the rightful run is still accounted for
    ledger.release(paused)
    assert ledger.holder(env.job_id) == rightful.token  # releasing a stale lease leaves the new one

    assert ledger.record(rightful, result(env, "rightful"))
    stored = store.result(env.job_id)
    assert stored is not None and stored.worker == "rightful"
    assert not store.r.sismember(store.k("running"), env.job_id)


def test_an_expired_lease_nobody_took_is_renewed(store: Store, envelopes: list[JobEnvelope]) -> None:
    """Redis was unreachable past the lease, but nobody took the job over: the holder carries on."""
    ledger, env = Ledger(store), envelopes[0]
    lease = ledger.take(env.job_id, "slow", 30)
    assert isinstance(lease, Lease)
    expire(store, env.job_id)
    assert ledger.renew(lease, 30) and ledger.holder(env.job_id) == lease.token
    assert ledger.record(lease, result(env, "slow"))


def test_a_result_is_recorded_once_even_by_the_lease_holder(store: Store, envelopes: list[JobEnvelope]) -> None:
    ledger, env = Ledger(store), envelopes[0]
    lease = ledger.take(env.job_id, "a", 30)
    assert isinstance(lease, Lease)
    assert store.record_result(result(env, "cancel", JobStatus.cancelled))  # `farm cancel` wrote first
    assert not ledger.record(lease, result(env, "a"))
    assert ledger.holds(lease)


def test_requeue_puts_the_job_back_with_its_message(store: Store, envelopes: list[JobEnvelope], app) -> None:
    ledger, env = Ledger(store), envelopes[0]
    lease = ledger.take(env.job_id, "a", 30)
    assert isinstance(lease, Lease)
    assert ledger.requeue(app, lease, env, "the process died", max_attempts=3) == JobStatus.lost.value
    assert store.state(env.job_id)["state"] == "lost"
    assert store.r.zcard(store.k("outbox")) == 0  # the message went, the debt is settled
    assert store.r.llen("farm.cpu") + store.r.llen("farm.gpu") == 1
    assert not ledger.holds(lease)  # requeueing fences out its own lease too


def test_claim_owes_each_message_until_it_is_sent(store: Store, envelopes: list[JobEnvelope]) -> None:
    ledger = Ledger(store)
    jobs = [(e.job_id, "farm.cpu") for e in envelopes]
    claimed = ledger.claim(jobs, chunk=5)
    assert claimed == {e.job_id for e in envelopes}
    assert ledger.claim(jobs) == set()  # claimed once
    assert sorted(ledger.debts()) == sorted(claimed)
    assert ledger.debts(older_than_s=3600) == []
    ledger.settle({envelopes[0].job_id: time.time()})
    assert envelopes[0].job_id not in ledger.debts()
    assert store.state(envelopes[0].job_id).get("sent_at")


def test_a_reaper_pass_puts_back_only_the_runs_whose_lease_expired(
    store: Store, envelopes: list[JobEnvelope], app
) -> None:
    """The pass reads every running job's lease in one round trip, then seizes only the expired ones."""
    ledger = Ledger(store)
    leases = [ledger.take(e.job_id, f"w{i}", 30) for i, e in enumerate(envelopes[:4])]
    assert all(isinstance(lease, Lease) for lease in leases)
    dead = {envelopes[1].job_id, envelopes[3].job_id}
    for job_id in dead:
        expire(store, job_id)
    requeued = ledger.reap(app, "reaper", lease_ttl_s=30, interval_s=1, max_attempts=3, outbox_grace_s=30)
    assert set(requeued) == dead
    assert store.r.smembers(store.k("running")) == {envelopes[0].job_id, envelopes[2].job_id}
    assert all(store.state(j)["state"] == "lost" for j in dead)
    assert [ledger.holds(lease) for lease in leases if isinstance(lease, Lease)] == [True, False, True, False]


def test_messages_are_found_on_the_queues_the_farm_noted(store: Store, envelopes: list[JobEnvelope], app) -> None:
    """A sent job's queue is noted before its message goes, so looking for messages reads the noted queues
    rather than scanning every key; data from before the farm noted queues is scanned for them."""
    ledger = Ledger(store)
    env = envelopes[0]
    ledger.claim([(env.job_id, "farm.cpu")])
    ledger.send(app, [env])
    queue = next(q for q in ("farm.cpu", "farm.gpu") if store.r.llen(q))
    assert queue in (store.known_queues() or [])
    assert ledger.pending_messages(include_unacked=False) == {env.job_id}
    store.r.delete(store.k("queues"))  # as a Redis written by an older farm looks
    assert store.known_queues() is None
    assert ledger.pending_messages(include_unacked=False) == {env.job_id}
    assert ledger.withdraw_messages([env.job_id]) == 1
    assert ledger.pending_messages(include_unacked=False) == set()


def test_live_workers_are_read_from_the_registry_index(store: Store) -> None:
    store.register_worker("a", {"name": "a"}, ttl_s=30)
    store.register_worker("b", {"name": "b"}, ttl_s=30)
    store.register_worker("gone", {"name": "gone"}, ttl_s=0.05)
    time.sleep(0.1)
    assert [w["name"] for w in store.live_workers()] == ["a", "b"]
    store.unregister_worker("b")
    assert [w["name"] for w in store.live_workers()] == ["a"]
    assert store.r.zscore(store.k("workers"), "b") is None
    # Only the index counts once there is one: a stray key that looks like an entry is not a worker.
    store.r.set(store.k("worker", "stray"), '{"name": "stray"}')
    assert [w["name"] for w in store.live_workers()] == ["a"]


def test_live_workers_without_an_index_are_scanned_for(store: Store) -> None:
    """Workers of a farm from before the index (entries only): still listed."""
    store.r.set(store.k("worker", "old"), '{"name": "old"}', px=30_000)
    assert [w["name"] for w in store.live_workers()] == ["old"]
