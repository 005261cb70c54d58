"""The HTML report of one sweep (``farm report SWEEP --html``, ``farm run``'s ``report.html``): one
self-contained file a person can read at a glance, offline, with no script at all. It holds a plain-language
summary, throughput per cell with its CI and every repeat, the GPU-over-CPU speedup (and ``--ratio-by``
ratios), where each job's time went, step times, the environment, and optionally a history
(:mod:`farm.reports.html_history`, which also draws ``farm history --html``; ``farm compare --html`` is
:mod:`farm.reports.html_compare`).

This module matches each repeat to its report row and draws the sections that need those repeats (throughput with
the report table, phases, step times), then assembles the page (:func:`write_report_html`). The sections that read
the frames alone live beside it: the summary paragraph in :mod:`farm.reports.html_summary`, the speedup and ratios
in :mod:`farm.reports.html_speedup`, the environment in :mod:`farm.reports.html_environment`.

The charts are matplotlib SVG inlined in the page (:mod:`farm.reports.plots` says why); :mod:`farm.reports.html_page`
builds the document, whose Content-Security-Policy forbids every fetch and every script, so even a mistake could not
make it reach the network. Everything that comes from the data (sweep, workload, device names, errors, notes)
is escaped.

Big sweeps stay readable and small: each chart shows at most ``MAX_CELLS`` cells (in report order, said in its
caption), at most ``MAX_DOTS`` repeats per cell (flagged repeats first), each table at most
``MAX_TABLE_ROWS`` rows; the CSV outputs hold everything. Without matplotlib (the ``plot`` extra) a page
cannot be drawn and :class:`PlotExtraMissing` says what to install; the rest of ``farm report`` works without
it. Files are written whole or not at all (:func:`farm.reports.files.write_atomic`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from farm.columns import format_figure, shown_in
from farm.reports.frames import floats, invalid_mask, succeeded
from farm.reports.html_environment import environment_section
from farm.reports.html_history import history_section
from farm.reports.html_page import (
    CELL_KEY,
    CONFIDENCE,
    MAX_CELLS,
    MAX_TABLE_ROWS,
    PLOT_EXTRA_MISSING,
    PlotExtraMissing,
    Raw,
    blank,
    capped_note,
    ci_text,
    common_unit,
    esc,
    figure_html,
    load_plots,
    num,
    page_html,
    records,
    require_plotting,
    row_labels,
    table_html,
    varying_columns,
    write_page,
)
from farm.reports.html_scaling import has_scaling, scaling_section
from farm.reports.html_server import has_server_curves, server_section
from farm.reports.html_speedup import ratio_note, speedup_section
from farm.reports.html_summary import report_summary
from farm.reports.markdown import invalid_flag
from farm.reports.stats import group_medians, summarize_groups

__all__ = [
    "MAX_CELLS",
    "MAX_DOTS",
    "MAX_TABLE_ROWS",
    "PLOT_EXTRA_MISSING",
    "PlotExtraMissing",
    "report_html",
    "require_plotting",
    "write_report_html",
]

#: Repeats drawn as dots per cell (flagged ones first, then a fixed-seed sample of the others).
MAX_DOTS = 100


def _series(df: pd.DataFrame) -> list[str]:
    """The colour of each row: device, and backend when the backends differ."""
    several = "backend" in df.columns and df["backend"].astype(str).nunique() > 1
    return [
        f"{d} / {b}" if several else str(d) for d, b in zip(df["device"], df.get("backend", df["device"]), strict=True)
    ]


def _match(report: pd.DataFrame, results: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The succeeded results and, per row, the index of its report row (-1: none), matched as
    :func:`farm.reports.aggregate.aggregate` groups: the cell columns plus the hardware key (the device name where a
    row has none)."""
    ok = succeeded(results)
    if ok.empty or report.empty:
        return ok, np.full(len(ok), -1, dtype=np.intp)
    cols = [c for c in CELL_KEY if c in report.columns and (c in ok.columns or c == "hardware_key")]
    right = pd.DataFrame({c: ok[c].astype(object) for c in cols if c != "hardware_key"})
    if "hardware_key" in cols:
        hw = ok["hardware_key"] if "hardware_key" in ok.columns else pd.Series(None, index=ok.index, dtype=object)
        right["hardware_key"] = hw.where(hw.notna(), ok["device_name"]).astype(object)
    left = report[cols].astype(object)
    both = pd.concat([left, right[cols]], ignore_index=True)
    ids = both.groupby(cols, dropna=False, sort=False).ngroup().to_numpy()
    pos = np.full(int(ids.max()) + 1, -1, dtype=np.intp)
    pos[ids[: len(report)][::-1]] = np.arange(len(report))[::-1]  # the first report row of a key wins
    return ok, pos[ids[len(report) :]]


@dataclass
class _Cells:
    """What the charts need per report row, computed once from the repeats."""

    ok: pd.DataFrame
    cell: np.ndarray  # per succeeded result: its report row, -1 for none
    used: np.ndarray  # per succeeded result: part of the statistics (not a left-out invalid repeat)
    invalid: np.ndarray
    outlier: np.ndarray
    stalled: np.ndarray
    stalls_per_cell: np.ndarray

    def medians(self, column: str, n: int) -> np.ndarray:
        """Per report row: the median of ``column`` over the repeats the statistics used (NaN without)."""
        if column not in self.ok.columns:
            return np.full(n, np.nan)
        return self.medians_of(floats(self.ok[column]), n)

    def medians_of(self, values: np.ndarray, n: int) -> np.ndarray:
        """Medians over the repeats the statistics used; a cell whose repeats were all left out (invalid)
        falls back to all of them, marked as such in its row: where its time went is still worth seeing."""
        keep = (self.cell >= 0) & self.used
        out = group_medians(values[keep], self.cell[keep], n)
        every = self.cell >= 0
        if np.isnan(out).any() and every.any():
            out = np.where(np.isnan(out), group_medians(values[every], self.cell[every], n), out)
        return out


def _cells(report: pd.DataFrame, results: pd.DataFrame) -> _Cells:
    ok, cell = _match(report, results)
    n = len(report)
    invalid = invalid_mask(ok)
    matched = cell >= 0
    total = np.bincount(cell[matched], minlength=n) if n else np.zeros(0, dtype=np.intp)
    # Were invalid repeats kept (--include-invalid)? Then n counts them too.
    counted = "n_invalid" if "n_invalid" in report else "n_contended"  # a report from before n_invalid existed
    busy = report[counted].fillna(0).to_numpy(dtype=float) > 0 if counted in report else np.zeros(n, bool)
    included = bool(busy.any()) and bool(
        (report["n"].to_numpy(dtype=float)[busy] == total[busy]).all() if "n" in report else False
    )
    used = np.ones(len(ok), dtype=bool) if included else ~invalid
    values = np.where(used & matched, floats(ok["steady_samples_per_s"]), np.nan)
    outlier = np.zeros(len(ok), dtype=bool)
    if matched.any():
        outlier[matched] = summarize_groups(values[matched], cell[matched], n, n_boot=1).outlier_mask
    stalled = floats(ok["stalls"]) > 0 if "stalls" in ok.columns else np.zeros(len(ok), dtype=bool)
    stalls_per_cell = np.bincount(cell[matched & stalled], minlength=n) if n else np.zeros(0, dtype=np.intp)
    return _Cells(ok, cell, used, invalid, outlier, stalled, stalls_per_cell)


def _count(v: Any) -> int:
    """A count from a frame (NaN, None: 0)."""
    return 0 if blank(v) else int(v)


def _flags(rec: dict[str, Any], stalls: int) -> list[str]:
    """Why a cell must be read with care, in words (shown in its chart label and the tables)."""
    flags = []
    if bool(rec.get("unstable")) and not blank(rec.get("unstable")):
        flags.append("unstable")
    if _count(rec.get("outliers")) > 0:
        flags.append(f"{_count(rec.get('outliers'))} outlier")
    flags += invalid_flag(rec)
    if not blank(rec.get("n")) and _count(rec.get("n")) == 0 and invalid_flag(rec):
        # every repeat left out: the dots drawn are all invalid ones, the table's n is 0, and the label says why
        flags.append("no valid repeat: none in the statistics")
    if _count(rec.get("n_failed")) > 0:
        flags.append(f"{_count(rec.get('n_failed'))} failed")
    if stalls:
        flags.append(f"{stalls} stalled")
    if _count(rec.get("software_keys")) > 1:
        flags.append("pooled software")
    return flags


# ------------------------------------------------------------------------------------------------- sections
def _throughput_section(p: Any, report: pd.DataFrame, cells: _Cells, labels: list[str]) -> str:
    shown = min(len(report), MAX_CELLS)
    unit = common_unit(report)
    rng = np.random.default_rng(0)
    values = floats(cells.ok["steady_samples_per_s"]) if len(cells.ok) else np.zeros(0)
    order = np.argsort(cells.cell, kind="stable")
    starts = np.searchsorted(cells.cell[order], np.arange(shown + 1))
    series = _series(report)
    rows = []
    sampled = False
    recs = records(report)
    for i in range(shown):
        rec = recs[i]
        idx = order[starts[i] : starts[i + 1]]
        idx = idx[np.isfinite(values[idx])]
        kinds = np.where(
            cells.invalid[idx] & ~cells.used[idx],
            "invalid",
            np.where(cells.stalled[idx], "stall", np.where(cells.outlier[idx], "outlier", "ok")),
        )
        if len(idx) > MAX_DOTS:
            sampled = True
            flagged = np.flatnonzero(kinds != "ok")
            plain = rng.permutation(np.flatnonzero(kinds == "ok"))
            pick = np.sort(np.r_[flagged, plain][:MAX_DOTS])
            idx, kinds = idx[pick], kinds[pick]
        label = labels[i] if unit is not None else f"{labels[i]} ({rec.get('unit') or 'samples'}/s)"
        rows.append(
            p.DotRow(
                label=label,
                series=series[i],
                median=float(rec["steady_samples_per_s_median"]),
                low=float(rec["steady_samples_per_s_ci_low"]),
                high=float(rec["steady_samples_per_s_ci_high"]),
                dots=values[idx].tolist(),
                kinds=kinds.tolist(),
                unstable=bool(rec.get("unstable")) and not blank(rec.get("unstable")),
                flags=_flags(rec, int(cells.stalls_per_cell[i])),
            )
        )
    xlabel = f"steady throughput ({unit}/s)" if unit else "steady throughput (per second; unit in each label)"
    svg = p.throughput_svg(rows, xlabel, salt="throughput", label="Steady throughput per cell with 95% CIs")
    caption = (
        f"Steady throughput (epochs after the first) per cell: each dot is one repeat, the diamond its median with "
        f"the {CONFIDENCE:.0%} bootstrap CI as error bars; colour: device and backend. Marked in red, with the "
        "reason in brackets: unstable cells (hollow diamond), outlier repeats (×, MAD rule), repeats whose fit "
        "stalled (▽), invalid repeats (□: contended, throttled or too short to time; left out of the statistics)."
    )
    if sampled:
        caption += f" Cells with more than {MAX_DOTS} repeats show {MAX_DOTS}: every flagged one, then a fixed sample."
    caption += capped_note(len(report))
    return figure_html(svg, html.escape(caption)) + _report_table(report, cells, labels)


def _report_table(report: pd.DataFrame, cells: _Cells, labels: list[str]) -> str:
    unit = common_unit(report) or "unit"
    figures = [  # the schema's figures for this page (farm.columns), where some cell has one
        c
        for c in shown_in("html")
        if c.shown and c.report_column in report.columns and report[c.report_column].notna().any()
    ]
    headers = [
        "cell",
        "hardware key",
        "n",
        f"median {unit}/s",
        f"{CONFIDENCE:.0%} CI",
        "CV",
        *(c.shown.title for c in figures if c.shown),
        "GPU/CPU [CI]",
        "marks",
    ]
    rows = []
    for i, rec in enumerate(records(report)[:MAX_TABLE_ROWS]):
        flags = _flags(rec, int(cells.stalls_per_cell[i]))
        r = rec.get("speedup_vs_cpu")
        speed = "" if blank(r) else ratio_note(r, rec.get("speedup_vs_cpu_ci_low"), rec.get("speedup_vs_cpu_ci_high"))
        cv = rec.get("steady_samples_per_s_cv")
        rows.append(
            [
                labels[i],
                rec.get("hardware_key"),
                num(rec.get("n")),
                num(rec.get("steady_samples_per_s_median")),
                ci_text(rec.get("steady_samples_per_s_ci_low"), rec.get("steady_samples_per_s_ci_high")),
                "" if blank(cv) else f"{cv:.1%}",
                *(format_figure(c, rec.get(c.report_column)) for c in figures),
                speed,
                Raw(f'<span class="flag">{esc(", ".join(flags))}</span>') if flags else "",
            ]
        )
    return table_html(headers, rows, caption="One row per cell (the statistics rest on n repeats).", total=len(report))


#: The phases of a job, in stacking order: label → how a row's seconds are computed from its columns.
PHASES = [
    "spawn & other",
    "import (Keras + backend)",
    "data",
    "build model",
    "first epoch (incl. compile)",
    "steady epochs",
    "evaluate",
]


def _phases_section(p: Any, report: pd.DataFrame, cells: _Cells, labels: list[str]) -> str:
    ok, n = cells.ok, len(report)

    def col(c: str) -> np.ndarray:
        return floats(ok[c]) if c in ok.columns else np.full(len(ok), np.nan)

    imp, data, build, train, ev, total, first = (
        col(c) for c in ("import_s", "data_s", "build_s", "train_s", "eval_s", "total_s", "first_epoch_s")
    )
    accounted = np.nansum(np.vstack([imp, data, build, train, ev]), axis=0) if len(ok) else np.zeros(0)
    if "spawn_s" in ok.columns:
        spawn = col("spawn_s")
    else:
        spawn = np.where(np.isfinite(total), np.clip(total - accounted, 0.0, None), np.nan)
    steady = np.clip(train - first, 0.0, None)
    per_row = [spawn, imp, data, build, first, steady, ev]
    medians = {name: cells.medians_of(v, n) for name, v in zip(PHASES, per_row, strict=True)}
    if not any(np.isfinite(m).any() for m in medians.values()):
        return '<p class="muted">The results carry no phase timings.</p>'
    shown = min(n, MAX_CELLS)
    svg = p.phases_svg(
        labels[:shown],
        {k: v[:shown] for k, v in medians.items()},
        salt="phases",
        label="Where each job's time went, per cell",
    )
    caption = (
        "Where a job's wall time went, per cell (the median of each phase over the repeats, so the parts need not "
        "add up to the median total exactly): starting the process and anything the phases do not account for, "
        "importing Keras and its backend, loading the data, building the model, the first epoch (tracing and "
        "compilation happen there), the steady epochs, and the evaluation." + capped_note(n)
    )
    return figure_html(svg, html.escape(caption))


def _steps_section(p: Any, report: pd.DataFrame, cells: _Cells, labels: list[str]) -> str:
    n = len(report)
    shown = min(n, MAX_CELLS)
    parts = []
    for prefix, what, anchor in (
        ("step", "Training step time (steady epochs)", "steps"),
        ("latency", "Request latency (inference at batch 1)", "latency"),
    ):
        q = [cells.medians(f"{prefix}_p{k}_s", n)[:shown] * 1000 for k in (50, 90, 99)]
        if not any(np.isfinite(v).any() for v in q):
            if prefix == "step":
                parts.append('<p class="muted">The results carry no step-time percentiles.</p>')
            continue
        svg = p.quantiles_svg(
            labels[:shown], *q, f"{what.lower()} in ms", salt=anchor, label=f"{what} percentiles per cell"
        )
        caption = (
            f"{what}: per cell, the median over repeats of each repeat's p50, p90 and p99 (ms). A long way from p50 to "
            "p99 means occasional slow steps (input stalls, garbage collection, recompiles)." + capped_note(n)
        )
        parts.append(figure_html(svg, html.escape(caption)))
    return "".join(parts)


# --------------------------------------------------------------------------------------------------- pages
def write_report_html(
    report: pd.DataFrame,
    results: pd.DataFrame,
    path: Path,
    *,
    title: str,
    ratios: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
) -> None:
    """Write the HTML report of one sweep to ``path`` (whole or not at all).

    ``report``: :func:`farm.reports.aggregate.aggregate` of ``results``, the tidy results frame
    (:func:`farm.reports.aggregate.results_frame`); ``ratios``: :func:`farm.reports.ratios.ratios` (``--ratio-by``);
    ``history``: :func:`farm.reports.history.history_frame`. Raises :class:`PlotExtraMissing` without matplotlib and
    :class:`farm.reports.files.OutputError` when the file cannot be written.
    """
    write_page(path, report_html(report, results, title=title, ratios=ratios, history=history))


def report_html(
    report: pd.DataFrame,
    results: pd.DataFrame,
    *,
    title: str,
    ratios: pd.DataFrame | None = None,
    history: pd.DataFrame | None = None,
) -> str:
    """The HTML report of one sweep as a string: the page :func:`write_report_html` writes, for a caller that
    serves it instead (``farm dashboard``). Raises :class:`PlotExtraMissing` without matplotlib."""
    p = load_plots()
    cells = _cells(report, results)
    labels = row_labels(report, varying_columns(report))
    sections = []
    if len(report):
        sections = [
            ("throughput", "Throughput per cell", _throughput_section(p, report, cells, labels)),
            (
                "speedup",
                "GPU over CPU" + (" and ratios" if ratios is not None and len(ratios) else ""),
                speedup_section(p, report, results, ratios),
            ),
            ("phases", "Where each job's time went", _phases_section(p, report, cells, labels)),
            ("steps", "Step times", _steps_section(p, report, cells, labels)),
        ]
    if has_scaling(results):
        sections.append(("scaling", "Scaling over devices", scaling_section(p, results)))
    if has_server_curves(results):
        sections.append(("server", "Inference under load (Server scenario)", server_section(p, results)))
    sections.append(("environment", "Environment", environment_section(report, results)))
    if history is not None:
        sections.append(("history", "History", history_section(p, history)))
    summary = html.escape(report_summary(report, results))
    counts = _status_counts(results)
    if counts:
        summary += f' <span class="muted">({html.escape(counts)})</span>'
    return page_html(title, sections, summary)


def _status_counts(results: pd.DataFrame) -> str:
    if "status" not in results.columns or results.empty:
        return ""
    counts = results["status"].fillna("unknown").astype(str).value_counts()
    return f"{len(results):,} job(s): " + ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items()))
