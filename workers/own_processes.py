"""The farm's own processes on this host that are not above a job: its Redis, when it runs here.

A job counts the CPU of every process that is neither its own nor the farm's as contention
(``workers.contention``). The processes above it (fork server, worker, ``farm run``) it finds itself; the Redis
it cannot, so the worker asks the server for its process id once and names it to its jobs, after checking that
this host's process of that id is a redis-server (a Redis on another host, or in another process namespace,
names a process id that means nothing here).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from farm.store import Store

log = logging.getLogger(__name__)


def is_redis_server(pid: int) -> bool:
    """This host's process ``pid`` is a redis-server."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip().startswith("redis-server")
    except OSError:
        return False


def local_redis(store: Store) -> list[int]:
    """The farm's Redis' process id, in a list, when it runs on this host; empty otherwise or when unknown."""
    try:
        pid = store.server_process_id()
    except redis.RedisError as e:
        log.debug("could not ask Redis for its process id: %s", e)
        return []
    return [pid] if pid is not None and is_redis_server(pid) else []
