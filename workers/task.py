"""The Celery task: like a web view, it only hands the message to the job executor."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from farm.queue import TASK_NAME
from workers.execute import JobExecutor

log = logging.getLogger("farm.worker")


def register(app: Celery, executor: JobExecutor) -> None:
    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def run_job(self: Any, payload: Any = None, *args: Any, **kwargs: Any) -> str:
        # Extra arguments mean a message that was not built by ``farm submit``: the executor refuses it.
        if args or kwargs:
            payload = {"payload": payload, "args": args, "kwargs": kwargs}
        outcome = executor.handle(payload)
        if executor.quarantined and not executor.stopped_consuming:
            # A bad machine stops taking jobs: cancel this worker's consumers (processed once this task returns),
            # so the queues' jobs go to other workers. The registry shows why; the housekeeping thread consumes
            # again once the quarantine's cool-down is over (``workers.worker.resume_consuming``).
            executor.stopped_consuming = True
            for queue in app.amqp.queues:
                app.control.cancel_consumer(queue, destination=[self.request.hostname])
            log.error("no longer consuming: %s", executor.quarantined)
        return outcome
