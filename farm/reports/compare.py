"""Did anything get faster or slower? Two sweeps' tidy results frames, matched cell by cell.

* :func:`compare` — one row per sweep cell seen in either frame: repeats and medians on each side, the ratio
  B/A with a bootstrap CI, a Mann-Whitney p-value and a verdict (``change``).
* :func:`regressions` — the rows whose verdict is ``"slower"``.
* :func:`software_keys` — the software a row ran on, from the ``software_key`` column when a frame has it,
  else from the python/keras/backend versions (frames written before that column existed); the hardware comes
  from :func:`farm.reports.frames.hardware_keys` (``hardware_key``, else ``device_name``).

Why these statistics: benchmark timings are not normal. They are skewed to the right (a GC pause, a noisy
neighbour, a cold cache only ever make a run *slower*) and carry occasional outliers, and a sweep has few
repeats per cell. So each side is summarized by its **median** (one slow outlier does not move it), the
uncertainty of the ratio of medians comes from a **percentile bootstrap** (no distributional assumption;
:func:`farm.reports.stats.ratio_ci`), and whether the two sides differ at all is decided by a **rank test**
(Mann-Whitney U, :func:`farm.reports.stats.mann_whitney`) rather than a t-test, which assumes normality and is
dragged around by the very outliers the median ignores.

The decision rule (``change``), per matched cell, with ``ratio = median_b / median_a``:

* ``"inconclusive"`` — no test is possible: either side has fewer than 2 values of the metric (one value says
  nothing about spread, and the rank test needs at least two to order), or the sides are so small that the
  exact rank test could not reach ``p < alpha`` even if every B value lay beyond every A value (its smallest
  two-sided p-value is ``2 / C(n_a + n_b, n_a)``: 3 v 3 repeats can never go below 0.10; 4 v 4 is the smallest
  balanced design that reaches 0.05). Calling such a cell "no change" would hide a regression of any size.
* ``"faster"`` / ``"slower"`` — only when ``p_value < alpha`` **and** ``|ratio - 1| > threshold``: the
  difference must be both statistically real and large enough to matter. Direction follows the metric (see
  :func:`higher_is_better`): for a throughput (``*_per_s``) ``ratio > 1`` is faster; for a time (``*_s``,
  e.g. ``steady_epoch_s``) ``ratio < 1`` is faster.
* ``"no change"`` — otherwise: not significant, or significant but within ``threshold`` (a 2 % shift that a
  tight cell resolves is real but not a change by this rule).
* ``"only in A"`` / ``"only in B"`` — the cell has succeeded repeats on one side only.

Invalid repeats (:mod:`farm.validity`: another workload on the job's cores or GPU, a throttled GPU or a CPU
clock that changed during its measured window, or a window too short to time; see
:func:`farm.reports.frames.invalid_mask`) are left out of both sides before anything is computed, unless
``include_invalid``: a verdict on them would compare how busy the machine was, not the code. They are counted per
side (``n_invalid_a``/``n_invalid_b``; the contended ones also in ``n_contended_a``/``n_contended_b``) and named,
with why, in the ``note``; a side whose repeats were all invalid has ``n`` 0 and makes the cell "inconclusive",
never "only in A/B" (the cell did run there).

A cell left without a verdict ("inconclusive", or "no change" with ``p >= alpha``) says in its ``note`` how many
valid repeats a side would give it one (:func:`repeats_needed`): at least :func:`least_repeats` (4 at
``alpha`` 0.05), more when the repeats scatter widely against the change to be told.

Cells are matched on ``CELL_COLUMNS`` plus the hardware key, so a sweep re-run on other hardware shows up as
cells "only in A" and "only in B" rather than as a false speedup. Software is *not* part of the match (a
Keras or backend upgrade is exactly what one compares); it is shown in ``software_a``/``software_b`` and the
``note`` says when the two differ or when one side pooled several software versions.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from farm.columns import CELL_COLUMNS
from farm.reports.frames import (
    contended_mask,
    failed_counts,
    floats,
    hardware_keys,
    invalid_kinds,
    invalid_mask,
    kinds_by_group,
    sorted_by,
    succeeded,
)
from farm.reports.stats import group_medians, mann_whitney, ratio_ci_groups

#: The column that names the software a row ran on (present once the rows carry it).
SOFTWARE_KEY = "software_key"

#: Output columns of :func:`compare`, in order.
COMPARE_COLUMNS = [
    *CELL_COLUMNS,
    "hardware",
    "metric",
    "higher_is_better",
    "n_a",
    "n_b",
    "n_contended_a",
    "n_contended_b",
    "n_invalid_a",
    "n_invalid_b",
    "invalid_kinds_a",
    "invalid_kinds_b",
    "median_a",
    "median_b",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "p_value",
    "change",
    "software_a",
    "software_b",
    "note",
]
#: The values ``change`` takes.
CHANGES = ("faster", "slower", "no change", "inconclusive", "only in A", "only in B")

#: The most valid repeats a side :func:`repeats_needed` names; beyond it a note says "more than".
MAX_NEEDED = 200
#: The chance a real change of the size asked about reaches ``p < alpha`` with the repeats :func:`repeats_needed`
#: names (the usual 80 %).
POWER = 0.8

_SORT = ["workload", "device", "backend", "batch_size"]
_SORT += [c for c in CELL_COLUMNS if c not in _SORT] + ["hardware"]


# ------------------------------------------------------------------------------------------------ identity
def higher_is_better(metric: str) -> bool:
    """True for a rate (``*_per_s``: more samples per second is faster), False for a duration (``*_s``: less
    time is faster). Any other column is refused: "faster" and "slower" would mean nothing for it."""
    if metric.endswith("_per_s"):
        return True
    if metric.endswith("_s"):
        return False
    raise ValueError(
        f"cannot compare {metric!r}: only throughputs (*_per_s, higher is faster) and times "
        "(*_s, lower is faster) have a direction"
    )


def _blank(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def software_keys(df: pd.DataFrame) -> pd.Series:
    """The software each row ran with: ``software_key`` where the frame has one, else built as
    ``"py<python> keras<keras> <backend><backend version>"`` (the same spelling) from the version columns;
    parts that are unknown are left out, and ``"unknown"`` when nothing is known."""

    def built(rec: dict[Hashable, Any]) -> str:
        parts = []
        if not _blank(rec.get("python_version")):
            parts.append(f"py{rec['python_version']}")
        if not _blank(rec.get("keras_version")):
            parts.append(f"keras{rec['keras_version']}")
        if not _blank(rec.get("backend_version")):
            backend = "" if _blank(rec.get("backend")) else str(rec["backend"])
            parts.append(f"{backend}{rec['backend_version']}")
        return " ".join(parts) or "unknown"

    cols = [c for c in ("python_version", "keras_version", "backend", "backend_version") if c in df.columns]
    fallback = pd.Series(
        [built(r) for r in df[cols].to_dict("records")] if cols else ["unknown"] * len(df), index=df.index, dtype=object
    )
    if SOFTWARE_KEY in df.columns:
        key = df[SOFTWARE_KEY].astype(object)
        return key.where(key.notna() & key.astype(str).str.len().gt(0), fallback).reset_index(drop=True)
    return fallback.reset_index(drop=True)


def min_p_value(n_a: int, n_b: int) -> float:
    """The smallest two-sided p-value the exact Mann-Whitney test can give for samples of these sizes (every
    value of one side beyond every value of the other): ``2 / C(n_a + n_b, n_a)``, capped at 1."""
    if n_a < 1 or n_b < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def least_repeats(alpha: float = 0.05) -> int:
    """The fewest repeats a side (both sides alike) with which the exact rank test can reach ``p < alpha`` at
    all: 4 at 0.05 (3 v 3 never goes below 0.10; see :data:`farm.precision.MIN_COMPARABLE`)."""
    n = 2
    while min_p_value(n, n) >= alpha:
        n += 1
    return n


def repeats_needed(
    change: float, rel_sd: float, *, alpha: float = 0.05, power: float = POWER, cap: int = MAX_NEEDED
) -> int | None:
    """Valid repeats a side for a relative change ``change`` (0.05: 5 %) to reach ``p < alpha`` with chance
    ``power``, when the repeats scatter by ``rel_sd`` (standard deviation over the median): the normal
    approximation ``n = 2·((z_{1-alpha/2} + z_{power})·rel_sd/change)²``, rounded up and never below
    :func:`least_repeats`. An estimate (the rank test needs about 5 % more on normal data, and timings are not
    normal), to say whether a few more repeats or many would settle a cell. None when more than ``cap`` would be
    needed, or when there is no change to tell (``change`` 0)."""
    least = least_repeats(alpha)
    if not rel_sd > 0:
        return least if change > 0 else None
    if not change > 0:
        return None
    z = NormalDist()
    k = z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)
    n = max(math.ceil(2 * (k * rel_sd / change) ** 2), least)
    return None if n > cap else n


# ------------------------------------------------------------------------------------------------- compare
@dataclass(frozen=True)
class _Rule:
    """How a verdict is reached: the metric and its direction, and the thresholds the caller chose."""

    metric: str
    higher_is_better: bool
    threshold: float
    alpha: float
    include_invalid: bool


@dataclass(frozen=True)
class _Side:
    """One side's succeeded repeats as the figures see them, each repeat placed in its cell (``key``).

    A repeat that is left out (invalid) keeps its cell but has a NaN ``value``: every figure drops NaNs, and
    the cell stays ``present``. ``kinds``: per cell, why its invalid repeats were (``"2 contended"``)."""

    key: np.ndarray
    used: np.ndarray
    values: np.ndarray
    present: np.ndarray
    n: np.ndarray
    n_contended: np.ndarray
    n_invalid: np.ndarray
    kinds: list[str]


def compare(
    df_a: pd.DataFrame,
    df_b: pd.DataFrame,
    *,
    metric: str = "steady_samples_per_s",
    threshold: float = 0.05,
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    include_invalid: bool = False,
) -> pd.DataFrame:
    """Compare two tidy results frames (see :func:`farm.reports.aggregate.results_frame`) cell by cell on ``metric``.

    Only ``succeeded`` rows count; cells are matched on ``CELL_COLUMNS`` plus the hardware key (see
    :func:`farm.reports.frames.hardware_keys`). Returns ``COMPARE_COLUMNS``, one row per cell found in either frame:

    * ``hardware`` — the hardware key (or device name) the cell ran on; ``metric``, ``higher_is_better``.
    * ``n_a``, ``n_b`` — values of the metric on each side (succeeded repeats with a non-NaN value, invalid
      ones left out unless ``include_invalid``): what the verdict rests on.
    * ``n_contended_a``, ``n_contended_b`` — contended succeeded repeats of the cell on each side, counted
      whether left out or kept; ``n_invalid_a``, ``n_invalid_b`` — invalid ones (contended among them), likewise,
      and ``invalid_kinds_a``, ``invalid_kinds_b`` why, by kind (``"2 contended, 1 too short"``; empty for none).
    * ``median_a``, ``median_b`` and ``ratio = median_b / median_a``: for a throughput ``ratio > 1`` means B is
      faster; for a time (``*_s``) ``ratio < 1`` means B is faster.
    * ``ratio_ci_low``/``ratio_ci_high`` — percentile-bootstrap CI of the ratio at ``confidence`` (each side
      resampled independently; NaN when a side has fewer than 2 values).
    * ``p_value`` — two-sided Mann-Whitney U (NaN when inconclusive for want of values).
    * ``change`` — the verdict, by the rule in the module docstring: ``faster``/``slower`` need
      ``p_value < alpha`` and ``|ratio - 1| > threshold``; ``inconclusive`` when no test can decide
      (fewer than 2 values a side, or too few for ``p < alpha`` to be reachable); ``only in A``/``only in B``.
    * ``software_a``/``software_b`` — the software keys seen on each side, sorted, joined with ``"|"``;
      ``note`` — "software differs: …", "pooled several software keys on A", why a cell is inconclusive and how
      many valid repeats a side would settle it, the invalid repeats of each side and why, or how many repeats
      failed on the side that has none.

    Sorted by workload, device, backend, batch size, the other cell columns, hardware.
    """
    rule = _Rule(metric, higher_is_better(metric), threshold, alpha, include_invalid)
    _check_arguments(df_a, df_b, metric, threshold, alpha)
    ok_a, ok_b = succeeded(df_a), succeeded(df_b)
    both, side = _pooled_cells(ok_a, ok_b)
    if both.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COMPARE_COLUMNS})
    key = both.groupby([*CELL_COLUMNS, "hardware"], dropna=False, sort=False).ngroup().to_numpy()
    groups = int(key.max()) + 1
    out = _cell_table(both, key, rule)
    a = _side(ok_a, key[side == 0], groups, rule)
    b = _side(ok_b, key[side == 1], groups, rule)
    out["n_a"], out["n_b"] = a.n, b.n
    out["n_contended_a"], out["n_contended_b"] = a.n_contended, b.n_contended
    out["n_invalid_a"], out["n_invalid_b"] = a.n_invalid, b.n_invalid
    out["invalid_kinds_a"], out["invalid_kinds_b"] = a.kinds, b.kinds
    ratio = _add_medians_and_ratio(out, a, b, groups, confidence=confidence, n_boot=n_boot, seed=seed)
    software = _software_by_cell(ok_a, ok_b, key, side, np.r_[a.used, b.used], groups)
    out["software_a"] = ["|".join(sorted(s)) for s in software[0]]
    out["software_b"] = ["|".join(sorted(s)) for s in software[1]]
    # Failed repeats, for the side a cell is missing from (matched on the cell alone: a failed job may not
    # know its hardware).
    failed = [failed_counts(out, df) for df in (df_a, df_b)]
    out["p_value"], out["change"], out["note"] = _judge_cells(a, b, groups, ratio, software, failed, rule)
    return sorted_by(out, _SORT)[COMPARE_COLUMNS]


def _pooled_cells(ok_a: pd.DataFrame, ok_b: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Both sides' repeats as one frame of cell columns plus ``hardware``, and the side (0 or 1) of each row.

    Pooled so that a cell gets the same number on both sides, which is what matches them."""
    hw_a, hw_b = hardware_keys(ok_a, ok_b)
    both = pd.concat([ok_a[CELL_COLUMNS].astype(object), ok_b[CELL_COLUMNS].astype(object)], ignore_index=True)
    both["hardware"] = pd.concat([hw_a, hw_b], ignore_index=True)
    side = np.r_[np.zeros(len(ok_a), dtype=np.intp), np.ones(len(ok_b), dtype=np.intp)]
    return both, side


def _cell_table(both: pd.DataFrame, key: np.ndarray, rule: _Rule) -> pd.DataFrame:
    """One row per cell, in the order cells were first seen, to which the figures are added column by column."""
    first = np.unique(key, return_index=True)[1]
    out = both.loc[first, [*CELL_COLUMNS, "hardware"]].reset_index(drop=True)
    out["metric"] = rule.metric
    out["higher_is_better"] = rule.higher_is_better
    return out


def _side(ok: pd.DataFrame, key: np.ndarray, groups: int, rule: _Rule) -> _Side:
    """One side's repeats and per-cell counts, invalid repeats left out unless the rule keeps them."""
    invalid = invalid_mask(ok)
    used = np.ones(len(ok), dtype=bool) if rule.include_invalid else ~invalid
    values = np.where(used, floats(ok[rule.metric]), np.nan)
    return _Side(
        key=key,
        used=used,
        values=values,
        present=np.bincount(key, minlength=groups) > 0,
        n=np.bincount(key[~np.isnan(values)], minlength=groups),
        n_contended=np.bincount(key[contended_mask(ok)], minlength=groups),
        n_invalid=np.bincount(key[invalid], minlength=groups),
        kinds=kinds_by_group(invalid_kinds(ok, invalid), key, groups),
    )


def _add_medians_and_ratio(
    out: pd.DataFrame, a: _Side, b: _Side, groups: int, *, confidence: float, n_boot: int, seed: int
) -> np.ndarray:
    """Adds each cell's medians, ratio B/A and its bootstrap CI to ``out`` (every cell at once; B is the
    numerator), and returns the ratios, which the verdicts rest on."""
    cells = np.arange(groups)
    ratio, low, high = ratio_ci_groups(
        b.values,
        b.key,
        a.values,
        a.key,
        np.stack([cells, cells], axis=1),
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        n_num_groups=groups,
        n_den_groups=groups,
    )
    out["median_a"] = group_medians(a.values, a.key, groups)
    out["median_b"] = group_medians(b.values, b.key, groups)
    out["ratio"], out["ratio_ci_low"], out["ratio_ci_high"] = ratio, low, high
    return ratio


def _judge_cells(
    a: _Side,
    b: _Side,
    groups: int,
    ratio: np.ndarray,
    software: list[list[set[str]]],
    failed: list[np.ndarray],
    rule: _Rule,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Per cell: the rank test's p-value, the verdict and the note that explains it."""
    split_a, split_b = _values_by_cell(a, groups), _values_by_cell(b, groups)
    p_values = np.full(groups, np.nan)
    changes: list[str] = []
    notes: list[str] = []
    for g in range(groups):
        note: list[str] = []
        if not b.present[g]:
            changes.append("only in A")
            note += _failed_note("B", failed[1][g])
        elif not a.present[g]:
            changes.append("only in B")
            note += _failed_note("A", failed[0][g])
        else:
            if a.n[g] >= 1 and b.n[g] >= 1:
                p_values[g] = mann_whitney(split_a[g], split_b[g])
            change, why = _verdict(int(a.n[g]), int(b.n[g]), ratio[g], p_values[g], rule)
            changes.append(change)
            note += why
            if change == "inconclusive" or (change == "no change" and not p_values[g] < rule.alpha):
                note += _needed_note(split_a[g], split_b[g], ratio[g], rule)
            note += _software_differs_note(software[0][g], software[1][g])
        note += _pooled_software_notes(software[0][g], software[1][g])
        note += _invalid_note(
            (int(a.n_invalid[g]), int(b.n_invalid[g])), (a.kinds[g], b.kinds[g]), rule.include_invalid
        )
        notes.append("; ".join(note))
    return p_values, changes, notes


def _values_by_cell(side: _Side, groups: int) -> list[np.ndarray]:
    """The side's metric values split by cell (NaNs of left-out repeats included), for the rank test."""
    order = np.argsort(side.key, kind="stable")
    return np.split(side.values[order], np.cumsum(np.bincount(side.key, minlength=groups))[:-1])


def _failed_note(label: str, failed: int) -> list[str]:
    """Why a cell is missing from a side, when its repeats there failed rather than never ran."""
    return [f"{label}: no succeeded repeat, {failed} failed"] if failed else []


def _software_differs_note(a: set[str], b: set[str]) -> list[str]:
    """Names the software of each side when they differ: the likeliest cause of a change, or a caveat."""
    if a == b:
        return []
    return [f"software differs: A {'|'.join(sorted(a))} → B {'|'.join(sorted(b))}"]


def _pooled_software_notes(a: set[str], b: set[str]) -> list[str]:
    """Warns of a side whose figures mix several software keys: its median is of no single version."""
    return [f"pooled several software keys on {label}" for label, s in zip("AB", (a, b), strict=True) if len(s) > 1]


def _invalid_note(counts: tuple[int, int], kinds: tuple[str, str], kept: bool) -> list[str]:
    """Counts the invalid repeats of each side and why, and says whether the figures kept them or left them out:
    ``invalid repeats left out: A 2 (2 contended), B 1 (1 too short)``."""
    sides = [
        f"{label} {n}" + (f" ({why})" if why else "") for label, n, why in zip("AB", counts, kinds, strict=True) if n
    ]
    if not sides:
        return []
    return [("invalid repeats kept: " if kept else "invalid repeats left out: ") + ", ".join(sides)]


def _needed_note(values_a: np.ndarray, values_b: np.ndarray, ratio: float, rule: _Rule) -> list[str]:
    """For a cell without a verdict: how many valid repeats a side would give it one (:func:`repeats_needed`), for
    the change observed or, when that is smaller, the smallest that counts (``threshold``: a smaller one would be
    "no change" however sure). Nothing when the repeats there already suffice for it."""
    a, b = values_a[~np.isnan(values_a)], values_b[~np.isnan(values_b)]
    least = least_repeats(rule.alpha)
    at_least = [f"would need at least {least} valid repeats a side ({len(a)} v {len(b)} now)"]
    if len(a) < 2 or len(b) < 2 or not math.isfinite(ratio):
        return at_least
    middle = abs(float(np.median(a)))
    pooled = math.sqrt(((len(a) - 1) * np.var(a, ddof=1) + (len(b) - 1) * np.var(b, ddof=1)) / (len(a) + len(b) - 2))
    rel_sd = pooled / middle if middle > 0 else math.inf
    change = max(abs(ratio - 1), rule.threshold)
    need = repeats_needed(change, rel_sd, alpha=rule.alpha) if math.isfinite(rel_sd) else None
    told = f"to tell a change of {change * 100:.3g}%"
    if need is None:
        return [f"would need more than {MAX_NEEDED} valid repeats a side {told}"]
    if need <= min(len(a), len(b)):
        return []
    if need == least:
        return at_least
    return [f"would need about {need} valid repeats a side {told} ({len(a)} v {len(b)} now)"]


def _check_arguments(df_a: pd.DataFrame, df_b: pd.DataFrame, metric: str, threshold: float, alpha: float) -> None:
    """Refuse arguments no verdict could rest on, before any work."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, not {threshold!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1 (exclusive), not {alpha!r}")
    for name, df in (("A", df_a), ("B", df_b)):
        missing = [c for c in [*CELL_COLUMNS, "status", metric] if c not in df.columns]
        if missing:
            raise ValueError(f"results frame {name} lacks columns: {', '.join(missing)}")


def _software_by_cell(
    ok_a: pd.DataFrame, ok_b: pd.DataFrame, key: np.ndarray, side: np.ndarray, used: np.ndarray, groups: int
) -> list[list[set[str]]]:
    """Per side, per cell: the software keys of the repeats the figures rest on, or of every repeat when all
    were left out (so a cell of invalid repeats still says what ran)."""
    sw = pd.concat([software_keys(ok_a), software_keys(ok_b)], ignore_index=True).astype(str)
    kept: list[list[set[str]]] = [[set() for _ in range(groups)], [set() for _ in range(groups)]]
    every: list[list[set[str]]] = [[set() for _ in range(groups)], [set() for _ in range(groups)]]
    for k, s, v, u in zip(key, side, sw, used, strict=True):
        every[s][k].add(v)
        if u:
            kept[s][k].add(v)
    return [[k or e for k, e in zip(kept[s], every[s], strict=True)] for s in (0, 1)]


def _verdict(n_a: int, n_b: int, ratio: float, p: float, rule: _Rule) -> tuple[str, list[str]]:
    """The change for a cell present on both sides, by the module docstring's rule, and why when undecided."""
    if n_a < 2 or n_b < 2:
        return "inconclusive", [f"fewer than 2 values of {rule.metric} on a side ({n_a} v {n_b}): no test possible"]
    smallest = min_p_value(n_a, n_b)
    if smallest >= rule.alpha:
        return "inconclusive", [
            f"{n_a} v {n_b} repeats cannot reach p < {rule.alpha:g} (smallest possible p {smallest:.3g})"
        ]
    if p < rule.alpha and abs(ratio - 1) > rule.threshold:
        return ("faster" if (ratio > 1 if rule.higher_is_better else ratio < 1) else "slower"), []
    return "no change", []


def regressions(cmp: pd.DataFrame) -> pd.DataFrame:
    """The rows of a :func:`compare` table whose verdict is ``"slower"`` (significant and beyond the
    threshold), in the same order and columns."""
    return cmp.loc[cmp["change"].eq("slower").fillna(False).to_numpy(dtype=bool)].reset_index(drop=True)
