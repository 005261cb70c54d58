"""Looking inside the broker: which jobs have a message waiting (or in flight), and removing a sweep's.

kombu's Redis transport keeps each queue as a list of JSON messages whose ``headers.id`` is the Celery task id
(the farm sets it to the job id), and messages delivered but not yet acknowledged in the ``unacked`` hash.
``farm resume`` uses this to re-enqueue exactly the jobs that have no message anywhere; ``farm cancel`` to take
a sweep's queued messages off the queues.
"""

from __future__ import annotations

import json
from typing import Iterable, Iterator

import redis

from farm.routing import QUEUE_PREFIX

UNACKED_KEY = "unacked"


def _task_id(raw: str | bytes) -> str | None:
    try:
        return json.loads(raw)["headers"]["id"]
    except (ValueError, KeyError, TypeError):
        return None


def queue_keys(client: redis.Redis) -> list[str]:
    keys = []
    for key in client.scan_iter(match=f"{QUEUE_PREFIX}*", count=1000):
        name = key.decode() if isinstance(key, bytes) else key
        if client.type(key) in (b"list", "list"):
            keys.append(name)
    return sorted(keys)


def _list_entries(client: redis.Redis, key: str, page: int = 5000) -> Iterator[str | bytes]:
    length = client.llen(key)
    for start in range(0, length, page):
        yield from client.lrange(key, start, start + page - 1)


def pending_job_ids(client: redis.Redis, *, include_unacked: bool = True) -> set[str]:
    """Job ids with a message on a farm queue (and, with ``include_unacked``, delivered and not yet
    acknowledged: a delivery to a worker that died stays there until the visibility timeout)."""
    ids: set[str] = set()
    for key in queue_keys(client):
        ids.update(i for i in map(_task_id, _list_entries(client, key)) if i)
    if not include_unacked:
        return ids
    for raw in client.hvals(UNACKED_KEY):
        try:
            message = json.loads(raw)[0]
            ids.add(message["headers"]["id"])
        except (ValueError, KeyError, TypeError, IndexError):
            continue
    return ids


def remove_messages(client: redis.Redis, job_ids: Iterable[str]) -> int:
    """Take the queued messages of these jobs off every farm queue; returns how many were removed."""
    wanted = set(job_ids)
    removed = 0
    for key in queue_keys(client):
        for raw in list(_list_entries(client, key)):
            if _task_id(raw) in wanted:
                removed += int(client.lrem(key, 1, raw))
    return removed
