"""What the dashboard's pages show, read from the store cheaply enough to serve every few seconds from a farm
that holds 100,000 jobs.

What each read costs:

- live workers: the registry's index and entries (``Store.live_workers``), then one ``MGET`` of the envelopes and
  one pipeline of the state hashes of the jobs they run: O(workers);
- queues: the queue names the farm noted (``P:queues``; scanned only for a farm that noted none, then kept a
  minute) and one pipelined ``LLEN`` each; the farm-wide counters (outbox, in flight, running, delivered and not
  acknowledged, refused) in the same round trip;
- sweeps: the index of sweeps (``P:sweeps``, ids and submission times only), the manifests of the page's sweeps
  (one ``MGET``), and their per-state counts (:mod:`farm.dashboard.counts`: counted by Redis, kept a few
  seconds);
- one sweep's jobs: one page of its job list (``LRANGE``), its envelopes and states: never the whole sweep.

Everything read here that a worker or submitter wrote is a stranger's: registry entries and envelopes are read as
plain JSON, field by field, and a value of the wrong shape shows as blank rather than failing the page.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from farm.broker_scan import queue_keys
from farm.dashboard.counts import TERMINAL, CountCache, Counts, StateReader
from farm.job import sweep_name
from farm.queue import is_farm_queue, unacked_keys
from farm.result import JobStatus
from farm.rows import NOT_ENQUEUED
from farm.store import Store

#: Sweeps on one overview page (newest first) and jobs on one page of a sweep.
SWEEPS_PER_PAGE = 50
JOBS_PER_PAGE = 100
#: Queues listed at most (a farm has a handful: one per requirement tag in use).
MAX_QUEUES = 200
#: How long a scanned list of queue names is kept (only for a farm that noted none).
QUEUE_SCAN_TTL_S = 60.0


def _text(v: Any, limit: int = 500) -> str:
    """A stranger's value as text of bounded length ("" for None)."""
    return "" if v is None else str(v)[:limit]


def _int(v: Any) -> int:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return 0


def _float(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x == x else None


def _texts(v: Any) -> list[str]:
    if isinstance(v, dict):
        return [_text(k, 200) for k in v]
    return [_text(x, 200) for x in v] if isinstance(v, list) else []


# --------------------------------------------------------------------------------------------------- overview
@dataclass
class WorkerRow:
    """A live worker and what it runs (from its registry entry and its job's envelope and state)."""

    name: str
    host: str
    queues: list[str]
    backends: list[str]
    quarantined: str
    heartbeat_age_s: float | None
    job_id: str = ""
    sweep_id: str = ""
    workload: str = ""
    device: str = ""
    backend: str = ""
    epoch: int = 0
    epochs: int = 0
    note: str = ""


@dataclass
class QueueRow:
    """One of the farm's queues: messages waiting in it (None: the key is not a list), live workers consuming it."""

    name: str
    waiting: int | None
    consumers: int


@dataclass
class SweepRow:
    """A sweep on the overview: its counts, and the sweep of the same name before it (for a compare link)."""

    sweep_id: str
    name: str
    submitted_at: float | None
    counts: Counts
    previous: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "counts"}, "counts": self.counts.to_json()}


@dataclass
class FarmCounters:
    """Farm-wide figures from a handful of keys: messages owed to a queue (outbox), published and not yet taken
    (in flight), jobs a worker has started (running), deliveries not yet acknowledged, messages refused."""

    outbox: int = 0
    in_flight: int = 0
    running: int = 0
    unacked: int = 0
    refused: int = 0


@dataclass
class Overview:
    """What the overview shows, read at ``read_at`` (the Redis server's clock)."""

    read_at: float
    workers: list[WorkerRow]
    queues: list[QueueRow]
    counters: FarmCounters
    sweeps: list[SweepRow]
    sweep_total: int
    page: int
    pages: int
    queues_left_out: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "read_at": self.read_at,
            "workers": [asdict(w) for w in self.workers],
            "queues": [asdict(q) for q in self.queues],
            "queues_left_out": self.queues_left_out,
            "counters": asdict(self.counters),
            "sweeps": [s.to_json() for s in self.sweeps],
            "sweep_total": self.sweep_total,
            "page": self.page,
            "pages": self.pages,
        }


@dataclass
class SweepIndex:
    """Every sweep id in submission order, with when it was submitted and the sweep of its name before it."""

    ids: list[str]
    submitted: dict[str, float]
    previous: dict[str, str] = field(default_factory=dict)


def sweep_index(store: Store) -> SweepIndex:
    """The sweeps' index (ids and scores only: no manifest is read), and each one's predecessor of its name."""
    pairs = cast("list[tuple[str, float]]", store.r.zrange(store.k("sweeps"), 0, -1, withscores=True))
    ids = [sid for sid, _ in pairs]
    previous: dict[str, str] = {}
    last: dict[str, str] = {}
    for sid in ids:
        name = sweep_name(sid)
        if name in last:
            previous[sid] = last[name]
        last[name] = sid
    return SweepIndex(ids=ids, submitted=dict(pairs), previous=previous)


def page_count(total: int, per_page: int) -> int:
    return max(1, -(-total // per_page))


@dataclass
class JobRow:
    """One job on a sweep's page: its cell, its state and, while it runs, its worker, epoch and heartbeat."""

    job_id: str
    workload: str
    device: str
    backend: str
    batch_size: int
    repeat: int
    state: str
    worker: str
    epoch: int
    epochs: int
    heartbeat_age_s: float | None
    error: str


@dataclass
class SweepDetail:
    """One sweep's page: its counts and one page of its jobs."""

    sweep_id: str
    name: str
    submitted_at: float | None
    counts: Counts
    jobs: list[JobRow]
    page: int
    pages: int
    job_total: int
    previous: str
    read_at: float

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("counts", "jobs")}
        return {**data, "counts": self.counts.to_json(), "jobs": [asdict(j) for j in self.jobs]}


class Reader:
    """The dashboard's reads of one store, with the caches they keep."""

    def __init__(self, store: Store, *, live_s: float) -> None:
        self.store = store
        self.states = StateReader(store)
        self.counts = CountCache(self.states, live_s=live_s)
        self._scanned: tuple[list[str], float] | None = None

    # -- workers ----------------------------------------------------------------------------------------------
    def workers(self, now: float) -> list[WorkerRow]:
        try:
            found = self.store.live_workers()
        except ValueError:  # an entry that is not JSON: read the index's entries one by one, skipping it
            names = cast("list[str]", self.store.r.zrangebyscore(self.store.k("workers"), now, "+inf"))
            found = [e for e in (self.store.worker(n) for n in sorted(names)) if e is not None]
        entries = [w for w in found if isinstance(w, dict)]
        rows = []
        for w in entries:
            beat = _float(w.get("heartbeat_at"))
            rows.append(
                WorkerRow(
                    name=_text(w.get("name"), 200),
                    host=_text(w.get("host"), 200),
                    queues=_texts(w.get("queues")),
                    backends=_texts(w.get("backends")),
                    quarantined=_text(w.get("quarantined") or ""),
                    heartbeat_age_s=None if beat is None else max(0.0, now - beat),
                    job_id=_text(w.get("job") or "", 200),
                )
            )
        busy = [r for r in rows if r.job_id]
        if busy:
            ids = [r.job_id for r in busy]
            envs = cast("list[str | None]", self.store.r.mget([self.store.k("job", j) for j in ids]))
            states = self.store.states(ids)
            for row, raw, st in zip(busy, envs, states, strict=True):
                env = _json_object(raw)
                job = _job_of(env)
                row.sweep_id = _text(env.get("sweep_id"), 200)
                row.workload = _text(job.get("workload"), 200)
                row.device = _text(job.get("device"), 50)
                row.backend = _text(job.get("backend"), 50)
                row.epoch = _int(st.get("epoch"))
                row.epochs = _int(st.get("epochs")) or _int(job.get("epochs"))
                row.note = _text(st.get("note"), 200) if st.get("state") == JobStatus.running.value else ""
        return rows

    # -- queues and counters ----------------------------------------------------------------------------------
    def queue_names(self, workers: list[WorkerRow]) -> list[str]:
        """The farm's queue names: those it noted (scanned, and kept a minute, for a farm that noted none) and
        those a live worker consumes."""
        known = self.store.known_queues()
        if known is None:
            if self._scanned is None or time.monotonic() - self._scanned[1] > QUEUE_SCAN_TTL_S:
                self._scanned = (queue_keys(self.store.r, None, self.store.p), time.monotonic())
            known = self._scanned[0]
        consumed = {q for w in workers for q in w.queues}
        return sorted(q for q in set(known) | consumed if is_farm_queue(q, self.store.p))

    def queues_and_counters(self, workers: list[WorkerRow]) -> tuple[list[QueueRow], int, FarmCounters]:
        names = self.queue_names(workers)
        shown, left_out = names[:MAX_QUEUES], max(0, len(names) - MAX_QUEUES)
        r, k = self.store.r, self.store.k
        pipe = r.pipeline(transaction=False)
        for name in shown:
            pipe.llen(name)
        pipe.zcard(k("outbox"))
        pipe.zcard(k("inflight"))
        pipe.scard(k("running"))
        pipe.hlen(unacked_keys(self.store.p)["unacked_key"])
        pipe.get(k("rejected", "count"))
        pipe.llen(k("rejected"))  # a store written only by older workers keeps the list and no counter
        replies = pipe.execute(raise_on_error=False)
        lengths, tail = replies[: len(shown)], replies[len(shown) :]
        figures = [v if isinstance(v, int) else _int(v) if isinstance(v, str) else 0 for v in tail]
        figures[-2] = figures[-2] or figures[-1]
        figures.pop()
        live = [w for w in workers if not w.quarantined]
        queues = [
            QueueRow(
                name=name,
                waiting=n if isinstance(n, int) else None,  # an error reply: the key is not a list
                consumers=sum(1 for w in live if name in w.queues),
            )
            for name, n in zip(shown, lengths, strict=True)
        ]
        return queues, left_out, FarmCounters(*figures)

    # -- the overview -----------------------------------------------------------------------------------------
    def overview(self, page: int = 1, per_page: int = SWEEPS_PER_PAGE) -> Overview:
        now = self.store.now()
        workers = self.workers(now)
        queues, left_out, counters = self.queues_and_counters(workers)
        index = sweep_index(self.store)
        total = len(index.ids)
        pages = page_count(total, per_page)
        page = min(max(1, page), pages)
        newest = index.ids[::-1][(page - 1) * per_page : page * per_page]
        manifests = self.manifests(newest)
        counts = self.counts.many(newest)
        sweeps = [
            SweepRow(
                sweep_id=sid,
                name=_manifest_name(manifests.get(sid), sid),
                submitted_at=index.submitted.get(sid),
                counts=counts[sid],
                previous=index.previous.get(sid, ""),
            )
            for sid in newest
        ]
        return Overview(now, workers, queues, counters, sweeps, total, page, pages, left_out)

    def manifests(self, sweep_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not sweep_ids:
            return {}
        raws: list[str | None] = []
        for start in range(0, len(sweep_ids), 1000):
            keys = [self.store.k("sweep", s) for s in sweep_ids[start : start + 1000]]
            raws.extend(cast("list[str | None]", self.store.r.mget(keys)))
        return {sid: _json_object(raw) for sid, raw in zip(sweep_ids, raws, strict=True)}

    def named(self, name: str, limit: int) -> tuple[list[str], int]:
        """The sweeps of one name in submission order, the newest ``limit`` of them, and how many there are in
        all: those whose id is ``NAME-DIGEST`` (``farm.job.sweep_name``) or whose manifest gives that name."""
        ids = sweep_index(self.store).ids
        manifests = self.manifests(ids) if ids else {}
        hits = [sid for sid in ids if sweep_name(sid) == name or manifests.get(sid, {}).get("name") == name]
        return hits[-limit:], len(hits)

    # -- one sweep --------------------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str | None:
        """The sweep ``ref`` names: its id, or a unique prefix of it, or its name (the latest of that name)."""
        if self.store.r.zscore(self.store.k("sweeps"), ref) is not None:
            return ref
        return self.store.resolve_sweep(ref) if ref else None

    def sweep(self, sweep_id: str, page: int = 1, per_page: int = JOBS_PER_PAGE) -> SweepDetail:
        index = sweep_index(self.store)
        manifest = self.manifests([sweep_id]).get(sweep_id, {})
        counts = self.counts.get(sweep_id)
        key = self.store.k("sweep", sweep_id, "jobs")
        total = int(self.store.r.llen(key))
        pages = page_count(total, per_page)
        page = min(max(1, page), pages)
        ids = cast("list[str]", self.store.r.lrange(key, (page - 1) * per_page, page * per_page - 1))
        return SweepDetail(
            sweep_id=sweep_id,
            name=_manifest_name(manifest, sweep_id),
            submitted_at=index.submitted.get(sweep_id),
            counts=counts,
            jobs=self.jobs(ids),
            page=page,
            pages=pages,
            job_total=total,
            previous=index.previous.get(sweep_id, ""),
            read_at=self.store.now(),
        )

    def jobs(self, ids: list[str]) -> list[JobRow]:
        if not ids:
            return []
        envs = cast("list[str | None]", self.store.r.mget([self.store.k("job", j) for j in ids]))
        states = self.store.states(ids)
        results = self.store.have_results(ids)
        now = self.store.now()
        rows = []
        for job_id, raw, st, has_result in zip(ids, envs, states, results, strict=True):
            env = _json_object(raw)
            job = _job_of(env)
            state = _text(st.get("state")) or NOT_ENQUEUED
            if has_result and state not in TERMINAL:
                state = JobStatus.succeeded.value
            beat = _float(st.get("heartbeat_at"))
            error = _text(st.get("error"), 2000)
            rows.append(
                JobRow(
                    job_id=job_id,
                    workload=_text(job.get("workload"), 200),
                    device=_text(job.get("device"), 50),
                    backend=_text(job.get("backend"), 50),
                    batch_size=_int(job.get("batch_size")),
                    repeat=_int(job.get("repeat")),
                    state=state,
                    worker=_text(st.get("worker"), 200),
                    epoch=_int(st.get("epoch")),
                    epochs=_int(st.get("epochs")) or _int(job.get("epochs")),
                    heartbeat_age_s=None if beat is None or state != JobStatus.running.value else max(0.0, now - beat),
                    error=error.splitlines()[0][:300] if error else "",
                )
            )
        return rows


def _json_object(raw: str | None) -> dict[str, Any]:
    """A stored JSON object, or {} for a missing or damaged one (a stranger's bytes fail nothing)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _job_of(envelope: dict[str, Any]) -> dict[str, Any]:
    """The job spec inside a stored envelope ({} when it has none of the right shape)."""
    job = envelope.get("job")
    return job if isinstance(job, dict) else {}


def _manifest_name(manifest: dict[str, Any] | None, sweep_id: str) -> str:
    name = (manifest or {}).get("name")
    return _text(name, 200) if isinstance(name, str) and name else sweep_name(sweep_id)
