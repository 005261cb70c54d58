"""The job's collaborators on the worker side, each on its own (issue #25): the heartbeat that keeps the lease,
the keep-alive that tells the child, the cancel watch, the failure policy (quarantine).

No worker process: a throwaway redis-server holds the lease, and a fake clock drives what takes one, one tick at
a time, so that nothing here waits on (or asserts) wall-clock time."""

from __future__ import annotations

import pytest
import redis

from farm import defaults
from farm.ledger import Lease, Ledger
from farm.store import Store
from tests.helpers import wait_for
from workers.blame import signature
from workers.cancel_watch import CancelWatch
from workers.lease_keeper import Heartbeat, KeepAlive
from workers.quarantine import Quarantine, counts_against_machine, failed_the_same_way, requeue
from workers.supervisor import ChildOutcome


class Clock:
    """A clock that moves only when told."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def ledger(redis_url: str) -> Ledger:
    return Ledger(Store(redis.Redis.from_url(redis_url, decode_responses=True)))


def take(ledger: Ledger, job_id: str = "j1", holder: str = "w1", ttl_s: float = 30) -> Lease:
    lease = ledger.take(job_id, holder, ttl_s)
    assert isinstance(lease, Lease)
    return lease


def take_over(ledger: Ledger, lease: Lease, holder: str = "w2") -> Lease:
    """Another worker takes the job, as after the reaper found the lease expired."""
    ledger.r.delete(ledger.store.k("lease", lease.job_id))
    return take(ledger, lease.job_id, holder)


def ended(collaborator: Heartbeat | KeepAlive) -> bool:
    """Whether its thread was started and has ended by itself."""
    return collaborator._thread is not None and not collaborator._thread.is_alive()


# -- heartbeat ------------------------------------------------------------------------------------------------


def test_the_heartbeat_renews_the_lease_and_notes_when(ledger: Ledger) -> None:
    lease, clock, beats = take(ledger, ttl_s=30), Clock(), []
    heartbeat = Heartbeat(ledger, lease, 600, 10, on_renewed=lambda: beats.append(clock()), clock=clock)
    clock.t = 10
    assert heartbeat.beat() and not heartbeat.lost
    assert heartbeat.renewed_at == 10 and beats == [10]
    assert ledger.r.pttl(ledger.store.k("lease", lease.job_id)) > 30_000  # extended to the renewal's ttl
    assert ledger.holds(lease)


def test_the_heartbeat_stops_once_the_lease_is_lost(ledger: Ledger) -> None:
    lease, clock, beats = take(ledger), Clock(), []
    heartbeat = Heartbeat(ledger, lease, 30, 10, on_renewed=lambda: beats.append(clock()), clock=clock)
    newer = take_over(ledger, lease)
    clock.t = 10
    assert not heartbeat.beat()
    assert heartbeat.lost and heartbeat.lost_to == newer.token and heartbeat.renewed_at == 0 and beats == []
    assert ledger.holder(lease.job_id) == newer.token  # the newer holder's lease is left alone

    thread = Heartbeat(ledger, lease, 30, 0.01).start()  # its thread ends by itself at the first refused renewal
    wait_for(lambda: ended(thread), 30, "the heartbeat's thread to end", 0.01)
    assert thread.lost_to == newer.token


def test_a_redis_error_in_a_beat_is_tried_again_not_taken_for_a_lost_lease(ledger: Ledger) -> None:
    def refuse() -> None:
        raise redis.ConnectionError("Redis is restarting")

    heartbeat = Heartbeat(ledger, take(ledger), 30, 10, on_renewed=refuse, clock=Clock())
    assert heartbeat.beat() and not heartbeat.lost


# -- keep-alive -------------------------------------------------------------------------------------------------


def test_the_keep_alive_pings_only_while_the_lease_was_renewed_within_a_lease(ledger: Ledger) -> None:
    clock, pings = Clock(), []
    heartbeat = Heartbeat(ledger, take(ledger), 30, 10, clock=clock)
    keepalive = KeepAlive(heartbeat, [lambda: pings.append(clock())], 30, 10, clock=clock)
    clock.t = 29.9
    assert keepalive.tick() and pings == [29.9]
    clock.t = 30  # no renewal for a whole lease: cut off from Redis, the child is left to stop itself
    assert keepalive.tick() and pings == [29.9]
    clock.t = 45
    assert keepalive.tick() and pings == [29.9]
    assert heartbeat.beat()  # the link came back within the child's keep-alive timeout
    clock.t = 50
    assert keepalive.tick() and pings == [29.9, 50]


def test_the_keep_alive_ends_when_the_lease_is_lost(ledger: Ledger) -> None:
    lease, clock, pings = take(ledger), Clock(), []
    heartbeat = Heartbeat(ledger, lease, 30, 10, clock=clock)
    keepalive = KeepAlive(heartbeat, [lambda: pings.append(clock())], 30, 10, clock=clock)
    take_over(ledger, lease)
    assert not heartbeat.beat()
    assert not keepalive.tick() and pings == []

    threaded = KeepAlive(heartbeat, [lambda: pings.append(clock())], 30, 0.01).start()
    wait_for(lambda: ended(threaded), 30, "the keep-alive's thread to end", 0.01)
    assert pings == []


# -- cancel watch -----------------------------------------------------------------------------------------------


def test_the_cancel_watch_asks_redis_at_most_every_cancel_check(ledger: Ledger) -> None:
    clock, asked = Clock(), []

    def cancelled() -> bool:
        asked.append(clock())
        return ledger.cancelled("s1", "j1")

    watch = CancelWatch(cancelled, lambda: False, clock=clock)
    step = defaults.CANCEL_CHECK_S / 5  # the supervisor asks every 0.2 s
    for i in range(11):
        clock.t = i * step
        assert watch() is None
    assert asked == [0.0, 5 * step, 10 * step]  # once a CANCEL_CHECK_S, not at every question
    ledger.mark_cancelled("s1")
    clock.t = 11 * step
    assert watch() is None  # seen at the next check, not before
    clock.t = 15 * step
    assert watch() == "cancelled"


def test_the_cancel_watch_says_a_lost_lease_at_once_and_survives_a_redis_error() -> None:
    lost, clock = [False], Clock()

    def unreachable() -> bool:
        raise redis.ConnectionError("Redis is away")

    watch = CancelWatch(unreachable, lambda: lost[0], clock=clock)
    assert watch() is None  # Redis away: not cancelled for now
    lost[0] = True
    assert watch() == "lease_lost"  # without waiting for the next cancel check


# -- failure policy ---------------------------------------------------------------------------------------------


def failure(stage: str, error: str = "RuntimeError: boom") -> ChildOutcome:
    return ChildOutcome(status="failed", error=error, stage=stage)


def test_only_failures_blamed_on_the_machine_count() -> None:
    assert counts_against_machine(failure("import"), [])  # the framework does not import here
    assert counts_against_machine(failure("train"), [])  # a crash while training, seen here only
    for stage in ("job", "data", "build", "memory"):
        assert not counts_against_machine(failure(stage), [])  # the job's own parameters, data, model, size
    assert not counts_against_machine(failure("train"), ["w2"])  # it failed the same way elsewhere


def test_the_quarantine_counts_distinct_jobs_forgives_and_lifts_after_its_cool_down() -> None:
    clock, crash = Clock(1000.0), failure("import", "ImportError: libcuda")
    policy = Quarantine("w1", after=2, cooldown_s=600, clock=clock)
    nowhere: list[str] = []
    for _ in range(3):  # one broken job retried here is not a broken machine
        policy.count("a", signature(crash), crash, lambda f: nowhere)
    assert policy.reason is None and policy.consecutive_failures == 1
    policy.count("b", signature(crash), crash, lambda f: ["a"])  # job a has since failed the same way elsewhere
    assert policy.reason is None and list(policy.failed_jobs) == ["b"]
    policy.count("c", signature(crash), crash, lambda f: nowhere)
    assert policy.reason and "2 jobs in a row failed here" in policy.reason and policy.quarantined_at == 1000.0
    clock.t = 1599
    assert not policy.lift()
    clock.t = 1600
    assert policy.lift() and policy.reason is None and not policy.failed_jobs and policy.consecutive_failures == 0


def test_a_success_starts_the_count_afresh_and_no_cool_down_means_a_restart() -> None:
    crash = failure("import")
    policy = Quarantine("w1", after=2, cooldown_s=0, clock=Clock())
    policy.count("a", signature(crash), crash, lambda f: [])
    policy.succeeded()
    policy.count("b", signature(crash), crash, lambda f: [])
    assert policy.reason is None
    policy.count("c", signature(crash), crash, lambda f: [])
    assert policy.reason and "restart the worker to lift it" in policy.reason
    assert not policy.lift(now=10**9)


def test_a_failed_job_is_requeued_while_attempts_remain_and_names_where_it_failed() -> None:
    assert requeue(1, 3) and requeue(2, 3) and not requeue(3, 3)
    error = failed_the_same_way(failure("train", "RuntimeError: nan\ntrace"), ["w2"], "w1")
    assert error == "failed the same way on w2 and w1: RuntimeError: nan\ntrace"
