"""farm.reports.stats against known samples and textbook figures."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pytest

from farm.reports.stats import (
    STAT_FIELDS,
    group_medians,
    mann_whitney,
    ratio_ci,
    ratio_ci_groups,
    summarize_groups,
    too_wide_many,
)


@dataclass(frozen=True)
class One:
    """One sample's statistics as scalars, as :func:`summarize` reads them off a single group."""

    n: int
    median: float
    q1: float
    q3: float
    iqr: float
    mean: float
    std: float
    cv: float
    ci_low: float
    ci_high: float
    outliers: tuple[int, ...]  # positions in the input, NaNs counted

    @property
    def ci_width(self) -> float:
        return self.ci_high - self.ci_low


def summarize(values: Iterable[float], **kw) -> One:
    """:func:`summarize_groups` over one group (the whole sample), its arrays read as scalars."""
    g = summarize_groups(values, None, 1, **kw)
    return One(
        n=int(g.n[0]),
        **{f: float(getattr(g, f)[0]) for f in STAT_FIELDS},
        outliers=tuple(int(i) for i in np.flatnonzero(g.outlier_mask)),
    )


def test_summarize_one_to_nine():
    s = summarize(range(1, 10))
    assert s.n == 9
    assert (s.median, s.q1, s.q3, s.iqr) == (5.0, 3.0, 7.0, 4.0)  # numpy's linear interpolation
    assert s.mean == 5.0
    assert s.std == pytest.approx(math.sqrt(7.5))  # ddof=1
    assert s.cv == pytest.approx(math.sqrt(7.5) / 5)
    assert s.ci_low <= s.median <= s.ci_high
    assert s.ci_low < s.ci_high
    assert s.outliers == ()


def test_even_n_quartiles_and_median():
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert s.median == 2.5
    assert s.q1 == pytest.approx(np.quantile([1, 2, 3, 4], 0.25))
    assert s.q3 == pytest.approx(np.quantile([1, 2, 3, 4], 0.75))


def test_ci_is_deterministic_for_a_seed_and_ignores_input_order():
    x = np.random.default_rng(7).normal(10, 1, 25)
    a = summarize(x, seed=3)
    assert summarize(x, seed=3) == a
    assert summarize(x[::-1], seed=3).ci_low == a.ci_low
    assert summarize(x[::-1], seed=3).ci_high == a.ci_high
    assert (summarize(x, seed=4).ci_low, summarize(x, seed=4).ci_high) != (a.ci_low, a.ci_high)


def test_ci_is_the_textbook_percentile_bootstrap_of_the_median():
    x = np.random.default_rng(1).normal(size=30)
    idx = np.random.default_rng(0).integers(0, 30, size=(2000, 30))
    expected = np.quantile(np.median(np.sort(x)[idx], axis=1), [0.025, 0.975])
    s = summarize(x, seed=0)
    assert (s.ci_low, s.ci_high) == (expected[0], expected[1])


def test_ci_of_median_matches_theory_for_a_large_normal_sample():
    # Asymptotic s.e. of the median of N(0, sigma²) is 1.2533 sigma / √n; a 95% CI is ≈ 2 × 1.96 of it wide.
    # (A property of the fixed sample below; for ~95% of samples the CI covers 0.)
    n, sigma = 400, 1.0
    s = summarize(np.random.default_rng(12345).normal(0.0, sigma, n))
    assert s.ci_low <= 0.0 <= s.ci_high
    theory = 2 * 1.96 * 1.2533 * sigma / math.sqrt(n)
    assert s.ci_width == pytest.approx(theory, rel=0.30)


def test_nans_dropped_and_small_samples():
    s = summarize([1.0, float("nan"), 3.0])
    assert s.n == 2 and s.median == 2.0 and s.mean == 2.0
    one = summarize([5.0, float("nan")])
    assert one.n == 1 and one.median == 5.0 and one.iqr == 0.0
    assert math.isnan(one.std) and math.isnan(one.cv) and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.median) and empty.outliers == ()


def test_mad_outlier():
    assert summarize([10, 10.1, 9.9, 10, 50]).outliers == (4,)
    # positions refer to the input, NaNs included
    assert summarize([float("nan"), 10, 10.1, 9.9, 10, 50]).outliers == (5,)
    assert summarize([10, 10.1, 9.9, 10, 10.05]).outliers == ()


def test_mad_zero_falls_back_to_mean_absolute_deviation():
    assert summarize([10, 10, 10, 10, 50]).outliers == (4,)
    assert summarize([10, 10, 10, 11, 12]).outliers == ()
    assert summarize([3, 3, 3]).outliers == ()


def test_ratio_ci_of_a_scaled_sample():
    den = np.random.default_rng(2).normal(100, 5, 30)
    r, lo, hi = ratio_ci(2 * den, den)
    assert r == pytest.approx(2.0)
    assert lo < 2.0 < hi
    assert hi - lo < 0.3
    assert ratio_ci(2 * den, den) == (r, lo, hi)  # deterministic


def test_ratio_ci_edge_cases():
    assert all(math.isnan(v) for v in ratio_ci([], [1.0, 2.0]))
    assert all(math.isnan(v) for v in ratio_ci([1.0, 2.0], [float("nan")]))
    r, lo, hi = ratio_ci([3.0], [1.0])
    assert r == 3.0 and math.isnan(lo) and math.isnan(hi)


def test_mann_whitney():
    assert mann_whitney([1, 2, 3, 4, 5, 6], [11, 12, 13, 14, 15, 16]) < 0.01
    same = np.random.default_rng(0).normal(size=20)
    assert mann_whitney(same, same) > 0.9
    assert mann_whitney([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert math.isnan(mann_whitney([], [1.0]))
    assert math.isnan(mann_whitney([1.0], [float("nan")]))


def test_too_wide_many():
    samples = [[1000, 1010, 990, 1005, 995], [500, 2000, 1000], [1000]]
    g = summarize_groups(np.concatenate(samples), np.repeat(np.arange(3), [len(x) for x in samples]), 3)
    # tight: not flagged; scattered: flagged; one value cannot be judged: not flagged
    assert too_wide_many(g.cv, g.median, g.ci_low, g.ci_high).tolist() == [False, True, False]
    # cv small but CI of the median wide relative to it
    assert too_wide_many([0.05], [1.0], [0.8], [1.25]).tolist() == [True]
    assert too_wide_many([0.05], [1.0], [0.8], [1.25], max_cv=0.5).tolist() == [False]


def test_each_group_gets_what_it_would_get_alone():
    rng = np.random.default_rng(5)
    sizes = [3, 5, 3, 0, 1, 12, 5]
    values = [rng.lognormal(3, 0.2, k) for k in sizes]
    values[1][2] = np.nan
    values[5][0] = 500.0  # an outlier
    flat = np.concatenate(values)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    perm = rng.permutation(flat.size)  # groups need not be contiguous
    g = summarize_groups(flat[perm], groups[perm], len(sizes), seed=9)
    for i, v in enumerate(values):
        s = summarize(v, seed=9)
        assert g.n[i] == s.n
        for f in ("median", "q1", "q3", "iqr", "mean", "std", "cv", "ci_low", "ci_high"):
            assert np.array_equal(getattr(g, f)[i], getattr(s, f), equal_nan=True), (i, f)
        assert g.outliers[i] == len(s.outliers)
    assert g.outlier_mask.sum() == 1 and flat[perm][g.outlier_mask][0] == 500.0
    assert np.array_equal(
        group_medians(flat, groups, len(sizes)),
        [np.nanmedian(v) if np.isfinite(v).any() else np.nan for v in values],
        equal_nan=True,
    )

    pairs = np.array([[0, 2], [5, 1], [4, 0], [3, 0]])
    r, lo, hi = ratio_ci_groups(
        flat, groups, flat, groups, pairs, n_num_groups=len(sizes), n_den_groups=len(sizes), seed=9
    )
    for k, (a, b) in enumerate(pairs):
        assert np.array_equal([r[k], lo[k], hi[k]], ratio_ci(values[a], values[b], seed=9), equal_nan=True)


def test_bad_arguments():
    with pytest.raises(ValueError):
        summarize([1, 2, 3], confidence=1.5)
    with pytest.raises(ValueError):
        summarize([1, 2, 3], n_boot=0)
    with pytest.raises(ValueError):
        summarize_groups([1.0, 2.0], [0])


def test_ten_thousand_cells_at_once_match_each_cell_alone():
    """The vectorised pass over 10,000 cells gives each cell what summarizing it alone gives (its speed is a
    benchmark's business: python -m benchmarks.report_speed)."""
    rng = np.random.default_rng(0)
    cells, repeats = 10_000, 10
    values = rng.lognormal(5, 0.1, cells * repeats)
    groups = np.repeat(np.arange(cells), repeats)
    g = summarize_groups(values, groups, cells)
    assert np.all(g.ci_low <= g.median) and np.all(g.median <= g.ci_high)
    for cell in (0, 1, 4_999, 9_999):
        alone = summarize(values[groups == cell])
        assert g.median[cell] == pytest.approx(alone.median)
        assert g.iqr[cell] == pytest.approx(alone.iqr)
