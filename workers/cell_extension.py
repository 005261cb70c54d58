"""A cell measured to a precision grows here: when one of its repeats is about to be recorded, the worker judges
the cell (farm.precision) with this result counted and adds the repeats it still needs.

Run before the result is recorded, so that no crash can leave a cell short: a worker that dies in between has
not recorded its job either, which then runs again elsewhere and judges the cell again. Each added repeat is a
job with a deterministic id (the cell's spec with the next repeat index), stored and appended to its sweep in one
atomic step (:meth:`farm.store.Store.add_jobs`) and claimed through the outbox like a submitted job
(:meth:`farm.ledger.Ledger.claim`), so two workers judging one cell at once add each repeat once, and a message
that is never sent is sent by the reaper. Jobs of the cell that exist but were never claimed (a crash between the
two steps) are claimed on the next judgement.

What counts, and when a cell stops, is :mod:`farm.cell_verdict`'s (``farm run`` reads the same verdict).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from farm.cell_verdict import cell_verdict
from farm.job import JobEnvelope, JobSpec
from farm.precision import Verdict
from farm.queue import job_queue
from farm.result import JobResult

if TYPE_CHECKING:
    from celery import Celery

    from farm.ledger import Ledger
    from farm.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extension:
    """What a judgement did: the verdict, and the ids of the repeats it added and sent."""

    verdict: Verdict
    added: list[str]
    sent: list[str]


def repeat_of(job: JobSpec, repeat: int) -> JobSpec:
    """The same cell's job at another repeat index (its id follows from the spec)."""
    return JobSpec.model_validate({**job.model_dump(), "repeat": repeat})


def cell_jobs(store: Store, job: JobSpec) -> list[str]:
    """The ids of the cell's jobs that exist, in repeat order: the repeats the sweep started with and those added
    since, which are contiguous from 0 (each is added only after the ones before it)."""
    assert job.precision is not None
    ids = [repeat_of(job, k).job_id if k != job.repeat else job.job_id for k in range(job.precision.most_jobs)]
    known = store.knows_jobs(ids)
    return [job_id for job_id, k in zip(ids, known, strict=True) if k]


def extend_cell(store: Store, ledger: Ledger, app: Celery, envelope: JobEnvelope, result: JobResult) -> Extension:
    """Judge the cell of ``result`` (not recorded yet) and add, store, claim and send the repeats it needs."""
    job = envelope.job
    precision = job.precision
    assert precision is not None
    ids = cell_jobs(store, job)
    others = list(store.raw_results([job_id for job_id in ids if job_id != envelope.job_id]))  # one round trip
    results = [JobResult.model_validate_json(raw) for raw in others if raw] + [result]
    pending = sum(1 for raw in others if not raw)
    verdict = cell_verdict(results, precision)
    wanted = max(verdict.more - pending, 0)
    room = precision.most_jobs - len(ids)
    new = [
        JobEnvelope.for_job(repeat_of(job, k), envelope.sweep_id, envelope.time_limit_s)
        for k in range(len(ids), len(ids) + min(wanted, room))
    ]
    added = store.add_jobs(envelope.sweep_id, new)
    # Claim every job of the cell without a state (claim skips the rest): the new ones, and any an earlier
    # judgement added but did not live to claim.
    queue = job_queue(job, store.p)
    claimed = ledger.claim([(job_id, queue) for job_id in [*ids, *added] if job_id != envelope.job_id])
    todo = [e for e in store.envelopes(sorted(claimed)) if e is not None]
    sent = list(ledger.send(app, todo)) if todo else []
    if added or sent:
        log.info("cell of %s: %s; added %d repeat(s)", envelope.job_id, verdict.reason, len(added))
    return Extension(verdict, added, sent)
