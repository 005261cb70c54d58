"""A cell's verdict from its recorded repeats (farm.cell_verdict), as the worker and `farm run`'s closing lines
read it: valid repeats counted, invalid ones replaced, a failed or too-short repeat stopping the cell."""

from __future__ import annotations

from farm.cell_verdict import cell_line, cell_verdict
from farm.job import JobSpec
from farm.precision import Precision
from farm.result import JobResult, JobStatus
from tests.helpers import succeeded_job

TARGET = Precision(ci=0.05, min_repeats=4, max_repeats=6, max_invalid=2)


def repeat(per_s: float, k: int = 0, precision: Precision | None = TARGET, **fields: object) -> JobResult:
    job = JobSpec(sweep="s", workload="fashion_mnist_mlp", data="synthetic", repeat=k, precision=precision)
    return succeeded_job(job, "s-1", 100 / per_s, train_samples_used=100, unit="images", **fields)[1]


def test_a_tight_cell_meets_its_target_and_says_so() -> None:
    results = [repeat(100.0 + k * 0.1, k) for k in range(4)]
    verdict = cell_verdict(results, TARGET)
    assert verdict.met and verdict.more == 0 and verdict.n_valid == 4
    line = cell_line(results, TARGET)
    assert line.startswith("fashion_mnist_mlp cpu tensorflow batch 32: 100.2 images/s; target met: ±")


def test_invalid_repeats_do_not_count_and_past_max_invalid_the_cell_stops() -> None:
    busy = {"valid": False, "invalid_reasons": ["other processes used 45% of the job's 2 core(s)"]}
    results = [repeat(100.0, k) for k in range(3)] + [repeat(100.0, 3 + k, **busy) for k in range(3)]
    verdict = cell_verdict(results, TARGET)
    assert (verdict.n_valid, verdict.n_invalid, verdict.more) == (3, 3, 0)
    assert "never quiet enough" in verdict.reason
    assert "target not met: 3 invalid repeats, more than max_invalid (2)" in cell_line(results, TARGET)


def test_a_failed_or_too_short_repeat_stops_the_cell() -> None:
    failed = repeat(100.0, 1).model_copy(update={"status": JobStatus.failed})
    assert cell_verdict([repeat(100.0), failed], TARGET).reason == "a repeat failed: no more added"
    short = "steady window too short to time (0.40 s, under 1 s): run 6 epochs, or 4,000 samples with 3 epochs"
    verdict = cell_verdict([repeat(100.0, 0, valid=False, invalid_reasons=[short])], TARGET)
    assert verdict.more == 0 and verdict.reason == short


def test_a_fixed_count_cell_says_how_many_were_valid_and_why_not() -> None:
    results = [repeat(100.0, 0, None), repeat(50.0, 1, None, contended=True, contended_reasons=["busy"])]
    assert cell_line(results, None) == (
        "fashion_mnist_mlp cpu tensorflow batch 32: 100.0 images/s from 1 valid of 2 (1 invalid: contended)"
    )
