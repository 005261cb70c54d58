"""The Celery task: like a web view, it only hands the message to the job executor."""

from __future__ import annotations

from typing import Any

from celery import Celery

from farm.queue import TASK_NAME
from workers.execute import JobExecutor


def register(app: Celery, executor: JobExecutor) -> None:
    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def run_job(payload: Any = None, *args: Any, **kwargs: Any) -> str:
        # Extra arguments mean a message that was not built by ``farm submit``: the executor refuses it.
        if args or kwargs:
            payload = {"payload": payload, "args": args, "kwargs": kwargs}
        return executor.handle(payload)
