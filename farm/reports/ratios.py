"""``--ratio-by``: "X over baseline" ratios within one sweep, e.g. jax and torch over TensorFlow on the same cells.

* :func:`ratios` — per cell, the median of a metric over the median of its baseline counterpart (the cell equal
  in every other cell column, on the same hardware unless the ratio is taken by the hardware itself), with a
  bootstrap CI of the ratio; columns ``RATIO_COLUMNS`` after the cell's identity.
* ``HARDWARE_BY`` — the ``by`` values that name the hardware, whose baseline is pooled over whatever ran it.

It reads the tidy results frame, not the report, because a CI needs the repeats; it shares the report's cell
numbering, column check and sort order (:mod:`farm.reports.aggregate`), and is vectorized the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from farm.columns import CELL_COLUMNS
from farm.reports.aggregate import SORT_COLUMNS, Cells, cells_of, require_columns
from farm.reports.frames import HARDWARE_KEY, contended_mask, floats, hardware_keys, invalid_mask, sorted_by, succeeded
from farm.reports.stats import group_medians, ratio_ci_groups

#: ``by`` values that name the hardware itself: the baseline is then matched *without* the hardware key
#: (and its repeats pooled over whatever hardware ran them), as :func:`farm.reports.aggregate.aggregate` does for
#: GPU over CPU.
HARDWARE_BY = ("device", "device_name", "hardware_key")
RATIO_COLUMNS = [
    "baseline",
    "metric",
    "n",
    "n_baseline",
    "n_contended",
    "n_contended_baseline",
    "n_invalid",
    "n_invalid_baseline",
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
    include_invalid: bool = False,
) -> pd.DataFrame:
    """ "X over baseline" ratios, e.g. ``ratios(df, "backend", "tensorflow")`` for jax/torch over TensorFlow.

    Takes the *tidy results frame* (:func:`farm.reports.aggregate.results_frame`), not the report, because the CI needs
    the repeats. Over the ``succeeded`` rows: for each cell (``CELL_COLUMNS`` + hardware key) whose ``by`` value is not
    ``baseline``, the median of ``metric`` over the median of the baseline cell that is identical in every other cell
    column and ran on the same hardware (``hardware_key`` when every row has one, else ``device_name``; see
    :func:`farm.reports.frames.hardware_keys`). When ``by`` is itself the hardware (``device``, ``device_name``,
    ``hardware_key``) the hardware is not matched and the baseline's repeats are pooled over whatever ran them —
    ``ratios(df, "device", "cpu")`` is the report's GPU-over-CPU speedup.

    Values are compared as text, so ``baseline="256"`` finds ``batch_size`` 256. The CI is the percentile
    bootstrap of :func:`farm.reports.stats.ratio_ci` (NaN when either side has fewer than two values). Cells
    without a baseline counterpart are left out. Invalid repeats (:func:`farm.reports.frames.invalid_mask`) are
    left out of both sides unless ``include_invalid``, as in :func:`farm.reports.aggregate.aggregate`; a cell (or
    baseline) whose repeats were all invalid keeps its row with ``n`` (``n_baseline``) 0 and a NaN ratio. Columns:
    ``CELL_COLUMNS``, ``hardware`` (plus ``by`` when it is not a cell column), then ``RATIO_COLUMNS``: the baseline
    value, the metric, ``n``/``n_baseline`` (values of the metric the ratio rests on), ``n_contended``/
    ``n_contended_baseline`` (contended repeats on each side, left out or kept), ``n_invalid``/``n_invalid_baseline``
    (invalid repeats, contended ones among them, likewise), both medians and ``ratio`` with
    ``ratio_ci_low``/``ratio_ci_high``. For a throughput a ratio above 1 means faster than the baseline; for a time
    (``*_s``) below 1 does.
    """
    _check_ratio_request(results_df, by, metric)
    identity = [*CELL_COLUMNS, "hardware", *([] if by in CELL_COLUMNS else [by])]
    columns = [*identity, *RATIO_COLUMNS]
    ok = succeeded(results_df)
    if ok.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})

    frame = _ratio_frame(ok, by)
    is_base = _baseline_rows(frame, by, baseline)
    cells = cells_of(frame.groupby(identity, dropna=False, sort=False).ngroup().to_numpy())
    pairs = _pair_with_baselines(frame, by, is_base, cells)

    invalid = invalid_mask(ok)
    values = floats(ok[metric]) if include_invalid else np.where(invalid, np.nan, floats(ok[metric]))
    out = frame.loc[cells.first[pairs.targets], identity].reset_index(drop=True)
    out["baseline"] = str(baseline)
    out["metric"] = metric
    _add_ratio_counts(out, cells, pairs, values, contended_mask(ok), invalid)
    _add_medians_and_ratio(out, cells, pairs, values, confidence=confidence, n_boot=n_boot, seed=seed)

    sort = [*(c for c in SORT_COLUMNS if c in CELL_COLUMNS), "hardware"]
    return sorted_by(out, sort)[columns]


@dataclass(frozen=True)
class _Baselines:
    """How the cells of :func:`ratios` meet their baselines: which rows are the baseline, the baseline group of
    every row (``ids``, ``count`` of them), the cells compared (``targets``: not the baseline, and with a baseline
    group) and each target's baseline group (``of_targets``)."""

    is_base: np.ndarray
    ids: np.ndarray
    count: int
    targets: np.ndarray
    of_targets: np.ndarray


def _check_ratio_request(results_df: pd.DataFrame, by: str, metric: str) -> None:
    """Refuse a ``by`` that names no cell column or hardware, and a frame without what the ratios read."""
    allowed = [*CELL_COLUMNS, *(c for c in HARDWARE_BY if c not in CELL_COLUMNS)]
    if by not in allowed:
        raise ValueError(f"cannot take ratios by {by!r}: choose one of {', '.join(allowed)}")
    require_columns(results_df, [*CELL_COLUMNS, "status", "device_name", metric])


def _ratio_frame(ok: pd.DataFrame, by: str) -> pd.DataFrame:
    """The cell columns as objects (so values compare as text, whatever their dtype), the ``hardware`` each row ran
    on, and ``by`` when it is not a cell column (a frame without hardware keys uses the hardware it has)."""
    frame = ok[CELL_COLUMNS].astype(object)
    frame["hardware"] = hardware_keys(ok)[0]
    if by == HARDWARE_KEY and by not in ok.columns:
        frame[by] = frame["hardware"]
    elif by not in CELL_COLUMNS:
        frame[by] = ok[by].astype(object)
    return frame


def _baseline_rows(frame: pd.DataFrame, by: str, baseline: Any) -> np.ndarray:
    """Per row: is its ``by`` value the baseline, compared as text? A baseline no row has is an error that lists
    the values there are, since it is most likely a typo."""
    labels = frame[by].map(str)
    is_base = (labels == str(baseline)).to_numpy(dtype=bool)
    if not is_base.any():
        seen = ", ".join(sorted(set(labels)))
        raise ValueError(f"no succeeded row has {by} = {baseline!r} (values seen: {seen})")
    return is_base


def _pair_with_baselines(frame: pd.DataFrame, by: str, is_base: np.ndarray, cells: Cells) -> _Baselines:
    """Each cell's baseline: the baseline rows equal in every other cell column and, unless ``by`` is the hardware
    itself, run on the same hardware."""
    match = [c for c in CELL_COLUMNS if c != by] + ([] if by in HARDWARE_BY else ["hardware"])
    base = frame.groupby(match, dropna=False, sort=False).ngroup().to_numpy()
    n_bases = int(base.max()) + 1
    has_base = np.zeros(n_bases, dtype=bool)
    has_base[base[is_base]] = True
    cell_base = base[cells.first]
    targets = np.flatnonzero(~is_base[cells.first] & has_base[cell_base])
    return _Baselines(is_base, base, n_bases, targets, cell_base[targets])


def _add_ratio_counts(
    out: pd.DataFrame,
    cells: Cells,
    pairs: _Baselines,
    values: np.ndarray,
    contended: np.ndarray,
    invalid: np.ndarray,
) -> None:
    """``n``/``n_baseline`` (values the ratio rests on), ``n_contended``/``n_contended_baseline`` (contended
    repeats, left out or kept) and ``n_invalid``/``n_invalid_baseline`` (invalid ones) of each target and its
    baseline."""
    counted = ~np.isnan(values)
    base, is_base = pairs.ids, pairs.is_base
    out["n"] = np.bincount(cells.ids[counted], minlength=cells.count)[pairs.targets]
    out["n_baseline"] = np.bincount(base[is_base & counted], minlength=pairs.count)[pairs.of_targets]
    out["n_contended"] = np.bincount(cells.ids[contended], minlength=cells.count)[pairs.targets]
    out["n_contended_baseline"] = np.bincount(base[is_base & contended], minlength=pairs.count)[pairs.of_targets]
    out["n_invalid"] = np.bincount(cells.ids[invalid], minlength=cells.count)[pairs.targets]
    out["n_invalid_baseline"] = np.bincount(base[is_base & invalid], minlength=pairs.count)[pairs.of_targets]


def _add_medians_and_ratio(
    out: pd.DataFrame,
    cells: Cells,
    pairs: _Baselines,
    values: np.ndarray,
    *,
    confidence: float,
    n_boot: int,
    seed: int,
) -> None:
    """Both medians, and the ratio of the target's over its baseline's with its bootstrap CI."""
    base_values, base_ids = values[pairs.is_base], pairs.ids[pairs.is_base]
    ratio, low, high = ratio_ci_groups(
        values,
        cells.ids,
        base_values,
        base_ids,
        np.stack([pairs.targets, pairs.of_targets], axis=1),
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        n_num_groups=cells.count,
        n_den_groups=pairs.count,
    )
    out["median"] = group_medians(values, cells.ids, cells.count)[pairs.targets]
    out["baseline_median"] = group_medians(base_values, base_ids, pairs.count)[pairs.of_targets]
    out["ratio"], out["ratio_ci_low"], out["ratio_ci_high"] = ratio, low, high
