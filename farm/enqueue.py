"""Putting job messages on their queues: the one place a farm message is built and published.

Callers never publish on their own: the ledger records a debt in its outbox first (atomically with the job's
state) and calls :func:`publish` through :meth:`farm.ledger.Ledger.send`, which settles what surely went.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from farm.queue import TASK_NAME
from farm.routing import queue_for

if TYPE_CHECKING:
    from celery import Celery

    from farm.job import JobEnvelope

PUBLISH_BATCH = 1000
"""Messages sent to Redis in one pipelined round trip (kombu's publish batches)."""


def job_queue(envelope_or_job: Any) -> str:
    """The queue a job's message goes to (named by the job's requirement tag)."""
    job = getattr(envelope_or_job, "job", envelope_or_job)
    return queue_for(job)


def send_one(app: "Celery", envelope: "JobEnvelope", producer: Any, *, retry: bool = False,
             declare: bool = True) -> None:
    """Put one job on its queue; the Celery task id is the job id.

    Built with Celery's own message API (``app.amqp``) rather than ``send_task``: the same protocol-2 JSON
    message, without per-call routing. ``argsrepr`` is given so Celery does not build a repr of the whole spec
    for the headers. ``declare=False`` skips declaring a queue the producer has already declared.
    """
    queue = job_queue(envelope)
    message = app.amqp.create_task_message(envelope.job_id, TASK_NAME, [envelope.model_dump(mode="json")], {},
                                           argsrepr=f"[job {envelope.job_id}]", kwargsrepr="{}")
    app.amqp.send_task_message(producer, TASK_NAME, message, queue=app.amqp.queues[queue], routing_key=queue,
                               exchange="", retry=retry, declare=None if declare else [])


def publish(app: "Celery", envelopes: list["JobEnvelope"], sent: dict[str, float]) -> None:
    """Send each envelope to its queue, recording in ``sent`` (job id -> time) each one that surely went.

    Where kombu can batch (its Redis transport, without write retries), the messages go PUBLISH_BATCH at a
    time in one pipelined round trip each. A batch that fails counts as not sent as a whole (some of it may
    have reached Redis: a job may then be delivered twice, which the ledger's lease makes harmless, but none is
    lost). Elsewhere messages go one by one.
    """
    declared: set[str] = set()
    with app.producer_or_acquire() as producer:
        if not getattr(producer, "supports_batch_publish", False):
            for env in envelopes:
                queue = job_queue(env)
                at = time.time()
                send_one(app, env, producer, declare=queue not in declared)
                declared.add(queue)
                sent[env.job_id] = at
            return
        for start in range(0, len(envelopes), PUBLISH_BATCH):
            chunk = envelopes[start:start + PUBLISH_BATCH]
            # max_size above what the chunk buffers (a message is one command): kombu never flushes on its own.
            with producer.batch(max_size=2 * len(chunk) + 1) as batch:
                for env in chunk:
                    queue = job_queue(env)
                    send_one(app, env, producer, declare=queue not in declared)
                    declared.add(queue)
                at = time.time()
                batch.flush()
                sent.update(dict.fromkeys((env.job_id for env in chunk), at))
