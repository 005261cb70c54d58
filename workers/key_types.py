"""Keys of the farm's store that hold the wrong Redis type, moved out of a worker's way.

Anyone who can write to the farm's Redis can replace a job's state hash with a string, the ``running`` set with a
list, and so on; every command of the farm on that key then answers ``WRONGTYPE``, and the job would fail on
every worker that takes it, for ever. A worker checks the keys a job's run reads and writes before it runs the
job (one pipelined round trip), and again whenever a write answers ``WRONGTYPE``: a key of the wrong type is
renamed to ``P:quarantined:KEY:MS`` (Redis and the operator keep its data) and the farm goes on as if the key
were absent; the move is recorded where ``farm status`` shows refused messages.

The guarded transport (``workers.poison``) does the same for kombu's own keys (queues, ``unacked``, bindings).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import redis

from farm.errors import escape
from farm.store import Store

log = logging.getLogger("farm.worker")

JOB_KEYS = {
    "job": "string",
    "state": "hash",
    "result": "string",
    "row": "string",
    "history": "list",
    "runs": "list",
    "attempts": "string",
    "gen": "string",
    "lease": "string",
    "cancel": "string",
    "failures": "hash",
}
"""A job's own keys (``P:KIND:JID``) and the type the farm keeps in each."""

FARM_KEYS = {
    "running": "set",
    "outbox": "zset",
    "inflight": "zset",
    "rejected": "list",
    "rejected:count": "string",
    "queues": "set",
    "workers": "zset",
    "rowparts": "hash",
    "sweeps": "zset",
    "reaper": "string",
}
"""The farm's shared keys (``P:NAME``) that a worker reads or writes, and their types."""


def wrong_type(e: BaseException) -> bool:
    """Whether a Redis error reply says a key holds another type (also inside a script's or a pipeline's error)."""
    return isinstance(e, redis.ResponseError) and "WRONGTYPE" in str(e)


def expected_types(store: Store, job_ids: Iterable[str] = ()) -> dict[str, str]:
    """The farm's shared keys and these jobs' keys, with their types."""
    keys = {store.k(*name.split(":")): kind for name, kind in FARM_KEYS.items()}
    for job_id in job_ids:
        keys.update({store.k(part, job_id): kind for part, kind in JOB_KEYS.items()})
    return keys


def repair(store: Store, expected: dict[str, str], report: Callable[[str, str], object]) -> list[str]:
    """Rename each key of ``expected`` that holds another type than the one given (absent keys are fine) and
    ``report(reason, key)`` it; returns the keys moved. Raises what Redis raises (the caller's retry decides)."""
    pipe = store.r.pipeline(transaction=False)
    for key in expected:
        pipe.type(key)
    found = [str(t) for t in pipe.execute()]
    moved = []
    for key, kind in zip(expected, found, strict=True):
        if kind in ("none", expected[key]):
            continue
        target = store.k("quarantined", f"{key}:{int(time.time() * 1000)}")
        try:
            with store.r.pipeline(transaction=True) as tx:
                tx.watch(key)
                if str(tx.type(key)) != kind:
                    continue  # changed meanwhile
                tx.multi()
                tx.rename(key, target)
                tx.execute()
        except redis.WatchError:
            continue
        reason = f"Redis key {escape(key)} holds a {kind}, not the {expected[key]} the farm keeps there: moved to " + (
            escape(target)
        )
        log.error("%s", reason)
        try:
            report(reason, key)
        except Exception as e:  # noqa: BLE001 - the repair stands even if Redis cannot take the note
            log.warning("could not record the repair: %s", e)
        moved.append(key)
    return moved
