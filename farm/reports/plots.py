"""The charts of the HTML pages, drawn with matplotlib as inline SVG (imported only through
:func:`farm.reports.html_page.load_plots`).

Why matplotlib and SVG: it is the best-kept plotting library of the Python stack, it needs no JavaScript (a
Plotly or Vega-Lite page carries megabytes of inlined script and runs it on open), and its SVG is plain markup
that an HTML page can hold inline: the page stays one small file that opens offline, its charts scale to any
width, and a test (or a person with find-in-page) can read every label.

How, and why each choice:

* Only the object API: a :class:`~matplotlib.figure.Figure` on its own :class:`FigureCanvasSVG`, never pyplot
  (no global figure registry, nothing to close, no GUI backend chosen behind our back) and no
  ``matplotlib.use``: this module does not change the process's backend for anyone else.
* ``svg.fonttype: none``: text stays ``<text>`` elements rather than glyph outlines. The file is several times
  smaller, labels are selectable, searchable and read by screen readers, and inline SVGs do not each define the
  same glyph ids. The cost: the viewer's font draws the text (layout was measured with DejaVu Sans, which the
  page's stylesheet asks for first, then Arial/Helvetica), so a label may come out a little wider or narrower.
* Deterministic output: no date in the metadata (the metadata block is dropped), ``svg.hashsalt`` fixed per
  chart (matplotlib derives its clip-path and marker ids from it; one salt per chart keeps the ids of several
  inline SVGs apart), and any jitter drawn from a fixed seed. Equal inputs give byte-equal files.
* Clean inline markup: the XML prolog, DOCTYPE and ``xmlns`` declarations (URLs a naive scan would mistake for
  references) are dropped, ``xlink:href`` becomes SVG 2's ``href`` (every current browser), unreferenced ids
  and the per-element font-family lists are removed (the page sets the font once).
* Text from the data (sweep, device and workload names) is passed with ``$`` escaped, so matplotlib never
  reads it as mathtext; matplotlib escapes ``<`` and ``&`` in what it writes.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter

__all__ = [
    "COLORS",
    "DotRow",
    "HistoryPoint",
    "IntervalRow",
    "history_svg",
    "intervals_svg",
    "phases_svg",
    "quantiles_svg",
    "throughput_svg",
]

#: Colours of the series (device/backend pairs, verdicts), colour-blind safe (Okabe–Ito), in order of use.
COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
#: The colour of a flagged label and of outlier marks.
ALERT = "#C0392B"
#: Inches per row of a horizontal chart, and the height a chart has besides its rows.
ROW_IN, BASE_IN, WIDTH_IN = 0.3, 1.1, 9.0
#: A chart whose values span more than this factor gets a logarithmic axis.
LOG_SPAN = 30.0
#: Longest label drawn in full (characters); longer ones end in "…" (the tables hold them whole).
LABEL_MAX = 80

_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.axisbelow": True,
    "grid.color": "#dddddd",
    "legend.frameon": False,
    "legend.fontsize": 8.5,
}


def text(s: object, limit: int | None = LABEL_MAX) -> str:
    """Data text as matplotlib must get it: ``$`` escaped (no mathtext), shortened to ``limit`` characters."""
    t = str(s)
    if limit is not None and len(t) > limit:
        t = t[: LABEL_MAX - 1] + "…"
    return t.replace("$", r"\$")


# ---------------------------------------------------------------------------------------------- rendering
def render(draw: Callable[[Figure], None], height_in: float, *, salt: str, label: str) -> str:
    """Draw a chart with ``draw(fig)`` on a fresh SVG figure ``WIDTH_IN`` × ``height_in`` inches and return its
    cleaned inline ``<svg>`` markup (see the module docstring), labelled ``label`` for assistive technology."""
    rc: dict[str, Any] = {**_RC, "svg.hashsalt": f"benchfarm-{salt}"}
    with matplotlib.rc_context(cast(Any, rc)):
        fig = Figure(figsize=(WIDTH_IN, height_in), layout="constrained")
        FigureCanvasSVG(fig)
        draw(fig)
        for ax in fig.axes:  # marks lie within their axes: only text decides the layout (a 40-bar chart lays out
            for artist in (*ax.patches, *ax.collections, *ax.lines):  # in a fraction of the time)
                artist.set_in_layout(False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return clean_svg(buf.getvalue(), label)


_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_FONT = re.compile(r"font-family:[^;\"]*(?:;\s*)?")
_NO_ROTATE = re.compile(r' transform="rotate\(-?0 [-\d.e]+ [-\d.e]+\)"')
_ID = re.compile(r' id="([^"]+)"')
_REF = re.compile(r"(?:href=\"#|url\(#)([^\")]+)")


def clean_svg(svg: str, label: str) -> str:
    """matplotlib's SVG document as an element to inline in HTML: no prolog, metadata or namespace URLs,
    ``href`` for ``xlink:href``, only the ids something refers to, no per-element font lists, and
    ``role="img"`` with an ``aria-label``."""
    svg = _PROLOG.sub("", svg, count=1)
    svg = _METADATA.sub("", svg, count=1)
    svg = _XMLNS.sub("", svg)
    svg = svg.replace("xlink:href=", "href=")
    svg = _FONT.sub("", svg)
    svg = _NO_ROTATE.sub("", svg)
    used = set(_REF.findall(svg))
    svg = _ID.sub(lambda m: m.group(0) if m.group(1) in used else "", svg)
    aria = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{aria}" ', 1).strip() + "\n"


def _log_if_wide(ax: Axes, values: Sequence[float] | np.ndarray, axis: str = "x") -> bool:
    """A log axis when the finite positive values span more than ``LOG_SPAN``; says whether it chose one."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size and v.max() / v.min() > LOG_SPAN:
        _log(ax, axis)
        return True
    return False


def _log(ax: Axes, axis: str = "x") -> None:
    """A log axis labelled with plain numbers (1, 10, 100: no 10⁰ powers), minor ticks labelled only when the
    axis spans less than a decade (more would crowd the axis)."""
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
    target.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))


def _rows_axes(fig: Figure, labels: Sequence[str], alerts: Sequence[bool]) -> Axes:
    """One axes with a row per label, top to bottom, flagged labels in the alert colour."""
    ax = fig.add_subplot()
    ys = np.arange(len(labels))
    ax.set_yticks(ys, [text(lbl) for lbl in labels])
    ax.set_ylim(len(labels) - 0.5, -0.5)
    for tick, alert in zip(ax.get_yticklabels(), alerts, strict=True):
        if alert:
            tick.set_color(ALERT)
            tick.set_fontweight("bold")
    ax.grid(True, axis="x")
    return ax


def _legend_below(ax: Axes, handles: list[Line2D | Patch]) -> None:
    """The legend under the chart, outside the axes (constrained layout makes room for it)."""
    if handles:
        fig = ax.get_figure(root=True)
        assert fig is not None  # every axes here is drawn on a figure
        fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)))


def _height(n_rows: int) -> float:
    return BASE_IN + ROW_IN * max(n_rows, 1)


# ---------------------------------------------------------------------------------------------- throughput
@dataclass
class DotRow:
    """One cell of the throughput chart: its median and CI, its repeats, and why it is marked.

    ``dots`` are the repeats' values; ``kinds`` says what each is: ``"ok"``, ``"outlier"`` (MAD rule),
    ``"stall"`` (the job's fit stalled), ``"invalid"`` (contended, throttled or too short to time: left out of
    the statistics)."""

    label: str
    series: str
    median: float
    low: float
    high: float
    dots: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    unstable: bool = False
    flags: list[str] = field(default_factory=list)


_DOT_STYLE: dict[str, dict[str, Any]] = {
    "ok": dict(marker="o", s=14, alpha=0.55, linewidths=0, zorder=2),
    "outlier": dict(marker="X", s=46, color=ALERT, linewidths=0, zorder=6),
    "stall": dict(marker="v", s=40, facecolors="none", edgecolors="#222222", linewidths=1.1, zorder=6),
    "invalid": dict(marker="s", s=30, facecolors="none", edgecolors="#888888", linewidths=1.0, zorder=6),
}
_DOT_LEGEND: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ok": ("o", "a repeat", dict(markerfacecolor="#777777", markeredgewidth=0, alpha=0.6)),
    "outlier": ("X", "outlier repeat (MAD rule)", dict(markerfacecolor=ALERT, markeredgewidth=0)),
    "stall": ("v", "repeat whose fit stalled", dict(markerfacecolor="none", markeredgecolor="#222222")),
    "invalid": ("s", "invalid repeat (left out)", dict(markerfacecolor="none", markeredgecolor="#888888")),
}


def _series_colors(series: Sequence[str]) -> dict[str, str]:
    return {s: COLORS[i % len(COLORS)] for i, s in enumerate(dict.fromkeys(series))}


def throughput_svg(rows: Sequence[DotRow], xlabel: str, *, salt: str, label: str) -> str:
    """Per cell: every repeat as a dot (jittered within its row), the median as a diamond (hollow when the cell
    is unstable) with its CI as error bars, colour by series (device/backend), flagged labels in red with the
    flags named; a legend of the marks present."""
    colors = _series_colors([r.series for r in rows])
    labels = [r.label + (f"  [{', '.join(r.flags)}]" if r.flags else "") for r in rows]

    def draw(fig: Figure) -> None:
        ax = _rows_axes(fig, labels, [bool(r.flags) for r in rows])
        rng = np.random.default_rng(0)
        # One artist per kind of mark and per series, not per row: a chart of 40 cells × 100 repeats draws fast.
        x = np.asarray([v for r in rows for v in r.dots], dtype=float)
        y = np.concatenate([i + rng.uniform(-0.22, 0.22, len(r.dots)) for i, r in enumerate(rows)] or [np.zeros(0)])
        kinds = np.asarray([k for r in rows for k in r.kinds], dtype=object)
        dot_series = np.asarray([r.series for r in rows for _ in r.dots], dtype=object)
        present = {str(k) for k in kinds}
        for kind, style in _DOT_STYLE.items():
            if kind == "ok":  # plain repeats in their series' colour
                for series, color in colors.items():
                    sel = (kinds == kind) & (dot_series == series)
                    if sel.any():
                        ax.scatter(x[sel], y[sel], color=color, **style)
            elif (sel := kinds == kind).any():
                ax.scatter(x[sel], y[sel], **style)
        medians: dict[tuple[str, bool], list[tuple[int, DotRow]]] = {}
        for i, r in enumerate(rows):
            if math.isfinite(r.median):
                medians.setdefault((r.series, r.unstable), []).append((i, r))
        for (series, unstable), group in medians.items():
            c = colors[series]
            lo = [max(r.median - r.low, 0.0) if math.isfinite(r.low) else 0.0 for _, r in group]
            hi = [max(r.high - r.median, 0.0) if math.isfinite(r.high) else 0.0 for _, r in group]
            ax.errorbar(
                [r.median for _, r in group],
                [i for i, _ in group],
                xerr=[lo, hi],
                fmt="D",
                color=c,
                markerfacecolor="white" if unstable else c,
                markeredgewidth=1.6,
                markersize=7,
                capsize=4,
                elinewidth=1.6,
                zorder=5,
            )
        _log_if_wide(ax, [v for r in rows for v in (*r.dots, r.median)])
        ax.set_xlabel(text(xlabel, None))
        handles: list[Line2D | Patch] = [Patch(color=col, label=text(s)) for s, col in colors.items()]
        handles.append(
            Line2D([], [], marker="D", color="#444444", markersize=6, label="median, 95% CI (error bar)", lw=1.4)
        )
        if any(r.unstable for r in rows):
            handles.append(
                Line2D([], [], marker="D", ls="", color="#444444", markerfacecolor="white", label="unstable cell")
            )
        for kind in _DOT_STYLE:
            if kind in present:
                marker, name, style = _DOT_LEGEND[kind]
                handles.append(Line2D([], [], marker=marker, ls="", color="#444444", label=name, **style))
        _legend_below(ax, handles)

    return render(draw, _height(len(rows)) + 0.25 * math.ceil(len(colors) / 4), salt=salt, label=label)


# ------------------------------------------------------------------------------------------------- ratios
@dataclass
class IntervalRow:
    """One ratio with its CI (NaN bounds: no CI), coloured by ``series`` (a verdict, a device/backend)."""

    label: str
    value: float
    low: float
    high: float
    series: str
    note: str = ""


def intervals_svg(
    rows: Sequence[IntervalRow],
    xlabel: str,
    *,
    reference: float | None = 1.0,
    colors: dict[str, str] | None = None,
    salt: str,
    label: str,
) -> str:
    """Per row: the value as a dot with its CI as error bars and its number written beside it, a dashed line
    at ``reference`` (1: no difference), colours by series (fixed ``colors`` when given, e.g. verdicts)."""
    palette = dict(colors) if colors else {}
    for s, c in _series_colors([r.series for r in rows if r.series not in palette]).items():
        palette.setdefault(s, c)

    def draw(fig: Figure) -> None:
        ax = _rows_axes(fig, [r.label for r in rows], [False] * len(rows))
        groups: dict[str, list[int]] = {}
        for y, r in enumerate(rows):
            if math.isfinite(r.value):
                groups.setdefault(r.series, []).append(y)
        for series, ys in groups.items():  # one artist per series (a row without a CI gets a zero-width bar)
            ci = [math.isfinite(rows[y].low) and math.isfinite(rows[y].high) for y in ys]
            below = [max(rows[y].value - rows[y].low, 0.0) if ok else 0.0 for y, ok in zip(ys, ci, strict=True)]
            above = [max(rows[y].high - rows[y].value, 0.0) if ok else 0.0 for y, ok in zip(ys, ci, strict=True)]
            ax.errorbar(
                [rows[y].value for y in ys],
                ys,
                xerr=[below, above],
                fmt="o",
                color=palette[series],
                markersize=7,
                capsize=4,
                elinewidth=1.6,
            )
            for y, ok in zip(ys, ci, strict=True):
                r = rows[y]
                ax.annotate(
                    text(r.note),
                    (r.high if ok else r.value, y),
                    xytext=(6, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8.5,
                )
        values = [v for r in rows for v in (r.value, r.low, r.high) if math.isfinite(v)]
        if reference is not None:
            ax.axvline(reference, color="#555555", ls="--", lw=1)
            values.append(reference)
        log = _log_if_wide(ax, values) or (bool(values) and min(values) > 0 and max(values) / min(values) > 4)
        if log:
            _log(ax)
        if values:
            lo, hi = min(values), max(values)
            ax.set_xlim(lo / 1.15 if log else lo - 0.05 * (hi - lo + 1e-9), hi * 1.6 if log else hi + 0.3 * (hi - lo))
        ax.set_xlabel(text(xlabel, None))
        used = dict.fromkeys(r.series for r in rows if math.isfinite(r.value))
        handles: list[Line2D | Patch] = [Patch(color=palette[s], label=text(s)) for s in used]
        handles.append(Line2D([], [], marker="o", color="#444444", label="value, 95% CI (error bar)", lw=1.4))
        _legend_below(ax, handles)

    return render(draw, _height(len(rows)), salt=salt, label=label)


# ------------------------------------------------------------------------------------------------- phases
#: Phase colours, in stacking order.
PHASE_COLORS = ["#999999", "#56B4E9", "#009E73", "#F0E442", "#E69F00", "#0072B2", "#CC79A7"]


def phases_svg(labels: Sequence[str], phases: dict[str, Sequence[float]], *, salt: str, label: str) -> str:
    """Stacked horizontal bars: per row, the median seconds of each phase in ``phases`` (name → a value per
    row, in stacking order; NaN counts as 0), the total written at the bar's end."""
    names = list(phases)
    data = np.nan_to_num(np.asarray([phases[n] for n in names], dtype=float), nan=0.0).clip(min=0.0)

    def draw(fig: Figure) -> None:
        ax = _rows_axes(fig, labels, [False] * len(labels))
        left = np.zeros(len(labels))
        for i, name in enumerate(names):
            ax.barh(np.arange(len(labels)), data[i], left=left, color=PHASE_COLORS[i % len(PHASE_COLORS)], label=name)
            left += data[i]
        for y, total in enumerate(left):
            ax.annotate(f"{total:.3g} s", (total, y), xytext=(4, 0), textcoords="offset points", va="center")
        ax.set_xlim(0, (left.max() if len(left) else 1) * 1.12 or 1)
        ax.set_xlabel("seconds (median of each phase over the cell's repeats)")
        handles: list[Line2D | Patch] = [
            Patch(color=PHASE_COLORS[i % len(PHASE_COLORS)], label=n) for i, n in enumerate(names)
        ]
        _legend_below(ax, handles)

    return render(draw, _height(len(labels)) + 0.25, salt=salt, label=label)


# ----------------------------------------------------------------------------------------------- quantiles
def quantiles_svg(
    labels: Sequence[str],
    p50: Sequence[float],
    p90: Sequence[float],
    p99: Sequence[float],
    xlabel: str,
    *,
    salt: str,
    label: str,
) -> str:
    """Per row: a line from p50 to p99 with p50 (circle), p90 (square) and p99 (triangle) marked: how long the
    typical step (or request) takes and how long the slow ones do."""
    q = np.asarray([p50, p90, p99], dtype=float)

    def draw(fig: Figure) -> None:
        ax = _rows_axes(fig, labels, [False] * len(labels))
        ys = np.arange(len(labels))
        for y in ys:
            finite = q[:, y][np.isfinite(q[:, y])]
            if finite.size > 1:
                ax.plot([finite.min(), finite.max()], [y, y], color="#bbbbbb", lw=3, solid_capstyle="round", zorder=1)
        for row, (marker, name, color) in enumerate(
            [("o", "p50 (median)", COLORS[0]), ("s", "p90", COLORS[1]), ("^", "p99", ALERT)]
        ):
            ax.scatter(q[row], ys, marker=marker, color=color, s=36, label=name, zorder=3)
        _log_if_wide(ax, q.ravel())
        ax.set_xlabel(text(xlabel, None))
        _legend_below(ax, list(ax.get_legend_handles_labels()[0]))  # type: ignore[arg-type]

    return render(draw, _height(len(labels)), salt=salt, label=label)


# ------------------------------------------------------------------------------------------------ history
@dataclass
class HistoryPoint:
    """One sweep of a cell's history: its tick label, median and CI, and the change flagged there (if any)."""

    tick: str
    median: float
    low: float
    high: float
    change: bool = False
    note: str = ""


def history_svg(points: Sequence[HistoryPoint], ylabel: str, title: str, *, salt: str, label: str) -> str:
    """One cell over its sweeps in time order: the median as a line, its CI as a band, each flagged change as
    a red dashed line with a star, annotated with what changed."""
    x = np.arange(len(points))
    med = np.asarray([p.median for p in points], dtype=float)
    low = np.asarray([p.low for p in points], dtype=float)
    high = np.asarray([p.high for p in points], dtype=float)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        band = np.isfinite(low) & np.isfinite(high)
        if band.any():
            ax.fill_between(x, np.where(band, low, med), np.where(band, high, med), color=COLORS[0], alpha=0.2, lw=0)
        ax.plot(x, med, marker="o", color=COLORS[0], lw=1.6, markersize=5)
        top = np.nanmax(np.r_[high[np.isfinite(high)], med[np.isfinite(med)], [0.0]])
        for i, p in enumerate(points):
            if p.change:
                ax.axvline(i, color=ALERT, ls="--", lw=1)
                ax.plot([i], [p.median], marker="*", color=ALERT, markersize=13, ls="")
                ax.annotate(
                    text(p.note),
                    (i, top),
                    xytext=(3, 4),
                    textcoords="offset points",
                    color=ALERT,
                    fontsize=8,
                    rotation=0,
                    va="bottom",
                )
        step = max(1, math.ceil(len(points) / 14))
        ax.set_xticks(x[::step], [text(p.tick) for p in points][::step], rotation=25, ha="right")
        ax.set_xlim(-0.5, len(points) - 0.5)
        lo_y = np.nanmin(np.r_[low[np.isfinite(low)], med[np.isfinite(med)], [np.inf]])
        if math.isfinite(lo_y):
            ax.set_ylim(lo_y * 0.9 if lo_y > 0 else lo_y, top * 1.18 if top > 0 else 1)
        ax.set_ylabel(text(ylabel, None))
        ax.set_title(text(title), loc="left")
        ax.grid(True, axis="y")
        handles: list[Line2D | Patch] = [
            Line2D([], [], marker="o", color=COLORS[0], label="median"),
            Patch(color=COLORS[0], alpha=0.2, label="95% CI"),
        ]
        if any(p.change for p in points):
            handles.append(Line2D([], [], marker="*", ls="--", color=ALERT, label="change flagged here"))
        _legend_below(ax, handles)

    return render(draw, 2.9, salt=salt, label=label)


def server_svg(
    curves: Sequence[tuple[str, Sequence[tuple[float, float, bool]]]], bound_s: float, *, salt: str, label: str
) -> str:
    """The Server scenario's latency against load: per cell, the p99 latency (ms) at each Poisson rate tried
    (filled where it met the bound, hollow where it missed), and the bound as a red dashed line."""

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        for i, (name, points) in enumerate(curves):
            color = COLORS[i % len(COLORS)]
            rates = [r for r, _, _ in points]
            p99 = [1000 * p for _, p, _ in points]
            ax.plot(rates, p99, color=color, lw=1.4, label=text(name))
            for r, p, met in points:
                ax.plot([r], [1000 * p], marker="o", ls="", color=color, mfc=color if met else "white", markersize=6)
        ax.axhline(1000 * bound_s, color=ALERT, ls="--", lw=1)
        all_rates = [r for _, pts in curves for r, _, _ in pts]
        _log_if_wide(ax, all_rates)
        ax.set_xlabel("Poisson arrival rate (requests/s)")
        ax.set_ylabel("p99 latency (ms)")
        ax.grid(True)
        handles: list[Line2D | Patch] = [
            *(Line2D([], [], color=COLORS[i % len(COLORS)], label=text(n)) for i, (n, _) in enumerate(curves)),
            Line2D([], [], color=ALERT, ls="--", label=f"bound {1000 * bound_s:g} ms"),
            Line2D([], [], marker="o", ls="", color="#555555", mfc="white", label="missed the bound"),
        ]
        _legend_below(ax, handles)

    return render(draw, 3.2, salt=salt, label=label)
