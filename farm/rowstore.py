"""Tidy rows as the store keeps them, and read back column-wise for reports.

Reports read one row per job, not the full result: parsing 100,000 full records (a pydantic validation each)
takes far longer than the report itself. So beside each result the store keeps a *compact row*
(:func:`compact_row`), written in the same transaction: the values a run measured, and a reference to a
*row part* holding the values many rows share (the sweep cell, the worker, hardware and software that ran it),
stored once per distinct combination. :func:`sweep_columns` reads a sweep's rows back with a handful of round
trips and one ``json.loads`` per kind, straight into columns.

The full result stays the truth: a row that is missing, of an unknown layout (``COMPACT_FORMAT`` names the
layout, so changing the columns changes it) or damaged, or whose part is gone, is rebuilt from the full record.

Light: numpy is imported only when rows are read (the store imports this module to write them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from farm.columns import RESULT_COLUMNS, SHARED_COLUMNS
from farm.result import JobResult
from farm.rows import NOT_ENQUEUED, result_row, spec_row

if TYPE_CHECKING:
    import numpy as np

    from farm.job import JobEnvelope

# SHARED_COLUMNS (farm.columns): the columns many rows share — the sweep cell, how the job ended, and the worker,
# hardware and software that ran it. A compact row stores them once per distinct combination (a "row part",
# content-addressed) and refers to it; what each run measured (and its error text, often unique) stays in the row.
#: The columns a compact row carries itself (``sweep_id`` is left out: the reader knows the sweep it reads).
OWN_COLUMNS = [c for c in RESULT_COLUMNS if c not in SHARED_COLUMNS and c != "sweep_id"]

COMPACT_FORMAT = "c" + hashlib.sha256((",".join(SHARED_COLUMNS) + "|" + ",".join(OWN_COLUMNS)).encode()).hexdigest()[:8]
"""Identifies the compact row layout (:func:`compact_row`); a stored row of an unknown layout is rebuilt from
its full result."""

#: A compact row's length: the layout tag, the part reference, then ``OWN_COLUMNS``.
COMPACT_WIDTH = 2 + len(OWN_COLUMNS)


# ---------------------------------------------------------------------------------------------------- writing
def _dumps(values: list[Any]) -> str:
    return json.dumps(values, separators=(",", ":"), default=str)


def row_part(row: dict[str, Any]) -> tuple[str, str]:
    """The row's shared values as stored (JSON, ``SHARED_COLUMNS`` order) and their reference: a hash of that
    text, so equal parts are stored once and writing one again changes nothing."""
    part = _dumps([row.get(c) for c in SHARED_COLUMNS])
    return hashlib.sha256(part.encode()).hexdigest()[:16], part


def compact_row(row: dict[str, Any]) -> tuple[str, str, str]:
    """A row as stored: ``(row JSON, part reference, part JSON)``. The row is
    ``[COMPACT_FORMAT, part reference, *OWN_COLUMNS values]`` — no keys, and only the values this run measured
    (about 40 % of every column's values, and half as many to parse); the part holds the ``SHARED_COLUMNS``
    values (see :func:`row_part`)."""
    ref, part = row_part(row)
    return _dumps([COMPACT_FORMAT, ref, *(row.get(c) for c in OWN_COLUMNS)]), ref, part


# ---------------------------------------------------------------------------------------------------- reading
class RowSource(Protocol):
    """What :func:`sweep_columns` reads from a store (:class:`farm.store.Store` is one). A protocol, not the
    store's class: the store imports this module to write rows, and must not be imported back."""

    def sweep_job_ids(self, sweep_id: str) -> list[str]: ...

    def raw_rows(self, job_ids: list[str]) -> list[str | None]: ...

    def row_parts(self, refs: list[str]) -> list[str | None]: ...

    def raw_results(self, job_ids: list[str]) -> Iterable[str | None]: ...

    def envelopes(self, job_ids: list[str]) -> list[JobEnvelope | None]: ...

    def states(self, job_ids: list[str]) -> list[dict[str, str]]: ...


def _parse_many(texts: list[str]) -> list[Any]:
    """Many JSON texts parsed in one ``json.loads`` (one pass of the C parser, not one call per text); a text
    that does not parse becomes None."""
    if not texts:
        return []
    try:
        parsed: list[Any] = json.loads("".join(("[", ",".join(texts), "]")))
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


def _table(rows: list[Any], width: int) -> tuple[np.ndarray, list[int]]:
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


def _compact_rows(raws: list[str | None]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The stored rows that are compact, parsed: their positions, and a 2-D object array of them (tag column
    included); and the positions whose row is missing, of another layout or damaged."""
    import numpy as np

    has = np.fromiter((r is not None for r in raws), dtype=bool, count=len(raws))
    pos = np.flatnonzero(has)
    missing = np.flatnonzero(~has).tolist()
    rows = _parse_many([r for r in raws if r is not None])
    try:  # the usual case: every row compact
        table = np.array(rows, dtype=object) if rows else None
    except ValueError:
        table = None
    if (
        table is not None
        and table.ndim == 2
        and table.shape[1] == COMPACT_WIDTH
        and bool((table[:, 0] == COMPACT_FORMAT).all())
    ):
        return pos, table, missing
    del table
    where: list[int] = []
    kept: list[Any] = []
    for p, row in zip(pos.tolist(), rows, strict=True):
        if isinstance(row, list) and row and isinstance(row[0], str) and row[0] == COMPACT_FORMAT:
            where.append(p)
            kept.append(row)
        else:
            missing.append(p)
    table, bad = _table(kept, COMPACT_WIDTH)
    where_arr = np.asarray(where, dtype=np.intp)
    if bad:
        keep = np.ones(len(where), dtype=bool)
        keep[bad] = False
        missing.extend(where_arr[~keep].tolist())
        table, where_arr = table[keep], where_arr[keep]
    return where_arr, table, missing


def sweep_columns(source: RowSource, sweep_id: str) -> dict[str, Any]:
    """One tidy row per job of the sweep, column-wise: ``RESULT_COLUMNS`` → object arrays (numpy) of one
    length, in the sweep's job order. A job with a result has its result's stored row; a job without one has
    its spec and current state; a job whose spec is gone is left out.

    Compact rows cost one MGET, one ``json.loads`` for all of them and one HMGET plus a ``json.loads`` for their
    few distinct shared parts. Full records are parsed only for results whose row is missing, of another
    layout or damaged, and specs only for jobs without a result."""
    import numpy as np

    ids = source.sweep_job_ids(sweep_id)
    c_pos, compact, missing = _compact_rows(source.raw_rows(ids))

    # Compact rows: [tag, part reference, *OWN_COLUMNS]; the shared columns come from the parts.
    refs: dict[str, int] = {}
    try:
        codes = np.array([refs.setdefault(r, len(refs)) for r in compact[:, 1].tolist()], dtype=np.intp)
    except TypeError:  # a damaged reference (not text): it matches no part
        refs = {}
        codes = np.array([refs.setdefault(str(r), len(refs)) for r in compact[:, 1].tolist()], dtype=np.intp)
    ref_list = list(refs)
    part_raws = source.row_parts(ref_list) if ref_list else []
    found = [k for k, raw in enumerate(part_raws) if raw is not None]
    parts = np.empty((len(ref_list), len(SHARED_COLUMNS)), dtype=object)
    part_ok = np.zeros(len(ref_list), dtype=bool)
    table, bad_parts = _table(_parse_many([raw for raw in part_raws if raw is not None]), len(SHARED_COLUMNS))
    good = np.setdiff1d(np.arange(len(found)), bad_parts).astype(np.intp)
    found_arr = np.asarray(found, dtype=np.intp)
    parts[found_arr[good]] = table[good]
    part_ok[found_arr[good]] = True
    usable = part_ok[codes]
    if not usable.all():  # a part is gone: those rows are rebuilt from their full results
        missing.extend(c_pos[~usable].tolist())
        compact, codes, c_pos = compact[usable], codes[usable], c_pos[usable]

    # The rest from full records, or from the spec and state of jobs that have no result.
    f_pos: list[int] = []
    f_rows: list[list[Any]] = []
    if missing:
        missing.sort()
        miss_ids = [ids[i] for i in missing]
        results = list(source.raw_results(miss_ids))
        envs = source.envelopes(miss_ids)
        states = source.states(miss_ids)
        for i, job_id, raw, env, st in zip(missing, miss_ids, results, envs, states, strict=True):
            if raw:
                d = result_row(JobResult.model_validate_json(raw))
            elif env is not None:
                d = {**spec_row(env.job, job_id, sweep_id), "status": st.get("state") or NOT_ENQUEUED}
            else:
                continue
            f_pos.append(i)
            f_rows.append([d.get(c) for c in RESULT_COLUMNS])
    fallback, _ = _table(f_rows, len(RESULT_COLUMNS))

    # Each source's rows go to their place in job order.
    where = np.concatenate([c_pos, np.asarray(f_pos, dtype=np.intp)])
    n = where.shape[0]
    rank = np.empty(n, dtype=np.intp)
    rank[np.argsort(where, kind="stable")] = np.arange(n)
    nc = c_pos.shape[0]
    c_at, f_at = rank[:nc], rank[nc:]
    own = {c: 2 + j for j, c in enumerate(OWN_COLUMNS)}
    shared = {c: j for j, c in enumerate(SHARED_COLUMNS)}
    columns: dict[str, Any] = {}
    for j, col in enumerate(RESULT_COLUMNS):
        if col == "sweep_id":
            columns[col] = np.full(n, sweep_id, dtype=object)
            continue
        stored = compact[:, own[col]] if col in own else parts[:, shared[col]][codes]
        if nc == n:  # the usual case: every row compact, already in job order
            columns[col] = stored
            continue
        out = np.empty(n, dtype=object)
        if nc:
            out[c_at] = stored
        if f_at.shape[0]:
            out[f_at] = fallback[:, j]
        columns[col] = out
    return columns
