"""What the report and the comparison both ask of a tidy results frame (see
:func:`farm.reports.aggregate.results_frame`).

:mod:`farm.reports.aggregate` (one sweep: cells, speedups, ratios) and :mod:`farm.reports.compare` (two sweeps,
cell by cell) read the same rows the same way: which rows succeeded, which failed, which were contended, what
hardware ran them, their measurements as floats, and the order their tables are sorted in. Those answers live
here, once, so the two modules cannot drift apart and neither has to import the other.

* :func:`succeeded` / :func:`failed_counts` — the rows the statistics rest on, and the failed repeats per cell.
* :func:`contended_mask` — which rows were *contended* (another workload or a throttled GPU disturbed the
  measured window, see :mod:`workers.contention`): their figures say how busy the machine was, not how fast the
  job is, so reports and comparisons leave them out unless asked to keep them.
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

#: The column that names the hardware a row ran on (present once the rows carry it).
HARDWARE_KEY = "hardware_key"
#: Terminal statuses that count against a cell as a failed repeat.
FAILED_STATUSES = ("failed", "timed_out", "cancelled")
#: What a ``contended`` cell may hold for "yes": a bool from the store, or its text/number read back from a file.
_TRUE = [True, 1, "true", "True", "TRUE", "1"]


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


def sorted_by(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``df`` sorted by ``columns`` (those it has) with :func:`sort_key`, renumbered from 0. A stable sort in
    Python: pandas cannot order a column that mixes bools, text and missing values."""
    cols = [c for c in columns if c in df.columns]
    keys = [tuple(sort_key(v) for v in row) for row in df[cols].itertuples(index=False, name=None)]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return df.iloc[order].reset_index(drop=True)
