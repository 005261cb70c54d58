"""A sweep's jobs by state, counted by Redis and kept a few seconds: what lets the overview show the progress of
every sweep on its page, and a sweep's page its counts, on a farm of 100,000 jobs.

The counts need every job's state. Redis reads them itself: ``SORT_RO list BY nosort GET # GET P:state:*->state``
returns each job id with its state field, one read-only command per 10,000 jobs (about 1.3 ms for 5,000 jobs,
against 25 ms for a pipeline of ``HGET``; ``python -m benchmarks.dashboard_speed`` measures both). A Redis without
``SORT_RO`` (older than 7) or a user the ACL refuses it gets that pipeline instead. :class:`CountCache` keeps each
sweep's counts a few seconds (a settled sweep's longer), counts only the sweeps asked for, one at a time.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis

from farm.result import JobStatus
from farm.rows import NOT_ENQUEUED
from farm.store import Store

#: Jobs whose states one ``SORT_RO`` returns: each command is a few milliseconds of the server's time.
COUNT_CHUNK = 10_000
#: How long a settled sweep's counts are kept (nothing moves there until someone resumes or extends it).
SETTLED_TTL_S = 30.0

TERMINAL = frozenset(s.value for s in JobStatus if s.terminal)
_LAGGING = frozenset({JobStatus.running.value, JobStatus.lost.value})
"""States a job's hash may still say after its result was recorded (``sweep_progress`` trusts the result then)."""


def _text(v: Any) -> str:
    return "" if v is None else str(v)[:200]


@dataclass
class Counts:
    """A sweep's jobs by state (``not_enqueued`` for jobs never sent), as ``farm status`` counts them."""

    total: int
    by_state: dict[str, int]

    def _n(self, *states: str) -> int:
        return sum(self.by_state.get(s, 0) for s in states)

    @property
    def done(self) -> int:
        return self._n(JobStatus.succeeded.value)

    @property
    def failed(self) -> int:
        return self._n(JobStatus.failed.value, JobStatus.timed_out.value)

    @property
    def cancelled(self) -> int:
        return self._n(JobStatus.cancelled.value)

    @property
    def running(self) -> int:
        return self._n(JobStatus.running.value)

    @property
    def queued(self) -> int:
        return self._n(JobStatus.queued.value, JobStatus.lost.value)

    @property
    def not_enqueued(self) -> int:
        return self._n(NOT_ENQUEUED)

    @property
    def finished(self) -> int:
        return self._n(*TERMINAL)

    @property
    def settled(self) -> bool:
        """Nothing is queued or running: the counts move only when someone resumes, submits or extends it."""
        return self.running == 0 and self.queued == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_state": dict(sorted(self.by_state.items())),
            "done": self.done,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "running": self.running,
            "queued": self.queued,
            "not_enqueued": self.not_enqueued,
            "finished": self.finished,
            "settled": self.settled,
        }


class StateReader:
    """Each job's state field of one sweep, read by Redis (``SORT_RO``) or, where it cannot, by a pipeline."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # SORT's GET pattern replaces the first "*": a key prefix holding one (or "->") cannot be written in it.
        self.server_side = "*" not in store.p and "->" not in store.p

    def states(self, sweep_id: str) -> list[tuple[str, str]]:
        """``(job id, state)`` for each job of the sweep, in order; ``""`` for a job without a state hash."""
        key = self.store.k("sweep", sweep_id, "jobs")
        if self.server_side:
            try:
                return self._sorted(key)
            except redis.ResponseError as e:
                if not _no_sort_ro(e):
                    raise
                self.server_side = False  # no SORT_RO (Redis < 7) or the ACL refuses it: read them one by one
        ids = cast("list[str]", self.store.r.lrange(key, 0, -1))
        out: list[tuple[str, str]] = []
        for start in range(0, len(ids), 2000):
            part = ids[start : start + 2000]
            pipe = self.store.r.pipeline(transaction=False)
            for job_id in part:
                pipe.hget(self.store.k("state", job_id), "state")
            replies = pipe.execute(raise_on_error=False)  # a state key of the wrong type reads as no state
            out.extend((j, s if isinstance(s, str) else "") for j, s in zip(part, replies, strict=True))
        return out

    def _sorted(self, key: str) -> list[tuple[str, str]]:
        pattern = self.store.k("state", "*") + "->state"
        command: Callable[..., Any] = self.store.r.execute_command  # unannotated in redis-py: typed here
        n = int(self.store.r.llen(key))
        out: list[tuple[str, str]] = []
        for start in range(0, n, COUNT_CHUNK):
            # SORT_RO by name: redis-py's sort_ro() sends SORT, which a replica or a read-only ACL user refuses.
            args = ("BY", "nosort", "LIMIT", start, COUNT_CHUNK, "GET", "#", "GET", pattern)
            flat = cast("list[str | None]", command("SORT_RO", key, *args))
            out.extend((_text(j), _text(s)) for j, s in zip(flat[0::2], flat[1::2], strict=True))
        return out

    def counts(self, sweep_id: str) -> Counts:
        """The sweep's jobs by state. A job whose hash still says running (or lost) but whose result is recorded
        counts as succeeded, as in ``farm status``: the result is the record. A job list of the wrong type (a
        stranger's key, which a worker moves aside) counts as no job, rather than failing the page."""
        try:
            pairs = self.states(sweep_id)
        except redis.ResponseError as e:
            if "WRONGTYPE" not in str(e):
                raise
            pairs = []
        lagging = [j for j, s in pairs if s in _LAGGING]
        recorded: set[str] = set()
        if lagging:
            have = self.store.have_results(lagging)
            recorded = {j for j, h in zip(lagging, have, strict=True) if h}
        by_state: dict[str, int] = {}
        for job_id, state in pairs:
            s = JobStatus.succeeded.value if job_id in recorded else (state or NOT_ENQUEUED)
            by_state[s] = by_state.get(s, 0) + 1
        return Counts(total=len(pairs), by_state=by_state)


class CountCache:
    """Each sweep's counts, counted at most once per ``live_s`` seconds (``settled_s`` for a settled sweep), one
    sweep at a time whatever the number of browsers watching, and only for the sweeps asked for."""

    def __init__(
        self,
        reader: StateReader,
        *,
        live_s: float,
        settled_s: float = SETTLED_TTL_S,
        size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.live_s, self.settled_s, self.size, self.clock = live_s, max(settled_s, live_s), size, clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Counts, float]] = OrderedDict()

    def get(self, sweep_id: str) -> Counts:
        with self._lock:
            entry = self._entries.get(sweep_id)
            now = self.clock()
            if entry is not None:
                counts, at = entry
                if now - at < (self.settled_s if counts.settled else self.live_s):
                    self._entries.move_to_end(sweep_id)
                    return counts
            counts = self.reader.counts(sweep_id)
            self._entries[sweep_id] = (counts, self.clock())
            self._entries.move_to_end(sweep_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return counts

    def many(self, sweep_ids: list[str]) -> dict[str, Counts]:
        return {sid: self.get(sid) for sid in sweep_ids}


def _no_sort_ro(e: redis.ResponseError) -> bool:
    """Whether Redis refused ``SORT_RO`` itself: unknown (Redis < 7) or not allowed to this user."""
    return isinstance(e, redis.exceptions.NoPermissionError) or "unknown command" in str(e).lower()
