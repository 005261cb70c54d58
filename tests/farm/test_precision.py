"""A precision target instead of a count (farm.precision): the verdict on a cell's repeats, the sweep file's
`precision`, and the jobs a cell starts with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from farm.job import JobSpec
from farm.precision import Precision, judge, relative_half_width
from farm.sweep import SpecError, load_sweep_data

P = Precision(ci=0.02, min_repeats=5, max_repeats=20, max_invalid=3)


def spread(n: int, cv: float, seed: int = 0) -> list[float]:
    return list(100 * (1 + cv * np.random.default_rng(seed).standard_normal(n)))


def test_tight_repeats_meet_the_target_at_the_minimum() -> None:
    v = judge(spread(5, 0.002), 0, P)
    assert v.met and v.more == 0 and v.n_valid == 5
    assert v.half_width is not None and v.half_width <= 0.02
    assert "valid repeats" in v.reason


def test_below_the_minimum_asks_for_the_rest_whatever_the_spread() -> None:
    assert judge(spread(2, 0.0001), 0, P).more == 3
    assert judge([], 0, P).more == 5
    assert not judge(spread(2, 0.0001), 0, P).met


def test_a_wide_cell_asks_for_what_its_spread_says_within_the_cap() -> None:
    values = spread(5, 0.05)
    width = relative_half_width(values)
    assert width is not None and width > 0.02
    v = judge(values, 0, P)
    assert not v.met and v.more == min(int(np.ceil(5 * (width / 0.02) ** 2)) - 5, 15)
    assert v.more >= 1 and 5 + v.more <= P.max_repeats


def test_caps_stop_a_cell_with_one_line_saying_which() -> None:
    wide = spread(20, 0.2)
    capped = judge(wide, 0, P)
    assert not capped.met and capped.more == 0 and "max_repeats 20" in capped.reason
    noisy = judge(spread(5, 0.2), 4, P)
    assert noisy.more == 0 and "never quiet enough" in noisy.reason
    budget = judge(spread(5, 0.2), 0, Precision(ci=0.02, budget_s=60), spent_s=61)
    assert budget.more == 0 and "time budget spent" in budget.reason


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ci": 0.02, "min_repeats": 3}, "greater than or equal to 4"),
        ({"ci": 0.02, "min_repeats": 9, "max_repeats": 5}, "min_repeats (9) is more than max_repeats (5)"),
        ({"ci": 0}, "greater than 0"),
        ({"ci": "2%"}, "valid number"),
        ({"ci": 0.02, "repeats": 4}, "precision.repeats: unknown field"),
    ],
)
def test_a_bad_precision_is_one_line_naming_the_field(fields: dict, message: str) -> None:
    with pytest.raises(SpecError) as e:
        load_sweep_data({"name": "p", "precision": fields, "jobs": [{"workload": "fashion_mnist_mlp"}]})
    assert message in str(e.value) and "precision" in str(e.value)


def test_cells_start_with_their_minimum_and_an_entry_may_opt_out() -> None:
    sweep = load_sweep_data(
        {
            "name": "p",
            "precision": {"ci": 0.05, "min_repeats": 4},
            "defaults": {"data": "synthetic"},
            "jobs": [{"workload": "fashion_mnist_mlp"}, {"workload": "cifar10_mlp", "precision": None}],
        }
    )
    by_workload = {
        w: sorted(j.repeat for j in sweep.jobs if j.workload == w) for w in ("fashion_mnist_mlp", "cifar10_mlp")
    }
    assert by_workload == {"fashion_mnist_mlp": [0, 1, 2, 3], "cifar10_mlp": [0]}
    # Repeats stay interleaved: every cell's first repeat comes before any cell's second.
    assert [j.repeat for j in sweep.jobs[:2]] == [0, 0]


def test_a_job_without_precision_keeps_its_id() -> None:
    """Jobs recorded before `precision` existed keep their ids (and their results)."""
    job = JobSpec(sweep="s", workload="fashion_mnist_mlp", data="synthetic")
    assert '"precision"' not in job.canonical_json()
    with_target = JobSpec(sweep="s", workload="fashion_mnist_mlp", data="synthetic", precision=Precision(ci=0.02))
    assert with_target.job_id != job.job_id


def test_the_report_says_which_cells_met_their_target() -> None:
    from farm.reports.aggregate import aggregate, results_frame
    from farm.reports.markdown import summary_frame
    from farm.rows import result_row
    from tests.helpers import succeeded_job

    rows = []
    for batch, precision in (
        (16, Precision(ci=0.001, min_repeats=4)),
        (32, Precision(ci=0.05, min_repeats=4)),
        (64, None),
    ):
        for k, per_s in enumerate([100.0, 101.0, 99.0, 100.5]):
            job = JobSpec(
                sweep="s",
                workload="fashion_mnist_mlp",
                data="synthetic",
                repeat=k,
                batch_size=batch,
                precision=precision,
            )
            rows.append(result_row(succeeded_job(job, "s-1", 100 / per_s, train_samples_used=100)[1]))
    report = aggregate(results_frame(rows)).set_index("batch_size")
    assert not report.loc[16, "precision_met"] and report.loc[32, "precision_met"]
    assert report.loc[64, "precision_met"] is pd.NA
    assert 0 < report.loc[32, "ci_half_width_rel"] < 0.05
    summary = summary_frame(report.reset_index()).set_index("batch")
    assert summary.loc["16", "precision"].endswith("(short of ±0.1%)")
    assert summary.loc["32", "precision"].endswith("(met ±5.0%)") and summary.loc["64", "precision"] == ""
