"""A user's decisions about a whole sweep: cancel it, resume it, forget it.

What happens to one job between runs (leases, attempts, putting back, the outbox) is the ledger's
(``farm.ledger``); this module applies the user's decisions to every job of a sweep, in batches, so a sweep of
tens of thousands of jobs is cancelled or resumed in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from farm import defaults
from farm.job import JobEnvelope, sweep_name
from farm.ledger import Ledger
from farm.queue import job_queue
from farm.result import JobResult, JobStatus
from farm.settings import FarmSettings
from farm.store import Store

if TYPE_CHECKING:
    from celery import Celery

BATCH = 5000
"""Jobs handled per round of reads and writes by cancel and resume."""
FORGET_ATTEMPTS = 5
"""How often ``farm forget`` starts over when sweeps of the same name are saved while it deletes."""


@dataclass
class CancelOutcome:
    cancelled: int
    removed_messages: int
    running: int


def cancel_sweep(store: Store, sweep_id: str) -> CancelOutcome:
    """Stop a sweep: running jobs are ended by their workers (they watch the cancel key), queued ones are taken
    off the queues, and every job without a result is recorded as cancelled."""
    ledger = Ledger(store)
    ledger.mark_cancelled(sweep_id)
    ids = store.sweep_job_ids(sweep_id)
    running = cancelled = 0
    for start in range(0, len(ids), BATCH):
        part = ids[start : start + BATCH]
        running += sum(1 for st in store.states(part) if st.get("state") == JobStatus.running.value)
        todo = [
            JobResult(
                job_id=job_id,
                sweep_id=env.sweep_id,
                job=env.job,
                status=JobStatus.cancelled,
                error="cancelled by `farm cancel`",
            )
            for job_id, env, has in zip(part, store.envelopes(part), store.have_results(part), strict=True)
            if env is not None and not has
        ]
        written = store.record_results(todo)
        # A running job's worker sees the cancel and records its own "cancelled" as this loop runs: it counts
        # too. A job that finished just before it (its result came first) does not.
        beaten = [r.job_id for r, w in zip(todo, written, strict=True) if not w]
        theirs = store.results(beaten) if beaten else []
        cancelled += sum(written) + sum(1 for r in theirs if r is not None and r.status == JobStatus.cancelled)
        ledger.forget_debts(part)
    removed = ledger.withdraw_messages(ids)
    return CancelOutcome(cancelled=cancelled, removed_messages=removed, running=running)


@dataclass
class ResumeOutcome:
    enqueued: int
    succeeded: int
    in_flight: int


def resume_sweep(store: Store, settings: FarmSettings, sweep_id: str, *, contended: bool = False) -> ResumeOutcome:
    """Re-enqueue exactly the jobs without a successful result that are not already on a queue or running:
    after a broker flush, a crash or a cancel. Earlier unsuccessful results move to the job's history.

    With ``contended``, re-enqueue instead only the repeats whose result is marked contended (another
    workload disturbed their measurement), as new attempts; their old results move to the history too, so a
    lab can clean a sweep without running it again whole."""
    ledger = Ledger(store)
    ledger.lift_cancel(sweep_id)
    ids = store.sweep_job_ids(sweep_id)
    pending = ledger.pending_messages(include_unacked=False)
    todo: list[JobEnvelope] = []
    outcome = ResumeOutcome(0, 0, 0)
    for start in range(0, len(ids), BATCH):
        part = ids[start : start + BATCH]
        leased = ledger.leased(part)
        for job_id, env, result, held in zip(part, store.envelopes(part), store.results(part), leased, strict=True):
            if env is None:
                continue
            if contended:
                if result is not None and result.contended:
                    todo.append(env)
                elif result is not None and result.status == JobStatus.succeeded:
                    outcome.succeeded += 1
                continue
            if result is not None and result.status == JobStatus.succeeded:
                outcome.succeeded += 1
                continue
            if result is None and (job_id in pending or held):
                outcome.in_flight += 1
                continue
            todo.append(env)
    store.archive_results([e.job_id for e in todo])
    ledger.reset([e.job_id for e in todo])
    claimed = ledger.claim([(e.job_id, job_queue(e.job, store.p)) for e in todo])
    sendable = [e for e in todo if e.job_id in claimed]
    if sendable:
        from farm.queue import make_app

        ledger.send(make_app(settings, {job_queue(e.job, store.p) for e in sendable}), sendable)
    outcome.enqueued = len(sendable)
    return outcome


@dataclass
class ForgetOutcome:
    deleted: int  # jobs whose keys were deleted
    kept: int  # jobs another sweep of the same name also lists: left as they are
    withdrawn: int  # leftover messages taken off the queues


class SweepBusy(Exception):
    """The sweep still has jobs that may run or record: forgetting it now would lose or resurrect them."""


def forget_sweep(store: Store, sweep_id: str) -> ForgetOutcome:
    """Delete a finished sweep from the store: its manifest and, for each of its jobs that no other sweep lists,
    the envelope, state, result, history and runs. Raises :class:`SweepBusy`, deleting nothing, while any such
    job has no result (queued or running: ``farm cancel`` first) or a live lease (a cancelled job whose worker
    is still stopping it).

    Jobs are identified by their content, sweep name included, so sweeps of the same name can share jobs (and
    their results): those stay, and a sweep of the same name submitted meanwhile makes the deletion start over
    with its jobs set aside (``Store.delete_jobs`` checks a count that saving a sweep increments; submit restores
    an envelope deleted before that). Running it again after an interruption finishes the work; a job's keys go
    in one atomic step. A message for a forgotten job that is still in a worker's hands is dropped by the
    worker, which runs only jobs the store knows (``JobExecutor.handle``)."""
    ledger = Ledger(store)
    ids = store.sweep_job_ids(sweep_id)
    name = sweep_name(sweep_id)
    withdrawn = 0
    for _ in range(FORGET_ATTEMPTS):
        version = store.sweeps_named(name)  # a sweep of this name saved after this stops the deletion
        shared: set[str] = set()
        for other in store.sweep_ids():
            if other != sweep_id and sweep_name(other) == name:
                shared.update(store.sweep_job_ids(other))
        own = [j for j in ids if j not in shared]
        _refuse_if_busy(store, ledger, sweep_id, own)
        ledger.forget_debts(own)
        withdrawn += ledger.withdraw_messages(own) if own else 0
        if store.delete_jobs(own, name=name, version=version):
            store.delete_sweep(sweep_id)
            return ForgetOutcome(deleted=len(own), kept=len(ids) - len(own), withdrawn=withdrawn)
    raise SweepBusy(
        f"sweeps named {name!r} kept being submitted while {sweep_id} was being forgotten; run `farm forget` again"
    )


def _refuse_if_busy(store: Store, ledger: Ledger, sweep_id: str, own: list[str]) -> None:
    """Raise :class:`SweepBusy` if any of these jobs may still run or record."""
    unfinished = leased = 0
    for start in range(0, len(own), BATCH):
        part = own[start : start + BATCH]
        known = store.knows_jobs(part)
        results = store.have_results(part)
        unfinished += sum(1 for k, has in zip(known, results, strict=True) if k and not has)
        leased += sum(ledger.leased(part))
    if unfinished:
        raise SweepBusy(
            f"sweep {sweep_id} has {unfinished} job(s) without a result (queued or running): "
            f"`farm cancel {sweep_id}` first, or let them finish; nothing was deleted"
        )
    if leased:
        raise SweepBusy(
            f"sweep {sweep_id} has {leased} job(s) whose worker is still stopping them: try again in a few "
            "seconds; nothing was deleted"
        )


def reap_lost(store: Store, app: Celery, settings: FarmSettings, reaper: str) -> list[str]:
    """Any worker's housekeeping: put back jobs whose worker stopped renewing its lease, and send messages
    still owed after the outbox's grace period (an interrupted submit, a worker killed while putting a job
    back). One reaper at a time across the farm."""
    return Ledger(store).reap(
        app,
        reaper,
        lease_ttl_s=settings.lease_ttl_s,
        interval_s=settings.reap_interval_s,
        max_attempts=settings.max_attempts,
        outbox_grace_s=defaults.OUTBOX_GRACE_S,
    )
