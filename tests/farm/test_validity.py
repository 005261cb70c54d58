"""The validity verdict on one repeat (farm.validity): each cause named, with what would suffice, and the verdict
carried into the result's row; results recorded before verdicts existed are judged by their contended flag."""

from __future__ import annotations

from typing import Any

import pytest

from farm.job import JobSpec
from farm.result import EpochRecord, JobResult, JobStatus
from farm.rows import result_row
from farm.validity import Limits, invalid_reasons, is_valid, kind_of, recorded_reasons

LIMITS = Limits(min_steady_s=1.0, min_steady_steps=20, max_clock_change=0.1)


def result(
    epoch_s: list[float],
    *,
    mode: str = "train",
    steps: int | None = 50,
    disturbed: tuple[int, ...] = (),
    **fields: Any,
) -> JobResult:
    job = JobSpec(sweep="s", workload="cifar10_mlp", device="cpu", epochs=len(epoch_s), mode=mode, train_samples=1600)
    return JobResult(
        job_id="j",
        sweep_id="s",
        job=job,
        status=JobStatus.succeeded,
        epochs=[
            EpochRecord(epoch=k, wall_s=s, disturbed=(k in disturbed) if k else None) for k, s in enumerate(epoch_s)
        ],
        train_samples_used=1600,
        steps_per_epoch=steps,
        **fields,
    )


def test_a_long_quiet_window_is_valid() -> None:
    assert invalid_reasons(result([3.0, 1.0, 1.0]), LIMITS) == []


def test_a_window_too_short_in_seconds_says_what_would_suffice() -> None:
    (reason,) = invalid_reasons(result([1.0, 0.2, 0.2]), LIMITS)
    assert kind_of(reason) == "too short"
    assert "0.40 s, under 1 s" in reason
    # 2.5× the window: 2 steady epochs become 5 (6 with the first), or 1600 samples become 4,000.
    assert "run 6 epochs" in reason and "4,000 samples with 3 epochs" in reason


def test_a_window_too_short_in_steps_names_the_steps() -> None:
    (reason,) = invalid_reasons(result([3.0, 1.0, 1.0], steps=5), LIMITS)
    assert "10 steps, under 20" in reason and "0." not in reason.split("(")[1].split(")")[0]
    assert "run 5 epochs" in reason  # twice the steps: 4 steady epochs


def test_one_epoch_has_no_steady_window() -> None:
    (reason,) = invalid_reasons(result([3.0]), LIMITS)
    assert reason.startswith("no steady window") and "run 2 or more" in reason and kind_of(reason) == "too short"
    (passes,) = invalid_reasons(result([3.0], mode="inference"), LIMITS)
    assert "passes" in passes


def test_disturbed_epochs_are_left_out_of_the_steady_figure() -> None:
    calm = result([3.0, 1.0, 1.0, 1.0])
    one_slow = result([3.0, 1.0, 2.5, 1.0], disturbed=(2,))
    assert one_slow.steady_epoch_s == calm.steady_epoch_s == 1.0
    assert invalid_reasons(one_slow, LIMITS) == []
    assert result_row(one_slow)["epochs_disturbed"] == 1 and result_row(calm)["epochs_disturbed"] == 0
    # Every steady epoch disturbed: the figure is still there (for --include-invalid), from all of them.
    everywhere = result([3.0, 2.0, 3.0], disturbed=(1, 2), contended=True, contended_reasons=["others used 50%"])
    assert everywhere.steady_epoch_s == 2.5 and invalid_reasons(everywhere, LIMITS) == ["others used 50%"]


def test_undisturbed_epochs_too_short_to_time_are_a_contention_not_a_short_job() -> None:
    # The job is long enough (3 s of steady epochs), but the one undisturbed epoch holds 0.6 s: another repeat on
    # a quieter host will do, so the reason is contention (replaced), not "too short" (which stops the cell).
    (reason,) = invalid_reasons(result([3.0, 0.6, 1.2, 1.2], disturbed=(2, 3)), LIMITS)
    assert kind_of(reason) == "contended"
    assert "disturbed 2 of 3 steady epochs" in reason and "the undisturbed one holds 0.60 s and 50 steps" in reason
    assert invalid_reasons(result([3.0, 0.6, 1.2, 1.2], disturbed=(2, 3)), Limits(0, 0)) == []


def test_no_window_limits_judge_no_window() -> None:
    assert invalid_reasons(result([3.0]), Limits(min_steady_s=0, min_steady_steps=0)) == []


def test_contended_and_clock_changes_are_each_a_reason() -> None:
    r = result(
        [3.0, 1.0, 1.0],
        contended=True,
        contended_reasons=["other processes used 45% of the job's 2 core(s)"],
        contention={"cpu_freq_low": 0.7, "cpu_freq_high": 1.0},
    )
    reasons = invalid_reasons(r, LIMITS)
    assert [kind_of(x) for x in reasons] == ["contended", "clock changed"]
    assert "30%" in reasons[1]
    steady_clock = result([3.0, 1.0, 1.0], contention={"cpu_freq_low": 0.95, "cpu_freq_high": 1.0})
    assert invalid_reasons(steady_clock, LIMITS) == []


@pytest.mark.parametrize(
    ("valid", "contended", "expected"), [(None, False, True), (None, True, False), (False, False, False)]
)
def test_older_results_are_judged_by_their_contended_flag(valid: bool | None, contended: bool, expected: bool) -> None:
    r = result([3.0, 1.0, 1.0], valid=valid, contended=contended, contended_reasons=["busy"] if contended else [])
    assert is_valid(r) is expected
    assert bool(recorded_reasons(r)) is not expected


def test_the_row_carries_the_verdict() -> None:
    r = result([1.0, 0.2, 0.2])
    r.invalid_reasons = invalid_reasons(r, LIMITS)
    r.valid = not r.invalid_reasons
    row = result_row(r)
    assert row["valid"] is False and row["invalid_reason"].startswith("steady window too short")
    failed = r.model_copy(update={"status": JobStatus.failed})
    assert result_row(failed)["valid"] is None
