"""The HTML report: one self-contained file a person can read at a glance, offline, with no script at all.

* :func:`write_report_html` — one sweep (``farm report SWEEP --html``, ``farm run``'s ``report.html``): a
  plain-language summary, throughput per cell with its CI and every repeat, the GPU-over-CPU speedup (and
  ``--ratio-by`` ratios), where each job's time went, step times, the environment, and optionally a history.
* :func:`write_history_html` — ``farm history --html``: one line chart per cell over its sweeps.
* :func:`write_compare_html` — ``farm compare A B --html``: the ratio B/A per cell with its CI, coloured by
  verdict.

The charts are matplotlib SVG inlined in the page (:mod:`farm.plots` says why); the page carries a
Content-Security-Policy that forbids every fetch and every script, so even a mistake could not make it reach
the network. Everything that comes from the data (sweep, workload, device names, errors, notes) is escaped.

Big sweeps stay readable and small: each chart shows at most ``MAX_CELLS`` cells (in report order, said in its
caption), at most ``MAX_DOTS`` repeats per cell (flagged repeats first), each table at most
``MAX_TABLE_ROWS`` rows; the CSV outputs hold everything.

matplotlib is the ``plot`` extra: this module imports it (through :mod:`farm.plots`) only when a page is
written, and says what to install (:class:`PlotExtraMissing`, one line, exit 1) when it is absent, so the
rest of ``farm report`` and ``farm compare`` works without it. Files are written whole or not at all
(:func:`farm.output.write_atomic`).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from farm.frames import contended_mask, floats, succeeded
from farm.output import OutputError, write_atomic
from farm.rows import CELL_COLUMNS
from farm.stats import MAX_CV, group_medians, summarize_groups

__all__ = [
    "MAX_CELLS",
    "MAX_DOTS",
    "MAX_TABLE_ROWS",
    "PLOT_EXTRA_MISSING",
    "PlotExtraMissing",
    "report_summary",
    "require_plotting",
    "write_compare_html",
    "write_history_html",
    "write_report_html",
]

#: What to tell a user whose install lacks matplotlib.
PLOT_EXTRA_MISSING = "the HTML report needs the plot extra: pip install 'benchfarm[plot]'"
#: Cells drawn per chart (in report order); the tables and CSVs hold the rest.
MAX_CELLS = 40
#: Repeats drawn as dots per cell (flagged ones first, then a fixed-seed sample of the others).
MAX_DOTS = 100
#: Rows per HTML table.
MAX_TABLE_ROWS = 500
#: Cells given a history chart (those with a flagged change first).
MAX_HISTORY_CHARTS = 24
#: The confidence of every interval shown (that of farm.report.aggregate's default).
CONFIDENCE = 0.95

#: The cell's identity in a report row: the sweep cell plus the hardware that ran it (farm.report.GROUP_COLUMNS).
_GROUP = [*CELL_COLUMNS, "hardware_key"]
#: Verdict colours of farm compare (the terminal's, as close as a chart allows).
VERDICT_COLORS = {
    "faster": "#009E73",
    "slower": "#C0392B",
    "no change": "#999999",
    "inconclusive": "#E69F00",
    "only in A": "#CC79A7",
    "only in B": "#CC79A7",
}


class PlotExtraMissing(OutputError):
    """matplotlib is not installed: the HTML cannot be drawn (an environment failure: one line, exit 1)."""


def require_plotting() -> None:
    """Raise :class:`PlotExtraMissing` unless matplotlib can be imported. Commands call it before any work, so
    ``--html`` on a submit-only install fails at once, in one line that says what to install."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotExtraMissing(PLOT_EXTRA_MISSING) from None


def _plots() -> Any:
    require_plotting()
    from farm import plots

    return plots


# ------------------------------------------------------------------------------------------------- text
def _blank(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, float | np.floating) and math.isnan(v)


def _e(v: Any) -> str:
    """Escaped text of a value ("" for a missing one): every string from the data goes through here."""
    return "" if _blank(v) else html.escape(str(v), quote=True)


def _num(v: Any) -> str:
    """A measurement for people: 4 significant digits, thousands separated; "" when missing."""
    if _blank(v):
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


def _times(r: float) -> str:
    """A ratio as people say it: 9.8, 12, 0.45."""
    if not math.isfinite(r):
        return "?"
    if abs(r) >= 10:
        return f"{r:.0f}"
    return f"{r:.1f}" if abs(r) >= 1 else f"{r:.2f}"


def _ci(lo: Any, hi: Any, fmt: Any = _num) -> str:
    if _blank(lo) or _blank(hi):
        return ""
    return f"{fmt(lo)}–{fmt(hi)}"


class _Raw(str):
    """Table-cell markup built here from escaped parts: written as is."""


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, caption: str = "", total: int | None = None
) -> str:
    """A plain <table>; cells are escaped unless they are :class:`_Raw`. ``total``: rows before the cap."""
    head = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in headers)
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cells = "".join(f"<td>{c if isinstance(c, _Raw) else _e(c)}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    total = len(rows) if total is None else total
    note = ""
    if total > min(len(rows), MAX_TABLE_ROWS):
        note = f" (the first {min(len(rows), MAX_TABLE_ROWS):,} of {total:,} rows; the CSV output holds them all)"
    cap = f"<caption>{caption}{html.escape(note)}</caption>" if caption or note else ""
    return f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _figure(svg: str, caption: str) -> str:
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


def _page(title: str, sections: Sequence[tuple[str, str, str]], summary: str) -> str:
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


def _write(path: Path, document: str) -> None:
    def fill(tmp: Path) -> None:
        tmp.write_text(document, encoding="utf-8")

    write_atomic(Path(path), fill)


# ------------------------------------------------------------------------------------------------- cells
def _varying(df: pd.DataFrame, skip: Sequence[str] = ("workload", "device")) -> list[str]:
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


def _labels(
    df: pd.DataFrame, varying: Sequence[str], *, device: bool = True, hardware: str = "device_name"
) -> list[str]:
    """A short label per row: workload, the varying cell columns, then the device and what ran it."""
    out = []
    for rec in _records(df):
        parts = [str(rec.get("workload"))] + [_part(c, rec.get(c)) for c in varying if not _blank(rec.get(c))]
        label = " · ".join(parts)
        if device:
            hw = rec.get(hardware)
            if _blank(hw):
                hw = rec.get("hardware_key")
            prefix = f"{rec.get('device')}:"
            if isinstance(hw, str) and hw.startswith(prefix):  # a hardware key: "cpu:AMD EPYC x8"
                hw = hw[len(prefix) :]
            label += f" — {rec.get('device')}" + ("" if _blank(hw) else f": {hw}")
        out.append(label)
    return out


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
    units = {str(u) for u in df["unit"] if not _blank(u)}
    if len(units) > 1:
        return None
    return units.pop() if units else "samples"


def _match(report: pd.DataFrame, results: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The succeeded results and, per row, the index of its report row (-1: none), matched as
    :func:`farm.report.aggregate` groups: the cell columns plus the hardware key (the device name where a
    row has none)."""
    ok = succeeded(results)
    if ok.empty or report.empty:
        return ok, np.full(len(ok), -1, dtype=np.intp)
    cols = [c for c in _GROUP if c in report.columns and (c in ok.columns or c == "hardware_key")]
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


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as dicts keyed by column name."""
    return [{str(k): v for k, v in rec.items()} for rec in df.to_dict("records")]


def _count(v: Any) -> int:
    """A count from a frame (NaN, None: 0)."""
    return 0 if _blank(v) else int(v)


def _flags(rec: dict[str, Any], stalls: int) -> list[str]:
    """Why a cell must be read with care, in words (shown in its chart label and the tables)."""
    flags = []
    if bool(rec.get("unstable")) and not _blank(rec.get("unstable")):
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
    for rec in _records(cpu):
        names = out.setdefault(tuple(str(rec.get(c)) for c in base), [])
        name = str(rec.get("device_name") if not _blank(rec.get("device_name")) else rec.get("hardware_key"))
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
    varying = _varying(report)
    speed = _speedup_rows(report)
    base = [c for c in CELL_COLUMNS if c != "device" and c in report.columns]
    cpus = _cpu_names(report)
    shown = 6
    pairs: dict[tuple[str, str], list[str]] = {}  # (GPU, CPUs) -> what the GPU does how much faster
    for rec, label in zip(_records(speed)[:shown], _labels(speed, varying, device=False)[:shown], strict=True):
        r, lo, hi = (float(rec[c]) for c in ("speedup_vs_cpu", "speedup_vs_cpu_ci_low", "speedup_vs_cpu_ci_high"))
        verb = "runs inference on" if rec.get("mode") == "inference" else "trains"
        gpu = str(rec.get("device_name") if not _blank(rec.get("device_name")) else rec.get("hardware_key"))
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
    labels = _labels(report, varying)
    workloads = list(dict.fromkeys(report["workload"].astype(str)))
    for w in workloads[:3]:
        idx = [int(i) for i in np.flatnonzero(report["workload"].astype(str).to_numpy() == w) if math.isfinite(med[i])]
        if not idx:
            continue
        unit = _unit(report.iloc[idx]) or "samples"

        def say(i: int, unit: str = unit) -> str:
            lo, hi = report["steady_samples_per_s_ci_low"].iloc[i], report["steady_samples_per_s_ci_high"].iloc[i]
            ci = f" ({pct} CI {_ci(lo, hi)})" if _ci(lo, hi) else ""
            return f"{labels[i]} at {_num(med[i])} {unit}/s{ci}"

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
    recs = _records(report)
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
                unstable=bool(rec.get("unstable")) and not _blank(rec.get("unstable")),
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
    return _figure(svg, html.escape(caption)) + _report_table(report, cells, labels)


def _report_table(report: pd.DataFrame, cells: _Cells, labels: list[str]) -> str:
    unit = _unit(report) or "unit"
    extra = [
        (c, t)
        for c, t in (
            ("steady_tflops_median", "TFLOP/s"),
            ("latency_p50_s_median", "latency p50 s"),
            ("param_count", "parameters"),
        )
        if c in report.columns and report[c].notna().any()
    ]
    headers = [
        "cell",
        "hardware key",
        "n",
        f"median {unit}/s",
        f"{CONFIDENCE:.0%} CI",
        "CV",
        "first epoch s",
        "test accuracy",
        "GPU/CPU [CI]",
        *(t for _, t in extra),
        "marks",
    ]
    rows = []
    for i, rec in enumerate(_records(report)[:MAX_TABLE_ROWS]):
        flags = _flags(rec, int(cells.stalls_per_cell[i]))
        r = rec.get("speedup_vs_cpu")
        speed = "" if _blank(r) else _ratio_note(r, rec.get("speedup_vs_cpu_ci_low"), rec.get("speedup_vs_cpu_ci_high"))
        cv = rec.get("steady_samples_per_s_cv")
        rows.append(
            [
                labels[i],
                rec.get("hardware_key"),
                _num(rec.get("n")),
                _num(rec.get("steady_samples_per_s_median")),
                _ci(rec.get("steady_samples_per_s_ci_low"), rec.get("steady_samples_per_s_ci_high")),
                "" if _blank(cv) else f"{cv:.1%}",
                _num(rec.get("first_epoch_s_median")),
                _num(rec.get("test_accuracy_median")),
                speed,
                *(_num(rec.get(c)) for c, _ in extra),
                _Raw(f'<span class="flag">{_e(", ".join(flags))}</span>') if flags else "",
            ]
        )
    return _table(headers, rows, caption="One row per cell (the statistics rest on n repeats).", total=len(report))


def _speedup_section(p: Any, report: pd.DataFrame, results: pd.DataFrame, ratios: pd.DataFrame | None) -> str:
    speed = _speedup_rows(report)
    parts = []
    if len(speed):
        shown = speed.iloc[:MAX_CELLS]
        labels = _labels(shown, _varying(report), device=False)
        rows = [
            p.IntervalRow(
                label=f"{lbl} — {rec.get('device_name')}",
                value=float(rec["speedup_vs_cpu"]),
                low=float(rec["speedup_vs_cpu_ci_low"]),
                high=float(rec["speedup_vs_cpu_ci_high"]),
                series=str(rec.get("backend")),
                note=_ratio_note(rec["speedup_vs_cpu"], rec["speedup_vs_cpu_ci_low"], rec["speedup_vs_cpu_ci_high"]),
            )
            for lbl, rec in zip(labels, _records(shown), strict=True)
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
        parts.append(_figure(svg, html.escape(caption)))
    else:
        parts.append('<p class="muted">No GPU cell has a CPU counterpart in this sweep: no speedup to show.</p>')
    if ratios is not None and len(ratios):
        parts.append(_ratios_part(p, ratios, results))
    return "".join(parts)


def _ratio_note(r: Any, lo: Any, hi: Any) -> str:
    if _blank(r):
        return ""
    ci = _ci(lo, hi, _times)
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
    labels = _labels(shown, _varying(ratios), hardware="hardware")
    rows = [
        p.IntervalRow(
            label=lbl,
            value=float(rec["ratio"]) if not _blank(rec["ratio"]) else math.nan,
            low=float(rec["ratio_ci_low"]) if not _blank(rec["ratio_ci_low"]) else math.nan,
            high=float(rec["ratio_ci_high"]) if not _blank(rec["ratio_ci_high"]) else math.nan,
            series=str(rec.get(by)),
            note=_ratio_note(rec["ratio"], rec["ratio_ci_low"], rec["ratio_ci_high"]),
        )
        for lbl, rec in zip(labels, _records(shown), strict=True)
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
            _num(rec.get("n")),
            _num(rec.get("median")),
            _num(rec.get("n_baseline")),
            _num(rec.get("baseline_median")),
            _num(rec.get("ratio")),
            _ci(rec.get("ratio_ci_low"), rec.get("ratio_ci_high")),
        ]
        for lbl, rec in zip(_labels(ratios, _varying(ratios), hardware="hardware"), _records(ratios), strict=True)
    ]
    return (
        f"<h3>Ratios over {html.escape(by)} = {html.escape(baseline)}</h3>"
        + _figure(svg, html.escape(caption))
        + _table(headers, table_rows, total=len(ratios))
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
    return _figure(svg, html.escape(caption))


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
        parts.append(_figure(svg, html.escape(caption)))
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
        parts.append(_table(["hardware key", "device name", "device", "results", "hosts", *gpu_cols], rows))
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
        parts.append(_table(["software key", "results", *(t for _, t in cols)], rows))
    # Cells that pool several software stacks.
    if "software_keys" in report.columns:
        pooled = report[report["software_keys"].fillna(0) > 1]
        if len(pooled):
            items = "".join(
                f"<li>{_e(lbl)} pools results from {int(rec['software_keys'])} software stacks: "
                f"<code>{_e(rec.get('software_key'))}</code></li>"
                for lbl, rec in zip(_labels(pooled, _varying(report)), _records(pooled), strict=True)
            )
            parts.append(
                '<p class="warn"><strong>Warning:</strong> these cells pool repeats that ran on different software; '
                f"their spread may be the software's, not the machine's:</p><ul class=\"warn\">{items}</ul>"
            )
    return "".join(parts) or '<p class="muted">No succeeded result: nothing is known about the environment.</p>'


def _history_section(p: Any, history: pd.DataFrame) -> str:
    if history.empty:
        return '<p class="muted">No history: no cell ran in more than one sweep here.</p>'
    key_cols = [c for c in _GROUP if c in history.columns]
    groups = list(history.groupby(key_cols, dropna=False, sort=False).indices.values())
    changed = [bool(history["change"].iloc[g].astype(bool).any()) for g in groups]
    order = sorted(range(len(groups)), key=lambda i: (not changed[i], i))  # flagged cells first, else as given
    varying = _varying(history)
    parts = []
    for i in order[:MAX_HISTORY_CHARTS]:
        h = history.iloc[groups[i]]
        first = h.iloc[[0]]
        title = _labels(first, varying, hardware="hardware_key")[0]
        unit = next((str(u) for u in h["unit"] if not _blank(u)), "samples") if "unit" in h else "samples"
        points = []
        for rec in _records(h):
            pct = rec.get("change_pct")
            note = str(rec.get("changed") or "")
            if bool(rec.get("change")) and not _blank(pct):
                note = f"{pct:+.1f}%: {note}" if note else f"{pct:+.1f}%"
            tick = str(rec.get("sweep_id"))
            when = rec.get("when")
            if not _blank(when):
                tick += f" ({str(when)[:10]})"
            points.append(
                p.HistoryPoint(
                    tick=tick,
                    median=float(rec["median"]) if not _blank(rec["median"]) else math.nan,
                    low=float(rec["ci_low"]) if not _blank(rec["ci_low"]) else math.nan,
                    high=float(rec["ci_high"]) if not _blank(rec["ci_high"]) else math.nan,
                    change=bool(rec.get("change")) and not _blank(rec.get("change")),
                    note=note,
                )
            )
        svg = p.history_svg(points, f"{unit}/s (median)", title, salt=f"history-{i}", label=f"History of {title}")
        flagged = [pt for pt in points if pt.change]
        caption = (
            f"{title}: the median steady throughput of each sweep in time order with its {CONFIDENCE:.0%} CI band."
            + (
                " Flagged changes: " + "; ".join(f"{pt.tick}: {pt.note}" for pt in flagged) + "."
                if flagged
                else " No change flagged."
            )
        )
        parts.append(_figure(svg, html.escape(caption)))
    if len(groups) > MAX_HISTORY_CHARTS:
        parts.append(
            f'<p class="muted">Charts for {MAX_HISTORY_CHARTS} of {len(groups)} cells (those with a flagged change '
            "first); the table below and the CSV hold every cell.</p>"
        )
    flagged_rows = history[history["change"].fillna(False).astype(bool)]
    labels = _labels(flagged_rows, varying, hardware="hardware_key")
    rows = [
        [
            lbl,
            rec.get("sweep_id"),
            rec.get("when"),
            _num(rec.get("median")),
            "" if _blank(rec.get("change_pct")) else f"{rec['change_pct']:+.1f}%",
            "" if _blank(rec.get("p_value")) else f"{rec['p_value']:.3g}",
            rec.get("changed"),
        ]
        for lbl, rec in zip(labels, _records(flagged_rows), strict=True)
    ]
    if rows:
        parts.append(
            _table(["cell", "sweep", "when", "median", "change", "p", "what changed"], rows, caption="Flagged changes.")
        )
    else:
        parts.append("<p>No cell changed beyond its noise.</p>")
    return "".join(parts)


def _history_summary(history: pd.DataFrame) -> str:
    if history.empty:
        return "No cell ran in more than one sweep: there is no history to show."
    key_cols = [c for c in _GROUP if c in history.columns]
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
        label = _labels(rec.to_frame().T, _varying(history), hardware="hardware_key")[0]
        pct = rec.get("change_pct")
        text += f" The largest: {label} at sweep {rec['sweep_id']}" + ("" if _blank(pct) else f" ({pct:+.1f}%)")
        text += f", where {rec['changed']}." if rec.get("changed") else "."
    return text


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

    ``report``: :func:`farm.report.aggregate` of ``results``, the tidy results frame
    (:func:`farm.report.results_frame`); ``ratios``: :func:`farm.report.ratios` (``--ratio-by``);
    ``history``: :func:`farm.history.history_frame`. Raises :class:`PlotExtraMissing` without matplotlib and
    :class:`farm.output.OutputError` when the file cannot be written.
    """
    p = _plots()
    cells = _cells(report, results)
    labels = _labels(report, _varying(report))
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
        sections.append(("history", "History", _history_section(p, history)))
    summary = html.escape(report_summary(report, results))
    counts = _status_counts(results)
    if counts:
        summary += f' <span class="muted">({html.escape(counts)})</span>'
    _write(path, _page(title, sections, summary))


def _status_counts(results: pd.DataFrame) -> str:
    if "status" not in results.columns or results.empty:
        return ""
    counts = results["status"].fillna("unknown").astype(str).value_counts()
    return f"{len(results):,} job(s): " + ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items()))


def write_history_html(history: pd.DataFrame, path: Path, *, title: str) -> None:
    """Write ``farm history``'s page: one chart per cell over its sweeps (:func:`farm.history.history_frame`),
    changes marked with what changed, and the table of flagged changes."""
    p = _plots()
    sections = [("history", "History", _history_section(p, history))]
    _write(path, _page(title, sections, html.escape(_history_summary(history))))


def write_compare_html(comparison: pd.DataFrame, path: Path, *, title: str) -> None:
    """Write ``farm compare A B --html``: the ratio B/A of every matched cell with its CI, coloured by verdict,
    and the table (:func:`farm.compare.compare`'s frame)."""
    p = _plots()
    cmp = comparison
    metric = str(cmp["metric"].iloc[0]) if len(cmp) and "metric" in cmp else "steady_samples_per_s"
    higher = bool(cmp["higher_is_better"].iloc[0]) if len(cmp) and "higher_is_better" in cmp else True
    labels = _labels(cmp, _varying(cmp), hardware="hardware")
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
    plotted = [i for i in range(len(cmp)) if not _blank(cmp["ratio"].iloc[i])]
    if plotted:
        shown = plotted[:MAX_CELLS]
        rows = []
        for i in shown:
            rec = cmp.iloc[i]
            lo, hi = rec["ratio_ci_low"], rec["ratio_ci_high"]
            note = (
                f"{rec['ratio']:.3f}"
                + (f" [{lo:.3f}–{hi:.3f}]" if not (_blank(lo) or _blank(hi)) else "")
                + f" {rec['change']}"
            )
            rows.append(
                p.IntervalRow(
                    label=labels[i],
                    value=float(rec["ratio"]),
                    low=float(lo) if not _blank(lo) else math.nan,
                    high=float(hi) if not _blank(hi) else math.nan,
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
            f"Each cell's median on B over its median on A, with the {CONFIDENCE:.0%} bootstrap CI; the dashed line is "
            "no change. Colour: the verdict (faster/slower need p < 0.05 in a Mann-Whitney test AND a change beyond "
            "the "
            "threshold). Cells on one side only have no ratio and are listed in the table."
            + (
                f" Showing the first {MAX_CELLS} of {len(plotted):,} cells with a ratio."
                if len(plotted) > MAX_CELLS
                else ""
            )
        )
        body.append(_figure(svg, html.escape(caption)))
    else:
        body.append('<p class="muted">No cell ran on both sides: no ratio to draw.</p>')
    table_rows = []
    for lbl, row in zip(labels, _records(cmp), strict=True):
        change = str(row.get("change"))
        css = "v-" + change.replace(" ", "-")
        table_rows.append(
            [
                lbl,
                f"{row.get('n_a')}/{row.get('n_b')}",
                _num(row.get("median_a")),
                _num(row.get("median_b")),
                "" if _blank(row.get("ratio")) else f"{row['ratio']:.3f}",
                _ci(row.get("ratio_ci_low"), row.get("ratio_ci_high"), lambda v: f"{v:.3f}"),
                "" if _blank(row.get("p_value")) else f"{row['p_value']:.3g}",
                _Raw(f'<span class="{_e(css)}">{_e(change)}</span>'),
                row.get("note"),
            ]
        )
    body.append(
        _table(
            ["cell", "n A/B", "median A", "median B", "ratio B/A", f"{CONFIDENCE:.0%} CI", "p", "change", "note"],
            table_rows,
            total=len(cmp),
        )
    )
    _write(path, _page(title, [("comparison", "B against A, cell by cell", "".join(body))], html.escape(summary)))
