"""The registries: live workers (entries expiring unless their heartbeat renews them, and an index of them) and
the queue names that hold, or may hold, farm messages."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, cast

from farm import defaults
from farm.store.base import StoreBase


class Registry(StoreBase):
    """Live workers and the farm's queues."""

    def register_worker(self, name: str, info: dict[str, Any], ttl_s: float = defaults.WORKER_TTL_S) -> None:
        """The worker's registry entry (its info, expiring unless renewed) and its place in the registry's index
        (``P:workers``, scored by when the entry expires), in one round trip. The index lets ``farm workers``
        read the live workers in O(workers) whatever the size of the farm's history; entries that expired an
        hour ago leave it here. Scored and stamped on the server's clock: a reader on another host compares them
        with its own "now", and a worker whose host clock is off must not look dead (or immortal) to it."""
        now = self.now()
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.k("worker", name), json.dumps({**info, "heartbeat_at": now}), px=int(ttl_s * 1000))
        pipe.zadd(self.k("workers"), {name: now + ttl_s})
        pipe.zremrangebyscore(self.k("workers"), "-inf", now - 3600)
        pipe.execute()

    def unregister_worker(self, name: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(self.k("worker", name))
        pipe.zrem(self.k("workers"), name)
        pipe.execute()

    def worker(self, name: str) -> dict[str, Any] | None:
        """The named worker's registry entry, live or not yet expired; None when it has none (or holds something
        that is not a worker's entry, which its next heartbeat replaces)."""
        raw = self.r.get(self.k("worker", name))
        try:
            entry = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        return entry if isinstance(entry, dict) else None

    def live_workers(self) -> list[dict[str, Any]]:
        """Every live worker's entry, by name. From the registry's index; a Redis that has none (its workers all
        predate it) is scanned for entries instead. Expiries are on the server's clock (:meth:`register_worker`),
        and so is the "now" they are compared with."""
        index = self.k("workers")
        names = cast("list[str]", self.r.zrangebyscore(index, self.now(), "+inf"))
        if names or self.r.exists(index):
            keys = [self.k("worker", n) for n in sorted(names)]
        else:
            keys = sorted(self.r.scan_iter(match=self.k("worker", "*"), count=1000))
        if not keys:
            return []
        return [json.loads(v) for v in self.r.mget(keys) if v]

    # -- the farm's queues ------------------------------------------------------------------------------------
    def note_queues(self, queues: Iterable[str]) -> None:
        """Remember queue names that hold, or may hold, farm messages (``P:queues``): every queue a job is
        published to and every queue a worker consumes. Looking for a job's message then reads those queues
        instead of scanning all of Redis' keys, which grow with the farm's history."""
        names = sorted(set(queues))
        if names:
            self.r.sadd(self.k("queues"), *names)

    def known_queues(self) -> list[str] | None:
        """The queues noted so far, or None when none were ever noted (data written before the farm noted them:
        scan for them instead)."""
        names = cast("set[str]", self.r.smembers(self.k("queues")))
        return sorted(names) if names else None
