"""``farm history --html``: one line chart per cell over its sweeps, each change marked with what changed, and
the table of flagged changes. The sweep report (:mod:`farm.reports.html_sweep`) shows the same section when asked for
a history."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from farm.reports import html_page as page

#: Cells given a history chart (those with a flagged change first).
MAX_HISTORY_CHARTS = 24


def history_section(p: Any, history: pd.DataFrame) -> str:
    if history.empty:
        return '<p class="muted">No history: no cell ran in more than one sweep here.</p>'
    key_cols = [c for c in page.CELL_KEY if c in history.columns]
    groups = list(history.groupby(key_cols, dropna=False, sort=False).indices.values())
    changed = [bool(history["change"].iloc[g].astype(bool).any()) for g in groups]
    order = sorted(range(len(groups)), key=lambda i: (not changed[i], i))  # flagged cells first, else as given
    varying = page.varying_columns(history)
    parts = []
    for i in order[:MAX_HISTORY_CHARTS]:
        h = history.iloc[groups[i]]
        first = h.iloc[[0]]
        title = page.row_labels(first, varying, hardware="hardware_key")[0]
        unit = next((str(u) for u in h["unit"] if not page.blank(u)), "samples") if "unit" in h else "samples"
        points = []
        for rec in page.records(h):
            pct = rec.get("change_pct")
            note = str(rec.get("changed") or "")
            if bool(rec.get("change")) and not page.blank(pct):
                note = f"{pct:+.1f}%: {note}" if note else f"{pct:+.1f}%"
            tick = str(rec.get("sweep_id"))
            when = rec.get("when")
            if not page.blank(when):
                tick += f" ({str(when)[:10]})"
            points.append(
                p.HistoryPoint(
                    tick=tick,
                    median=float(rec["median"]) if not page.blank(rec["median"]) else math.nan,
                    low=float(rec["ci_low"]) if not page.blank(rec["ci_low"]) else math.nan,
                    high=float(rec["ci_high"]) if not page.blank(rec["ci_high"]) else math.nan,
                    change=bool(rec.get("change")) and not page.blank(rec.get("change")),
                    note=note,
                )
            )
        svg = p.history_svg(points, f"{unit}/s (median)", title, salt=f"history-{i}", label=f"History of {title}")
        flagged = [pt for pt in points if pt.change]
        caption = (
            f"{title}: the median steady throughput of each sweep in time order with its {page.CONFIDENCE:.0%} CI band."
            + (
                " Flagged changes: " + "; ".join(f"{pt.tick}: {pt.note}" for pt in flagged) + "."
                if flagged
                else " No change flagged."
            )
        )
        parts.append(page.figure_html(svg, html.escape(caption)))
    if len(groups) > MAX_HISTORY_CHARTS:
        parts.append(
            f'<p class="muted">Charts for {MAX_HISTORY_CHARTS} of {len(groups)} cells (those with a flagged change '
            "first); the table below and the CSV hold every cell.</p>"
        )
    flagged_rows = history[history["change"].fillna(False).astype(bool)]
    labels = page.row_labels(flagged_rows, varying, hardware="hardware_key")
    rows = [
        [
            lbl,
            rec.get("sweep_id"),
            rec.get("when"),
            page.num(rec.get("median")),
            "" if page.blank(rec.get("change_pct")) else f"{rec['change_pct']:+.1f}%",
            "" if page.blank(rec.get("p_value")) else f"{rec['p_value']:.3g}",
            rec.get("changed"),
        ]
        for lbl, rec in zip(labels, page.records(flagged_rows), strict=True)
    ]
    if rows:
        parts.append(
            page.table_html(
                ["cell", "sweep", "when", "median", "change", "p", "what changed"], rows, caption="Flagged changes."
            )
        )
    else:
        parts.append("<p>No cell changed beyond its noise.</p>")
    return "".join(parts)


def _history_summary(history: pd.DataFrame) -> str:
    if history.empty:
        return "No cell ran in more than one sweep: there is no history to show."
    key_cols = [c for c in page.CELL_KEY if c in history.columns]
    cells = history.groupby(key_cols, dropna=False).ngroups
    sweeps = history["sweep_id"].nunique()
    flagged = history[history["change"].fillna(False).astype(bool)]
    down = int((flagged["change_pct"] < 0).sum())
    text = f"{cells} cell(s) over {sweeps} sweep(s); {len(flagged)} change(s) flagged: {down} slower, "
    text += f"{len(flagged) - down} faster."
    if len(flagged):
        rec = (
            flagged.iloc[int(np.nanargmax(np.abs(flagged["change_pct"].to_numpy(dtype=float))))]
            if flagged["change_pct"].notna().any()
            else flagged.iloc[0]
        )
        label = page.row_labels(rec.to_frame().T, page.varying_columns(history), hardware="hardware_key")[0]
        pct = rec.get("change_pct")
        text += f" The largest: {label} at sweep {rec['sweep_id']}" + ("" if page.blank(pct) else f" ({pct:+.1f}%)")
        text += f", where {rec['changed']}." if rec.get("changed") else "."
    return text


def write_history_html(history: pd.DataFrame, path: Path, *, title: str) -> None:
    """Write ``farm history``'s page: one chart per cell over its sweeps (:func:`farm.reports.history.history_frame`),
    changes marked with what changed, and the table of flagged changes."""
    page.write_page(path, history_html(history, title=title))


def history_html(history: pd.DataFrame, *, title: str) -> str:
    """The page :func:`write_history_html` writes, as a string (``farm dashboard`` serves it)."""
    p = page.load_plots()
    sections = [("history", "History", history_section(p, history))]
    return page.page_html(title, sections, html.escape(_history_summary(history)))
