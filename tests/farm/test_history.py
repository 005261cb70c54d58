"""farm.reports.history over constructed result frames: the step/drift detector on noise, a step and a drift, the
fingerprint text at a change, time order, contended repeats left out, and cells matched as farm compare
matches them (cell columns plus hardware key). Nothing trains and nothing touches Redis."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from farm.reports.history import (
    HISTORY_COLUMNS,
    NO_SOFTWARE_CHANGE,
    detect_steps,
    fingerprint_change,
    history_frame,
    regressions,
)
from tests.helpers import TRAIN, cell_row

N_BOOT = 200  # the CI is not what these tests are about
VERSIONS = dict(python_version="3.11.7", keras_version="3.15.1", backend_version="0.4.30", software_key="py3.11.7")


def noisy(levels: list[float], n: int = 5, cv: float = 0.02, seed: int = 0) -> list[np.ndarray]:
    """Repeats of each sweep: ``n`` values around its level, independent normal noise of coefficient ``cv``."""
    rng = np.random.default_rng(seed)
    return [level * (1 + cv * rng.standard_normal(n)) for level in levels]


def sweep_frame(
    sweep: str,
    day: int,
    values: list[float] | np.ndarray,
    *,
    workload: str = "fashion_mnist_mlp",
    device: str = "cpu",
    backend: str = "jax",
    hardware_key: str | None = "cpu:x x2",
    contended: list[bool] | None = None,
    **extra: Any,
) -> pd.DataFrame:
    """One sweep's tidy frame: one succeeded repeat of one cell per value, finished on 2026-11-``day``."""
    fields = {**VERSIONS, **extra}
    rows = [
        cell_row(
            i,
            f"{sweep}-{workload}-{device}-{i}",
            sweep,
            (workload, device, backend),
            device_name="cpu-x",
            hardware_key=hardware_key,
            train_samples_used=TRAIN,
            steady_samples_per_s=float(v),
            steady_epoch_s=TRAIN / float(v),
            finished_at=f"2026-11-{day:02d}T03:{i:02d}:00+00:00",
            contended=bool(contended[i]) if contended else False,
            **fields,
        )
        for i, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def series(samples: list[np.ndarray], **per_sweep: list[Any]) -> list[tuple[str, pd.DataFrame]]:
    """``(sweep id, frame)`` per sweep, one a day; ``per_sweep`` gives a column's value for each sweep."""
    return [
        (f"night-{k + 1:02d}", sweep_frame(f"night-{k + 1:02d}", k + 1, v, **{c: vs[k] for c, vs in per_sweep.items()}))
        for k, v in enumerate(samples)
    ]


# ---------------------------------------------------------------------------------------------------- detector
@pytest.mark.parametrize("seed", range(20))
def test_iid_noise_flags_nothing(seed: int) -> None:
    """Ten sweeps of the same throughput, 2 % noise: nothing changed, so nothing may be flagged (threshold 5 %)."""
    verdicts = detect_steps(noisy([1000.0] * 10, seed=seed))
    assert [v.change for v in verdicts] == [False] * 10
    assert math.isnan(verdicts[0].change_pct)
    assert all(abs(v.change_pct) < 5 for v in verdicts[1:])


@pytest.mark.parametrize("seed", range(10))
def test_a_ten_percent_drop_is_flagged_exactly_where_it_happened(seed: int) -> None:
    """Sweeps 1-5 at 1000, sweeps 6-10 at 900: flagged at sweep 6 only; the sweeps after it are compared with
    the new level, so a lasting regression is flagged once."""
    verdicts = detect_steps(noisy([1000.0] * 5 + [900.0] * 5, seed=seed))
    assert [i for i, v in enumerate(verdicts) if v.change] == [5]
    step = verdicts[5]
    assert step.kind == "step"
    assert step.change_pct == pytest.approx(-10, abs=4)
    assert step.p_value < 0.05
    assert step.baseline == (0, 1, 2, 3, 4)


def test_a_speedup_is_flagged_too() -> None:
    verdicts = detect_steps(noisy([1000.0] * 4 + [1150.0] * 3, seed=3))
    assert [i for i, v in enumerate(verdicts) if v.change] == [4]
    assert verdicts[4].change_pct > 10


def test_a_change_within_the_threshold_is_not_flagged_though_significant() -> None:
    """3 % slower with 0.2 % noise: the rank test is sure (at a 2 % threshold it flags), but 3 % is under the
    default 5 % threshold, so the sweep is not flagged (and not even tested: no p-value could flag it)."""
    samples = noisy([1000.0] * 5 + [970.0] * 3, cv=0.002, seed=1)
    verdicts = detect_steps(samples)
    assert not any(v.change for v in verdicts)
    assert verdicts[5].change_pct == pytest.approx(-3, abs=0.5) and math.isnan(verdicts[5].p_value)
    lower = detect_steps(samples, threshold=0.02)
    assert [i for i, v in enumerate(lower) if v.change] == [5]
    assert lower[5].p_value < 0.01


@pytest.mark.parametrize("seed", range(10))
def test_a_gradual_drift_is_flagged_once_as_a_drift(seed: int) -> None:
    """1 % slower each sweep for 12 sweeps, 1 % noise: no sweep is 5 % below the last five (about 3 %), so no
    step; the accumulated change against the first five sweeps is, and it is flagged once, as a drift, when it
    has passed the threshold (then the baseline restarts there)."""
    verdicts = detect_steps(noisy([1000.0 * (1 - 0.01 * i) for i in range(12)], cv=0.01, seed=seed))
    flagged = [(i, v.kind) for i, v in enumerate(verdicts) if v.change]
    assert len(flagged) == 1, flagged
    i, kind = flagged[0]
    assert kind == "drift"
    assert 6 <= i <= 9
    assert verdicts[i].change_pct < -5
    assert verdicts[i].baseline == (0, 1, 2, 3, 4)


@pytest.mark.parametrize("seed", range(10))
def test_a_noisier_drift_is_flagged_a_few_times_at_most(seed: int) -> None:
    """The same drift under 2 % noise: a noisy sweep may stand 5 % below the last few a little earlier and be
    flagged as a step instead; either way the drift is flagged once or twice over 12 sweeps, never before it
    has accumulated about the threshold, and every flag is a slowdown past it."""
    verdicts = detect_steps(noisy([1000.0 * (1 - 0.01 * i) for i in range(12)], seed=seed))
    flagged = [i for i, v in enumerate(verdicts) if v.change]
    assert 1 <= len(flagged) <= 2, flagged
    assert flagged[0] >= 4
    assert all(verdicts[i].change_pct < -5 for i in flagged)


def test_too_few_repeats_never_flag() -> None:
    """One repeat a sweep: the rank test of one value against five cannot reach p < 0.05, however large the
    drop; the detector says nothing rather than guess."""
    verdicts = detect_steps([[1000.0], [1001.0], [999.0], [1000.0], [1000.0], [500.0]])
    assert not any(v.change for v in verdicts)
    assert verdicts[5].change_pct == pytest.approx(-50)
    assert verdicts[5].p_value >= 0.05


def test_sweeps_without_values_are_skipped() -> None:
    samples = noisy([1000.0] * 5 + [900.0] * 2, seed=0)
    samples.insert(3, np.array([np.nan, np.nan]))
    verdicts = detect_steps(samples)
    assert not verdicts[3].change and math.isnan(verdicts[3].change_pct)
    assert [i for i, v in enumerate(verdicts) if v.change] == [6]
    assert 3 not in verdicts[6].baseline


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        detect_steps([], threshold=-0.1)
    with pytest.raises(ValueError, match="alpha"):
        detect_steps([], alpha=1.5)
    with pytest.raises(ValueError, match="window"):
        detect_steps([], window=0)


# ------------------------------------------------------------------------------------------------- fingerprint
def test_fingerprint_names_the_versions_that_changed() -> None:
    before = {"keras_version": {"3.15.1"}, "backend_version": {"0.4.30"}, "python_version": {"3.11.7"}}
    after = {"keras_version": {"3.16.0"}, "backend_version": {"0.4.31"}, "python_version": {"3.11.7"}}
    assert fingerprint_change(before, after, "jax") == "keras 3.15.1 → 3.16.0; jax 0.4.30 → 0.4.31"
    assert fingerprint_change(before, before, "jax") == ""


def test_fingerprint_software_key_only_when_no_version_explains_it() -> None:
    """The software key sums up the versions (and the other installed backends): spelled out as the tokens it
    lost and gained only when no version column changed."""
    before = {"keras_version": "3.15.1", "software_key": "py3.11.7 keras3.15.1 tensorflow2.20.0"}
    after = {"keras_version": "3.15.1", "software_key": "py3.11.7 keras3.15.1 tensorflow2.21.0"}
    assert fingerprint_change(before, after) == "software tensorflow2.20.0 → tensorflow2.21.0"
    after_both = {"keras_version": "3.16.0", "software_key": "py3.11.7 keras3.16.0 tensorflow2.20.0"}
    assert fingerprint_change(before, after_both) == "keras 3.15.1 → 3.16.0"


def test_fingerprint_pooled_unknown_and_device() -> None:
    before = {"keras_version": {"3.15.1"}, "benchfarm_version": None, "device_name": "cpu-x"}
    after = {"keras_version": {"3.15.1", "3.16.0"}, "benchfarm_version": "0.2.0", "device_name": "cpu-y"}
    text = fingerprint_change(before, after)
    assert text == "keras 3.15.1 → 3.15.1|3.16.0; benchfarm ? → 0.2.0; device cpu-x → cpu-y"


# ----------------------------------------------------------------------------------------------------- history
def test_history_columns_and_a_step_with_its_fingerprint() -> None:
    """The acceptance case: ten nightly sweeps, a 10 % drop at the sixth, where Keras was upgraded."""
    keras = ["3.15.1"] * 5 + ["3.16.0"] * 5
    frames = series(noisy([1000.0] * 5 + [900.0] * 5, seed=4), keras_version=keras)
    h = history_frame(frames, n_boot=N_BOOT)
    assert list(h.columns) == HISTORY_COLUMNS
    assert list(h["sweep_id"]) == [f"night-{k:02d}" for k in range(1, 11)]
    assert list(h["change"]) == [False] * 5 + [True] + [False] * 4
    at = h.iloc[5]
    assert at["changed"] == "keras 3.15.1 → 3.16.0"
    assert at["change_pct"] == pytest.approx(-10, abs=4)
    assert at["p_value"] < 0.05
    assert (h["changed"].iloc[np.r_[0:5, 6:10]] == "").all()  # the fingerprint is the same before and after
    assert (h["n"] == 5).all()
    assert (h["unit"] == "samples").all()
    assert (h["hardware_key"] == "cpu:x x2").all()
    assert (h["ci_low"] <= h["median"]).all() and (h["median"] <= h["ci_high"]).all()
    assert h.iloc[0]["when"] == "2026-11-01T03:02:00+00:00"  # median finished_at of the cell's five repeats
    # the newest sweep is not the step: no regression to fail on
    assert regressions(h).empty


def test_a_change_with_the_same_software_says_so() -> None:
    frames = series(noisy([1000.0] * 5 + [880.0], seed=2))
    h = history_frame(frames, n_boot=N_BOOT)
    assert h.iloc[5]["change"]
    assert h.iloc[5]["changed"] == NO_SOFTWARE_CHANGE
    slower = regressions(h)
    assert list(slower["sweep_id"]) == ["night-06"]


def test_a_software_change_without_a_speed_change_is_named_but_not_flagged() -> None:
    keras = ["3.15.1"] * 3 + ["3.16.0"] * 3
    h = history_frame(series(noisy([1000.0] * 6, seed=5), keras_version=keras), n_boot=N_BOOT)
    assert not h["change"].any()
    assert list(h["changed"]) == ["", "", "", "keras 3.15.1 → 3.16.0", "", ""]


def test_a_speedup_in_the_newest_sweep_is_no_regression() -> None:
    h = history_frame(series(noisy([1000.0] * 5 + [1200.0], seed=6)), n_boot=N_BOOT)
    assert h.iloc[5]["change"] and h.iloc[5]["change_pct"] > 0
    assert regressions(h).empty


def test_a_drift_names_its_start() -> None:
    frames = series(noisy([1000.0 * (1 - 0.01 * i) for i in range(12)], seed=0))
    h = history_frame(frames, n_boot=N_BOOT)
    flagged = h[h["change"]]
    assert len(flagged) == 1
    assert flagged.iloc[0]["changed"] == f"gradual drift since night-01; {NO_SOFTWARE_CHANGE}"


def test_sweeps_are_ordered_by_when_their_jobs_finished_not_by_the_list() -> None:
    """The store lists sweeps by submission; a sweep re-run later (or listed out of order) is placed at the
    median time its jobs finished, and the detector reads them in that order."""
    samples = noisy([1000.0] * 5 + [900.0], seed=7)
    frames = series(samples)
    shuffled = [frames[k] for k in (5, 2, 0, 4, 1, 3)]
    h = history_frame(shuffled, n_boot=N_BOOT)
    assert list(h["sweep_id"]) == [f"night-{k:02d}" for k in range(1, 7)]
    assert list(h["change"]) == [False] * 5 + [True]
    assert list(h["when"]) == sorted(h["when"])


def test_contended_repeats_are_left_out() -> None:
    """A sweep whose repeats were slowed by another workload (and marked contended) is not a regression: its
    contended repeats do not count (n says what is left), and a sweep with none left is shown, not tested."""
    samples = noisy([1000.0] * 7, seed=8)
    frames = series(samples)
    busy = samples[5].copy()
    busy[:3] *= 0.5  # three of five repeats ran at half speed beside another job
    frames[5] = ("night-06", sweep_frame("night-06", 6, busy, contended=[True, True, True, False, False]))
    all_busy = samples[6] * 0.5
    frames[6] = ("night-07", sweep_frame("night-07", 7, all_busy, contended=[True] * 5))
    h = history_frame(frames, n_boot=N_BOOT)
    assert list(h["n"]) == [5, 5, 5, 5, 5, 2, 0]
    assert not h["change"].any()
    assert h.iloc[5]["median"] == pytest.approx(np.median(samples[5][3:]))
    assert math.isnan(h.iloc[6]["median"]) and h.iloc[6]["when"] is not None
    assert regressions(h).empty


def test_cells_are_matched_by_hardware_key() -> None:
    """Sweeps 1-5 ran on one machine, 6 on another, 20 % slower one: that is another cell, not a regression.
    Cells match on the cell columns plus the hardware key, as in farm compare."""
    samples = noisy([1000.0] * 5 + [800.0], seed=9)
    frames = series(samples, hardware_key=["cpu:x x2"] * 5 + ["cpu:y x2"])
    h = history_frame(frames, n_boot=N_BOOT)
    assert not h["change"].any()
    assert list(h.groupby("hardware_key").size().items()) == [("cpu:x x2", 5), ("cpu:y x2", 1)]
    assert h.iloc[-1]["hardware_key"] == "cpu:y x2" and math.isnan(h.iloc[-1]["change_pct"])


def test_hardware_falls_back_to_the_device_name_jointly() -> None:
    """A sweep recorded before hardware_key existed makes every sweep match on the device name (as farm
    compare does), so old and new results still line up."""
    frames = series(noisy([1000.0] * 6, seed=10), hardware_key=[None] + ["cpu:x x2"] * 5)
    h = history_frame(frames, n_boot=N_BOOT)
    assert (h["hardware_key"] == "cpu-x").all() and len(h) == 6


def test_cells_of_several_workloads_are_apart_and_in_report_order() -> None:
    frames = []
    for k in range(6):
        level = 900.0 if k == 5 else 1000.0
        a = sweep_frame(f"s{k}", k + 1, noisy([level], seed=k)[0], workload="fashion_mnist_mlp")
        b = sweep_frame(f"s{k}", k + 1, noisy([500.0], seed=100 + k)[0], workload="cifar10_mlp")
        frames.append((f"s{k}", pd.concat([a, b], ignore_index=True)))
    h = history_frame(frames, n_boot=N_BOOT)
    assert list(h["workload"]) == ["cifar10_mlp"] * 6 + ["fashion_mnist_mlp"] * 6
    assert list(h.loc[h["change"], ["workload", "sweep_id"]].itertuples(index=False, name=None)) == [
        ("fashion_mnist_mlp", "s5")
    ]


def test_failed_repeats_do_not_count_and_unit_column_is_used() -> None:
    frames = series(noisy([1000.0] * 3, seed=11), unit=["tokens"] * 3)
    failed = frames[2][1].copy()
    failed.loc[0, "status"] = "failed"
    failed.loc[0, "steady_samples_per_s"] = 1.0
    frames[2] = ("night-03", failed)
    h = history_frame(frames, n_boot=N_BOOT)
    assert list(h["n"]) == [5, 5, 4]
    assert (h["unit"] == "tokens").all()


def test_empty_and_malformed_input() -> None:
    h = history_frame([])
    assert list(h.columns) == HISTORY_COLUMNS and h.empty
    with pytest.raises(ValueError, match="lack columns"):
        history_frame([("x", pd.DataFrame({"status": ["succeeded"]}))])
