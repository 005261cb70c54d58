"""The job ledger: who may run a job, who may record it, and which jobs still owe a message to a queue.

Celery delivers at least once; the ledger turns that into one recorded run per job:

- **Leases with a generation (a fencing token).** Taking a job's lease increments ``P:gen:JID``; the lease key
  ``P:lease:JID`` holds ``worker#generation`` and expires unless its holder renews it. Anyone who takes a job
  over (another worker after the lease expired, or the reaper putting it back) increments the generation, so a
  worker that was paused, partitioned or slow can never record, retry or give up a job after that: every such
  write checks the generation atomically with the write itself (a Lua script, or a watched ``MULTI`` in the
  store for results).
- **The outbox.** A job whose message must go to a queue (submitted, resumed, put back after a lost or failed
  run) is written to the ``P:outbox`` sorted set, scored by time, in the same atomic step that sets its state;
  it leaves the outbox only once its message was published. An interrupted submit, a killed worker or a Redis
  that died between the two steps therefore leaves a visible debt rather than a job marked ``queued`` with no
  message: the reaper (any worker) pays debts older than a grace period, and submitting the same sweep again
  pays its own at once. Paying checks the queues first, so a message that did go out is not sent twice. A debt
  is one process's to pay at a time (``P:paying``, job -> until when): its claimer's, or whoever took it to pay
  it, for ``SEND_LEASE_S``; others leave it alone meanwhile, so two submits of the same jobs at once (one of
  them paying what it takes for an interrupted submit's debts) never both send a job's message.
- **In flight.** A sent message is not yet a running job: a worker pops it (``BRPOP``) and only then writes it to
  kombu's ``unacked`` hash, so a Redis killed between the two (the pop is in its append-only file, the
  ``unacked`` write never came) or a worker dying there, or failing before it took the lease, leaves a job
  ``queued`` with no message anywhere. Each sent job therefore stays in ``P:inflight`` (scored by when it was
  sent or last seen waiting) until a worker takes its lease; the reaper looks at entries older than the grace
  period: one still on a queue is looked at again later, one with a lease or a result is done, and one that is
  nowhere is sent again. A message sent twice is harmless: the lease and ``SET NX`` run and record it once.

Keys (``P`` is the store's prefix): ``gen:JID``, ``lease:JID``, ``attempts:JID``, ``failures:JID`` (worker ->
where and how the job failed there), ``running``, ``outbox``, ``paying``, ``inflight``, ``reaper``,
``submitting:SWEEP`` (a submit of the sweep began and has not claimed every job yet); the job's ``state:JID`` hash
and ``result:JID`` belong to the store: read here, and set or deleted here only within the ledger's own atomic steps
(claim, requeue, reset); any other write to them goes through the store (``Store.stamp_sent``, ``record_result``).

Time: leases and the reaper's lock are server-side TTLs. The outbox's and the in-flight set's scores, and the
``lost_at`` / ``queued_at`` of a job's state, are written by one host (a submitter, a worker) and compared by
another's reaper, so they are on the Redis server's clock (``Store.now``, see ``farm.clock``), never a host's.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from farm import defaults
from farm.queue import job_queue
from farm.result import JobResult, JobStatus

if TYPE_CHECKING:
    from celery import Celery

    from farm.job import JobEnvelope
    from farm.store import Store

log = logging.getLogger("farm.ledger")


class Outcome(str, enum.Enum):
    """What became of one delivery of a job, as the worker's log and Celery's task result say it."""

    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    cancelled = "cancelled"
    retrying = "retrying"  # the run failed; the job went back on its queue for another attempt
    duplicate = "duplicate"  # the job already had a result: nothing ran
    leased = "leased"  # another worker holds the job's lease: nothing ran
    rejected = "rejected"  # the message was not a valid farm job
    handed_back = "handed_back"  # this worker stopped taking jobs and put the job back
    abandoned = "abandoned"  # this worker lost the lease mid-run: its run was stopped and not recorded
    unknown = "unknown"  # the job is not in the store (its sweep was forgotten): nothing ran
    spooled = "spooled"  # Redis refused the result (full, away) past the retries: it waits in the worker's spool


@dataclass(frozen=True)
class Lease:
    """The right to run and record one job, valid while ``generation`` is the job's current generation."""

    job_id: str
    holder: str
    generation: int
    attempt: int = 0

    @property
    def token(self) -> str:
        return f"{self.holder}#{self.generation}"


# KEYS: lease, gen, running, attempts, inflight   ARGV: holder, ttl_ms, job_id
# Returns {generation, attempt}, or the current holder's token when the lease is held. The job's message has
# arrived: it leaves the in-flight set (from now on its lease and the running set account for it).
_TAKE = """
local held = redis.call('GET', KEYS[1])
if held then return held end
local gen = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '#' .. gen, 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[3])
local attempt = redis.call('INCR', KEYS[4])
return {gen, attempt}
"""

# KEYS: lease, gen   ARGV: token, generation, ttl_ms
# 1: renewed (or re-taken after it expired while nobody else took the job); 0: lost to a newer generation.
_RENEW = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
if held == false and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return 1
end
return 0
"""

# KEYS: lease   ARGV: token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lease, gen   -> the new generation, or false while a lease is held (the holder is alive)
_SEIZE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
return redis.call('INCR', KEYS[2])
"""

# KEYS: gen, lease, running, state, outbox, result, paying
# ARGV: generation, job_id, now, queue, error, due (until when the debt is this requeuer's to pay: see _CLAIM)
_REQUEUE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'fenced' end
redis.call('INCR', KEYS[1])
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('EXISTS', KEYS[6]) == 1 then return 'recorded' end
redis.call('HSET', KEYS[4], 'state', 'lost', 'last_error', ARGV[5], 'worker', '', 'lost_at', ARGV[3],
           'queue', ARGV[4], 'updated_at', ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[7], ARGV[6], ARGV[2])
return 'requeued'
"""

# KEYS: result, state, outbox, paying (per job, repeated)   ARGV: now, due, then (job_id, queue) per job
# Claims each job without a result or a state: state queued, and a debt in the outbox. Returns the claimed ids.
# The debt is its claimer's alone to pay until ``due`` (``paying``; see :meth:`Ledger.take_debts`).
_CLAIM = """
local claimed = {}
local now, due = ARGV[1], ARGV[2]
for i = 0, (#KEYS / 4) - 1 do
  local result, state, outbox, paying = KEYS[i * 4 + 1], KEYS[i * 4 + 2], KEYS[i * 4 + 3], KEYS[i * 4 + 4]
  local job_id, queue = ARGV[i * 2 + 3], ARGV[i * 2 + 4]
  if redis.call('EXISTS', result) == 0 and redis.call('HSETNX', state, 'state', 'queued') == 1 then
    redis.call('HSET', state, 'queue', queue, 'queued_at', now, 'updated_at', now)
    redis.call('ZADD', outbox, now, job_id)
    redis.call('ZADD', paying, due, job_id)
    claimed[#claimed + 1] = job_id
  end
end
return claimed
"""

# KEYS: outbox, paying   ARGV: now, due, job ids...
# Takes each debt that nobody is paying (none, or their time ran out): the taker's to pay until ``due``.
# Returns the ids taken.
_TAKE_DEBTS = """
local taken = {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    local until_ = redis.call('ZSCORE', KEYS[2], ARGV[i])
    if not until_ or tonumber(until_) <= tonumber(ARGV[1]) then
      redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
      taken[#taken + 1] = ARGV[i]
    end
  end
end
return taken
"""


class Ledger:
    """The job lifecycle on the farm's Redis. Every method is one atomic step (or says which steps it takes)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.r = store.r
        self._take = self.r.register_script(_TAKE)
        self._renew = self.r.register_script(_RENEW)
        self._release = self.r.register_script(_RELEASE)
        self._seize = self.r.register_script(_SEIZE)
        self._requeue = self.r.register_script(_REQUEUE)
        self._claim = self.r.register_script(_CLAIM)
        self._take_debts = self.r.register_script(_TAKE_DEBTS)

    def _k(self, *parts: str) -> str:
        return self.store.k(*parts)

    # -- leases -----------------------------------------------------------------------------------------------
    def take(self, job_id: str, holder: str, ttl_s: float) -> Lease | str:
        """Take the job's lease (a new generation) and count the attempt; or the current holder's token."""
        reply = self._take(
            keys=[
                self._k("lease", job_id),
                self._k("gen", job_id),
                self._k("running"),
                self._k("attempts", job_id),
                self._k("inflight"),
            ],
            args=[holder, int(ttl_s * 1000), job_id],
        )
        if isinstance(reply, list):
            return Lease(job_id, holder, int(reply[0]), int(reply[1]))
        return str(reply)

    def renew(self, lease: Lease, ttl_s: float) -> bool:
        """Extend the lease; False once another holder has a newer generation (stop, and record nothing)."""
        return bool(
            self._renew(
                keys=[self._k("lease", lease.job_id), self._k("gen", lease.job_id)],
                args=[lease.token, lease.generation, int(ttl_s * 1000)],
            )
        )

    def holds(self, lease: Lease) -> bool:
        """Whether ``lease`` is still the job's current generation (nobody took the job over)."""
        return self.r.get(self._k("gen", lease.job_id)) == str(lease.generation)

    def release(self, lease: Lease) -> None:
        """Drop the lease if it is still this holder's (a newer holder's lease is left alone)."""
        self._release(keys=[self._k("lease", lease.job_id)], args=[lease.token])

    def holder(self, job_id: str) -> str | None:
        return cast("str | None", self.r.get(self._k("lease", job_id)))  # a decoding client (farm.store.Store)

    # -- cancellation and the broker's messages --------------------------------------------------------------
    def mark_cancelled(self, sweep_id: str) -> None:
        """Running jobs of the sweep stop at their worker's next check; nothing of it starts any more."""
        self.r.set(self._k("cancel", sweep_id), time.time())

    def lift_cancel(self, sweep_id: str) -> None:
        self.r.delete(self._k("cancel", sweep_id))

    def cancelled(self, sweep_id: str, job_id: str) -> bool:
        """Whether the job, or its whole sweep, is cancelled."""
        return bool(self.r.exists(self._k("cancel", sweep_id), self._k("cancel", job_id)))

    def pending_messages(self, *, include_unacked: bool) -> set[str]:
        """Job ids with a message on a farm queue (and, with ``include_unacked``, delivered, unacknowledged)."""
        from farm.broker_scan import pending_job_ids

        return pending_job_ids(
            self.r, include_unacked=include_unacked, queues=self.store.known_queues(), key_prefix=self.store.p
        )

    def withdraw_messages(self, job_ids: list[str]) -> int:
        """Take these jobs' queued messages off every farm queue; how many were removed."""
        from farm.broker_scan import remove_messages

        return remove_messages(self.r, job_ids, self.store.known_queues(), self.store.p)

    def leased(self, job_ids: list[str]) -> list[bool]:
        """Whether each job's lease is held right now (its run is alive), in order."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(self._k("lease", job_id))
        return [bool(n) for n in pipe.execute()]

    def reset(self, job_ids: list[str]) -> None:
        """Forget finished jobs' run state (state, attempts, their own cancel marks) so they can be claimed and
        run again (``farm resume``). Generation counters stay: a late writer from before stays fenced out."""
        for start in range(0, len(job_ids), 5000):
            kinds = ("state", "attempts", "cancel", "failures")
            keys = [self._k(kind, j) for j in job_ids[start : start + 5000] for kind in kinds]
            self.r.delete(*keys)

    def attempts(self, job_id: str) -> int:
        return int(self.r.get(self._k("attempts", job_id)) or 0)

    # -- failures across workers ------------------------------------------------------------------------------
    def note_failure(self, job_id: str, worker: str, signature: str) -> list[str]:
        """Record that the job failed on ``worker`` with ``signature`` (where and how it failed); returns the
        other workers on which it failed with the same signature, in the order they are stored. One of them is
        enough to say the job, not the machine, is broken: two machines do not break the same way at once."""
        key = self._k("failures", job_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, worker, signature)
        pipe.hgetall(key)
        _, seen = pipe.execute()
        return sorted(w for w, sig in cast("dict[str, str]", seen).items() if w != worker and sig == signature)

    def failed_elsewhere(self, job_id: str, worker: str, signature: str) -> bool:
        """Whether the job failed with ``signature`` on a worker other than ``worker``."""
        seen = cast("dict[str, str]", self.r.hgetall(self._k("failures", job_id)))
        return any(w != worker and sig == signature for w, sig in seen.items())

    # -- recording and putting back ---------------------------------------------------------------------------
    def record(self, lease: Lease, result: JobResult) -> bool:
        """Record the result if ``lease`` is still current (checked atomically with the write)."""
        return self.store.record_result(result, generation=lease.generation)

    def give_up(self, lease: Lease, envelope: JobEnvelope, error: str, attempt: int) -> bool:
        """Record the job failed for good (no run's result to go with it), if the lease is still current."""
        result = JobResult(
            job_id=envelope.job_id,
            sweep_id=envelope.sweep_id,
            job=envelope.job,
            status=JobStatus.failed,
            error=error,
            attempt=attempt,
            worker=lease.holder,
        )
        return self.record(lease, result)

    def requeue(self, app: Celery, lease: Lease, envelope: JobEnvelope, error: str, *, max_attempts: int) -> str:
        """A run ended without a result worth keeping: back on its queue while attempts remain, else recorded
        failed. Does nothing if the lease is no longer current. Returns the job's new state (or 'fenced')."""
        attempt = self.attempts(envelope.job_id)
        if attempt >= max_attempts:
            if self.give_up(lease, envelope, f"gave up after {attempt} attempts; the last one: {error}", attempt):
                return JobStatus.failed.value
            return "fenced" if not self.holds(lease) else "recorded"
        job_id = envelope.job_id
        reply = self._requeue(
            keys=[
                self._k("gen", job_id),
                self._k("lease", job_id),
                self._k("running"),
                self._k("state", job_id),
                self._k("outbox"),
                self._k("result", job_id),
                self._k("paying"),
            ],
            args=[
                lease.generation,
                job_id,
                now := self.store.now(),
                job_queue(envelope.job, self.store.p),
                error[:2000],
                now + defaults.SEND_LEASE_S,
            ],
        )
        if reply != "requeued":
            return str(reply)
        self.send(app, [envelope])
        return JobStatus.lost.value

    def reap(
        self,
        app: Celery,
        reaper: str,
        *,
        lease_ttl_s: float,
        interval_s: float,
        max_attempts: int,
        outbox_grace_s: float,
    ) -> list[str]:
        """Put back the running jobs whose holder stopped renewing its lease (it died, hung or was cut off), pay
        outbox debts older than ``outbox_grace_s``, and send again the messages sent that long ago that are on
        no queue while no worker took their job (:meth:`resend_vanished`). One reaper at a time across the farm."""
        if not self.r.set(self._k("reaper"), reaper, nx=True, px=int(interval_s * 1000 * 0.9)):
            return []
        requeued = []
        running = sorted(cast("set[str]", self.r.smembers(self._k("running"))))
        # One round trip to see which leases are held (every live run's, almost always all of them); only the
        # others are seized, one atomic step each. A pass is then two round trips, not one per running job.
        for job_id, held in zip(running, self.leased(running), strict=True):
            if held:
                continue
            generation = self._seize(keys=[self._k("lease", job_id), self._k("gen", job_id)])
            if generation is None:
                continue  # its holder is alive
            envelope = self.store.envelope(job_id)
            if envelope is None or self.store.has_result(job_id):
                self.r.srem(self._k("running"), job_id)
                continue
            state = self.store.state(job_id)
            worker = state.get("worker") or "?"
            self.store.log_run(
                job_id,
                event="end",
                worker=worker,
                attempt=int(state.get("attempt") or 0),
                at=self.store.now(),
                ended="lost",
                found_by=reaper,
            )
            lease = Lease(job_id, reaper, int(generation))
            self.requeue(
                app,
                lease,
                envelope,
                f"worker {worker} stopped while running it (no heartbeat for {lease_ttl_s:g} s)",
                max_attempts=max_attempts,
            )
            requeued.append(job_id)
        self.pay_outbox(app, older_than_s=outbox_grace_s)
        self.resend_vanished(app, older_than_s=outbox_grace_s)
        return requeued

    # -- the outbox -------------------------------------------------------------------------------------------
    def claim(self, jobs: list[tuple[str, str]], chunk: int = 1000) -> set[str]:
        """Claim jobs (job id, queue) for sending: each job that has neither a result nor a state becomes
        ``queued`` with a debt in the outbox, in one atomic step per chunk. Returns the ids claimed here."""
        claimed: set[str] = set()
        outbox, paying = self._k("outbox"), self._k("paying")
        for start in range(0, len(jobs), chunk):
            part = jobs[start : start + chunk]
            keys: list[str] = []
            now = self.store.now()
            args: list[str | float] = [now, now + defaults.SEND_LEASE_S]
            for job_id, queue in part:
                keys += [self._k("result", job_id), self._k("state", job_id), outbox, paying]
                args += [job_id, queue]
            claimed.update(self._claim(keys=keys, args=args))
        return claimed

    def take_debts(self, job_ids: list[str]) -> list[str]:
        """Take the debts among ``job_ids`` that nobody is paying (due): each is this caller's to send for
        ``SEND_LEASE_S``, in one atomic step per chunk. Debts being paid (just claimed, taken or put back by
        another process, which sends them in a moment) are left to their payer: two payers would send a job's
        message twice (two identical submits at once put 21,000 messages on the queues for 20,000 jobs)."""
        taken: list[str] = []
        for start in range(0, len(job_ids), 1000):
            now = self.store.now()
            args: list[str | float] = [now, now + defaults.SEND_LEASE_S, *job_ids[start : start + 1000]]
            taken += cast("list[str]", self._take_debts(keys=[self._k("outbox"), self._k("paying")], args=args))
        return taken

    def release_debts(self, job_ids: list[str]) -> None:
        """Give back debts taken or claimed here and not paid (an interrupted sender): anyone's to pay now."""
        for start in range(0, len(job_ids), 10_000):
            self.r.zrem(self._k("paying"), *job_ids[start : start + 10_000])

    def begin_submit(self, sweep_id: str) -> None:
        """A submit of the sweep starts: until one has claimed every job, unclaimed jobs are an interrupted
        submit's (``farm status`` says to run it again), not jobs left out on purpose (``farm run``'s skips)."""
        self.r.set(self._k("submitting", sweep_id), self.store.now())

    def end_submit(self, sweep_id: str) -> None:
        """Every job of the sweep that was wanted is claimed (by this submit or another)."""
        self.r.delete(self._k("submitting", sweep_id))

    def submit_unfinished(self, sweep_id: str) -> bool:
        """Whether a submit of the sweep began and none claimed all its jobs since: interrupted, or still going."""
        return bool(self.r.exists(self._k("submitting", sweep_id)))

    def debts_due_in(self, job_ids: list[str]) -> float | None:
        """Seconds until the last of these jobs' debts is anyone's to pay (0 when all are now); None when none
        is owed."""
        if not job_ids or not self.debts(job_ids):
            return None
        until = [s for s in self.r.zmscore(self._k("paying"), job_ids) if s is not None]
        return max(0.0, max(until) - self.store.now()) if until else 0.0

    def debts(self, job_ids: Iterable[str] | None = None, *, older_than_s: float = 0.0) -> list[str]:
        """Jobs whose message is owed: all (older than ``older_than_s``), or those among ``job_ids``."""
        outbox = self._k("outbox")
        if job_ids is None:
            return list(cast("list[str]", self.r.zrangebyscore(outbox, "-inf", self.store.now() - older_than_s)))
        ids = list(job_ids)
        owed: list[str] = []
        for start in range(0, len(ids), 10_000):
            part = ids[start : start + 10_000]
            owed += [j for j, score in zip(part, self.r.zmscore(outbox, part), strict=True) if score is not None]
        return owed

    def settle(self, sent: dict[str, float]) -> None:
        """These jobs' messages were published (job id -> when): their debts are paid, and they are in flight
        until a worker takes them."""
        ids = list(sent)
        for start in range(0, len(ids), 10_000):
            part = ids[start : start + 10_000]
            pipe = self.r.pipeline(transaction=False)
            pipe.zadd(self._k("inflight"), {job_id: sent[job_id] for job_id in part})
            pipe.zrem(self._k("outbox"), *part)
            pipe.zrem(self._k("paying"), *part)
            self.store.stamp_sent(pipe, {job_id: sent[job_id] for job_id in part})  # the state hash is the store's
            pipe.execute()

    def send(self, app: Celery, envelopes: list[JobEnvelope]) -> dict[str, float]:
        """Publish these jobs' messages (their debts are in the outbox already) and settle what surely went."""
        from farm.queue import publish

        # Noted before any message goes: a message is never on a queue that the farm's scans do not read.
        self.store.note_queues(job_queue(e.job, self.store.p) for e in envelopes)
        sent: dict[str, float] = {}
        try:
            publish(app, envelopes, sent, clock=self.store.now)
        finally:
            self.settle(sent)
        return sent

    def pay_outbox(
        self,
        app: Celery,
        *,
        older_than_s: float = 0.0,
        job_ids: Iterable[str] | None = None,
        taken: set[str] | None = None,
    ) -> list[str]:
        """Send the owed messages that are on no queue yet; drop debts already paid some other way (a message
        on a queue or delivered, a lease held, a result recorded). Returns the ids whose message was sent.

        Only debts that are due are paid, each taken first (:meth:`take_debts`): one that another process is
        paying right now is left to it. ``taken`` receives the ids taken (a caller that may be interrupted gives
        them back with :meth:`release_debts`)."""
        owed = self.take_debts(self.debts(job_ids, older_than_s=older_than_s))
        if taken is not None:
            taken.update(owed)
        if not owed:
            return []
        pending = self.pending_messages(include_unacked=True)
        paid: list[str] = []
        todo: list[JobEnvelope] = []
        for job_id, envelope in zip(owed, self.store.envelopes(owed), strict=True):
            if (
                envelope is None
                or job_id in pending
                or self.store.has_result(job_id)
                or self.r.exists(self._k("lease", job_id))
            ):
                paid.append(job_id)
            else:
                todo.append(envelope)
        if paid:
            self.r.zrem(self._k("outbox"), *paid)
            self.r.zrem(self._k("paying"), *paid)
        if not todo:
            return []
        log.warning("sending %d owed message(s) that never reached a queue", len(todo))
        return list(self.send(app, todo))

    def forget_debts(self, job_ids: Iterable[str]) -> None:
        """Drop debts without sending, and stop watching messages in flight (a cancelled sweep owes nothing)."""
        ids = list(job_ids)
        for start in range(0, len(ids), 10_000):
            pipe = self.r.pipeline(transaction=False)
            pipe.zrem(self._k("outbox"), *ids[start : start + 10_000])
            pipe.zrem(self._k("paying"), *ids[start : start + 10_000])
            pipe.zrem(self._k("inflight"), *ids[start : start + 10_000])
            pipe.execute()

    def resend_vanished(
        self, app: Celery, *, older_than_s: float, recheck_s: float = defaults.INFLIGHT_RECHECK_S
    ) -> list[str]:
        """Send again the messages that vanished between the queue and a worker: sent (or last seen on a queue)
        more than ``older_than_s`` ago, on no queue now, their job neither leased nor recorded. Entries still on a
        queue are looked at again after ``recheck_s``; leased or recorded ones leave the set. Returns the ids
        sent again.

        A message that is in kombu's ``unacked`` hash counts as vanished too: a worker that holds it and runs the
        job took its lease within milliseconds of the pop, so one without a lease this late was dropped (its
        worker failed before the lease, with Redis down) and would otherwise wait for the visibility timeout."""
        inflight = self._k("inflight")
        now = self.store.now()
        due = cast("list[str]", self.r.zrangebyscore(inflight, "-inf", now - older_than_s))
        if not due:
            return []
        waiting = self.pending_messages(include_unacked=False)
        later = now + recheck_s - older_than_s
        done: list[str] = []
        wait: dict[str, float] = {}
        vanished: list[str] = []
        for job_id, recorded, held in zip(due, self.store.have_results(due), self.leased(due), strict=True):
            if recorded or held:
                done.append(job_id)
            elif job_id in waiting:
                wait[job_id] = later
            else:
                vanished.append(job_id)
        todo: list[JobEnvelope] = []
        for job_id, envelope in zip(vanished, self.store.envelopes(vanished), strict=True):
            if envelope is None:
                done.append(job_id)
            else:
                todo.append(envelope)
        pipe = self.r.pipeline(transaction=False)
        if done:
            pipe.zrem(inflight, *done)
        if wait:
            pipe.zadd(inflight, wait, xx=True)
        pipe.execute()
        if todo:  # owed again, as by a claim (a failed send below leaves a debt, not a loss); one already owed is
            # its payer's (a submit sending it again right now), not sent a second time from here
            self.r.zadd(self._k("outbox"), dict.fromkeys((e.job_id for e in todo), now), nx=True)
            taken = set(self.take_debts([e.job_id for e in todo]))
            todo = [e for e in todo if e.job_id in taken]
        if not todo:
            return []
        log.warning("sending again %d message(s) that vanished before any worker took their job", len(todo))
        return list(self.send(app, todo))
