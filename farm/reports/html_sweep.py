"""The HTML report of one sweep (``farm report SWEEP --html``, ``farm run``'s ``report.html``): one
self-contained file a person can read at a glance, offline, with no script at all. It holds a plain-language
summary, throughput per cell with its CI and every repeat, the GPU-over-CPU speedup (and ``--ratio-by``
ratios), where each job's time went, step times, the environment, and optionally a history
(:mod:`farm.reports.html_history`, which also draws ``farm history --html``; ``farm compare --html`` is
:mod:`farm.reports.html_compare`).

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
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from farm.columns import CELL_COLUMNS, format_figure, shown_in
from farm.reports.frames import contended_mask, floats, succeeded
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
    ci_text,
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
from farm.reports.stats import MAX_CV, group_medians, summarize_groups

__all__ = [
    "MAX_CELLS",
    "MAX_DOTS",
    "MAX_TABLE_ROWS",
    "PLOT_EXTRA_MISSING",
    "PlotExtraMissing",
    "report_summary",
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


def _unit(df: pd.DataFrame) -> str | None:
    """The one unit of every row (``unit`` column), "samples" when none is named, None when they differ."""
    if "unit" not in df.columns:
        return "samples"
    units = {str(u) for u in df["unit"] if not blank(u)}
    if len(units) > 1:
        return None
    return units.pop() if units else "samples"


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


def _times(r: float) -> str:
    """A ratio as people say it: 9.8, 12, 0.45."""
    if not math.isfinite(r):
        return "?"
    if abs(r) >= 10:
        return f"{r:.0f}"
    return f"{r:.1f}" if abs(r) >= 1 else f"{r:.2f}"


@dataclass
class _Cells:
    """What the charts need per report row, computed once from the repeats."""

    ok: pd.DataFrame
    cell: np.ndarray  # per succeeded result: its report row, -1 for none
    used: np.ndarray  # per succeeded result: part of the statistics (not a left-out contended repeat)
    contended: np.ndarray
    outlier: np.ndarray
    stalled: np.ndarray
    stalls_per_cell: np.ndarray

    def medians(self, column: str, n: int) -> np.ndarray:
        """Per report row: the median of ``column`` over the repeats the statistics used (NaN without)."""
        if column not in self.ok.columns:
            return np.full(n, np.nan)
        return self.medians_of(floats(self.ok[column]), n)

    def medians_of(self, values: np.ndarray, n: int) -> np.ndarray:
        """Medians over the repeats the statistics used; a cell whose repeats were all left out (contended)
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
    contended = contended_mask(ok)
    matched = cell >= 0
    total = np.bincount(cell[matched], minlength=n) if n else np.zeros(0, dtype=np.intp)
    # Were contended repeats kept (--include-contended)? Then n counts them too.
    busy = report["n_contended"].fillna(0).to_numpy(dtype=float) > 0 if "n_contended" in report else np.zeros(n, bool)
    included = bool(busy.any()) and bool(
        (report["n"].to_numpy(dtype=float)[busy] == total[busy]).all() if "n" in report else False
    )
    used = np.ones(len(ok), dtype=bool) if included else ~contended
    values = np.where(used & matched, floats(ok["steady_samples_per_s"]), np.nan)
    outlier = np.zeros(len(ok), dtype=bool)
    if matched.any():
        outlier[matched] = summarize_groups(values[matched], cell[matched], n, n_boot=1).outlier_mask
    stalled = floats(ok["stalls"]) > 0 if "stalls" in ok.columns else np.zeros(len(ok), dtype=bool)
    stalls_per_cell = np.bincount(cell[matched & stalled], minlength=n) if n else np.zeros(0, dtype=np.intp)
    return _Cells(ok, cell, used, contended, outlier, stalled, stalls_per_cell)


def _count(v: Any) -> int:
    """A count from a frame (NaN, None: 0)."""
    return 0 if blank(v) else int(v)


def _flags(rec: dict[str, Any], stalls: int) -> list[str]:
    """Why a cell must be read with care, in words (shown in its chart label and the tables)."""
    flags = []
    if bool(rec.get("unstable")) and not blank(rec.get("unstable")):
        flags.append("unstable")
    for column, word in (("outliers", "outlier"), ("n_contended", "contended"), ("n_failed", "failed")):
        k = _count(rec.get(column))
        if k > 0:
            flags.append(f"{k} {word}")
    if stalls:
        flags.append(f"{stalls} stalled")
    if _count(rec.get("software_keys")) > 1:
        flags.append("pooled software")
    return flags


# ------------------------------------------------------------------------------------------------- summary
def _speedup_rows(report: pd.DataFrame) -> pd.DataFrame:
    if "speedup_vs_cpu" not in report.columns:
        return report.iloc[0:0]
    keep = report["device"].eq("gpu").fillna(False).to_numpy(dtype=bool) & report["speedup_vs_cpu"].notna().to_numpy()
    return report.loc[keep]


def _cpu_names(report: pd.DataFrame) -> dict[tuple[str, ...], list[str]]:
    """Per cell without its device: the CPU device names that ran it (what a speedup is over)."""
    base = [c for c in CELL_COLUMNS if c != "device" and c in report.columns]
    out: dict[tuple[str, ...], list[str]] = {}
    cpu = report[report["device"].eq("cpu").fillna(False).to_numpy(dtype=bool)]
    for rec in records(cpu):
        names = out.setdefault(tuple(str(rec.get(c)) for c in base), [])
        name = str(rec.get("device_name") if not blank(rec.get("device_name")) else rec.get("hardware_key"))
        if name not in names:
            names.append(name)
    return out


def report_summary(report: pd.DataFrame, results: pd.DataFrame | None = None) -> str:
    """The plain-language paragraph at the top of the page (plain text, not yet escaped): the GPU-over-CPU
    headline per cell when there is one ("on this hardware, the GPU trains cifar10_mlp 9.8× faster than the CPU
    (95% CI 9.1–10.4)"), else the fastest and slowest cell of each workload; then how far to trust them."""
    pct = f"{CONFIDENCE:.0%}"
    if report.empty:
        return "No job of this sweep succeeded yet: there is nothing to report."
    sentences: list[str] = []
    varying = varying_columns(report)
    speed = _speedup_rows(report)
    base = [c for c in CELL_COLUMNS if c != "device" and c in report.columns]
    cpus = _cpu_names(report)
    shown = 6
    pairs: dict[tuple[str, str], list[str]] = {}  # (GPU, CPUs) -> what the GPU does how much faster
    for rec, label in zip(records(speed)[:shown], row_labels(speed, varying, device=False)[:shown], strict=True):
        r, lo, hi = (float(rec[c]) for c in ("speedup_vs_cpu", "speedup_vs_cpu_ci_low", "speedup_vs_cpu_ci_high"))
        verb = "runs inference on" if rec.get("mode") == "inference" else "trains"
        gpu = str(rec.get("device_name") if not blank(rec.get("device_name")) else rec.get("hardware_key"))
        cpu = " and ".join(cpus.get(tuple(str(rec.get(c)) for c in base), [])) or "the CPU"
        items = pairs.setdefault((gpu, cpu), [])
        how = f"{_times(r)}× faster" if r >= 1 else f"{_times(1 / r)}× slower"
        if not items:
            how += " than the CPU"
        ci = (
            f"{pct} CI {_times(lo)}–{_times(hi)}"
            if math.isfinite(lo) and math.isfinite(hi)
            else "no CI: too few repeats"
        )
        if math.isfinite(lo) and math.isfinite(hi) and lo <= 1 <= hi:
            ci += ", which includes no difference"
        items.append(f"{verb} {label} {how} ({ci})")
    for (gpu, cpu), items in pairs.items():
        listed = items[0] if len(items) == 1 else "; ".join(items[:-1]) + "; and " + items[-1]
        sentences.append(f"On this hardware ({gpu} against {cpu}), the GPU {listed}.")
    if len(speed) > shown:
        sentences.append(f"{len(speed) - shown} more GPU cell(s) have a speedup: see the speedup chart.")
    if not len(speed):
        sentences += _extremes(report, varying, pct)
    sentences.append(_trust(report, results))
    return " ".join(s for s in sentences if s)


def _extremes(report: pd.DataFrame, varying: list[str], pct: str) -> list[str]:
    """Per workload (the first three): its fastest and slowest cell, with CIs."""
    out = []
    med = report["steady_samples_per_s_median"].to_numpy(dtype=float)
    labels = row_labels(report, varying)
    workloads = list(dict.fromkeys(report["workload"].astype(str)))
    for w in workloads[:3]:
        idx = [int(i) for i in np.flatnonzero(report["workload"].astype(str).to_numpy() == w) if math.isfinite(med[i])]
        if not idx:
            continue
        unit = _unit(report.iloc[idx]) or "samples"

        def say(i: int, unit: str = unit) -> str:
            lo, hi = report["steady_samples_per_s_ci_low"].iloc[i], report["steady_samples_per_s_ci_high"].iloc[i]
            ci = f" ({pct} CI {ci_text(lo, hi)})" if ci_text(lo, hi) else ""
            return f"{labels[i]} at {num(med[i])} {unit}/s{ci}"

        fast, slow = max(idx, key=lambda i: med[i]), min(idx, key=lambda i: med[i])
        if fast == slow:
            out.append(f"{w} ran one cell: {say(fast)}.")
        else:
            apart = _times(med[fast] / med[slow])
            out.append(f"{w}: the fastest cell is {say(fast)}; the slowest is {say(slow)} ({apart}× apart).")
    if len(workloads) > 3:
        out.append(f"{len(workloads) - 3} more workload(s) are in the charts below.")
    return out


def _trust(report: pd.DataFrame, results: pd.DataFrame | None) -> str:
    """How far the figures can be trusted: unstable, contended, failed, pooled."""
    n = len(report)
    unstable = int(report["unstable"].fillna(False).astype(bool).sum()) if "unstable" in report else 0
    parts = []
    if unstable:
        parts.append(
            f"{unstable} of {n} cell(s) are unstable (their repeats scatter by more than {MAX_CV:.0%}, or the CI "
            f"of the median is wider than ±{MAX_CV:.0%}): read their medians as rough"
        )
    n_used = report["n"].fillna(0) if "n" in report else pd.Series(2, index=report.index)
    busy_cells = report["n_contended"].fillna(0) > 0 if "n_contended" in report else n_used < 0
    left_out = int(((n_used == 0) & busy_cells).sum())
    few = int(((n_used < 2) & ~((n_used == 0) & busy_cells)).sum())
    if left_out:
        sweeps = sorted({str(s) for s in results["sweep_id"].dropna()}) if results is not None else []
        sid = sweeps[0] if len(sweeps) == 1 else "SWEEP"
        parts.append(
            f"{left_out} of {n} cell(s) have no figure to trust: every repeat was contended (other processes used "
            f"the machine) and left out; `farm report {sid} --include-contended` keeps them, `farm resume {sid} "
            "--contended` re-runs them"
        )
    if few:
        parts.append(f"{few} of {n} cell(s) have fewer than 2 repeats: their spread cannot be judged")
    elif not unstable and not left_out:
        parts.append(f"all {n} cell(s) are stable (repeats within {MAX_CV:.0%} of each other)")
    busy = int(report["n_contended"].fillna(0).sum()) if "n_contended" in report else 0
    if busy:
        parts.append(f"{busy} contended repeat(s) (another process used the machine) are marked")
    failed = int(report["n_failed"].fillna(0).sum()) if "n_failed" in report else 0
    if results is not None and "status" in results.columns:
        failed = int(results["status"].isin(["failed", "timed_out", "cancelled"]).sum())
    if failed:
        parts.append(f"{failed} job(s) failed")
    pooled = int((report["software_keys"].fillna(0) > 1).sum()) if "software_keys" in report else 0
    if pooled:
        parts.append(f"{pooled} cell(s) pool results from several software stacks")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


# ------------------------------------------------------------------------------------------------- sections
def _capped(n: int, what: str = "cells") -> str:
    return (
        f" Showing the first {MAX_CELLS} of {n:,} {what} in report order; the table and the CSV hold all."
        if n > MAX_CELLS
        else ""
    )


def _throughput_section(p: Any, report: pd.DataFrame, cells: _Cells, labels: list[str]) -> str:
    shown = min(len(report), MAX_CELLS)
    unit = _unit(report)
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
            cells.contended[idx] & ~cells.used[idx],
            "contended",
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
        "stalled (▽), contended repeats (□, left out of the statistics)."
    )
    if sampled:
        caption += f" Cells with more than {MAX_DOTS} repeats show {MAX_DOTS}: every flagged one, then a fixed sample."
    caption += _capped(len(report))
    return figure_html(svg, html.escape(caption)) + _report_table(report, cells, labels)


def _report_table(report: pd.DataFrame, cells: _Cells, labels: list[str]) -> str:
    unit = _unit(report) or "unit"
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
        speed = "" if blank(r) else _ratio_note(r, rec.get("speedup_vs_cpu_ci_low"), rec.get("speedup_vs_cpu_ci_high"))
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


def _speedup_section(p: Any, report: pd.DataFrame, results: pd.DataFrame, ratios: pd.DataFrame | None) -> str:
    speed = _speedup_rows(report)
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
                note=_ratio_note(rec["speedup_vs_cpu"], rec["speedup_vs_cpu_ci_low"], rec["speedup_vs_cpu_ci_high"]),
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
            "(both sides bootstrapped); the dashed line is no difference. Colour: backend." + _capped(len(speed))
        )
        parts.append(figure_html(svg, html.escape(caption)))
    else:
        parts.append('<p class="muted">No GPU cell has a CPU counterpart in this sweep: no speedup to show.</p>')
    if ratios is not None and len(ratios):
        parts.append(_ratios_part(p, ratios, results))
    return "".join(parts)


def _ratio_note(r: Any, lo: Any, hi: Any) -> str:
    if blank(r):
        return ""
    ci = ci_text(lo, hi, _times)
    return f"{_times(float(r))}×" + (f" [{ci}]" if ci else " (no CI)")


def _ratio_by(ratios: pd.DataFrame, results: pd.DataFrame, baseline: str) -> str:
    """The column ``ratios`` was taken by (``--ratio-by``): an extra column when it is not a cell column, else
    the cell column whose baseline value the results hold but no ratio row has."""
    ratio_columns = {"hardware", "baseline", "metric", "n", "n_baseline", "n_contended", "n_contended_baseline"}
    ratio_columns |= {"median", "baseline_median", "ratio", "ratio_ci_low", "ratio_ci_high"}
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
            note=_ratio_note(rec["ratio"], rec["ratio_ci_low"], rec["ratio_ci_high"]),
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
        f"with the {CONFIDENCE:.0%} CI; the dashed line is no difference. Colour: {by}." + _capped(len(ratios))
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
        "compilation happen there), the steady epochs, and the evaluation." + _capped(n)
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
            "p99 means occasional slow steps (input stalls, garbage collection, recompiles)." + _capped(n)
        )
        parts.append(figure_html(svg, html.escape(caption)))
    return "".join(parts)


_VERSION_COLUMNS = [
    ("keras_version", "Keras"),
    ("backend_version", "backend version"),
    ("python_version", "Python"),
    ("benchfarm_version", "benchfarm"),
    ("workload_version", "workload"),
]


def _distinct(values: pd.Series) -> str:
    """The distinct non-missing values, sorted, joined (vectorized: a 100,000-row sweep has few of them)."""
    return ", ".join(sorted(str(v) for v in pd.unique(values.dropna().astype(str))))


def _environment_section(report: pd.DataFrame, results: pd.DataFrame) -> str:
    parts = []
    ok = succeeded(results) if "status" in results.columns else results
    # Hardware: one row per hardware key.
    hw = (
        ok["hardware_key"].where(ok["hardware_key"].notna(), ok["device_name"])
        if "hardware_key" in ok
        else ok.get("device_name")
    )
    gpu_cols = [c for c in ok.columns if any(w in c.lower() for w in ("driver", "cuda"))]
    if hw is not None and len(ok):
        rows = []
        for key, grp in ok.groupby(hw.astype(str), sort=True):
            rows.append(
                [
                    key,
                    _distinct(grp["device_name"]),
                    _distinct(grp["device"]),
                    f"{len(grp):,}",
                    _distinct(grp["host"]) if "host" in grp else "",
                    *(_distinct(grp[c]) for c in gpu_cols),
                ]
            )
        parts.append("<h3>Hardware</h3>")
        parts.append(table_html(["hardware key", "device name", "device", "results", "hosts", *gpu_cols], rows))
        if not gpu_cols:
            parts.append(
                '<p class="muted">The result rows do not carry the GPU driver and CUDA versions; each job\'s full '
                "record in the store keeps its environment.</p>"
            )
    # Software: one row per software key, with the versions behind it.
    if len(ok):
        sw = ok["software_key"] if "software_key" in ok.columns else pd.Series("", index=ok.index)
        cols = [(c, t) for c, t in _VERSION_COLUMNS if c in ok.columns]
        rows = []
        for key, grp in ok.groupby(sw.fillna("").astype(str), sort=True):
            backend = []
            if "backend_version" in grp:
                pairs = grp[["backend", "backend_version"]].dropna().astype(str).drop_duplicates()
                backend = sorted(f"{b} {v}" for b, v in pairs.itertuples(index=False, name=None))
            rows.append(
                [
                    key or "(not recorded)",
                    f"{len(grp):,}",
                    *(", ".join(backend) if c == "backend_version" else _distinct(grp[c]) for c, _ in cols),
                ]
            )
        parts.append("<h3>Software</h3>")
        parts.append(table_html(["software key", "results", *(t for _, t in cols)], rows))
    # Cells that pool several software stacks.
    if "software_keys" in report.columns:
        pooled = report[report["software_keys"].fillna(0) > 1]
        if len(pooled):
            items = "".join(
                f"<li>{esc(lbl)} pools results from {int(rec['software_keys'])} software stacks: "
                f"<code>{esc(rec.get('software_key'))}</code></li>"
                for lbl, rec in zip(row_labels(pooled, varying_columns(report)), records(pooled), strict=True)
            )
            parts.append(
                '<p class="warn"><strong>Warning:</strong> these cells pool repeats that ran on different software; '
                f"their spread may be the software's, not the machine's:</p><ul class=\"warn\">{items}</ul>"
            )
    return "".join(parts) or '<p class="muted">No succeeded result: nothing is known about the environment.</p>'


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
    (:func:`farm.reports.aggregate.results_frame`); ``ratios``: :func:`farm.reports.aggregate.ratios` (``--ratio-by``);
    ``history``: :func:`farm.reports.history.history_frame`. Raises :class:`PlotExtraMissing` without matplotlib and
    :class:`farm.reports.files.OutputError` when the file cannot be written.
    """
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
                _speedup_section(p, report, results, ratios),
            ),
            ("phases", "Where each job's time went", _phases_section(p, report, cells, labels)),
            ("steps", "Step times", _steps_section(p, report, cells, labels)),
        ]
    sections.append(("environment", "Environment", _environment_section(report, results)))
    if history is not None:
        sections.append(("history", "History", history_section(p, history)))
    summary = html.escape(report_summary(report, results))
    counts = _status_counts(results)
    if counts:
        summary += f' <span class="muted">({html.escape(counts)})</span>'
    write_page(path, page_html(title, sections, summary))


def _status_counts(results: pd.DataFrame) -> str:
    if "status" not in results.columns or results.empty:
        return ""
    counts = results["status"].fillna("unknown").astype(str).value_counts()
    return f"{len(results):,} job(s): " + ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items()))
