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
from farm.queue import job_queue
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
    """How many messages workers have refused in all (farm-wide, not only this sweep's queues)."""
    latest_rejection: dict[str, Any] | None = None
    """The newest refusal kept in the store: at, worker, queue, reason, size, raw (an excerpt)."""

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
            "latest_rejection": self.latest_rejection,
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
    results_present = store.have_results(ids)
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
            queue=st.get("queue") or job_queue(job), state=state, worker=st.get("worker", ""),
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
                         **rejections(store))


def rejections(store: Store) -> dict[str, Any]:
    """The total of refused messages and the newest one kept."""
    total, latest = store.rejections()
    return {"rejected_messages": total, "latest_rejection": latest}


def _parse_many(texts: list[str]) -> list[Any]:
    """Many JSON texts parsed in one ``json.loads`` (one pass of the C parser, not one call per text); a text
    that does not parse becomes None."""
    if not texts:
        return []
    try:
        parsed = json.loads("".join(("[", ",".join(texts), "]")))
        if len(parsed) == len(texts):  # a damaged text such as '1,2' would shift every value after it
            return parsed
    except ValueError:
        pass
    out = []
    for text in texts:
        try:
            out.append(json.loads(text))
        except ValueError:
            out.append(None)
    return out


def _table(rows: list[Any], width: int) -> tuple[Any, list[int]]:
    """Parsed rows as a 2-D object array of ``width`` columns, and the indices of rows that are not lists of
    that length (a damaged row: it is rebuilt from its full result instead)."""
    import numpy as np

    try:
        table = np.array(rows, dtype=object) if rows else np.empty((0, width), dtype=object)
    except ValueError:
        table = None
    if table is not None and table.ndim == 2 and table.shape[1] == width:
        return table, []
    table = np.empty((len(rows), width), dtype=object)
    bad = []
    for i, row in enumerate(rows):
        if isinstance(row, list) and len(row) == width:
            for j, v in enumerate(row):
                table[i, j] = v
        else:
            bad.append(i)
    return table, bad


def _read_layouts(raws: list[str | None], widths: dict[str, int]) -> tuple[dict[str, tuple[Any, Any]], list[int]]:
    """Stored rows parsed and grouped by layout: tag → (positions, 2-D object array of the rows, tag column
    included) for the layouts in ``widths`` (tag → row length); and the positions whose row is missing, of
    another layout or damaged."""
    import numpy as np

    has = np.fromiter((r is not None for r in raws), dtype=bool, count=len(raws))
    pos = np.flatnonzero(has)
    missing = np.flatnonzero(~has).tolist()
    rows = _parse_many([r for r in raws if r is not None])
    if not rows:
        return {}, missing
    try:  # the usual case: every row of one known layout
        table = np.array(rows, dtype=object)
    except ValueError:
        table = None
    if table is not None and table.ndim == 2:
        tag = table[0, 0]
        if isinstance(tag, str) and widths.get(tag) == table.shape[1] and bool((table[:, 0] == tag).all()):
            return {tag: (pos, table)}, missing
    del table
    groups: dict[str, tuple[list[int], list[Any]]] = {}
    for p, row in zip(pos.tolist(), rows):
        if isinstance(row, list) and row and isinstance(row[0], str) and row[0] in widths:
            g = groups.setdefault(row[0], ([], []))
            g[0].append(p)
            g[1].append(row)
        else:
            missing.append(p)
    out = {}
    for tag, (where, parsed) in groups.items():
        table, bad = _table(parsed, widths[tag])
        where_arr = np.asarray(where, dtype=np.intp)
        if bad:
            keep = np.ones(len(where), dtype=bool)
            keep[bad] = False
            missing.extend(where_arr[~keep].tolist())
            table, where_arr = table[keep], where_arr[keep]
        out[tag] = (where_arr, table)
    return out, missing


def sweep_columns(store: Store, sweep_id: str) -> dict[str, Any]:
    """One tidy row per job of the sweep, column-wise: ``RESULT_COLUMNS`` → object arrays (numpy) of one
    length, in the sweep's job order. A job with a result has its result's stored row; a job without one has
    its spec and current state; a job whose spec is gone is left out.

    Compact rows (the current layout) cost one MGET, one ``json.loads`` for all of them and one HMGET plus a
    ``json.loads`` for their few distinct shared parts; rows of the first (packed) layout are read alike. Full
    records are parsed only for results whose row is missing, of another layout or damaged, and specs only
    for jobs without a result."""
    import numpy as np

    from farm.result import JobResult
    from farm.rows import COMPACT_FORMAT, OWN_COLUMNS, RESULT_COLUMNS, ROW_FORMAT, SHARED_COLUMNS, spec_row

    ids = store.sweep_job_ids(sweep_id)
    widths = {COMPACT_FORMAT: 2 + len(OWN_COLUMNS), ROW_FORMAT: 1 + len(RESULT_COLUMNS)}
    layouts, missing = _read_layouts(store.raw_rows(ids), widths)
    none = np.empty(0, dtype=np.intp)
    c_pos_arr, compact = layouts.get(COMPACT_FORMAT, (none, np.empty((0, widths[COMPACT_FORMAT]), dtype=object)))
    p_pos_arr, packed = layouts.get(ROW_FORMAT, (none, np.empty((0, widths[ROW_FORMAT]), dtype=object)))

    # Compact rows: [tag, part reference, *OWN_COLUMNS]; the shared columns come from the parts.
    refs: dict[str, int] = {}
    try:
        codes = np.array([refs.setdefault(r, len(refs)) for r in compact[:, 1].tolist()], dtype=np.intp)
    except TypeError:  # a damaged reference (not text): it matches no part
        refs = {}
        codes = np.array([refs.setdefault(str(r), len(refs)) for r in compact[:, 1].tolist()], dtype=np.intp)
    ref_list = list(refs)
    part_raws = store.row_parts(ref_list) if ref_list else []
    found = [k for k, raw in enumerate(part_raws) if raw is not None]
    parts = np.empty((len(ref_list), len(SHARED_COLUMNS)), dtype=object)
    part_ok = np.zeros(len(ref_list), dtype=bool)
    table, bad_parts = _table(_parse_many([part_raws[k] for k in found]), len(SHARED_COLUMNS))
    good = np.setdiff1d(np.arange(len(found)), bad_parts).astype(np.intp)
    found_arr = np.asarray(found, dtype=np.intp)
    parts[found_arr[good]] = table[good]
    part_ok[found_arr[good]] = True
    usable = part_ok[codes]
    if not usable.all():  # a part is gone: those rows are rebuilt from their full results
        missing.extend(c_pos_arr[~usable].tolist())
        compact, codes, c_pos_arr = compact[usable], codes[usable], c_pos_arr[usable]

    # The rest from full records, or from the spec and state of jobs that have no result.
    f_pos: list[int] = []
    f_rows: list[list[Any]] = []
    if missing:
        missing.sort()
        miss_ids = [ids[i] for i in missing]
        results = list(store.raw_results(miss_ids))
        envs = store.envelopes(miss_ids)
        states = store.states(miss_ids)
        for i, job_id, raw, env, st in zip(missing, miss_ids, results, envs, states):
            if raw:
                d = JobResult.model_validate_json(raw).to_row()
            elif env is not None:
                d = {**spec_row(env.job, job_id, sweep_id), "status": st.get("state") or NOT_ENQUEUED}
            else:
                continue
            f_pos.append(i)
            f_rows.append([d.get(c) for c in RESULT_COLUMNS])
    fallback, _ = _table(f_rows, len(RESULT_COLUMNS))

    # Each source's rows go to their place in job order.
    where = np.concatenate([c_pos_arr, p_pos_arr, np.asarray(f_pos, dtype=np.intp)])
    n = where.shape[0]
    rank = np.empty(n, dtype=np.intp)
    rank[np.argsort(where, kind="stable")] = np.arange(n)
    nc, np_ = c_pos_arr.shape[0], p_pos_arr.shape[0]
    c_at, p_at, f_at = rank[:nc], rank[nc:nc + np_], rank[nc + np_:]
    own = {c: 2 + j for j, c in enumerate(OWN_COLUMNS)}
    shared = {c: j for j, c in enumerate(SHARED_COLUMNS)}
    columns: dict[str, Any] = {}
    for j, col in enumerate(RESULT_COLUMNS):
        if col == "sweep_id":
            columns[col] = np.full(n, sweep_id, dtype=object)
            continue
        if nc == n:  # the usual case: every row compact, already in job order
            columns[col] = compact[:, own[col]] if col in own else parts[:, shared[col]][codes]
            continue
        if np_ == n:  # every row of the first layout
            columns[col] = packed[:, 1 + j]
            continue
        out = np.empty(n, dtype=object)
        if nc:
            out[c_at] = compact[:, own[col]] if col in own else parts[:, shared[col]][codes]
        if np_:
            out[p_at] = packed[:, 1 + j]
        if f_at.shape[0]:
            out[f_at] = fallback[:, j]
        columns[col] = out
    return columns


def sweep_rows(store: Store, sweep_id: str) -> list[list[Any]]:
    """:func:`sweep_columns` as rows: one list per job, values in ``RESULT_COLUMNS`` order."""
    from farm.rows import RESULT_COLUMNS

    columns = sweep_columns(store, sweep_id)
    return [list(row) for row in zip(*(columns[c].tolist() for c in RESULT_COLUMNS))]
