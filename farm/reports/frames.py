"""What the report and the comparison both ask of a tidy results frame (see
:func:`farm.reports.aggregate.results_frame`).

:mod:`farm.reports.aggregate` (one sweep: cells, speedups, ratios) and :mod:`farm.reports.compare` (two sweeps,
cell by cell) read the same rows the same way: which rows succeeded, which failed, which were contended, what
hardware ran them, their measurements as floats, and the order their tables are sorted in. Those answers live
here, once, so the two modules cannot drift apart and neither has to import the other.

* :func:`succeeded` / :func:`failed_counts` — the rows the statistics rest on, and the failed repeats per cell.
* :func:`invalid_mask` — which rows are *invalid* (:mod:`farm.validity`: contended, throttled, a clock that
  changed, a steady window too short to time): their figures say how busy or slow-to-settle the machine was,
  not how fast the job is, so reports and comparisons leave them out unless asked to keep them.
  :func:`contended_mask` — which rows were *contended* (another workload or a throttled GPU disturbed the
  measured window, see :mod:`workers.contention`), one kind of invalid row, still counted on its own; rows
  recorded before verdicts existed are judged by it alone.
* :func:`invalid_kinds` / :func:`kinds_text` / :func:`add_kinds` / :func:`invalid_total` — why rows are invalid,
  counted by kind (:func:`farm.validity.kind_of`): ``"2 contended, 1 too short"``.
* :func:`hardware_keys` — the hardware each row ran on, decided jointly over several frames.
* :func:`floats`, :func:`sort_key`, :func:`sorted_by` — measurements as floats, and one sort order for mixed
  types.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import pandas as pd

from farm.columns import CELL_COLUMNS
from farm.validity import kind_of

#: The column that names the hardware a row ran on (present once the rows carry it).
HARDWARE_KEY = "hardware_key"
#: Terminal statuses that count against a cell as a failed repeat.
FAILED_STATUSES = ("failed", "timed_out", "cancelled")
#: What a ``contended`` cell may hold for "yes": a bool from the store, or its text/number read back from a file.
_TRUE = [True, 1, "true", "True", "TRUE", "1"]
#: What a ``valid`` cell may hold for "no", likewise.
_FALSE = [False, 0, "false", "False", "FALSE", "0"]
#: The order kinds are named in (:func:`farm.validity.kind_of`), then any other in the order first seen.
KIND_ORDER = ("contended", "throttled", "clock changed", "too short")
#: The kind of an invalid row that recorded no reason (a file written by hand, or a verdict without one).
UNSTATED = "unstated"


def floats(s: pd.Series) -> np.ndarray:
    """A column's values as a float array: anything that is not a number (None, text) becomes NaN, which every
    statistic drops."""
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def succeeded(df: pd.DataFrame) -> pd.DataFrame:
    """The rows whose status is ``succeeded``, renumbered from 0: only a finished run has figures to trust."""
    if "status" not in df.columns:
        raise ValueError("results frame lacks the status column")
    keep = df["status"].eq("succeeded").fillna(False).to_numpy(dtype=bool)
    return df.loc[keep].reset_index(drop=True)


def failed_counts(cells: pd.DataFrame, df: pd.DataFrame) -> np.ndarray:
    """Per row of ``cells``: rows of ``df`` in the same cell that ended failed, timed out or cancelled.

    Matched on ``CELL_COLUMNS`` alone (missing values too), not the hardware: a job that failed before it ran
    may not know what it would have run on, and its failure still belongs to the cell."""
    bad = df.loc[df["status"].isin(FAILED_STATUSES).fillna(False).to_numpy(dtype=bool), CELL_COLUMNS]
    n = len(cells)
    if bad.empty or n == 0:
        return np.zeros(n, dtype=np.intp)
    both = pd.concat([cells[CELL_COLUMNS].astype(object), bad.astype(object)], ignore_index=True)
    ids = both.groupby(CELL_COLUMNS, dropna=False, sort=False).ngroup().to_numpy()
    return np.bincount(ids[n:], minlength=int(ids.max()) + 1)[ids[:n]]


def contended_mask(df: pd.DataFrame) -> np.ndarray:
    """Per row: was the job's measured window contended? Rows without the column or the value (results recorded
    before the farm measured contention) count as not contended: nothing says otherwise, and leaving every
    older result out would empty old reports."""
    if "contended" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    col = df["contended"]
    if col.dtype == bool:
        return col.to_numpy(dtype=bool)
    return col.isin(_TRUE).to_numpy(dtype=bool)


def invalid_mask(df: pd.DataFrame) -> np.ndarray:
    """Per row: must the repeat be left out of the figures? Where the row has a ``valid`` verdict
    (:mod:`farm.validity`: a bool from the store, or its text/number read back from a file), True when it is
    "no"; where it has none (no column, a missing value: results recorded before verdicts existed), its
    :func:`contended_mask`, the only verdict such a row carries."""
    contended = contended_mask(df)
    if "valid" not in df.columns:
        return contended
    col = df["valid"]
    if col.dtype == bool:
        return ~col.to_numpy(dtype=bool)
    false = col.isin(_FALSE).to_numpy(dtype=bool)
    said = false | col.isin(_TRUE).to_numpy(dtype=bool)
    return np.where(said, false, contended)


def split_reasons(text: str) -> list[str]:
    """The reasons joined with ``"; "`` in an ``invalid_reason`` cell (farm.rows), split again."""
    return [r.strip() for r in text.split("; ") if r.strip()]


def _text(v: Any) -> str:
    """A reason cell as text: empty for a missing value."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def invalid_kinds(df: pd.DataFrame, invalid: np.ndarray) -> list[tuple[str, ...]]:
    """Per row: the kinds of why it is invalid (each once, in ``KIND_ORDER``), empty for a valid row. Read from
    ``invalid_reason``, else (older rows) ``contended_reason``; a contended row that says nothing more is
    ``contended``, any other invalid row without a reason ``unstated``."""
    contended = contended_mask(df)
    out: list[tuple[str, ...]] = [()] * len(df)
    rows = np.flatnonzero(invalid)  # only these are read: a large sweep's valid rows cost nothing
    reasons = (
        df["invalid_reason"].to_numpy(dtype=object)[rows] if "invalid_reason" in df.columns else [None] * len(rows)
    )
    older = (
        df["contended_reason"].to_numpy(dtype=object)[rows] if "contended_reason" in df.columns else [None] * len(rows)
    )
    for i, why, why_busy in zip(rows.tolist(), reasons, older, strict=True):
        text = _text(why) or (_text(why_busy) if contended[i] else "")
        kinds = {kind_of(r) for r in split_reasons(text)} or {"contended" if contended[i] else UNSTATED}
        out[i] = tuple(sorted(kinds, key=_kind_rank))
    return out


def _kind_rank(kind: str) -> tuple[int, str]:
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), kind)


def kinds_text(counts: dict[str, int]) -> str:
    """Counts by kind as a person reads them: ``"2 contended, 1 too short"``; empty when there are none."""
    shown = sorted((k for k, v in counts.items() if v > 0), key=_kind_rank)
    return ", ".join(f"{counts[k]} {k}" for k in shown)


def add_kinds(counts: dict[str, int], text: Any) -> dict[str, int]:
    """``counts`` plus the counts a :func:`kinds_text` says (a report cell's ``invalid_kinds``, perhaps read back
    from a file: a missing value adds nothing). Returns ``counts``."""
    for part in _text(text).split(", "):
        number, _, kind = part.strip().partition(" ")
        if number.isdigit() and kind:
            counts[kind] = counts.get(kind, 0) + int(number)
    return counts


def invalid_total(report: pd.DataFrame) -> tuple[int, str]:
    """A report's invalid repeats in all, and why by kind (``(3, "2 contended, 1 too short")``), summed over its
    cells (``n_invalid``, ``invalid_kinds``); a report from before those columns existed counts its
    ``n_contended``, all of them contended."""
    if "n_invalid" not in report.columns:
        busy = int(pd.to_numeric(report["n_contended"], errors="coerce").fillna(0).sum()) if len(report) else 0
        return (busy, f"{busy} contended" if busy else "") if "n_contended" in report.columns else (0, "")
    total = int(pd.to_numeric(report["n_invalid"], errors="coerce").fillna(0).sum())
    counts: dict[str, int] = {}
    for text in report["invalid_kinds"] if "invalid_kinds" in report.columns else []:
        add_kinds(counts, text)
    return total, kinds_text(counts)


def kinds_by_group(kinds: list[tuple[str, ...]], groups: np.ndarray, n_groups: int) -> list[str]:
    """Per group (``groups``: each row's group number): its rows' kinds counted, as :func:`kinds_text`."""
    counts: list[dict[str, int]] = [{} for _ in range(n_groups)]
    for i in (i for i, row in enumerate(kinds) if row):
        g = int(groups[i])
        for k in kinds[i]:
            counts[g][k] = counts[g].get(k, 0) + 1
    return [kinds_text(c) for c in counts]


def _has_key(df: pd.DataFrame, column: str) -> bool:
    """The frame carries ``column`` and every row has a value in it."""
    return column in df.columns and bool(df[column].notna().all())


def hardware_keys(*frames: pd.DataFrame) -> list[pd.Series]:
    """The hardware each row ran on, one Series per frame, decided jointly so the frames stay comparable:
    ``hardware_key`` when *every* frame has it on every row, else ``device_name`` everywhere (a frame from
    before ``hardware_key`` existed must still match a newer one)."""
    use_key = all(_has_key(f, HARDWARE_KEY) for f in frames)
    column = HARDWARE_KEY if use_key else "device_name"
    out = []
    for f in frames:
        if column not in f.columns:
            raise ValueError(f"results frame lacks {column}")
        out.append(f[column].astype(object).reset_index(drop=True))
    return out


def sort_key(v: Any) -> tuple[Any, ...]:
    """Orders mixed-type values (``jit_compile`` is True/False/'auto'; sample counts may be missing): numbers,
    then text, then anything else by its repr, missing values last."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return (3, "")
    if isinstance(v, numbers.Number):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    return (2, repr(v))


#: What a missing value of a cell column means, where it means something: rows store None for the usual value
#: (one device, a global batch), so that cells keep their keys from before the column existed; reports show and
#: order it as this.
MISSING_MEANS: dict[str, Any] = {"devices_per_job": 1, "batch_scope": "global"}


def sorted_by(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``df`` sorted by ``columns`` (those it has) with :func:`sort_key`, renumbered from 0, a missing value that
    means something (``MISSING_MEANS``) in its place. A stable sort in Python: pandas cannot order a column that
    mixes bools, text and missing values."""
    cols = [c for c in columns if c in df.columns]
    keyed = df[cols].assign(**{c: df[c].astype(object).fillna(v) for c, v in MISSING_MEANS.items() if c in cols})
    keys = [tuple(sort_key(v) for v in row) for row in keyed.itertuples(index=False, name=None)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return df.iloc[order].reset_index(drop=True)
