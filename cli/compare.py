"""``farm compare A B``: cell by cell, did sweep B get faster or slower than sweep A?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import (
    EXIT_REGRESSION,
    BrokerOption,
    JsonOption,
    RunDirOption,
    check_file_options,
    console,
    fail,
    friendly_errors,
    open_store,
    print_json,
)
from cli.report_view import (
    KEEP_FLAG,
    IncludeContendedOption,
    IncludeInvalidOption,
    frames_for,
    invalid_line,
    number_text,
    print_invalid,
)
from cli.sweep_args import resolve

CHANGE_STYLE = {
    "faster": "green",
    "slower": "bold red",
    "no change": "dim",
    "inconclusive": "yellow",
    "only in A": "magenta",
    "only in B": "magenta",
}
SHOWN_CELL = [
    ("workload", "workload"),
    ("device", "device"),
    ("backend", "backend"),
    ("batch_size", "batch"),
    ("hardware", "hardware"),
]

if TYPE_CHECKING:
    import pandas as pd


def _ratio(rec: dict) -> str:
    r, lo, hi = rec.get("ratio"), rec.get("ratio_ci_low"), rec.get("ratio_ci_high")
    if r is None or r != r:
        return ""
    if lo is None or lo != lo or hi is None or hi != hi:
        return f"{r:.3f}"
    return f"{r:.3f} [{lo:.3f}, {hi:.3f}]"


def _p(v: float | None) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return f"{v:.2g}" if v < 0.001 else f"{v:.3f}"


def compare_table(cmp: pd.DataFrame, label_a: str, label_b: str, metric: str, higher: bool) -> Table:
    from farm.columns import CELL_COLUMNS
    from farm.reports.markdown import params_text, varying_params

    shown = {c for c, _ in SHOWN_CELL}
    # Cell columns that vary among the rows but are not shown on their own go into one "cell" column.
    extra = [c for c in CELL_COLUMNS if c not in shown and cmp[c].astype(str).nunique(dropna=False) > 1]
    faster = ">1" if higher else "<1"
    table = Table(
        title=f"{label_a} (A) → {label_b} (B): {metric}, ratio = B/A median ({faster} is faster)", title_justify="left"
    )
    for _, title in SHOWN_CELL:
        table.add_column(title)
    if extra:
        table.add_column("cell")
    for title in ("n A/B", "median A", "median B", "ratio [CI]", "p", "change", "note"):
        table.add_column(title, justify="right" if title.startswith(("median", "n A")) else "left")
    varying = varying_params(cmp)  # a cell's parameters: only those that differ among its workload's cells
    for rec in cmp.to_dict("records"):
        style = CHANGE_STYLE.get(rec["change"], "")
        row = [escape(number_text(rec.get(c))) for c, _ in SHOWN_CELL]
        if extra:
            parts = [
                params_text(rec.get(c), varying.get(str(rec.get("workload")), set()))
                if c == "params"
                else f"{c}={rec.get(c)}"
                for c in extra
            ]
            row.append(escape(" ".join(p for p in parts if p)))
        row += [
            f"{rec['n_a']}/{rec['n_b']}",
            number_text(rec["median_a"]),
            number_text(rec["median_b"]),
            _ratio(rec),
            _p(rec["p_value"]),
            f"[{style}]{rec['change']}[/]" if style else rec["change"],
            escape(rec.get("note") or ""),
        ]
        table.add_row(*row)
    return table


def _kinds_total(cmp: pd.DataFrame) -> str:
    """Why the invalid repeats of both sides were, summed over the cells (``"2 contended, 1 too short"``)."""
    from farm.reports.frames import add_kinds, kinds_text

    counts: dict[str, int] = {}
    for column in ("invalid_kinds_a", "invalid_kinds_b"):
        for text in cmp[column] if column in cmp.columns else []:
            add_kinds(counts, text)
    return kinds_text(counts)


@friendly_errors
def compare_cmd(
    sweep_a: str = typer.Argument(..., help="The baseline sweep A: id, prefix or name."),
    sweep_b: str = typer.Argument(..., help="The sweep B compared against it: id, prefix or name."),
    metric: str = typer.Option(
        "steady_samples_per_s",
        "--metric",
        "-m",
        help="Result column to compare: a throughput (*_per_s, higher is faster) or a "
        "time (*_s, lower is faster), e.g. steady_epoch_s.",
    ),
    threshold: float = typer.Option(
        0.05, "--threshold", "-t", min=0.0, help="Smallest relative change that counts: |B/A - 1| must exceed it."
    ),
    output: Path = typer.Option(
        None,
        "-o",
        "--output",
        help="Write the comparison to this file (.csv, .json, .md, .parquet), whole or not at all.",
    ),
    html: Path = typer.Option(
        None,
        "--html",
        help="Also write the comparison as one self-contained HTML page (the ratio B/A of every cell with its CI, "
        "in verdict colours); needs the plot extra (pip install 'benchfarm[plot]').",
    ),
    fail_on_regression: bool = typer.Option(
        False, "--fail-on-regression", help=f"Exit {EXIT_REGRESSION} when any cell is 'slower' (for CI)."
    ),
    include_invalid: bool = IncludeInvalidOption,
    include_contended: bool = IncludeContendedOption,
    broker: str = BrokerOption,
    run_dir: Path = RunDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Compare two sweeps cell by cell: median of B over median of A with a bootstrap CI, and a Mann-Whitney
    rank test (timings are skewed, not normal).

    A cell is 'faster' or 'slower' only when p < 0.05 AND |ratio - 1| > --threshold; otherwise 'no change'.
    It is 'inconclusive' when a side has fewer than 2 values or too few repeats for the test ever to reach
    p < 0.05 (use at least 4 repeats a side); such a cell, and one with p >= 0.05, says in its note how many
    valid repeats a side would settle it. Cells are matched on every cell column plus the hardware; cells on one
    side only are listed as 'only in A' / 'only in B'. Invalid repeats (contended: other processes used the
    machine while they were measured; throttled; a steady window too short to time) are left out on both sides
    and counted, with why, in the note; a verdict rests on them only with --include-invalid.

    Exit status: 0 when the comparison ran (whatever it found), 3 with --fail-on-regression when at least one
    cell is 'slower', 2 for a usage error (unknown sweep, metric without a direction), 1 when Redis is
    unreachable, a file cannot be written, or --html lacks the plot extra.
    """
    from farm.reports.compare import compare, higher_is_better, regressions  # pandas: only for commands that use it
    from farm.reports.files import write_frame

    try:
        higher = higher_is_better(metric)
    except ValueError as e:
        fail(str(e))
    check_file_options(output, html)
    store = open_store(broker, run_dir)
    sid_a, sid_b = resolve(store, sweep_a), resolve(store, sweep_b)
    df_a, df_b = frames_for(store, sid_a), frames_for(store, sid_b)
    for label, df in (("A", df_a), ("B", df_b)):
        if metric not in df.columns:
            fail(f"sweep {label} has no column {metric!r}")
    include = include_invalid or include_contended  # --include-contended: the same flag's older name
    try:
        cmp = compare(df_a, df_b, metric=metric, threshold=threshold, include_invalid=include)
    except ValueError as e:
        fail(str(e))
    slower = regressions(cmp)
    busy = {"a": int(cmp["n_contended_a"].sum()), "b": int(cmp["n_contended_b"].sum())}
    invalid = {"a": int(cmp["n_invalid_a"].sum()), "b": int(cmp["n_invalid_b"].sum())}
    if output:
        write_frame(cmp, output)
    if html:
        from farm.reports.html_compare import write_compare_html

        write_compare_html(cmp, html, title=f"farm compare: {sid_a} (A) → {sid_b} (B), {metric}")
    if as_json:
        print_json(
            {
                "sweep_a": sid_a,
                "sweep_b": sid_b,
                "metric": metric,
                "higher_is_better": higher,
                "threshold": threshold,
                "include_invalid": include,
                "include_contended": include,
                "invalid": invalid,
                "contended": busy,
                "cells": json.loads(cmp.to_json(orient="records")),
                "regressions": len(slower),
            }
        )
    else:
        console.print(compare_table(cmp, sid_a, sid_b, metric, higher))
        counts = cmp["change"].value_counts()
        console.print(", ".join(f"{k} {v}" for k, v in counts.items()) or "no cells")
        undecided = int(cmp["note"].fillna("").str.contains("would need", regex=False).sum())
        if undecided:
            console.print(
                f"{undecided} cell(s) without a verdict: each note says how many valid repeats a side would settle it",
                markup=False,
                highlight=False,
            )
        print_invalid(
            invalid_line(
                invalid["a"] + invalid["b"],
                _kinds_total(cmp),
                included=include,
                keep=KEEP_FLAG,
                contended=busy["a"] + busy["b"],
                sweeps=list(dict.fromkeys(sid for sid, k in ((sid_a, busy["a"]), (sid_b, busy["b"])) if k)),
            )
        )
        if output:
            console.print(f"wrote {len(cmp)} cells to {output}", markup=False, highlight=False)
        if html:
            console.print(f"wrote {html}", markup=False, highlight=False)
    if fail_on_regression and len(slower):
        if not as_json:
            console.print(f"[bold red]{len(slower)} regression(s)[/]")
        raise typer.Exit(EXIT_REGRESSION)
