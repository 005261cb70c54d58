"""A sweep's progress as ``farm status`` shows it: each job's state and epoch, counts, and jobs nobody can run.

A queued job whose queue no live worker consumes is called out plainly (e.g. GPU jobs on a farm that has
only CPU workers right now): they wait for such a worker to come.
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field
from typing import Any

from farm.result import JobStatus
from farm.routing import queue_for
from farm.store import Store

TERMINAL_STATES = frozenset(s.value for s in JobStatus if s.terminal)
NOT_ENQUEUED = "not_enqueued"
"""A job of the sweep that is not on any queue (``farm run`` skipped it: no such device on this machine)."""


@dataclass
class JobProgress:
    job_id: str
    workload: str
    device: str
    backend: str
    repeat: int
    queue: str
    state: str
    worker: str = ""
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    accuracy: float | None = None
    heartbeat_age_s: float | None = None
    error: str = ""


@dataclass
class SweepProgress:
    sweep_id: str
    name: str
    jobs: list[JobProgress]
    counts: dict[str, int] = field(default_factory=dict)
    unserved_queues: dict[str, int] = field(default_factory=dict)
    live_workers: int = 0
    quarantined: dict[str, str] = field(default_factory=dict)
    rejected_messages: int = 0

    @property
    def total(self) -> int:
        return len(self.jobs)

    @property
    def finished(self) -> int:
        return sum(n for s, n in self.counts.items() if s in TERMINAL_STATES)

    @property
    def done(self) -> bool:
        return self.finished == self.total

    def settled(self) -> bool:
        """Nothing can move any more right now: every job ended or waits for a worker that does not exist."""
        waiting = sum(self.unserved_queues.values()) + self.counts.get(NOT_ENQUEUED, 0)
        return self.finished + waiting == self.total

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep_id": self.sweep_id, "name": self.name, "total": self.total, "finished": self.finished,
            "counts": self.counts, "unserved_queues": self.unserved_queues, "live_workers": self.live_workers,
            "quarantined_workers": self.quarantined, "rejected_messages": self.rejected_messages,
            "jobs": [j.__dict__ for j in self.jobs],
        }


def _num(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def sweep_progress(store: Store, sweep_id: str) -> SweepProgress:
    manifest = store.sweep_manifest(sweep_id) or {}
    ids = store.sweep_job_ids(sweep_id)
    envelopes = store.envelopes(ids)
    states = store.states(ids)
    results_present = [bool(x) for x in store.r.mget([store.k("result", j) for j in ids])] if ids else []
    workers = store.live_workers()
    served = {q for w in workers if not w.get("quarantined") for q in w.get("queues", [])}
    now = time.time()
    jobs: list[JobProgress] = []
    for job_id, env, st, has_result in zip(ids, envelopes, states, results_present):
        if env is None:
            continue
        job = env.job
        state = st.get("state") or NOT_ENQUEUED
        if has_result and state not in TERMINAL_STATES:
            state = JobStatus.succeeded.value  # the result is the record; a state hash can lag behind it
        hb = _num(st.get("heartbeat_at"))
        jobs.append(JobProgress(
            job_id=job_id, workload=job.workload, device=job.device, backend=job.backend, repeat=job.repeat,
            queue=st.get("queue") or queue_for(job), state=state, worker=st.get("worker", ""),
            epoch=int(_num(st.get("epoch")) or 0), epochs=int(_num(st.get("epochs")) or job.epochs),
            loss=_num(st.get("loss")), accuracy=_num(st.get("accuracy")),
            heartbeat_age_s=(now - hb) if hb else None, error=(st.get("error") or "").splitlines()[0][:200]
            if st.get("error") else "",
        ))
    counts = dict(collections.Counter(j.state for j in jobs))
    waiting = (JobStatus.queued.value, JobStatus.lost.value)
    unserved = collections.Counter(j.queue for j in jobs if j.state in waiting and j.queue not in served)
    return SweepProgress(sweep_id=sweep_id, name=manifest.get("name", ""), jobs=jobs, counts=counts,
                         unserved_queues=dict(unserved), live_workers=len(workers),
                         quarantined={w["name"]: w["quarantined"] for w in workers if w.get("quarantined")},
                         rejected_messages=int(store.r.llen(store.k("rejected"))))


def _packed_rows(store: Store, ids: list[str]) -> list[list[Any] | None]:
    """The stored rows of these jobs, parsed in one ``json.loads`` per 5,000 (None where a job has none)."""
    from farm.rows import ROW_FORMAT

    out: list[list[Any] | None] = []
    raws = list(store.raw_rows(ids))
    present = [r for r in raws if r]
    parsed = iter(json.loads("[" + ",".join(present) + "]") if present else [])
    for raw in raws:
        row = next(parsed) if raw else None
        out.append(row[1:] if isinstance(row, list) and row and row[0] == ROW_FORMAT else None)
    return out


def sweep_rows(store: Store, sweep_id: str) -> list[list[Any]]:
    """One tidy row per job of the sweep, as values in ``RESULT_COLUMNS`` order: its result's stored row where
    it has one, else its spec and current state.

    Rows are stored beside results, so this is one MGET and one ``json.loads`` per few thousand jobs; full
    records are parsed only for results whose row is missing or of an older layout, and specs only for jobs
    without a result."""
    from farm.result import JobResult
    from farm.rows import RESULT_COLUMNS, spec_row

    ids = store.sweep_job_ids(sweep_id)
    rows = _packed_rows(store, ids)
    missing = [i for i, r in enumerate(rows) if r is None]
    if missing:
        miss_ids = [ids[i] for i in missing]
        raws = list(store.raw_results(miss_ids))
        envs = store.envelopes(miss_ids)
        states = store.states(miss_ids)
        for i, job_id, raw, env, st in zip(missing, miss_ids, raws, envs, states):
            if raw:
                d = JobResult.model_validate_json(raw).to_row()
            elif env is not None:
                d = {**spec_row(env.job, job_id, sweep_id), "status": st.get("state") or NOT_ENQUEUED}
            else:
                continue
            rows[i] = [d.get(c) for c in RESULT_COLUMNS]
    sweep_col = RESULT_COLUMNS.index("sweep_id")
    out = []
    for row in rows:
        if row is not None:
            row[sweep_col] = sweep_id
            out.append(row)
    return out
