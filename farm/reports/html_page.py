"""What every HTML page of benchfarm shares: the document (charset, a Content-Security-Policy that forbids every
fetch and every script, inline styles), escaping and number formatting, tables, figures, the labels of cells, and
writing a page whole or not at all.

The pages are :mod:`farm.reports.html_sweep` (one sweep), :mod:`farm.reports.html_history` (``farm history --html``) and
:mod:`farm.reports.html_compare` (``farm compare --html``). Everything that comes from the data goes through
:func:`esc` or :func:`table_html`, which escapes every cell that is not :class:`Raw` markup built here.

matplotlib is the ``plot`` extra: :func:`load_plots` imports it (through :mod:`farm.reports.plots`) only when a page
is drawn, and says what to install (:class:`PlotExtraMissing`, one line, exit 1) when it is absent.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from farm.columns import CELL_COLUMNS
from farm.reports.files import OutputError, write_atomic

#: What to tell a user whose install lacks matplotlib.
PLOT_EXTRA_MISSING = "the HTML report needs the plot extra: pip install 'benchfarm[plot]'"
#: Cells drawn per chart (in report order); the tables and CSVs hold the rest.
MAX_CELLS = 40
#: Rows per HTML table.
MAX_TABLE_ROWS = 500
#: The confidence of every interval shown (that of farm.reports.aggregate.aggregate's default).
CONFIDENCE = 0.95

#: The cell's identity in a report row: the sweep cell plus the hardware that ran it
#: (farm.reports.aggregate.GROUP_COLUMNS).
CELL_KEY = [*CELL_COLUMNS, "hardware_key"]


class PlotExtraMissing(OutputError):
    """matplotlib is not installed: the HTML cannot be drawn (an environment failure: one line, exit 1)."""


def require_plotting() -> None:
    """Raise :class:`PlotExtraMissing` unless matplotlib can be imported. Commands call it before any work, so
    ``--html`` on a submit-only install fails at once, in one line that says what to install."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotExtraMissing(PLOT_EXTRA_MISSING) from None


def load_plots() -> Any:
    require_plotting()
    from farm.reports import plots

    return plots


# ------------------------------------------------------------------------------------------------- text
def blank(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, float | np.floating) and math.isnan(v)


def esc(v: Any) -> str:
    """Escaped text of a value ("" for a missing one): every string from the data goes through here."""
    return "" if blank(v) else html.escape(str(v), quote=True)


def num(v: Any) -> str:
    """A measurement for people: 4 significant digits, thousands separated; "" when missing."""
    if blank(v):
        return ""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{x:,.4g}" if abs(x) < 1000 else f"{x:,.0f}"


def ci_text(lo: Any, hi: Any, fmt: Any = num) -> str:
    if blank(lo) or blank(hi):
        return ""
    return f"{fmt(lo)}–{fmt(hi)}"


def ratio_text(r: float) -> str:
    """A ratio as people say it: 9.8, 12, 0.45."""
    if not math.isfinite(r):
        return "?"
    if abs(r) >= 10:
        return f"{r:.0f}"
    return f"{r:.1f}" if abs(r) >= 1 else f"{r:.2f}"


def common_unit(df: pd.DataFrame) -> str | None:
    """The one unit of every row (``unit`` column), "samples" when none is named, None when they differ."""
    if "unit" not in df.columns:
        return "samples"
    units = {str(u) for u in df["unit"] if not blank(u)}
    if len(units) > 1:
        return None
    return units.pop() if units else "samples"


def capped_note(n: int, what: str = "cells") -> str:
    """The caption's note when a chart shows only the first ``MAX_CELLS`` of ``n``."""
    return (
        f" Showing the first {MAX_CELLS} of {n:,} {what} in report order; the table and the CSV hold all."
        if n > MAX_CELLS
        else ""
    )


class Raw(str):
    """Table-cell markup built here from escaped parts: written as is."""


def table_html(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, caption: str = "", total: int | None = None
) -> str:
    """A plain <table>; cells are escaped unless they are :class:`Raw`. ``total``: rows before the cap."""
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in headers)
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cells = "".join(f"<td>{c if isinstance(c, Raw) else esc(c)}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    total = len(rows) if total is None else total
    note = ""
    if total > min(len(rows), MAX_TABLE_ROWS):
        note = f" (the first {min(len(rows), MAX_TABLE_ROWS):,} of {total:,} rows; the CSV output holds them all)"
    cap = f"<caption>{caption}{html.escape(note)}</caption>" if caption or note else ""
    return f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def figure_html(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def _section(anchor: str, title: str, body: str) -> str:
    head = f'<h2 id="{anchor}-h">{html.escape(title)}</h2>'
    return f'<section id="{anchor}" aria-labelledby="{anchor}-h">{head}{body}</section>'


_CSS = """
:root{color-scheme:light}
body{font-family:'DejaVu Sans',Arial,Helvetica,sans-serif;margin:0;color:#1b1b1b;background:#fff;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.5rem;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
.summary{font-size:1.05rem;background:#f4f7fb;border-left:4px solid #0072B2;padding:.7rem 1rem}
nav ul{display:flex;flex-wrap:wrap;gap:.3rem 1.2rem;padding:0;list-style:none}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}
figure svg text{font-family:'DejaVu Sans',Arial,Helvetica,sans-serif}
figcaption{font-size:.9rem;color:#444;margin-top:.3rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.85rem;margin:.8rem 0}
caption{text-align:left;font-size:.9rem;color:#444;padding:.2rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}tbody tr:nth-child(even){background:#fafafa}
.flag{color:#C0392B;font-weight:bold}.warn{color:#8a5300}.muted{color:#666}
.v-faster{color:#007a5a;font-weight:bold}.v-slower{color:#C0392B;font-weight:bold}.v-inconclusive{color:#8a5300}
.v-no-change{color:#666}.v-only-in-A,.v-only-in-B{color:#a0407d}
code{background:#f4f4f4;padding:0 .2rem}
"""
#: No fetch and no script of any kind, whatever the page holds: only its own inline styles.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def page_html(title: str, sections: Sequence[tuple[str, str, str]], summary: str) -> str:
    """The whole document: head (charset, CSP, styles), the title, the summary, a contents list, the sections
    (``(anchor, title, body)``)."""
    nav = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t, _ in sections)
    body = "".join(_section(a, t, b) for a, t, b in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f'<h1>{html.escape(title)}</h1>\n<p class="summary" id="summary">{summary}</p>\n'
        f'<nav aria-label="contents"><ul>{nav}</ul></nav>\n{body}\n'
        '<footer class="muted"><p>Written by benchfarm. Self-contained: no script, no network request; '
        "the charts are SVG drawn with matplotlib.</p></footer>\n</main>\n</body>\n</html>\n"
    )


def write_page(path: Path, document: str) -> None:
    def fill(tmp: Path) -> None:
        tmp.write_text(document, encoding="utf-8")

    write_atomic(Path(path), fill)


# ------------------------------------------------------------------------------------------------- cells
def varying_columns(df: pd.DataFrame, skip: Sequence[str] = ("workload", "device")) -> list[str]:
    """Cell columns (besides ``skip``) whose values differ between rows: what a label must show. Parameters
    count only when they differ within a workload (each workload has its own)."""
    out = []
    for c in CELL_COLUMNS:
        if c in skip or c not in df.columns or df[c].astype(str).nunique() < 2:
            continue
        if (
            c == "params"
            and "workload" in df.columns
            and int(df[c].astype(str).groupby(df["workload"].astype(str)).nunique().max()) < 2
        ):
            continue
        out.append(c)
    return out


def _part(column: str, v: Any) -> str:
    if column in ("backend", "mode", "data", "input_pipeline"):
        return str(v)
    if column == "batch_size":
        return f"batch {v}"
    if column == "epochs":
        return f"{v} epochs"
    if column == "params" and isinstance(v, str):
        try:
            p = json.loads(v)
        except ValueError:
            return v
        return " ".join(f"{k}={val}" for k, val in p.items()) if isinstance(p, dict) else v
    return f"{column}={v}"


def row_labels(
    df: pd.DataFrame, varying: Sequence[str], *, device: bool = True, hardware: str = "device_name"
) -> list[str]:
    """A short label per row: workload, the varying cell columns, then the device and what ran it."""
    out = []
    for rec in records(df):
        parts = [str(rec.get("workload"))] + [_part(c, rec.get(c)) for c in varying if not blank(rec.get(c))]
        label = " · ".join(parts)
        if device:
            hw = rec.get(hardware)
            if blank(hw):
                hw = rec.get("hardware_key")
            prefix = f"{rec.get('device')}:"
            if isinstance(hw, str) and hw.startswith(prefix):  # a hardware key: "cpu:AMD EPYC x8"
                hw = hw[len(prefix) :]
            label += f" — {rec.get('device')}" + ("" if blank(hw) else f": {hw}")
        out.append(label)
    return out


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as dicts keyed by column name."""
    return [{str(k): v for k, v in rec.items()} for rec in df.to_dict("records")]
