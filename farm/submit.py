"""Submitting a sweep: record it in the store, then enqueue each job not already queued, running or done.

Idempotent by job id: a job is claimed (its state set to queued) before it is sent, and only the claimer sends
it, so submitting the same sweep twice, or two people submitting it at once, enqueues each job once.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Callable

from farm.lifecycle import send
from farm.queue import make_app
from farm.routing import queue_for
from farm.settings import FarmSettings
from farm.store import Store
from farm.sweep import Sweep


@dataclass
class SubmitOutcome:
    sweep_id: str
    jobs: int
    enqueued: int
    already: int
    per_queue: dict[str, int] = field(default_factory=dict)
    skipped: int = 0


def plan(sweep: Sweep) -> dict[str, int]:
    """Jobs per queue, for the dry run."""
    return dict(collections.Counter(queue_for(j) for j in sweep.jobs))


def unserved(sweep: Sweep, store: Store) -> dict[str, int]:
    """Jobs per queue that no live worker (not stopped for failures) consumes right now."""
    served = {q for w in store.live_workers() if not w.get("quarantined") for q in w.get("queues", [])}
    return {q: n for q, n in plan(sweep).items() if q not in served}


def submit(sweep: Sweep, settings: FarmSettings, *, store: Store | None = None,
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
    app = make_app(settings, {queues[e.job_id] for e in todo})
    sent: dict[str, float] = {}
    try:
        with app.producer_or_acquire() as producer:
            for env in todo:
                queue = queues[env.job_id]
                sent[env.job_id] = time.time()
                send(app, env, queue, producer=producer, retry=False)  # a failure unclaims the rest
                outcome.per_queue[queue] = outcome.per_queue.get(queue, 0) + 1
                outcome.enqueued += 1
    finally:
        # Nothing half-done: a job claimed but never sent goes back to having no state, so resubmitting sends it.
        store.unclaim(j for j in claimed if j not in sent)
        store.mark_sent(sent)
    return outcome
