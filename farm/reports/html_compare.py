"""``farm compare A B --html``: the ratio B/A of every matched cell with its CI, coloured by verdict, and the
table of :func:`farm.reports.compare.compare`'s frame."""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from farm.reports import html_page as page

#: Verdict colours of farm compare (the terminal's, as close as a chart allows).
VERDICT_COLORS = {
    "faster": "#009E73",
    "slower": "#C0392B",
    "no change": "#999999",
    "inconclusive": "#E69F00",
    "only in A": "#CC79A7",
    "only in B": "#CC79A7",
}


def write_compare_html(comparison: pd.DataFrame, path: Path, *, title: str) -> None:
    """Write ``farm compare A B --html``: the ratio B/A of every matched cell with its CI, coloured by verdict,
    and the table (:func:`farm.reports.compare.compare`'s frame)."""
    page.write_page(path, compare_html(comparison, title=title))


def compare_html(comparison: pd.DataFrame, *, title: str) -> str:
    """The page :func:`write_compare_html` writes, as a string (``farm dashboard`` serves it)."""
    p = page.load_plots()
    cmp = comparison
    metric = str(cmp["metric"].iloc[0]) if len(cmp) and "metric" in cmp else "steady_samples_per_s"
    higher = bool(cmp["higher_is_better"].iloc[0]) if len(cmp) and "higher_is_better" in cmp else True
    labels = page.row_labels(cmp, page.varying_columns(cmp), hardware="hardware")
    counts = cmp["change"].value_counts() if len(cmp) else pd.Series(dtype=int)
    summary = ", ".join(f"{int(counts[k])} {k}" for k in VERDICT_COLORS if k in counts) or "no cells"
    faster = "> 1" if higher else "< 1"
    summary = f"{len(cmp)} cell(s) compared on {metric} (ratio = B/A median; {faster} is faster): {summary}."
    slower = [lbl for lbl, c in zip(labels, cmp.get("change", []), strict=True) if c == "slower"]
    if slower:
        summary += (
            " Slower: " + "; ".join(slower[:5]) + (f" and {len(slower) - 5} more" if len(slower) > 5 else "") + "."
        )
    body = []
    plotted = [i for i in range(len(cmp)) if not page.blank(cmp["ratio"].iloc[i])]
    if plotted:
        shown = plotted[: page.MAX_CELLS]
        rows = []
        for i in shown:
            rec = cmp.iloc[i]
            lo, hi = rec["ratio_ci_low"], rec["ratio_ci_high"]
            note = (
                f"{rec['ratio']:.3f}"
                + (f" [{lo:.3f}–{hi:.3f}]" if not (page.blank(lo) or page.blank(hi)) else "")
                + f" {rec['change']}"
            )
            rows.append(
                p.IntervalRow(
                    label=labels[i],
                    value=float(rec["ratio"]),
                    low=float(lo) if not page.blank(lo) else math.nan,
                    high=float(hi) if not page.blank(hi) else math.nan,
                    series=str(rec["change"]),
                    note=note,
                )
            )
        svg = p.intervals_svg(
            rows,
            f"{metric}: B/A median ({'> 1' if higher else '< 1'} is faster)",
            colors=VERDICT_COLORS,
            salt="compare",
            label="Ratio B over A per cell with 95% CIs, coloured by verdict",
        )
        caption = (
            f"Each cell's median on B over its median on A, with the {page.CONFIDENCE:.0%} bootstrap CI; the dashed "
            "line is no change. Colour: the verdict (faster/slower need p < 0.05 in a Mann-Whitney test AND a change "
            "beyond the threshold). Cells on one side only have no ratio and are listed in the table."
            + (
                f" Showing the first {page.MAX_CELLS} of {len(plotted):,} cells with a ratio."
                if len(plotted) > page.MAX_CELLS
                else ""
            )
        )
        body.append(page.figure_html(svg, html.escape(caption)))
    else:
        body.append('<p class="muted">No cell ran on both sides: no ratio to draw.</p>')
    table_rows = []
    for lbl, row in zip(labels, page.records(cmp), strict=True):
        change = str(row.get("change"))
        css = "v-" + change.replace(" ", "-")
        table_rows.append(
            [
                lbl,
                f"{row.get('n_a')}/{row.get('n_b')}",
                page.num(row.get("median_a")),
                page.num(row.get("median_b")),
                "" if page.blank(row.get("ratio")) else f"{row['ratio']:.3f}",
                page.ci_text(row.get("ratio_ci_low"), row.get("ratio_ci_high"), lambda v: f"{v:.3f}"),
                "" if page.blank(row.get("p_value")) else f"{row['p_value']:.3g}",
                page.Raw(f'<span class="{page.esc(css)}">{page.esc(change)}</span>'),
                row.get("note"),
            ]
        )
    body.append(
        page.table_html(
            ["cell", "n A/B", "median A", "median B", "ratio B/A", f"{page.CONFIDENCE:.0%} CI", "p", "change", "note"],
            table_rows,
            total=len(cmp),
        )
    )
    return page.page_html(title, [("comparison", "B against A, cell by cell", "".join(body))], html.escape(summary))
