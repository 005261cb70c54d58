"""Submitting a sweep: record it in the store, then enqueue each job not already queued, running or done.

Idempotent by job id: a job is claimed (its state set to queued) before it is sent, and only the claimer sends
it, so submitting the same sweep twice, or two people submitting it at once, enqueues each job once.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from farm.routing import queue_for
from farm.store import Store

if TYPE_CHECKING:
    from celery import Celery

    from farm.job import JobEnvelope
    from farm.settings import FarmSettings
    from farm.sweep import Sweep

PUBLISH_BATCH = 1000
"""Messages sent to Redis in one pipelined round trip (kombu's publish batches)."""


@dataclass
class SubmitOutcome:
    sweep_id: str
    jobs: int
    enqueued: int
    already: int
    per_queue: dict[str, int] = field(default_factory=dict)
    skipped: int = 0


def plan(sweep: "Sweep") -> dict[str, int]:
    """Jobs per queue, for the dry run."""
    return dict(collections.Counter(queue_for(j) for j in sweep.jobs))


def unserved(sweep: "Sweep", store: Store) -> dict[str, int]:
    """Jobs per queue that no live worker (not stopped for failures) consumes right now."""
    served = {q for w in store.live_workers() if not w.get("quarantined") for q in w.get("queues", [])}
    return {q: n for q, n in plan(sweep).items() if q not in served}


def submit(sweep: "Sweep", settings: "FarmSettings", *, store: Store | None = None,
           accept: Callable[[str], bool] | None = None) -> SubmitOutcome:
    """Enqueue the sweep's jobs; ``accept(queue)`` may leave some queues out (``farm run`` on a CPU-only box)."""
    store = store or Store.from_settings(settings)
    envelopes = sweep.envelopes()
    manifest = {
        "sweep_id": sweep.sweep_id,
        "name": sweep.spec.name,
        "source": sweep.source,
        "spec": sweep.spec.model_dump(mode="json"),
        "jobs": len(envelopes),
        "submitted_at": time.time(),
    }
    store.save_sweep(sweep.sweep_id, manifest, envelopes)
    queues = {e.job_id: queue_for(e.job) for e in envelopes}
    outcome = SubmitOutcome(sweep.sweep_id, len(envelopes), 0, 0)
    wanted = [e for e in envelopes if accept is None or accept(queues[e.job_id])]
    outcome.skipped = len(envelopes) - len(wanted)
    claimed = store.claim_many([(e.job_id, queues[e.job_id]) for e in wanted])
    outcome.already = len(wanted) - len(claimed)
    todo = [e for e in wanted if e.job_id in claimed]
    if not todo:  # everything already queued, running or done: nothing to send, no Celery app
        return outcome
    from farm.queue import make_app  # Celery: imported only to send, not to validate, plan or re-submit

    app = make_app(settings, {queues[e.job_id] for e in todo})
    sent: dict[str, float] = {}
    try:
        publish(app, todo, queues, sent)  # a failure unclaims what was not surely sent
    finally:
        # Nothing half-done: a job claimed but never sent goes back to having no state, so resubmitting sends it.
        store.unclaim(j for j in claimed if j not in sent)
        store.mark_sent(sent)
    for env in todo:
        queue = queues[env.job_id]
        outcome.per_queue[queue] = outcome.per_queue.get(queue, 0) + 1
    outcome.enqueued = len(todo)
    return outcome


def publish(app: "Celery", envelopes: list["JobEnvelope"], queues: dict[str, str], sent: dict[str, float]) -> None:
    """Send each envelope to its queue, recording in ``sent`` (job id -> time) each one that surely went.

    Where kombu can batch (its Redis transport, without write retries), the messages go PUBLISH_BATCH at a
    time in one pipelined round trip each: the same messages, built by Celery and kombu, as one send each.
    A batch that fails counts as not sent as a whole (some of it may have reached Redis: a job may run twice,
    as at-least-once delivery allows, but none is lost). Elsewhere messages go one by one.
    """
    from farm.lifecycle import send

    declared: set[str] = set()
    with app.producer_or_acquire() as producer:
        if not getattr(producer, "supports_batch_publish", False):
            for env in envelopes:
                queue = queues[env.job_id]
                at = time.time()
                send(app, env, queue, producer=producer, retry=False, declare=queue not in declared)
                declared.add(queue)
                sent[env.job_id] = at
            return
        for start in range(0, len(envelopes), PUBLISH_BATCH):
            chunk = envelopes[start:start + PUBLISH_BATCH]
            # max_size above what the chunk buffers (a message is one command): kombu never flushes on its own.
            with producer.batch(max_size=2 * len(chunk) + 1) as batch:
                for env in chunk:
                    queue = queues[env.job_id]
                    send(app, env, queue, producer=producer, retry=False, declare=queue not in declared)
                    declared.add(queue)
                at = time.time()
                batch.flush()
                sent.update(dict.fromkeys((env.job_id for env in chunk), at))
