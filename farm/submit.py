"""Submitting a sweep: record it in the store, then enqueue each job not already queued, running or done.

Idempotent by job id: a job is claimed (its state set to queued) before it is sent, and only the claimer sends
it, so submitting the same sweep twice, or two people submitting it at once, enqueues each job once.
"""

from __future__ import annotations

import collections
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from farm import defaults
from farm.errors import FarmUnavailable
from farm.ledger import Ledger
from farm.queue import job_queue
from farm.settings import KERAS_BACKENDS, mask_url
from farm.store import Store

if TYPE_CHECKING:
    from celery import Celery

    from farm.job import JobEnvelope
    from farm.settings import FarmSettings
    from farm.sweep import Sweep

PUBLISH_BATCH = 1000
"""Jobs claimed and sent per round: an interrupted submit leaves at most this many messages owed at once."""


@dataclass
class SubmitOutcome:
    sweep_id: str
    jobs: int
    enqueued: int
    already: int
    per_queue: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    repaired: int = 0  # messages an interrupted earlier submit of this sweep still owed, sent now


def plan(sweep: Sweep, key_prefix: str = defaults.KEY_PREFIX) -> dict[str, int]:
    """Jobs per queue (of the farm with ``key_prefix``), for the dry run."""
    return dict(collections.Counter(job_queue(j, key_prefix) for j in sweep.jobs))


def unserved(sweep: Sweep, store: Store) -> dict[str, int]:
    """Jobs per queue that no live worker (not stopped for failures) consumes right now with the job's Keras
    backend. Jobs whose queue is served, but only by workers without their backend, are counted under the queue
    and the backend: ``farm.cpu (jax backend)``."""
    workers = [w for w in store.live_workers() if not w.get("quarantined")]
    served = {q for w in workers for q in w.get("queues", [])}
    with_backend = {(q, b) for w in workers for q in w.get("queues", []) for b in offered(w)}
    missing: collections.Counter[str] = collections.Counter()
    for job in sweep.jobs:
        queue = job_queue(job, store.p)
        if queue not in served:
            missing[queue] += 1
        elif (queue, job.backend) not in with_backend:
            missing[f"{queue} ({job.backend} backend)"] += 1
    return dict(missing)


def offered(worker: dict[str, Any]) -> tuple[str, ...]:
    """The Keras backends a live worker offers, from its registry entry (``backends``: name -> version); a
    worker that does not say (an older one) is taken to offer them all, as it did before it could say."""
    backends = worker.get("backends")
    return tuple(backends) if isinstance(backends, dict) else KERAS_BACKENDS


def submit(
    sweep: Sweep, settings: FarmSettings, *, store: Store | None = None, accept: Callable[[str], bool] | None = None
) -> SubmitOutcome:
    """Enqueue the sweep's jobs; ``accept(queue)`` may leave some queues out (``farm run`` on a CPU-only box).

    Interruptible at any point (SIGKILL of this process, Redis dying mid-way): each job is claimed with a debt
    in the ledger's outbox in the same atomic step, and the debt is settled only once its message went. Running
    the same submit again sends exactly the owed messages that are on no queue; so does any worker's reaper,
    after a grace period, if nobody submits again.
    """
    store = store or Store.from_settings(settings)
    envelopes = sweep.envelopes()
    manifest = {
        "sweep_id": sweep.sweep_id,
        "name": sweep.spec.name,
        "source": sweep.source,
        "spec": sweep.spec.model_dump(mode="json"),
        "jobs": len(envelopes),
        "submitted_at": store.now(),  # the server's clock: `farm status` on another host counts from it
    }
    queues = {e.job_id: job_queue(e.job, store.p) for e in envelopes}
    outcome = SubmitOutcome(sweep.sweep_id, len(envelopes), 0, 0)
    wanted = [e for e in envelopes if accept is None or accept(queues[e.job_id])]
    outcome.skipped = len(envelopes) - len(wanted)
    try:
        store.save_sweep(sweep.sweep_id, manifest, envelopes)
        return _send_all(settings, store, wanted, queues, outcome)
    except Exception as e:
        if not _lost_broker(e):
            raise
        raise FarmUnavailable(
            f"lost Redis at {mask_url(settings.broker_url)} while submitting ({outcome.enqueued} of "
            f"{len(wanted)} jobs sent): {str(e).splitlines()[0][:200]}. Nothing is lost: run the same `farm "
            "submit` again when Redis is back and it sends exactly the missing messages."
        ) from None


def _lost_broker(e: BaseException) -> bool:
    """Whether ``e`` means the connection to Redis went away (redis-py's or kombu's way of saying it)."""
    import redis

    if isinstance(e, (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, ConnectionError)):
        return True
    kombu_errors = sys.modules.get("kombu.exceptions")  # loaded exactly when something was sent through kombu
    return kombu_errors is not None and isinstance(e, (kombu_errors.BatchPublishError, kombu_errors.OperationalError))


def _send_all(
    settings: FarmSettings, store: Store, wanted: list[JobEnvelope], queues: dict[str, str], outcome: SubmitOutcome
) -> SubmitOutcome:
    """Claim and send ``wanted`` a batch at a time, then pay what earlier interrupted submits still owe."""
    ledger = Ledger(store)
    app = None
    for start in range(0, len(wanted), PUBLISH_BATCH):
        part = wanted[start : start + PUBLISH_BATCH]
        claimed = ledger.claim([(e.job_id, queues[e.job_id]) for e in part])
        outcome.already += len(part) - len(claimed)
        todo = [e for e in part if e.job_id in claimed]
        if not todo:
            continue
        store.restore_envelopes(todo)  # a concurrent `farm forget` of a same-name sweep may have taken some
        if app is None:
            app = _app(settings, queues, wanted)
        sent = ledger.send(app, todo)  # raises if Redis went away: the unsent stay owed, not lost
        for env in todo:
            queue = queues[env.job_id]
            outcome.per_queue[queue] = outcome.per_queue.get(queue, 0) + 1
        outcome.enqueued += len(sent)
    # An earlier submit of this sweep that was interrupted left debts: pay them now (only those on no queue).
    owed = ledger.debts([e.job_id for e in wanted])
    if owed:
        repaired = ledger.pay_outbox(app or _app(settings, queues, wanted), job_ids=owed)
        outcome.repaired = len(repaired)
        for job_id in repaired:
            outcome.per_queue[queues[job_id]] = outcome.per_queue.get(queues[job_id], 0) + 1
        outcome.already -= outcome.repaired
        outcome.enqueued += outcome.repaired
    return outcome


def _app(settings: FarmSettings, queues: dict[str, str], envelopes: list[JobEnvelope]) -> Celery:
    from farm.queue import make_app  # Celery: imported only to send, not to validate, plan or re-submit

    return make_app(settings, {queues[e.job_id] for e in envelopes})
