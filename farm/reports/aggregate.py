"""From tidy result rows to the report: one row per sweep cell, honest statistics over its repeats.

* :func:`results_frame` — rows (dicts, see :mod:`farm.rows`) → a frame with exactly ``RESULT_COLUMNS``;
  :func:`columns_frame` builds the same frame from columns (what :func:`farm.rowstore.sweep_columns` reads).
* :func:`aggregate` — one row per cell (``CELL_COLUMNS`` + the ``device_name`` that ran it) over the succeeded
  repeats: median, quartiles, mean/std/cv and a bootstrap CI of the median for the steady epoch time and
  throughput, outliers, an ``unstable`` flag, and the speedup over the matching CPU cell with its CI.
* Contended rows (:func:`farm.reports.frames.contended_mask`: another workload or a throttled GPU disturbed the
  measured window) say how busy the machine was, not how fast the job is, so :func:`aggregate`, :func:`ratios`
  and :func:`farm.reports.compare.compare` leave them out of every statistic unless ``include_contended=True``, and
  count them (``n_contended``) so nothing disappears silently.
* :func:`speedups` — the headline table: one row per GPU cell that has a CPU counterpart.
* :func:`write_frame` — CSV / JSON / Markdown / Parquet by the path's suffix.

Everything is vectorized over cells (see :mod:`farm.reports.stats`); 100,000 rows aggregate in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from farm.columns import CELL_COLUMNS, FLOAT_COLUMNS, INT_COLUMNS, RESULT_COLUMNS, aggregated
from farm.reports.frames import HARDWARE_KEY, contended_mask, failed_counts, floats, hardware_keys, sorted_by, succeeded
from farm.reports.stats import MAX_CV, STAT_FIELDS, group_medians, ratio_ci_groups, summarize_groups, too_wide_many

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
    *(f"{m}_{f}" for m in METRICS for f in STAT_FIELDS),
    *(f"{m}_median" for m in MEDIAN_COLUMNS),
    *MODEL_COLUMNS,
    *(f"{m}_max" for m in MAX_COLUMNS),
    "outliers",
    "unstable",
    "contended_cpu_max",
    *SPEEDUP_COLUMNS,
]
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


def _empty_report() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c in GROUP_COLUMNS + INFO_COLUMNS else float) for c in REPORT_COLUMNS}
    )


def aggregate(
    df: pd.DataFrame,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    max_cv: float = MAX_CV,
    include_contended: bool = False,
) -> pd.DataFrame:
    """One row per sweep cell (``CELL_COLUMNS`` + ``hardware_key``) over the rows whose status is
    ``succeeded``; columns are ``REPORT_COLUMNS``.

    Contended repeats (see :func:`farm.reports.frames.contended_mask`) are left out of every statistic, the speedup's
    CPU side included, unless ``include_contended``: a repeat measured while another process used its cores
    reports the machine's load, not the workload's speed.

    * ``n`` — the succeeded repeats (rows) the statistics rest on; the statistics use those with a non-NaN
      value (a 1-epoch job has no steady epoch), so a metric's stats can rest on fewer than ``n`` values.
    * ``n_failed`` — rows of the cell (matched on ``CELL_COLUMNS`` only, whatever device name) that ended
      ``failed``, ``timed_out`` or ``cancelled``. Cells with no succeeded repeat do not appear.
    * ``n_contended`` — succeeded repeats of the cell that were contended, counted whether or not they were left
      out (left out: ``n + n_contended`` repeats succeeded; kept: ``n`` includes them). A cell whose succeeded
      repeats were all contended still appears, with ``n == 0`` and NaN statistics, so it does not read as a
      cell that never ran. ``contended_cpu_max`` — the largest ``contention_cpu`` (others' share of the job's
      cores) among the cell's succeeded repeats, left out or not: why a cell was marked, at a glance.
    * ``<metric>_{median,q1,q3,iqr,mean,std,cv,ci_low,ci_high}`` for ``steady_epoch_s`` and
      ``steady_samples_per_s`` (CI: percentile bootstrap of the median at ``confidence``).
    * ``outliers`` — repeats flagged by the MAD rule on ``steady_samples_per_s``; ``unstable`` —
      :func:`farm.reports.stats.too_wide_many` on ``steady_samples_per_s``.
    * ``speedup_vs_cpu`` (+ CI) — for GPU cells: median throughput over the median throughput of the CPU cell
      equal in every other cell column (CPU repeats of all device names pooled), CI by independent bootstrap of
      both sides. NaN for CPU cells and GPU cells without a CPU counterpart.

    Sorted by workload, device, backend, batch size, the other cell columns, device name.
    """
    missing = [
        c
        for c in [*CELL_COLUMNS, "device_name", "status", *METRICS, "first_epoch_s", "test_accuracy"]
        if c not in df.columns
    ]
    if missing:
        raise ValueError(f"results frame lacks columns: {', '.join(missing)}")
    ok = succeeded(df)
    if ok.empty:
        return _empty_report()
    hw = ok["hardware_key"] if "hardware_key" in ok.columns else pd.Series(np.nan, index=ok.index)
    sw = ok["software_key"] if "software_key" in ok.columns else pd.Series(np.nan, index=ok.index)
    ok = ok.assign(hardware_key=hw.where(hw.notna(), ok["device_name"]), software_key=sw)

    contended = contended_mask(ok)
    used = np.ones(len(ok), dtype=bool) if include_contended else ~contended

    codes: dict[str, tuple[np.ndarray, int]] = {}
    cell = _group_ids(ok, GROUP_COLUMNS, codes)  # every succeeded row, so an all-contended cell keeps its row
    G = int(cell.max()) + 1
    first = np.unique(cell, return_index=True)[1]  # groups are numbered by first appearance
    out = ok.loc[first, GROUP_COLUMNS].reset_index(drop=True)
    out["device_name"] = ok.loc[first, "device_name"].to_numpy()
    # The software the statistics rest on; a cell with nothing left shows what its left-out repeats ran.
    software = _distinct_per_group(ok["software_key"].where(used), cell, G)
    if not used.all():
        every = _distinct_per_group(ok["software_key"], cell, G)
        software = [keys if keys else every[g] for g, keys in enumerate(software)]
    out["software_key"] = [" | ".join(keys) if keys else None for keys in software]
    out["software_keys"] = [len(keys) for keys in software]
    out["n"] = np.bincount(cell[used], minlength=G)

    out["n_failed"] = failed_counts(out, df)
    out["n_contended"] = np.bincount(cell[contended], minlength=G)

    # A left-out repeat's figures become NaN: every statistic below already drops NaNs, so "left out" needs
    # no second code path, and the groups (hence the cells) stay those of every succeeded row.
    def measured(column: str) -> np.ndarray:
        return np.where(used, floats(ok[column]), np.nan)  # a new array: the frame's data stays untouched

    kw: dict[str, Any] = dict(confidence=confidence, n_boot=n_boot, seed=seed)
    summaries = {}
    for m in METRICS:
        summaries[m] = s = summarize_groups(measured(m), cell, G, **kw)
        for f in STAT_FIELDS:
            out[f"{m}_{f}"] = getattr(s, f)
    for col in MEDIAN_COLUMNS:
        out[f"{col}_median"] = group_medians(measured(col), cell, G) if col in ok.columns else np.nan
    for col in MODEL_COLUMNS:
        out[col] = ok.loc[first, col].to_numpy() if col in ok.columns else None
    for col in MAX_COLUMNS:
        out[f"{col}_max"] = _group_max(measured(col), cell, G) if col in ok.columns else np.nan
    sps = summaries["steady_samples_per_s"]
    out["outliers"] = sps.outliers
    out["unstable"] = too_wide_many(sps.cv, sps.median, sps.ci_low, sps.ci_high, max_cv)
    cpu_share = floats(ok["contention_cpu"]) if "contention_cpu" in ok.columns else np.full(len(ok), np.nan)
    out["contended_cpu_max"] = _group_max(cpu_share, cell, G)

    # Speedup: GPU cell vs the pooled CPU repeats sharing every cell column but the device.
    base = _group_ids(ok, BASE_COLUMNS, codes)
    B = int(base.max()) + 1
    is_cpu = ok["device"].eq("cpu").fillna(False).to_numpy(dtype=bool)
    has_cpu = np.zeros(B, dtype=bool)
    has_cpu[base[is_cpu & used]] = True
    cell_base = base[first]
    gpu = np.flatnonzero(out["device"].eq("gpu").fillna(False).to_numpy(dtype=bool) & has_cpu[cell_base])
    values = measured("steady_samples_per_s")
    ratio, low, high = ratio_ci_groups(
        values,
        cell,
        values[is_cpu],
        base[is_cpu],
        np.stack([gpu, cell_base[gpu]], axis=1),
        n_num_groups=G,
        n_den_groups=B,
        **kw,
    )
    for col, v in zip(SPEEDUP_COLUMNS, (ratio, low, high), strict=True):
        out[col] = np.nan
        out.loc[gpu, col] = v

    return sorted_by(out, SORT_COLUMNS)[REPORT_COLUMNS]


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


#: ``by`` values that name the hardware itself: the baseline is then matched *without* the hardware key
#: (and its repeats pooled over whatever hardware ran them), as :func:`aggregate` does for GPU over CPU.
HARDWARE_BY = ("device", "device_name", "hardware_key")
RATIO_COLUMNS = [
    "baseline",
    "metric",
    "n",
    "n_baseline",
    "n_contended",
    "n_contended_baseline",
    "median",
    "baseline_median",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
]


def ratios(
    results_df: pd.DataFrame,
    by: str,
    baseline: Any,
    *,
    metric: str = "steady_samples_per_s",
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    include_contended: bool = False,
) -> pd.DataFrame:
    """ "X over baseline" ratios, e.g. ``ratios(df, "backend", "tensorflow")`` for jax/torch over TensorFlow.

    Takes the *tidy results frame* (:func:`results_frame`), not the report, because the CI needs the repeats.
    Over the ``succeeded`` rows: for each cell (``CELL_COLUMNS`` + hardware key) whose ``by`` value is not
    ``baseline``, the median of ``metric`` over the median of the baseline cell that is identical in every
    other cell column and ran on the same hardware (``hardware_key`` when every row has one, else
    ``device_name``; see :func:`farm.reports.frames.hardware_keys`). When ``by`` is itself the hardware
    (``device``, ``device_name``, ``hardware_key``) the hardware is not matched and the baseline's repeats are
    pooled over whatever ran them — ``ratios(df, "device", "cpu")`` is the report's GPU-over-CPU speedup.

    Values are compared as text, so ``baseline="256"`` finds ``batch_size`` 256. The CI is the percentile
    bootstrap of :func:`farm.reports.stats.ratio_ci` (NaN when either side has fewer than two values). Cells
    without a baseline counterpart are left out. Contended repeats (:func:`farm.reports.frames.contended_mask`)
    are left out of both sides unless ``include_contended``, as in :func:`aggregate`; a cell (or baseline) whose
    repeats were all contended keeps its row with ``n`` (``n_baseline``) 0 and a NaN ratio. Columns: ``CELL_COLUMNS``,
    ``hardware`` (plus ``by`` when it is not a cell column), then ``RATIO_COLUMNS``: the baseline value, the
    metric, ``n``/``n_baseline`` (values of the metric the ratio rests on), ``n_contended``/
    ``n_contended_baseline`` (contended repeats on each side, left out or kept), both medians and ``ratio`` with
    ``ratio_ci_low``/``ratio_ci_high``. For a throughput a ratio above 1 means faster than the baseline; for a
    time (``*_s``) below 1 does.
    """
    allowed = [*CELL_COLUMNS, *(c for c in HARDWARE_BY if c not in CELL_COLUMNS)]
    if by not in allowed:
        raise ValueError(f"cannot take ratios by {by!r}: choose one of {', '.join(allowed)}")
    missing = [c for c in [*CELL_COLUMNS, "status", "device_name", metric] if c not in results_df.columns]
    if missing:
        raise ValueError(f"results frame lacks columns: {', '.join(missing)}")
    extra = [] if by in CELL_COLUMNS else [by]
    columns = [*CELL_COLUMNS, "hardware", *extra, *RATIO_COLUMNS]
    ok = succeeded(results_df)
    if ok.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})

    frame = ok[CELL_COLUMNS].astype(object)
    frame["hardware"] = hardware_keys(ok)[0]
    if by == HARDWARE_KEY and by not in ok.columns:
        frame[by] = frame["hardware"]
    elif by not in CELL_COLUMNS:
        frame[by] = ok[by].astype(object)
    labels = frame[by].map(str)
    is_base = (labels == str(baseline)).to_numpy(dtype=bool)
    if not is_base.any():
        seen = ", ".join(sorted(set(labels)))
        raise ValueError(f"no succeeded row has {by} = {baseline!r} (values seen: {seen})")

    cell = frame.groupby([*CELL_COLUMNS, "hardware", *extra], dropna=False, sort=False).ngroup().to_numpy()
    G = int(cell.max()) + 1
    first = np.unique(cell, return_index=True)[1]
    match = [c for c in CELL_COLUMNS if c != by] + ([] if by in HARDWARE_BY else ["hardware"])
    base = frame.groupby(match, dropna=False, sort=False).ngroup().to_numpy()
    B = int(base.max()) + 1
    has_base = np.zeros(B, dtype=bool)
    has_base[base[is_base]] = True
    cell_base = base[first]
    targets = np.flatnonzero(~is_base[first] & has_base[cell_base])

    contended = contended_mask(ok)
    values = floats(ok[metric]) if include_contended else np.where(contended, np.nan, floats(ok[metric]))
    counted = ~np.isnan(values)
    ratio, low, high = ratio_ci_groups(
        values,
        cell,
        values[is_base],
        base[is_base],
        np.stack([targets, cell_base[targets]], axis=1),
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        n_num_groups=G,
        n_den_groups=B,
    )
    out = frame.loc[first[targets], [*CELL_COLUMNS, "hardware", *extra]].reset_index(drop=True)
    out["baseline"] = str(baseline)
    out["metric"] = metric
    out["n"] = np.bincount(cell[counted], minlength=G)[targets]
    out["n_baseline"] = np.bincount(base[is_base & counted], minlength=B)[cell_base[targets]]
    out["n_contended"] = np.bincount(cell[contended], minlength=G)[targets]
    out["n_contended_baseline"] = np.bincount(base[is_base & contended], minlength=B)[cell_base[targets]]
    out["median"] = group_medians(values, cell, G)[targets]
    out["baseline_median"] = group_medians(values[is_base], base[is_base], B)[cell_base[targets]]
    out["ratio"], out["ratio_ci_low"], out["ratio_ci_high"] = ratio, low, high

    sort = [*(c for c in SORT_COLUMNS if c in CELL_COLUMNS), "hardware"]
    return sorted_by(out, sort)[columns]


# ---------------------------------------------------------------------------------------------------- writing
def _cell_text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{v:.6g}"
    from farm.safe_text import md_escape  # workload names, params, units, errors: strangers' text

    return md_escape(v)


def markdown_table(df: pd.DataFrame) -> str:
    """A plain pipe table (what :func:`write_frame` uses when ``tabulate`` is not installed); every text cell and
    column name escaped (farm.safe_text.md_escape)."""
    from farm.safe_text import md_escape

    cols = [md_escape(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(_cell_text(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_frame(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` by the path's suffix: ``.csv`` (also when there is no suffix), ``.json`` (a list of
    records, NaN → null), ``.md`` (markdown table), ``.parquet`` (needs pyarrow). Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in ("", ".csv"):
        from farm.safe_text import csv_safe  # no text cell a spreadsheet would run as a formula

        csv_safe(df).to_csv(path, index=False)
    elif suffix == ".json":
        df.to_json(path, orient="records", indent=2)
    elif suffix == ".md":
        if importlib.util.find_spec("tabulate") is not None:
            from farm.safe_text import md_escape

            escaped = df.map(lambda v: md_escape(v) if isinstance(v, str) else v)
            text = escaped.rename(columns=md_escape).to_markdown(index=False) + "\n"
        else:
            text = markdown_table(df)
        path.write_text(text, encoding="utf-8")
    elif suffix == ".parquet":
        if importlib.util.find_spec("pyarrow") is None:
            raise RuntimeError(
                f"cannot write {path}: .parquet needs pyarrow (pip install pyarrow); "
                "or write .csv, .json or .md instead"
            )
        frame = df.copy()
        for col in frame.columns[frame.dtypes == np.dtype(object)]:  # e.g. jit_compile mixes True/False and 'auto'
            frame[col] = frame[col].map(lambda v: v if isinstance(v, str) or pd.isna(v) else str(v))
        frame.to_parquet(path, index=False)
    else:
        raise ValueError(f"cannot write {path}: unknown suffix {suffix!r} (use .csv, .json, .md or .parquet)")
    return path
