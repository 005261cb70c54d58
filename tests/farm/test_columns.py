"""The result's column schema (farm.columns): every list of columns follows from it, and a figure declared there
reaches the result, the row, the report and each place it is shown — with peak host memory as the example."""

from __future__ import annotations

import pandas as pd
import pytest

from farm import columns
from farm.columns import COLUMNS, RESULT_COLUMNS, Column, Shown, format_figure, shown_in
from farm.job import JobSpec
from farm.reports.aggregate import REPORT_COLUMNS, aggregate, results_frame
from farm.reports.files import COUNT_COLUMNS
from farm.reports.markdown import summary_frame
from farm.result import EpochRecord, JobResult, JobStatus
from farm.rows import _COMPUTED, result_row
from farm.rowstore import OWN_COLUMNS, SHARED_COLUMNS
from workers.result_build import COPIED_FROM_CHILD


def a_result(repeat: int = 0, **figures: object) -> JobResult:
    job = JobSpec(sweep="s", workload="cifar10_mlp", device="cpu", repeat=repeat, epochs=3, batch_size=32)
    return JobResult(
        job_id=f"j{repeat}",
        sweep_id="s-1",
        job=job,
        status=JobStatus.succeeded,
        train_samples_used=100,
        epochs=[EpochRecord(epoch=e, wall_s=1.0) for e in (1, 2, 3)],
        versions={"keras": "3.0", "python": "3.11"},
        **figures,
    )


def test_names_are_unique_and_every_source_is_filled() -> None:
    names = [c.name for c in COLUMNS]
    assert len(names) == len(set(names))
    computed = {c.name for c in COLUMNS if c.source == "row"}
    assert computed == set(_COMPUTED), "each row-computed column has exactly one computation in farm.rows"
    row = result_row(a_result())
    assert set(row) == set(RESULT_COLUMNS)


def test_the_lists_follow_from_the_schema() -> None:
    assert set(COPIED_FROM_CHILD) == {c.name for c in COLUMNS if c.child}
    assert {c.name for c in COLUMNS if c.child} <= set(JobResult.model_fields)
    assert set(SHARED_COLUMNS) | set(OWN_COLUMNS) | {"sweep_id"} == set(RESULT_COLUMNS)
    assert {c.name for c in COLUMNS if c.kind is int} <= COUNT_COLUMNS
    for c in COLUMNS:
        if c.row and c.aggregate != "none":
            assert c.report_column in REPORT_COLUMNS, c.name
    frame = results_frame([result_row(a_result())])
    for c in COLUMNS:
        if c.row and c.kind is float:
            assert frame[c.name].dtype == float, c.name


def test_a_measured_figure_reaches_the_row_the_report_and_its_places() -> None:
    """peak_host_mb: measured by the training process, aggregated as the worst repeat, shown in report.md and
    on the HTML page (the terminal table leaves it out), absent where nobody measured it."""
    results = [a_result(i, peak_host_mb=mb) for i, mb in enumerate([300.0, 512.5, 410.0])]
    assert [result_row(r)["peak_host_mb"] for r in results] == [300.0, 512.5, 410.0]
    report = aggregate(results_frame(result_row(r) for r in results))
    assert report.loc[0, "peak_host_mb_max"] == 512.5
    summary = summary_frame(report)
    assert summary.loc[0, "peak memory MiB"] == "512.5"
    assert "peak_host_mb" not in {c.name for c in shown_in("terminal")}
    assert "peak_host_mb" in {c.name for c in shown_in("html")}

    unmeasured = aggregate(results_frame([result_row(a_result())]))
    assert pd.isna(unmeasured.loc[0, "peak_host_mb_max"])
    assert "peak memory MiB" not in summary_frame(unmeasured).columns


def test_an_old_record_without_the_figure_still_reads() -> None:
    raw = a_result().model_dump(mode="json")
    del raw["peak_host_mb"]
    assert JobResult.model_validate(raw).peak_host_mb is None


@pytest.mark.parametrize(
    ("shown", "value", "text"),
    [
        (Shown("x"), 1234.0, "1,234"),
        (Shown("x", digits=3), 0.123456, "0.123"),
        (Shown("x", scale=1000, digits=3), 0.0123456, "12.3"),
        (Shown("x", percent=True), 0.9123, "91.2%"),
        (Shown("x"), None, ""),
        (Shown("x"), float("nan"), ""),
        (Shown("x"), "not a number", ""),
    ],
)
def test_figures_read_the_same_everywhere(shown: Shown, value: object, text: str) -> None:
    assert format_figure(Column("x", float, "", shown=shown), value) == text


def test_every_shown_title_is_unique_in_its_place() -> None:
    for place in ("terminal", "markdown", "html"):
        titles = [c.shown.title_in(place) for c in shown_in(place) if c.shown]
        assert len(titles) == len(set(titles)), place
    assert columns.aggregated("stats") == ["steady_epoch_s", "steady_samples_per_s", "energy_j_per_sample"]
