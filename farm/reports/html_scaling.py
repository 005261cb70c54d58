"""The HTML report's scaling section: each data-parallel cell's speedup over one device, with its CI, against
perfect scaling, then the scaling table (farm.reports.scaling)."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from farm.reports.html_page import figure_html, table_html
from farm.reports.markdown import SCALING_TITLES, scaling_lines
from farm.reports.scaling import scaling


def scaling_section(p: Any, results: pd.DataFrame) -> str:
    """The chart of speedups at N devices (the dashed line: no speedup) and the table; empty without any."""
    table = scaling(results)
    if table.empty:
        return ""
    rows = [
        p.IntervalRow(
            label=f"{rec['workload']} — {rec['device']}/{rec['backend']}, batch {rec['batch_size']}"
            f"{'/device' if rec.get('batch_scope') == 'device' else ''}: "
            f"{rec['devices']} devices",
            value=float(rec["speedup"]),
            low=float(rec["speedup_ci_low"]),
            high=float(rec["speedup_ci_high"]),
            series=f"{rec['devices']} devices",
            note=f"efficiency {float(rec['efficiency']):.2f}",
        )
        for rec in table.to_dict("records")
    ]
    svg = p.intervals_svg(
        rows,
        "speedup over one device (median throughput at N devices / at 1; N would be perfect scaling)",
        salt="scaling",
        label="Speedup over one device per data-parallel cell with 95% CIs",
    )
    caption = (
        "How many times the throughput of one device each data-parallel cell reaches, with the 95% CI of the ratio "
        "(both sides bootstrapped); efficiency is that speedup divided by the devices. Virtual CPU devices share one "
        "machine's cores, so their efficiency is well under 1 by design."
    )
    return figure_html(svg, html.escape(caption)) + table_html(SCALING_TITLES, scaling_lines(table))


def has_scaling(results: pd.DataFrame) -> bool:
    return "devices_per_job" in results.columns and bool(results["devices_per_job"].notna().any())
