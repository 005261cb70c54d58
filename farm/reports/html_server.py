"""The HTML report's Server-scenario section: latency against load for each inference cell that ran MLPerf's
Server scenario (workers.server), one chart per latency bound, and a table of every rate tried."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from farm.reports.html_page import esc, figure_html, num, table_html


def _points(text: Any) -> list[dict[str, Any]]:
    """A result's curve (JSON text from the worker, so checked: a list of objects with numbers)."""
    try:
        points = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    return [
        p
        for p in points
        if isinstance(p, dict) and all(isinstance(p.get(k), (int, float)) for k in ("rate_qps", "p99_s"))
    ]


def has_server_curves(results: pd.DataFrame) -> bool:
    return "server_curve" in results.columns and bool(results["server_curve"].notna().any())


def server_section(p: Any, results: pd.DataFrame) -> str:
    """Per bound, a chart of p99 latency against the rate tried (each cell's repeats pooled, in rate order), then
    the table of every rate tried with what it achieved."""
    ok = results[results["server_curve"].notna()]
    if "status" in ok.columns:
        ok = ok[ok["status"] == "succeeded"]
    parts = []
    for bound, group in ok.groupby("server_p99_bound_ms", sort=True):
        bound_ms = float(bound)  # type: ignore[arg-type]  # a cell column of floats
        curves, rows = [], []
        for (workload, device, backend, batch), cell in group.groupby(
            ["workload", "device", "backend", "batch_size"], sort=True
        ):
            name = f"{workload} — {device}/{backend}, batch {batch}"
            points = sorted(
                (
                    (float(q["rate_qps"]), float(q["p99_s"]), bool(q.get("met")))
                    for t in cell["server_curve"]
                    for q in _points(t)
                ),
            )
            if not points:
                continue
            curves.append((name, points))
            best = max((r for r, _, met in points if met), default=None)
            for rate, p99, met in points:
                rows.append(
                    [name, num(rate), num(1000 * p99), "yes" if met else "no", "highest held" if rate == best else ""]
                )
        if not curves:
            continue
        bound_s = bound_ms / 1000
        svg = p.server_svg(
            curves, bound_s, salt=f"server-{bound_ms}", label=f"p99 latency against load, bound {bound_ms:g} ms"
        )
        caption = (
            f"MLPerf's Server scenario: requests arrive as a Poisson process at each rate tried and are answered one "
            f"at a time; a dot is one rate of one repeat's search, its p99 latency (queueing included). The red line "
            f"is the bound ({bound_ms:g} ms); hollow dots missed it. The cell's answer (server QPS in the table "
            "above) is the highest rate that held."
        )
        parts.append(figure_html(svg, esc(caption)))
        parts.append(table_html(["cell", "rate /s", "p99 ms", "met", ""], rows))
    return "".join(parts)
