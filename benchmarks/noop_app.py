"""A bare Celery app with a no-op task on the farm's broker: the yardstick for dispatch latency."""

import os
import time

import redis
from celery import Celery

from farm.queue import kombu_url

URL = os.environ["FARM_BROKER_URL"]
app = Celery("noop", broker=kombu_url(URL))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
_client = redis.Redis.from_url(URL)


@app.task(name="noop")
def noop(token: str) -> None:
    # Record when the task started, on the same clock as the sender.
    _client.set(f"noop:{token}", repr(time.time()))
