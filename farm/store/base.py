"""What every part of the store shares: the client, the key prefix and its naming (:meth:`StoreBase.k`, the
one place a key's name is made), the server's clock, and the batched reads and transactions the parts use."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import redis
from redis.typing import EncodableT, FieldT

from farm import defaults
from farm.clock import ServerClock
from farm.result import JobStatus

T = TypeVar("T")


class StoreBase:
    """The client and the key names. The client decodes replies (``decode_responses=True``), which redis-py's
    types cannot express: they say ``bytes | str``. Replies are cast to ``str`` where they leave the store."""

    def __init__(
        self, client: redis.Redis, prefix: str = defaults.KEY_PREFIX, *, local_clock: Callable[[], float] = time.time
    ) -> None:
        self.r = client
        self.p = prefix
        self.clock = ServerClock(client, local=local_clock)

    def k(self, *parts: str) -> str:
        return ":".join((self.p, *parts))

    def now(self) -> float:
        """The Redis server's time (epoch seconds): every moment that another host compares with its own "now"
        is stamped and read on it, never on this host's clock (see ``farm.clock``)."""
        return self.clock.now()

    def server_process_id(self) -> int | None:
        """The Redis server's process id (its ``INFO server``), for a worker on the same host to tell its jobs
        that process is the farm's own (``workers.own_processes``); None where the server does not say."""
        try:
            return int(self.r.info("server")["process_id"])
        except (KeyError, TypeError, ValueError):
            return None

    def _mget(self, kind: str, job_ids: list[str], chunk: int = 2000) -> Iterator[str | None]:
        """The raw values of ``kind`` for these jobs, in order, fetched ``chunk`` keys per round trip."""
        prefix = self.k(kind, "")
        for part in _chunks(job_ids, chunk):
            yield from cast("list[str | None]", self.r.mget([prefix + j for j in part]))

    def _exist(self, kind: str, job_ids: list[str]) -> list[bool]:
        """Whether each job's ``kind`` key exists, in order, 5,000 a round trip."""
        out: list[bool] = []
        for chunk in _chunks(job_ids, 5000):
            pipe = self.r.pipeline(transaction=False)
            for j in chunk:
                pipe.exists(self.k(kind, j))
            out.extend(bool(n) for n in pipe.execute())
        return out


def _transaction(client: redis.Redis, func: Callable[[redis.client.Pipeline], T], *watches: str) -> T:
    """``client.transaction(func, *watches, value_from_callable=True)``, typed: redis-py declares ``func`` as
    returning None and the result as Any, though with ``value_from_callable`` the result is what ``func``
    returned (on its last try)."""
    none_func = cast("Callable[[redis.client.Pipeline], None]", func)
    return cast("T", client.transaction(none_func, *watches, value_from_callable=True))


def _state_fields(state: JobStatus, **fields: Any) -> dict[FieldT, EncodableT]:
    """A job's state hash fields for ``state`` (None values stored as empty strings), stamped now."""
    return {"state": state.value, "updated_at": time.time(), **{k: ("" if v is None else v) for k, v in fields.items()}}


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
