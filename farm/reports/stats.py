"""Honest statistics over the repeats of sweep cells: numpy (and scipy inside :func:`mann_whitney`).

Conventions, used everywhere in this module:

* NaNs are dropped before anything is computed; ``n`` counts the values left.
* Quartiles use numpy's default (``linear``) interpolation: ``[1..9]`` → q1 3, median 5, q3 7.
* ``std`` has ``ddof=1`` (the sample standard deviation); it, ``cv`` and the CI are NaN for ``n < 2``.
* The confidence interval is a *percentile bootstrap of the median*: ``n_boot`` resamples with replacement,
  the median of each, and the ``(1-c)/2`` and ``(1+c)/2`` quantiles of those medians. It is deterministic for a
  given ``seed``: the resampling indices are ``numpy.random.default_rng(seed).integers(0, n, (n_boot, n))``
  into the *sorted* sample, drawn in row chunks once ``n_boot * n`` passes 4 million (so the input order does
  not matter, and for smaller samples the result equals ``np.quantile(np.median(np.sort(x)[idx], axis=1), ...)``
  exactly). The indices depend only on ``(seed, n, n_boot)``, so the vectorized functions
  (:func:`summarize_groups`, :func:`ratio_ci_groups`) give every group exactly the interval it would get
  alone — groups of equal size share one index matrix, which is harmless because each interval is read on its
  own.
* Outliers follow the modified z-score rule (Iglewicz & Hoaglin): ``|x - median| / (1.4826 * MAD) > 3.5``.
  When ``MAD == 0`` (more than half the values are identical) the scale falls back to
  ``1.253314 * mean absolute deviation from the median`` (the usual convention, e.g. IBM SPSS); when that is 0
  too, every value equals the median and nothing is flagged.

The bootstrap is vectorized: because the median of a resample only needs two order statistics, the sample is
sorted once and only the two middle *indices* of each resample are found (``np.partition`` on the index matrix);
the resample's median is then two gathers from the sorted sample. That makes 10,000 cells × 2,000 resamples a
matter of a fraction of a second.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

#: Modified z-score above which a repeat is flagged as an outlier.
OUTLIER_Z = 3.5
#: MAD → sigma for normal data.
MAD_SCALE = 1.4826
#: Mean absolute deviation → sigma for normal data (the fallback when MAD is 0).
MEANAD_SCALE = 1.253314
#: Default spread above which a cell is too noisy to trust; see :func:`too_wide_many`.
MAX_CV = 0.10

# Bound on the elements of one temporary (index matrix rows × n, or groups × n_boot), to keep memory flat.
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class GroupSummaries:
    """What the repeats of each cell say, one array entry per group (times in seconds, rates per second —
    whatever the input was): ``n`` values, median, quartiles, mean, std, cv and the bootstrap CI of the median
    (``STAT_FIELDS``); ``outliers`` is a count per group and ``outlier_mask`` is aligned with the input values
    (False for NaNs)."""

    n: np.ndarray
    median: np.ndarray
    q1: np.ndarray
    q3: np.ndarray
    iqr: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    cv: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    outliers: np.ndarray
    outlier_mask: np.ndarray


STAT_FIELDS = ("median", "q1", "q3", "iqr", "mean", "std", "cv", "ci_low", "ci_high")


# --------------------------------------------------------------------------------------------------- helpers
def _check(confidence: float, n_boot: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), not {confidence!r}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1, not {n_boot!r}")


class _Sorted:
    """Values grouped and sorted: group ``g`` is ``values[starts[g] : starts[g] + counts[g]]``, ascending,
    NaNs dropped; ``positions`` maps each sorted value back to its index in the input."""

    def __init__(self, values: Iterable[float], groups: Iterable[int] | None, n_groups: int | None):
        v = np.asarray(values, dtype=float).ravel()
        if groups is None:
            g = np.zeros(v.shape[0], dtype=np.intp)
        else:
            g = np.asarray(groups).astype(np.intp, copy=False).ravel()
            if g.shape != v.shape:
                raise ValueError(f"values and groups differ in length ({v.shape[0]} vs {g.shape[0]})")
        if n_groups is None:
            n_groups = int(g.max()) + 1 if g.size else (0 if groups is not None else 1)
        if g.size and (g.min() < 0 or g.max() >= n_groups):
            raise ValueError("group ids must lie in [0, n_groups)")
        self.size = v.shape[0]
        keep = ~np.isnan(v)
        pos = np.flatnonzero(keep)
        v, g = v[keep], g[keep]
        order = np.lexsort((v, g))
        self.values = v[order]
        self.positions = pos[order]
        self.counts = np.bincount(g, minlength=n_groups).astype(np.intp)
        self.starts = np.zeros(n_groups, dtype=np.intp)
        np.cumsum(self.counts[:-1], out=self.starts[1:])
        self.n_groups = n_groups

    def medians(self) -> np.ndarray:
        """Exactly ``np.median`` of each group (NaN for empty groups), without a per-group loop."""
        out = np.full(self.n_groups, np.nan)
        ok = self.counts > 0
        s, c = self.starts[ok], self.counts[ok]
        out[ok] = (self.values[s + (c - 1) // 2] + self.values[s + c // 2]) / 2
        return out


def _median_positions(n: int, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """For ``n_boot`` resamples of size ``n``: the sorted-sample positions of each resample's two middle values.

    Resampling sorted data with sorted indices gives a sorted resample, so the resample's median is
    ``(sorted[lo] + sorted[hi]) / 2`` where lo/hi are the middle order statistics of the index row.
    """
    k_lo, k_hi = (n - 1) // 2, n // 2
    rows = max(1, _CHUNK_ELEMENTS // max(n, 1))
    lo = np.empty(n_boot, dtype=np.intp)
    hi = np.empty(n_boot, dtype=np.intp)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        idx.partition(sorted({k_lo, k_hi}), axis=1)
        lo[start:stop] = idx[:, k_lo]
        hi[start:stop] = idx[:, k_hi]
    return lo, hi


def _boot_medians(sorted_values: np.ndarray, starts: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(groups, n_boot) bootstrap medians for groups of one size starting at ``starts``."""
    s = starts[:, None]
    medians: np.ndarray = (sorted_values[s + lo[None, :]] + sorted_values[s + hi[None, :]]) / 2
    return medians


def _chunks(idx: np.ndarray, n_boot: int) -> Iterator[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(n_boot, 1))
    for i in range(0, idx.shape[0], step):
        yield slice(i, i + step)


# ------------------------------------------------------------------------------------------------ summaries
def summarize_groups(
    values: Iterable[float],
    groups: Iterable[int] | None = None,
    n_groups: int | None = None,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> GroupSummaries:
    """Median, quartiles, mean/std/cv, a bootstrap CI of the median and MAD outliers of each group at once:
    ``values[i]`` belongs to group ``groups[i]`` (0-based ids, ``n_groups`` of them; ``groups=None`` is one
    group). NaNs are dropped first (``n`` counts what is left); groups with no values left get NaN statistics
    and ``n == 0``. See the module docstring for every convention."""
    _check(confidence, n_boot)
    n_boot = int(n_boot)
    data = _Sorted(values, groups, n_groups)
    G = data.n_groups
    out = {f: np.full(G, np.nan) for f in STAT_FIELDS}
    outliers = np.zeros(G, dtype=np.intp)
    mask = np.zeros(data.size, dtype=bool)
    alpha = 1 - confidence
    qs = [alpha / 2, 1 - alpha / 2]
    for n in np.unique(data.counts):
        n = int(n)
        if n == 0:
            continue
        sel = np.flatnonzero(data.counts == n)
        starts = data.starts[sel]
        idx = starts[:, None] + np.arange(n)
        m = data.values[idx]  # (k, n), rows ascending
        med = (m[:, (n - 1) // 2] + m[:, n // 2]) / 2
        q1, q3 = np.quantile(m, [0.25, 0.75], axis=1)
        mean = m.mean(axis=1)
        out["median"][sel] = med
        out["q1"][sel], out["q3"][sel] = q1, q3
        out["iqr"][sel] = q3 - q1
        out["mean"][sel] = mean
        absdev = np.abs(m - med[:, None])
        mad = np.median(absdev, axis=1)
        scale = np.where(mad > 0, MAD_SCALE * mad, MEANAD_SCALE * absdev.mean(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            flagged = (scale[:, None] > 0) & (absdev / scale[:, None] > OUTLIER_Z)
        outliers[sel] = flagged.sum(axis=1)
        mask[data.positions[idx[flagged]]] = True
        if n < 2:
            continue
        std = m.std(axis=1, ddof=1)
        out["std"][sel] = std
        with np.errstate(divide="ignore", invalid="ignore"):
            out["cv"][sel] = std / mean
        lo, hi = _median_positions(n, n_boot, np.random.default_rng(seed))
        for part in _chunks(sel, n_boot):
            boot = _boot_medians(data.values, starts[part], lo, hi)
            low, high = np.quantile(boot, qs, axis=1)
            out["ci_low"][sel[part]] = low
            out["ci_high"][sel[part]] = high
    return GroupSummaries(n=data.counts.copy(), outliers=outliers, outlier_mask=mask, **out)


def group_medians(values: Iterable[float], groups: Iterable[int], n_groups: int | None = None) -> np.ndarray:
    """``np.median`` of each group's non-NaN values (NaN for an empty group), vectorized."""
    return _Sorted(values, groups, n_groups).medians()


# ------------------------------------------------------------------------------------------------- ratios
def ratio_ci_groups(
    num_values: Iterable[float],
    num_groups: Iterable[int],
    den_values: Iterable[float],
    den_groups: Iterable[int],
    pairs: npt.ArrayLike,
    *,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    n_num_groups: int | None = None,
    n_den_groups: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`ratio_ci` for many pairs: ``pairs[i] = (numerator group, denominator group)``.

    Returns three arrays (ratio, low, high), one entry per pair.
    """
    _check(confidence, n_boot)
    n_boot = int(n_boot)
    pairs = np.asarray(pairs, dtype=np.intp).reshape(-1, 2)
    num = _Sorted(num_values, num_groups, n_num_groups)
    den = _Sorted(den_values, den_groups, n_den_groups)
    P = pairs.shape[0]
    ratio, low, high = np.full(P, np.nan), np.full(P, np.nan), np.full(P, np.nan)
    if P == 0:
        return ratio, low, high
    pn, pd_ = pairs[:, 0], pairs[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio[:] = num.medians()[pn] / den.medians()[pd_]
    nn, nd = num.counts[pn], den.counts[pd_]
    alpha = 1 - confidence
    qs = [alpha / 2, 1 - alpha / 2]
    boot_ok = (nn >= 2) & (nd >= 2)
    if not boot_ok.any():
        return ratio, low, high
    sizes = np.unique(np.stack([nn[boot_ok], nd[boot_ok]], axis=1), axis=0)
    for a, b in sizes:
        a, b = int(a), int(b)
        sel = np.flatnonzero((nn == a) & (nd == b))
        rng = np.random.default_rng(seed)
        lo_n, hi_n = _median_positions(a, n_boot, rng)
        lo_d, hi_d = _median_positions(b, n_boot, rng)
        for part in _chunks(sel, n_boot):
            s = sel[part]
            bn = _boot_medians(num.values, num.starts[pn[s]], lo_n, hi_n)
            bd = _boot_medians(den.values, den.starts[pd_[s]], lo_d, hi_d)
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.quantile(bn / bd, qs, axis=1)
            low[s], high[s] = q[0], q[1]
    return ratio, low, high


def ratio_ci(
    num: Iterable[float], den: Iterable[float], *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """``median(num) / median(den)`` and a percentile-bootstrap CI, resampling each side independently.

    The ratio is NaN when either side has no (non-NaN) values; the interval is NaN when either side has fewer
    than two (a single value cannot say how much it varies).
    """
    num = np.asarray(num, dtype=float).ravel()
    den = np.asarray(den, dtype=float).ravel()
    r, lo, hi = ratio_ci_groups(
        num,
        np.zeros(num.size, np.intp),
        den,
        np.zeros(den.size, np.intp),
        [[0, 0]],
        confidence=confidence,
        n_boot=n_boot,
        seed=seed,
        n_num_groups=1,
        n_den_groups=1,
    )
    return float(r[0]), float(lo[0]), float(hi[0])


# ------------------------------------------------------------------------------------------------- tests
def mann_whitney(a: Iterable[float], b: Iterable[float]) -> float:
    """Two-sided Mann-Whitney U p-value, NaNs dropped; NaN when either side is empty.

    scipy computes it (a declared dependency, imported here only so that importing this module stays light):
    the exact distribution of U for small samples without ties, the tie-corrected normal approximation
    otherwise — the exact small-sample p-values are what ``farm compare``'s verdicts rest on. When every value
    on both sides is identical the samples cannot be told apart and 1.0 is returned (scipy itself would answer
    NaN for a zero-variance rank statistic).
    """
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if x.size < 1 or y.size < 1:
        return math.nan
    both = np.concatenate([x, y])
    if np.all(both == both[0]):
        return 1.0
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(x, y, alternative="two-sided").pvalue)


def too_wide_many(
    cv: Iterable[float],
    median: Iterable[float],
    ci_low: Iterable[float],
    ci_high: Iterable[float],
    max_cv: float = MAX_CV,
) -> np.ndarray:
    """Per cell (arrays of cv, median and CI bounds): is its spread too wide to trust its median?

    True when the coefficient of variation exceeds ``max_cv`` (default 10 %: repeats that scatter by more than
    a tenth cannot resolve the 10–20 % differences a sweep usually looks for), OR when the bootstrap CI of the
    median is wider than ``2 * max_cv`` of the median (i.e. a half-width beyond ±10 %). Cells that cannot be
    judged (``n < 2``: cv and CI are NaN) are *not* flagged — read ``n`` beside it.
    """
    cv, median = np.asarray(cv, dtype=float), np.asarray(median, dtype=float)
    width = np.asarray(ci_high, dtype=float) - np.asarray(ci_low, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = width / np.abs(median)
    too_wide: np.ndarray = (np.abs(cv) > max_cv) | (rel > 2 * max_cv)
    return too_wide
