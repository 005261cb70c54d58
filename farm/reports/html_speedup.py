"""The "GPU over CPU" section of the sweep report (:mod:`farm.reports.html_sweep`), with the ``--ratio-by`` ratios.

* :func:`speedup_section` — the GPU-over-CPU speedup per cell with its CI, then, when asked for, a chart and a
  table of the ratios of :func:`farm.reports.ratios.ratios`.
* :func:`speedup_rows` — the report rows that have a speedup (GPU cells with a CPU counterpart); the summary
  (:mod:`farm.reports.html_summary`) tells the same rows in words.
* :func:`ratio_note` — a ratio and its CI as a chart label and table cell show it ("9.8× [9.1–10]").
"""

from __future__ import annotations

import html
import math
from typing import Any

import pandas as pd

from farm.columns import CELL_COLUMNS
from farm.reports.html_page import (
    CONFIDENCE,
    MAX_CELLS,
    blank,
    capped_note,
    ci_text,
    figure_html,
    num,
    ratio_text,
    records,
    row_labels,
    table_html,
    varying_columns,
)


def speedup_rows(report: pd.DataFrame) -> pd.DataFrame:
    """The GPU rows with a speedup, in report order (none when the report predates the speedup columns)."""
    if "speedup_vs_cpu" not in report.columns:
        return report.iloc[0:0]
    keep = report["device"].eq("gpu").fillna(False).to_numpy(dtype=bool) & report["speedup_vs_cpu"].notna().to_numpy()
    return report.loc[keep]


def speedup_section(p: Any, report: pd.DataFrame, results: pd.DataFrame, ratios: pd.DataFrame | None) -> str:
    """The speedup chart (or why there is none), then the ``--ratio-by`` ratios when there are any."""
    speed = speedup_rows(report)
    parts = []
    if len(speed):
        shown = speed.iloc[:MAX_CELLS]
        labels = row_labels(shown, varying_columns(report), device=False)
        rows = [
            p.IntervalRow(
                label=f"{lbl} — {rec.get('device_name')}",
                value=float(rec["speedup_vs_cpu"]),
                low=float(rec["speedup_vs_cpu_ci_low"]),
                high=float(rec["speedup_vs_cpu_ci_high"]),
                series=str(rec.get("backend")),
                note=ratio_note(rec["speedup_vs_cpu"], rec["speedup_vs_cpu_ci_low"], rec["speedup_vs_cpu_ci_high"]),
            )
            for lbl, rec in zip(labels, records(shown), strict=True)
        ]
        svg = p.intervals_svg(
            rows,
            "GPU-over-CPU speedup (median GPU throughput / median CPU throughput; > 1: the GPU is faster)",
            salt="speedup",
            label="GPU over CPU speedup per cell with 95% CIs",
        )
        caption = (
            f"How many times faster the GPU runs each cell than the CPU, with the {CONFIDENCE:.0%} CI of the ratio "
            "(both sides bootstrapped); the dashed line is no difference. Colour: backend." + capped_note(len(speed))
        )
        parts.append(figure_html(svg, html.escape(caption)))
    else:
        parts.append('<p class="muted">No GPU cell has a CPU counterpart in this sweep: no speedup to show.</p>')
    if ratios is not None and len(ratios):
        parts.append(_ratios_part(p, ratios, results))
    return "".join(parts)


def ratio_note(r: Any, lo: Any, hi: Any) -> str:
    """A ratio as tables and chart labels show it: 9.8× [9.1–10], or 9.8× (no CI); "" without a ratio."""
    if blank(r):
        return ""
    ci = ci_text(lo, hi, ratio_text)
    return f"{ratio_text(float(r))}×" + (f" [{ci}]" if ci else " (no CI)")


def _ratio_by(ratios: pd.DataFrame, results: pd.DataFrame, baseline: str) -> str:
    """The column ``ratios`` was taken by (``--ratio-by``): an extra column when it is not a cell column, else
    the cell column whose baseline value the results hold but no ratio row has."""
    from farm.reports.ratios import RATIO_COLUMNS

    ratio_columns = {"hardware", *RATIO_COLUMNS}
    extra = [c for c in ratios.columns if c not in CELL_COLUMNS and c not in ratio_columns]
    if extra:
        return str(extra[0])
    for c in CELL_COLUMNS:
        if (
            c in ratios.columns
            and c in results.columns
            and (ratios[c].astype(str) != baseline).all()
            and (results[c].astype(str) == baseline).any()
        ):
            return c
    return "baseline"


def _ratios_part(p: Any, ratios: pd.DataFrame, results: pd.DataFrame) -> str:
    baseline = str(ratios["baseline"].iloc[0]) if "baseline" in ratios else "?"
    metric = str(ratios["metric"].iloc[0]) if "metric" in ratios else "steady_samples_per_s"
    by = _ratio_by(ratios, results, baseline)
    shown = ratios.iloc[:MAX_CELLS]
    labels = row_labels(shown, varying_columns(ratios), hardware="hardware")
    rows = [
        p.IntervalRow(
            label=lbl,
            value=float(rec["ratio"]) if not blank(rec["ratio"]) else math.nan,
            low=float(rec["ratio_ci_low"]) if not blank(rec["ratio_ci_low"]) else math.nan,
            high=float(rec["ratio_ci_high"]) if not blank(rec["ratio_ci_high"]) else math.nan,
            series=str(rec.get(by)),
            note=ratio_note(rec["ratio"], rec["ratio_ci_low"], rec["ratio_ci_high"]),
        )
        for lbl, rec in zip(labels, records(shown), strict=True)
    ]
    direction = "> 1: faster" if metric.endswith("_per_s") else "< 1: faster"
    svg = p.intervals_svg(
        rows,
        f"{metric} ratio over {by} = {baseline} ({direction})",
        salt="ratios",
        label=f"Ratios over {by} {baseline}",
    )
    caption = (
        f"The median of each cell over the median of its {by} = {baseline} counterpart (same cell, same hardware), "
        f"with the {CONFIDENCE:.0%} CI; the dashed line is no difference. Colour: {by}." + capped_note(len(ratios))
    )
    headers = ["cell", by, "n", "median", "n baseline", "baseline median", "ratio", f"{CONFIDENCE:.0%} CI"]
    table_rows = [
        [
            lbl,
            rec.get(by),
            num(rec.get("n")),
            num(rec.get("median")),
            num(rec.get("n_baseline")),
            num(rec.get("baseline_median")),
            num(rec.get("ratio")),
            ci_text(rec.get("ratio_ci_low"), rec.get("ratio_ci_high")),
        ]
        for lbl, rec in zip(
            row_labels(ratios, varying_columns(ratios), hardware="hardware"), records(ratios), strict=True
        )
    ]
    return (
        f"<h3>Ratios over {html.escape(by)} = {html.escape(baseline)}</h3>"
        + figure_html(svg, html.escape(caption))
        + table_html(headers, table_rows, total=len(ratios))
    )
