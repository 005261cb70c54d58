"""From tidy result rows to the report: one row per sweep cell, honest statistics over its repeats.

* :func:`results_frame` — rows (dicts, see :mod:`farm.rows`) → a frame with exactly ``RESULT_COLUMNS``;
  :func:`columns_frame` builds the same frame from columns (what :func:`farm.rowstore.sweep_columns` reads).
* :func:`aggregate` — one row per cell (``CELL_COLUMNS`` + the ``device_name`` that ran it) over the succeeded
  repeats: median, quartiles, mean/std/cv and a bootstrap CI of the median for the steady epoch time and
  throughput, outliers, an ``unstable`` flag, and the speedup over the matching CPU cell with its CI.
* Invalid rows (:func:`farm.reports.frames.invalid_mask`: contended, throttled, a clock that changed, a steady
  window too short to time; :mod:`farm.validity`) say how busy the machine was, not how fast the job is, so
  :func:`aggregate`, :func:`farm.reports.ratios.ratios` and :func:`farm.reports.compare.compare` leave them out of
  every statistic unless ``include_invalid=True``, and count them (``n_invalid``, why in ``invalid_kinds``; the
  contended ones also in ``n_contended``) so nothing disappears silently.
* :func:`speedups` — the headline table: one row per GPU cell that has a CPU counterpart.
* ``Cells``, :func:`cells_of`, :func:`require_columns` and ``SORT_COLUMNS`` are shared with :mod:`farm.reports.ratios`
  (``--ratio-by``); writing a frame to a file is :mod:`farm.reports.tables`.

Everything is vectorized over cells (see :mod:`farm.reports.stats`); 100,000 rows aggregate in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from farm.columns import CELL_COLUMNS, FLOAT_COLUMNS, INT_COLUMNS, RESULT_COLUMNS, aggregated
from farm.reports.frames import (
    contended_mask,
    failed_counts,
    floats,
    invalid_kinds,
    invalid_mask,
    kinds_by_group,
    sorted_by,
    succeeded,
)
from farm.reports.stats import (
    MAX_CV,
    STAT_FIELDS,
    GroupSummaries,
    group_medians,
    ratio_ci_groups,
    summarize_groups,
    too_wide_many,
)

#: A report row's identity: the sweep cell plus the hardware that actually ran it (the hardware key: device
#: name and, for CPUs, the usable cores; rows without a key fall back to the device name).
GROUP_COLUMNS = [*CELL_COLUMNS, "hardware_key"]
#: Shown beside the identity: the device's name and the software the repeats ran on (several keys in one cell
#: mean the cell pools results from different software, which ``farm report`` warns about).
INFO_COLUMNS = ["device_name", "software_key", "software_keys"]
#: The cell minus its device: what a GPU cell and its CPU counterpart share.
BASE_COLUMNS = [c for c in CELL_COLUMNS if c != "device"]
#: The metrics summarized in full (median, quartiles, mean, std, cv, CI of the median).
METRICS = aggregated("stats")
#: Per-cell medians shown beside the full statistics: first epoch, accuracy, inference latency, FLOP/s, tokens/s.
MEDIAN_COLUMNS = aggregated("median")
#: What a cell's model is, the same for all its repeats (the first repeat's value is shown).
MODEL_COLUMNS = aggregated("first")
#: The worst repeat of a cell (peak memory: the headroom a cell needs).
MAX_COLUMNS = aggregated("max")

SPEEDUP_COLUMNS = ["speedup_vs_cpu", "speedup_vs_cpu_ci_low", "speedup_vs_cpu_ci_high"]
REPORT_COLUMNS = [
    *GROUP_COLUMNS,
    *INFO_COLUMNS,
    "n",
    "n_failed",
    "n_contended",
    "n_invalid",
    "invalid_kinds",
    *(f"{m}_{f}" for m in METRICS for f in STAT_FIELDS),
    *(f"{m}_median" for m in MEDIAN_COLUMNS),
    *MODEL_COLUMNS,
    *(f"{m}_max" for m in MAX_COLUMNS),
    "outliers",
    "unstable",
    "ci_half_width_rel",
    "precision_met",
    "contended_cpu_max",
    *SPEEDUP_COLUMNS,
]
#: Report columns that hold text (the rest of a report without cells is float).
_TEXT_COLUMNS = [*GROUP_COLUMNS, *INFO_COLUMNS, "invalid_kinds"]
#: Report sort order: these first, then the remaining cell columns in schema order, then the device name.
SORT_COLUMNS = ["workload", "device", "backend", "batch_size"]
SORT_COLUMNS += [c for c in GROUP_COLUMNS if c not in SORT_COLUMNS]


def results_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The tidy frame: exactly ``RESULT_COLUMNS`` in order; missing keys become NaN/None, unknown keys are
    dropped, ``params`` given as a dict is serialized the way :func:`farm.rows.spec_row` does, and the
    measurement columns are floats."""
    rows = list(rows)
    df = pd.DataFrame.from_records(rows, columns=RESULT_COLUMNS) if rows else pd.DataFrame(columns=RESULT_COLUMNS)
    return _finish(df)


def columns_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """:func:`results_frame` from columns (``RESULT_COLUMNS`` → equal-length sequences, e.g. what
    :func:`farm.rowstore.sweep_columns` returns): the same frame, dtypes included, built column-wise."""
    n = len(columns[RESULT_COLUMNS[0]]) if RESULT_COLUMNS[0] in columns else 0
    data = {}
    float_columns = set(FLOAT_COLUMNS)
    for c in RESULT_COLUMNS:
        col = columns.get(c)
        col = np.full(n, None, dtype=object) if col is None else np.asarray(col, dtype=object)
        if c in float_columns and pd.api.types.infer_dtype(col, skipna=True) in _NUMBERS:
            col = col.copy()
            col[pd.isna(col)] = np.nan  # what pd.to_numeric(..., errors="coerce").astype(float) gives, faster
            col = col.astype(float)
        elif c in _INT_COLUMNS and n and pd.api.types.infer_dtype(col, skipna=False) == "integer":
            with contextlib.suppress(
                OverflowError
            ):  # what inference gives a column of ints, without its per-value checks
                col = col.astype(np.int64)
        data[c] = col
    # infer_objects gives each column the dtype DataFrame.from_records would give the same values.
    return _finish(pd.DataFrame(data, copy=False).infer_objects() if n else pd.DataFrame(columns=RESULT_COLUMNS))


_NUMBERS = ("floating", "integer", "mixed-integer-float", "empty", "boolean")
#: Columns that usually hold only ints; checked, so a column with anything else is inferred as usual.
_INT_COLUMNS = frozenset(INT_COLUMNS)


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    if len(df) and df["params"].dtype == object and df["params"].map(lambda p: isinstance(p, dict)).any():
        df["params"] = df["params"].map(
            lambda p: json.dumps(p, sort_keys=True, separators=(",", ":")) if isinstance(p, dict) else p
        )
    for col in FLOAT_COLUMNS:
        if df[col].dtype != float:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def _group_max(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """The largest non-NaN value of each group (NaN for a group without one)."""
    out = np.full(n_groups, -np.inf)
    has = ~np.isnan(values)
    np.maximum.at(out, groups[has], values[has])
    out[np.isneginf(out)] = np.nan
    return out


def _group_ids(df: pd.DataFrame, columns: list[str], cache: dict[str, tuple[np.ndarray, int]]) -> np.ndarray:
    """``df.groupby(columns, dropna=False, sort=False).ngroup()`` as an array: groups numbered by first
    appearance, missing values a group of their own. Each column is factorized once per ``cache``, so grouping
    again by a subset of the columns costs only the combining."""
    key = np.zeros(len(df), dtype=np.int64)
    size = 1
    for col in columns:
        if col not in cache:
            col_codes, uniques = pd.factorize(df[col], sort=False, use_na_sentinel=False)
            cache[col] = (col_codes.astype(np.int64, copy=False), max(len(uniques), 1))
        col_codes, n = cache[col]
        if size * n >= 2**62:  # renumber the combinations seen so far before the key could overflow
            key, key_uniques = pd.factorize(key, sort=False)
            size = max(len(key_uniques), 1)
        key = key * n + col_codes
        size *= n
    return pd.factorize(key, sort=False)[0]


def _distinct_per_group(values: pd.Series, groups: np.ndarray, n_groups: int) -> list[list[Any]]:
    """The sorted distinct non-missing values of each group (``sorted(set(v.dropna()))`` per group)."""
    value_codes, uniques = pd.factorize(values, sort=True)  # missing values get -1
    has = value_codes >= 0
    k = max(len(uniques), 1)
    pairs = np.unique(groups[has].astype(np.int64) * k + value_codes[has])  # ascending: by group, then value
    out: list[list[Any]] = [[] for _ in range(n_groups)]
    unique_values = list(uniques)
    for g, v in zip((pairs // k).tolist(), (pairs % k).tolist(), strict=True):
        out[g].append(unique_values[v])
    return out


@dataclass(frozen=True)
class Cells:
    """The cells over the succeeded rows: each row's cell number (``ids``, numbered by first appearance), how many
    cells there are (``count``), and each cell's first row (``first``: whose identity and model it shows)."""

    ids: np.ndarray
    count: int
    first: np.ndarray


def cells_of(ids: np.ndarray) -> Cells:
    """The cells of rows numbered ``ids`` (0, 1, ... by first appearance)."""
    return Cells(ids, int(ids.max()) + 1, np.unique(ids, return_index=True)[1])


def _empty_report() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in _TEXT_COLUMNS else float) for c in REPORT_COLUMNS})


def aggregate(
    df: pd.DataFrame,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    max_cv: float = MAX_CV,
    include_invalid: bool = False,
) -> pd.DataFrame:
    """One row per sweep cell (``CELL_COLUMNS`` + ``hardware_key``) over the rows whose status is
    ``succeeded``; columns are ``REPORT_COLUMNS``.

    Invalid repeats (see :func:`farm.reports.frames.invalid_mask`: contended, throttled, too short to time) are
    left out of every statistic, the speedup's CPU side included, unless ``include_invalid``: a repeat measured
    while another process used its cores reports the machine's load, not the workload's speed.

    * ``n`` — the succeeded repeats (rows) the statistics rest on; the statistics use those with a non-NaN
      value (a 1-epoch job has no steady epoch), so a metric's stats can rest on fewer than ``n`` values.
    * ``n_failed`` — rows of the cell (matched on ``CELL_COLUMNS`` only, whatever device name) that ended
      ``failed``, ``timed_out`` or ``cancelled``. Cells with no succeeded repeat do not appear.
    * ``n_invalid`` — succeeded repeats of the cell that were invalid, counted whether or not they were left out
      (left out: ``n + n_invalid`` repeats succeeded; kept: ``n`` includes them); ``invalid_kinds`` — why, by
      kind (``"2 contended, 1 too short"``; empty for none); ``n_contended`` — those of them that were contended.
      A cell whose succeeded repeats were all invalid still appears, with ``n == 0`` and NaN statistics, so it
      does not read as a cell that never ran. ``contended_cpu_max`` — the largest ``contention_cpu`` (others'
      share of the job's cores) among the cell's succeeded repeats, left out or not: why a cell was marked, at a
      glance.
    * ``<metric>_{median,q1,q3,iqr,mean,std,cv,ci_low,ci_high}`` for ``steady_epoch_s`` and
      ``steady_samples_per_s`` (CI: percentile bootstrap of the median at ``confidence``).
    * ``outliers`` — repeats flagged by the MAD rule on ``steady_samples_per_s``; ``unstable`` —
      :func:`farm.reports.stats.too_wide_many` on ``steady_samples_per_s``.
    * ``speedup_vs_cpu`` (+ CI) — for GPU cells: median throughput over the median throughput of the CPU cell
      equal in every other cell column (CPU repeats of all device names pooled), CI by independent bootstrap of
      both sides. NaN for CPU cells and GPU cells without a CPU counterpart.

    Sorted by workload, device, backend, batch size, the other cell columns, device name.
    """
    require_columns(df, [*CELL_COLUMNS, "device_name", "status", *METRICS, "first_epoch_s", "test_accuracy"])
    ok = succeeded(df)
    if ok.empty:
        return _empty_report()
    ok = _with_hardware_and_software_keys(ok)
    invalid = invalid_mask(ok)
    used = np.ones(len(ok), dtype=bool) if include_invalid else ~invalid

    codes: dict[str, tuple[np.ndarray, int]] = {}
    cells = cells_of(_group_ids(ok, GROUP_COLUMNS, codes))  # every succeeded row: an all-invalid cell keeps its row
    out = _cell_identity(ok, cells)
    _add_software(out, ok, cells, used)
    _add_counts(out, df, ok, cells, used, invalid)

    bootstrap: dict[str, Any] = dict(confidence=confidence, n_boot=n_boot, seed=seed)
    sps = _add_statistics(out, ok, cells, used, bootstrap)["steady_samples_per_s"]
    _add_medians_model_and_max(out, ok, cells, used)
    out["outliers"] = sps.outliers
    out["unstable"] = too_wide_many(sps.cv, sps.median, sps.ci_low, sps.ci_high, max_cv)
    _add_precision(out, sps)
    out["contended_cpu_max"] = _group_max(_contention_cpu(ok), cells.ids, cells.count)
    _add_speedup_vs_cpu(out, ok, cells, used, codes, bootstrap)

    return sorted_by(out, SORT_COLUMNS)[REPORT_COLUMNS]


def _add_precision(out: pd.DataFrame, sps: GroupSummaries) -> None:
    """``ci_half_width_rel``: half the width of the CI of the median throughput, over the median (every cell);
    ``precision_met``: for a cell measured to a precision (farm.precision), whether its valid repeats reached the
    target (at least ``precision_min_repeats`` of them, the CI within ``precision_ci``); blank for other cells."""
    with np.errstate(divide="ignore", invalid="ignore"):
        half = (sps.ci_high - sps.ci_low) / 2 / sps.median
    out["ci_half_width_rel"] = half
    target = floats(out["precision_ci"]) if "precision_ci" in out.columns else np.full(len(out), np.nan)
    least = floats(out["precision_min_repeats"]) if "precision_min_repeats" in out.columns else target
    met = (out["n"].to_numpy(dtype=float) >= least) & (half <= target)
    out["precision_met"] = pd.Series(np.where(np.isnan(target), None, met), index=out.index, dtype="boolean")


def require_columns(df: pd.DataFrame, needed: list[str]) -> None:
    """Fail up front, naming every missing column, rather than with a bare KeyError halfway through."""
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(f"results frame lacks columns: {', '.join(missing)}")


def _with_hardware_and_software_keys(ok: pd.DataFrame) -> pd.DataFrame:
    """``ok`` with a ``hardware_key`` on every row and a ``software_key`` column, so grouping and labelling need no
    special cases: rows from before the hardware key existed fall back to their device name, and a frame without
    software keys gets NaN ones."""
    hw = ok["hardware_key"] if "hardware_key" in ok.columns else pd.Series(np.nan, index=ok.index)
    sw = ok["software_key"] if "software_key" in ok.columns else pd.Series(np.nan, index=ok.index)
    return ok.assign(hardware_key=hw.where(hw.notna(), ok["device_name"]), software_key=sw)


def _cell_identity(ok: pd.DataFrame, cells: Cells) -> pd.DataFrame:
    """One row per cell, in cell-number order: its group columns and the device name of its first repeat."""
    out = ok.loc[cells.first, GROUP_COLUMNS].reset_index(drop=True)
    out["device_name"] = ok.loc[cells.first, "device_name"].to_numpy()
    return out


def _add_software(out: pd.DataFrame, ok: pd.DataFrame, cells: Cells, used: np.ndarray) -> None:
    """``software_key`` (the distinct keys, joined) and ``software_keys`` (how many) of the software the statistics
    rest on; a cell with nothing left shows what its left-out repeats ran, so it is not blank."""
    software = _distinct_per_group(ok["software_key"].where(used), cells.ids, cells.count)
    if not used.all():
        every = _distinct_per_group(ok["software_key"], cells.ids, cells.count)
        software = [keys if keys else every[g] for g, keys in enumerate(software)]
    out["software_key"] = [" | ".join(keys) if keys else None for keys in software]
    out["software_keys"] = [len(keys) for keys in software]


def _add_counts(
    out: pd.DataFrame, df: pd.DataFrame, ok: pd.DataFrame, cells: Cells, used: np.ndarray, invalid: np.ndarray
) -> None:
    """``n``, ``n_failed``, ``n_contended``, ``n_invalid`` and ``invalid_kinds``: how many repeats the statistics
    rest on, and what was not used, and why."""
    out["n"] = np.bincount(cells.ids[used], minlength=cells.count)
    out["n_failed"] = failed_counts(out, df)
    out["n_contended"] = np.bincount(cells.ids[contended_mask(ok)], minlength=cells.count)
    out["n_invalid"] = np.bincount(cells.ids[invalid], minlength=cells.count)
    out["invalid_kinds"] = kinds_by_group(invalid_kinds(ok, invalid), cells.ids, cells.count)


def _measured(ok: pd.DataFrame, used: np.ndarray, column: str) -> np.ndarray:
    """A column's figures with every left-out repeat's turned NaN. Every statistic already drops NaNs, so "left
    out" needs no second code path, and the groups (hence the cells) stay those of every succeeded row. A new
    array: the frame's data stays untouched."""
    return np.where(used, floats(ok[column]), np.nan)


def _add_statistics(
    out: pd.DataFrame, ok: pd.DataFrame, cells: Cells, used: np.ndarray, bootstrap: dict[str, Any]
) -> dict[str, GroupSummaries]:
    """``<metric>_<field>`` for each of ``METRICS`` and ``STAT_FIELDS``; returns each metric's summaries (the
    outliers and the stability verdict are read from them)."""
    summaries = {}
    for m in METRICS:
        summaries[m] = s = summarize_groups(_measured(ok, used, m), cells.ids, cells.count, **bootstrap)
        for f in STAT_FIELDS:
            out[f"{m}_{f}"] = getattr(s, f)
    return summaries


def _add_medians_model_and_max(out: pd.DataFrame, ok: pd.DataFrame, cells: Cells, used: np.ndarray) -> None:
    """The lighter per-cell figures: medians of ``MEDIAN_COLUMNS``, the first repeat's ``MODEL_COLUMNS`` and the
    worst repeat of ``MAX_COLUMNS``. A column the frame lacks (results from before it existed) is left blank."""
    for col in MEDIAN_COLUMNS:
        out[f"{col}_median"] = (
            group_medians(_measured(ok, used, col), cells.ids, cells.count) if col in ok.columns else np.nan
        )
    for col in MODEL_COLUMNS:
        out[col] = ok.loc[cells.first, col].to_numpy() if col in ok.columns else None
    for col in MAX_COLUMNS:
        out[f"{col}_max"] = (
            _group_max(_measured(ok, used, col), cells.ids, cells.count) if col in ok.columns else np.nan
        )


def _contention_cpu(ok: pd.DataFrame) -> np.ndarray:
    """Each repeat's ``contention_cpu`` (others' share of the job's cores), left out or not; NaN for rows from
    before it was measured."""
    return floats(ok["contention_cpu"]) if "contention_cpu" in ok.columns else np.full(len(ok), np.nan)


def _add_speedup_vs_cpu(
    out: pd.DataFrame,
    ok: pd.DataFrame,
    cells: Cells,
    used: np.ndarray,
    codes: dict[str, tuple[np.ndarray, int]],
    bootstrap: dict[str, Any],
) -> None:
    """``SPEEDUP_COLUMNS``: each GPU cell's throughput over the pooled CPU repeats sharing every cell column but the
    device (NaN where there are none, and for CPU cells)."""
    base = _group_ids(ok, BASE_COLUMNS, codes)
    n_bases = int(base.max()) + 1
    is_cpu = ok["device"].eq("cpu").fillna(False).to_numpy(dtype=bool)
    has_cpu = np.zeros(n_bases, dtype=bool)
    has_cpu[base[is_cpu & used]] = True
    cell_base = base[cells.first]
    gpu = np.flatnonzero(out["device"].eq("gpu").fillna(False).to_numpy(dtype=bool) & has_cpu[cell_base])
    values = _measured(ok, used, "steady_samples_per_s")
    ratio, low, high = ratio_ci_groups(
        values,
        cells.ids,
        values[is_cpu],
        base[is_cpu],
        np.stack([gpu, cell_base[gpu]], axis=1),
        n_num_groups=cells.count,
        n_den_groups=n_bases,
        **bootstrap,
    )
    for col, v in zip(SPEEDUP_COLUMNS, (ratio, low, high), strict=True):
        out[col] = np.nan
        out.loc[gpu, col] = v


def speedups(report_df: pd.DataFrame) -> pd.DataFrame:
    """The headline: one row per GPU cell with a CPU counterpart.

    Columns: workload, params, backend, batch_size, any other cell column that varies among these rows,
    device_name, ``cpu_samples_per_s_median`` (of the pooled CPU counterpart), ``gpu_samples_per_s_median``,
    ``speedup_vs_cpu`` and its CI. The CPU median is recovered as gpu median / speedup (exact up to rounding),
    since the report keeps CPU medians per device name and the speedup pools them.
    """
    sel = report_df.loc[
        report_df["device"].eq("gpu").fillna(False).to_numpy(dtype=bool)
        & report_df["speedup_vs_cpu"].notna().to_numpy()
    ]
    head = ["workload", "params", "backend", "batch_size"]
    extra = [
        c for c in CELL_COLUMNS if c not in head and c != "device" and sel[c].astype(str).nunique(dropna=False) > 1
    ]
    out = sel[[*head, *extra, "device_name"]].copy()
    gpu = sel["steady_samples_per_s_median"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["cpu_samples_per_s_median"] = gpu / sel["speedup_vs_cpu"].to_numpy(dtype=float)
    out["gpu_samples_per_s_median"] = gpu
    for col in SPEEDUP_COLUMNS:
        out[col] = sel[col].to_numpy(dtype=float)
    return out.reset_index(drop=True)
