"""``farm results`` (one row per job) and ``farm report`` (one row per sweep cell, statistics over repeats)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import (
    BrokerOption,
    RunDirOption,
    check_file_options,
    console,
    fail,
    friendly_errors,
    open_store,
    settings,
)
from cli.report_view import KEEP_FLAG, IncludeContendedOption, IncludeInvalidOption, frames_for, print_report
from cli.sweep_args import resolve

if TYPE_CHECKING:
    import pandas as pd


@friendly_errors
def results_cmd(
    sweep_id: str = typer.Argument(None, help="Sweep id, prefix or name (default: the latest)."),
    output: Path = typer.Option(
        None, "-o", "--output", help="Write the rows to this file (.csv, .json, .md, .parquet), whole or not at all."
    ),
    broker: str = BrokerOption,
    run_dir: Path = RunDirOption,
) -> None:
    """One row per job (tidy): the spec's fields and what was measured."""
    from farm.reports.files import write_frame

    check_file_options(output)
    store = open_store(broker, run_dir)
    df = frames_for(store, resolve(store, sweep_id))
    if output:
        write_frame(df, output)
        console.print(f"wrote {len(df)} rows to {output}", markup=False, highlight=False)
    else:
        from farm.errors import escape
        from farm.reports.files import integer_counts
        from farm.safe_text import csv_safe  # no text cell a spreadsheet would run as a formula

        text = csv_safe(integer_counts(df)).to_csv(index=False)
        typer.echo(escape(text, keep="\n\t"), nl=False)  # no ESC/OSC from a job's error reaches the terminal


def _invalid_note(report: pd.DataFrame, included: bool, sweep_id: str) -> str | None:
    """The line on invalid repeats, for the end of a ``.md`` summary (as ``farm run`` ends its ``report.md``)."""
    from cli.report_view import invalid_line
    from farm.reports.frames import invalid_total

    count, kinds = invalid_total(report)
    contended = int(report["n_contended"].fillna(0).sum()) if "n_contended" in report.columns else 0
    keep = f"`farm report {sweep_id} {KEEP_FLAG}`"
    return invalid_line(count, kinds, included=included, keep=keep, contended=contended, sweeps=[sweep_id])


@friendly_errors
def report_cmd(
    sweep_id: str = typer.Argument(None, help="Sweep id, prefix or name (default: the latest)."),
    output: Path = typer.Option(
        None,
        "-o",
        "--output",
        help="Write the report to this file, whole or not at all: .csv, .json or .parquet hold every statistic of "
        "every cell, .md a summary to read.",
    ),
    ratio_by: str = typer.Option(
        None,
        "--ratio-by",
        metavar="COLUMN",
        help="Also print throughput ratios over a baseline value of this cell column, "
        "e.g. --ratio-by backend --baseline tensorflow.",
    ),
    baseline: str = typer.Option(None, "--baseline", metavar="VALUE", help="The baseline value for --ratio-by."),
    html: Path = typer.Option(
        None,
        "--html",
        help="Also write the report as one self-contained HTML page (charts with CIs; opens offline, no script); "
        "needs the plot extra (pip install 'benchfarm[plot]').",
    ),
    include_invalid: bool = IncludeInvalidOption,
    include_contended: bool = IncludeContendedOption,
    price: list[str] = typer.Option(
        None,
        "--price",
        metavar="KEY=USD_PER_HOUR",
        help="What an hour of some hardware costs, for the cost per million samples (and to reach a target "
        "accuracy): KEY is a hardware key, device name, host or device kind (gpu, cpu); repeatable; adds to and "
        "overrides the settings' prices.",
    ),
    broker: str = BrokerOption,
    run_dir: Path = RunDirOption,
) -> None:
    """Aggregate the sweep: one row per cell with n, median, IQR, mean, CI and the GPU-over-CPU speedup.

    Invalid repeats (contended: other processes used the machine while they were measured; throttled; a CPU
    clock that changed; a steady window too short to time) are left out of the statistics and counted per cell
    (n_invalid, with why in invalid_kinds); --include-invalid keeps them."""
    from farm.reports.aggregate import aggregate
    from farm.reports.cost import parse_prices, with_costs
    from farm.reports.files import write_frame
    from farm.reports.ratios import ratios
    from farm.store import Store

    if (ratio_by is None) != (baseline is None):
        fail("--ratio-by and --baseline go together, e.g. --ratio-by backend --baseline tensorflow")
    try:
        given = parse_prices(price or [])
    except ValueError as e:
        fail(str(e))
    check_file_options(output, html)  # a bad name (exit 2), an unwritable place or no matplotlib (exit 1)
    cfg = settings(run_dir, broker_url=broker)
    store = Store.from_settings(cfg)
    sid = resolve(store, sweep_id)
    frame = frames_for(store, sid)
    include = include_invalid or include_contended  # --include-contended: the same flag's older name
    report = with_costs(aggregate(frame, include_invalid=include), {**cfg.prices, **given})
    ratio_table = None
    if ratio_by is not None:
        try:
            ratio_table = ratios(frame, ratio_by, baseline, include_invalid=include)
        except ValueError as e:
            fail(str(e))
    if output:
        if output.suffix.lower() == ".md":  # a person's summary; .csv/.json/.parquet hold every statistic
            from farm.reports.markdown import report_title, write_summary_md

            write_summary_md(output, report, frame, title=report_title(frame), note=_invalid_note(report, include, sid))
        else:
            write_frame(report, output)
        console.print(f"wrote {len(report)} cells to {output}", markup=False, highlight=False)
    if html:
        from farm.reports.html_sweep import write_report_html
        from farm.reports.markdown import report_title

        write_report_html(report, frame, html, title=report_title(frame), ratios=ratio_table)
        console.print(f"wrote {html}", markup=False, highlight=False)
    print_report(report, included=include, keep=KEEP_FLAG, sweeps=[sid], results=frame)
    if ratio_table is not None:
        shown = [
            "workload",
            "device",
            "backend",
            "batch_size",
            "hardware",
            "n",
            "median",
            "n_baseline",
            "baseline_median",
            "ratio",
            "ratio_ci_low",
            "ratio_ci_high",
        ]
        shown = [ratio_by, *(c for c in shown if c != ratio_by)]
        busy = ["n_invalid", "n_invalid_baseline"]
        if len(ratio_table) and (ratio_table[busy] > 0).any().any():  # counted on the rows they concern
            shown[shown.index("baseline_median") + 1 : shown.index("baseline_median") + 1] = busy
        console.print(
            f"ratios of steady_samples_per_s medians over {ratio_by} = {baseline} "
            f"({len(ratio_table)} cells with a baseline counterpart)",
            markup=False,
            highlight=False,
        )
        if len(ratio_table):
            console.print(ratio_table[shown].to_string(index=False), markup=False, highlight=False)
