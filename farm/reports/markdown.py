"""``report.md``: the report as a person reads it — a short table of what matters per cell, and how to read it.

The full report (every statistic of every cell) stays in ``report.csv``; this is the summary ``farm run`` writes
beside it and ``farm report -o x.md`` writes: workload, device, backend, batch, device name, ``n``, the median
steady throughput (its unit in the header: ``images/s``) with its 95% CI, the first epoch's time, the test
accuracy, the GPU-over-CPU speedup with its CI, and the cell's flags (``unstable``, outliers, stalls, invalid
repeats and why); integers printed as integers; then a "How to read this" paragraph, which says among other things that
an accuracy near 1/classes on synthetic data is chance level, as expected.

pandas and numpy only: no framework, no rich, no Redis (the submit side writes it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from farm.columns import format_figure, shown_in
from farm.reports.frames import MISSING_MEANS

__all__ = [
    "cell_flags",
    "cell_stalls",
    "fmt_number",
    "invalid_flag",
    "precision_text",
    "report_title",
    "summary_frame",
    "summary_markdown",
    "throughput_unit",
    "write_summary_md",
]

#: Cell columns always shown (title), in order; other cell columns are shown only when they vary.
SHOWN = [
    ("workload", "workload"),
    ("device", "device"),
    ("backend", "backend"),
    ("batch_size", "batch"),
    ("device_name", "device name"),
]
#: Cell columns that may tell cells apart besides the shown ones, shown (with these titles) when they vary.
VARYING = [
    ("devices_per_job", "devices"),
    ("batch_scope", "batch per"),
    ("batch_max", "batch max"),
    ("server_p99_bound_ms", "p99 bound ms"),
    ("mode", "mode"),
    ("epochs", "epochs"),
    ("data", "data"),
    ("train_samples", "train samples"),
    ("steps_per_execution", "steps/exec"),
    ("jit_compile", "jit"),
    ("mixed_precision", "mixed precision"),
    ("input_pipeline", "pipeline"),
]

HOW_TO_READ: list[tuple[tuple[str, ...], str]] = [
    (
        (),
        """- **One row per sweep cell**: a workload with its settings on one kind of hardware. `n` is the number of
  repeats the figures rest on; invalid repeats (measured while other processes used the machine or its clock
  changed, or with too short a steady window to time) are not among them (*flags* counts them, with why).""",
    ),
    (
        (),
        """- **Throughput** is the median over the repeats of the *steady* epochs (every epoch after the first, which
  also holds tracing and compilation: that one is *first epoch s*). **95% CI** is the bootstrap confidence
  interval of that median: where two cells' intervals overlap, the table does not show a difference between
  them.""",
    ),
    (
        ("GPU/CPU",),
        """- **GPU/CPU** is the GPU cell's median throughput over that of the CPU cell with the same settings, with its
  95% CI.""",
    ),
    (
        ("flags",),
        """- **Flags**: `unstable` — the repeats scatter too much (a spread over 10%, or a CI wider than ±10% of the
  median) to trust the median: run more repeats on a quiet machine; `outliers` — repeats far from the others
  (modified z-score over 3.5); `stalls` — epochs where training sat idle waiting for its input;
  `N invalid (…)` — repeats not counted, and why (one kind alone is named alone): `contended` (the machine was
  busy), `throttled` or `clock changed` (the device slowed down), `too short` (too little to time:
  `results.csv`'s *invalid_reason* says how long would do).""",
    ),
    (
        ("latency p50 ms", "latency p99 ms"),
        """- **Inference** cells (`mode: inference`): the throughput is that of the steady `predict` passes over the
  samples at the cell's batch size (the first pass compiles); *latency p50/p99 ms* are of single requests at
  batch 1, each timed until its answer is in hand.""",
    ),
    (
        ("TFLOP/s", "tokens/s"),
        """- **TFLOP/s** is the achieved rate: the model's counted forward FLOPs per sample × samples/s (× 3 in
  training, for the backward pass); **tokens/s** is sequences/s × sequence length.""",
    ),
    (
        ("memory used", "peak GPU MiB", "peak memory MiB"),
        """- **Memory**: *peak memory MiB* is the training process's resident high-water mark, *peak GPU MiB* the
  GPU memory its framework reports at its peak; *memory used* is that peak (GPU for a GPU cell, host for a CPU
  one) over the capacity it may use (the GPU's memory, or the job's limit or the host's RAM), the worst repeat
  of the cell: what is left is the headroom for a larger batch.""",
    ),
    (
        ("J/sample", "watts"),
        """- **J/sample** is the energy the job's devices used per training sample in the steady epochs, and **watts**
  their mean power there, read from the hardware's own counters (RAPL for a CPU package, NVML for a GPU):
  software readings of the devices, not a wall-socket meter, and not MLPerf-compliant power measurement. A RAPL
  package counts every process on it.""",
    ),
    (
        ("$/M samples", "$ to target"),
        """- **$/M samples** is what a million samples cost at the cell's median throughput and the price per hour
  given for its hardware (`farm report --price`, or `prices` in the settings), 95% CI from the throughput's;
  **$ to target** the training it took to reach the target accuracy, at that price. Empty where no price
  names the hardware.""",
    ),
    (
        ("test accuracy",),
        """- **Test accuracy** is measured on the test split after training (in inference: on the batch-1 requests).""",
    ),
    (
        ("synthetic",),
        """- On synthetic data (random inputs and labels, `data: synthetic`) there is nothing to learn: an accuracy
  near 1/classes (≈10% for 10 classes) is chance level and expected — such a sweep measures speed, not learning.""",
    ),
    (
        (),
        """- Every statistic of every cell (quartiles, IQR, mean, std, cv, the epoch times and more) is in `report.csv`;
  one row per job in `results.csv`.""",
    ),
]
"""The reading notes of report.md, each with the table columns it explains (any of them present: the note is
shown; none named: always; ``synthetic``: when a cell trained on synthetic data), so the page never explains a
column it does not have."""


def scaling_markdown(results: pd.DataFrame | None) -> list[str]:
    """The scaling table's section (data-parallel cells over their one-device counterparts), or nothing."""
    if results is None:
        return []
    from farm.reports.scaling import scaling

    table = scaling(results)
    if table.empty:
        return []
    frame = pd.DataFrame(scaling_lines(table), columns=SCALING_TITLES)
    return [
        "## Scaling over devices",
        "",
        "Each data-parallel cell's median throughput at N devices over the same cell on one device (same global "
        "batch, same hardware), with the 95% bootstrap CI; efficiency is that speedup over N (1: perfect). Virtual "
        "CPU devices share one machine's cores: their efficiency is well under 1 by design.",
        "",
        markdown_table(frame),
    ]


def scaling_lines(table: pd.DataFrame) -> list[list[str]]:
    """The scaling table (farm.reports.scaling) as text cells, as the terminal, report.md and the HTML page show
    it."""

    def ci(row: pd.Series, name: str, digits: int = 3) -> str:
        lo, hi = row[f"{name}_ci_low"], row[f"{name}_ci_high"]
        if pd.isna(lo) or pd.isna(hi):
            return "no CI"
        return f"{fmt_number(lo, digits)}–{fmt_number(hi, digits)}"

    def figure(value: object) -> str:
        return "—" if _missing(value) else fmt_number(value)

    def ratio(row: pd.Series) -> tuple[str, str]:
        if _missing(row["speedup"]):  # no valid repeat at N devices or at one
            side = "N" if _missing(row["samples_per_s"]) else "1"
            return f"— (no valid repeat at {side})", "—"
        speedup = f"{fmt_number(row['speedup'], 3)}× ({ci(row, 'speedup')})"
        return speedup, f"{fmt_number(row['efficiency'], 3)} ({ci(row, 'efficiency')})"

    return [
        [
            str(row["workload"]),
            str(row["device"]),
            str(row["backend"]),
            fmt_number(row["batch_size"]) + ("/device" if row.get("batch_scope") == "device" else ""),
            str(row["hardware"]),
            str(row["devices"]),
            figure(row["samples_per_s"]),
            figure(row["samples_per_s_1"]),
            *ratio(row),
        ]
        for _, row in table.iterrows()
    ]


SCALING_TITLES = ["workload", "device", "backend", "batch", "hardware", "devices", "/s at N", "/s at 1"]
SCALING_TITLES += ["speedup (95% CI)", "efficiency (95% CI)"]


def energy_note(report: pd.DataFrame, results: pd.DataFrame | None) -> str | None:
    """Where no cell has an energy figure: one line saying why (the workers' reasons, each once), so the figure's
    absence is explained, never mistaken for zero. None when some cell has one or nothing says why."""
    if results is None or "energy_missing" not in results.columns or len(report) == 0:
        return None
    if "energy_j_per_sample_median" in report.columns and report["energy_j_per_sample_median"].notna().any():
        return None
    reasons = sorted({str(r) for r in results["energy_missing"].dropna() if str(r)})
    return f"Energy per sample not measured: {'; '.join(reasons)}." if reasons else None


def how_to_read(titles: set[str], synthetic: bool) -> str:
    """The "How to read this" section for a table with these column titles."""
    present = titles | ({"synthetic"} if synthetic else set())
    notes = [text for needs, text in HOW_TO_READ if not needs or present & set(needs)]
    return "## How to read this\n\n" + "\n".join(notes) + "\n"


# ---------------------------------------------------------------------------------------------------- values
def _missing(v: Any) -> bool:
    if v is None or v is pd.NA:
        return True
    try:
        return bool(isinstance(v, (float, np.floating)) and math.isnan(v))
    except TypeError:
        return False


def fmt_number(v: Any, digits: int = 4) -> str:
    """A number for a person: integers as integers (``1``, not ``1.0``), others to ``digits`` significant digits
    with thousands separated (``1,234``); empty for a missing value."""
    if _missing(v):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f.is_integer() and abs(f) < 1e15:
            return f"{int(f):,}"
        return f"{f:,.0f}" if abs(f) >= 10 ** (digits - 1) else f"{f:,.{digits}g}"
    return str(v)


def throughput_unit(report: pd.DataFrame) -> str | None:
    """The unit the report's cells count throughput in (``images``), when they all share one; else None."""
    if "unit" not in report.columns:
        return None
    units = {str(u) for u in report["unit"] if not _missing(u) and str(u)}
    return units.pop() if len(units) == 1 else None


def _key(v: Any) -> Any:
    """A cell value as a dictionary key: missing values equal, 32 and 32.0 equal, lists hashable."""
    if _missing(v):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)):
        return float(v)
    return v if isinstance(v, (str, bool)) else repr(v)


def cell_stalls(report: pd.DataFrame, results: pd.DataFrame | None) -> list[float]:
    """The stalls (training idle, waiting for its input, see ``stalls`` in the results) of each report cell's
    succeeded repeats, summed; NaN where nothing says. The report's own ``stalls`` column wins if it has one;
    otherwise they are counted from ``results``, matched on the cell and the hardware that ran it."""
    from farm.columns import CELL_COLUMNS

    if "stalls" in report.columns:
        return [float("nan") if _missing(v) else float(v) for v in report["stalls"]]
    nothing = [float("nan")] * len(report)
    needed = ("stalls", "status", "device_name")
    if results is None or not len(report) or any(c not in results.columns for c in needed):
        return nothing
    if "hardware_key" not in report.columns:
        return nothing
    ok = results[results["status"] == "succeeded"]
    keys = [c for c in CELL_COLUMNS if c in ok.columns and c in report.columns]
    hw = ok["hardware_key"] if "hardware_key" in ok.columns else pd.Series(np.nan, index=ok.index)
    hardware = hw.where(hw.notna(), ok["device_name"])
    totals: dict[tuple[Any, ...], float] = {}
    counts = pd.to_numeric(ok["stalls"], errors="coerce").to_numpy(dtype=float)
    for values, where, k in zip(ok[keys].itertuples(index=False, name=None), hardware, counts, strict=True):
        if k == k:
            cell = (*map(_key, values), _key(where))
            totals[cell] = totals.get(cell, 0.0) + float(k)
    rows = zip(report[keys].itertuples(index=False, name=None), report["hardware_key"], strict=True)
    return [totals.get((*map(_key, values), _key(where)), float("nan")) for values, where in rows]


def _count(v: Any) -> int:
    return 0 if _missing(v) or not isinstance(v, (int, float, np.integer, np.floating)) else int(v)


def cell_flags(rec: Mapping[Any, Any], stalls: float = float("nan"), *, invalid: bool = False) -> str:
    """What a cell's figures warn of: ``unstable`` (too wide a spread to trust its median), ``N outliers``,
    ``N stalls`` and, with ``invalid``, ``N invalid (2 contended, 1 too short)`` (repeats left out, and why; a
    report from before ``n_invalid`` existed says ``N contended``); empty for a clean cell."""
    flags = []
    unstable = rec.get("unstable")
    if not _missing(unstable) and bool(unstable):
        flags.append("unstable")
    if (k := _count(rec.get("outliers"))) > 0:
        flags.append(f"{k} outlier{'s' if k > 1 else ''}")
    if (k := _count(stalls)) > 0:
        flags.append(f"{k} stall{'s' if k > 1 else ''}")
    if invalid:
        flags += invalid_flag(rec)
    return ", ".join(flags)


def invalid_flag(rec: Mapping[Any, Any]) -> list[str]:
    """A cell's invalid repeats as one flag: ``3 invalid (2 contended, 1 too short)``, or where all are of one
    kind just ``2 contended`` / ``1 too short`` (chart labels are short); none for a cell without. A report from
    before ``n_invalid`` existed (a file read back) flags its ``N contended``."""
    from farm.reports.frames import UNSTATED

    if "n_invalid" not in rec:
        k = _count(rec.get("n_contended"))
        return [f"{k} contended"] if k > 0 else []
    k = _count(rec.get("n_invalid"))
    if k <= 0:
        return []
    why = rec.get("invalid_kinds")
    if not isinstance(why, str) or not why:
        return [f"{k} invalid"]
    if why == f"{k} {UNSTATED}":
        return [f"{k} invalid"]
    if "," not in why and why.startswith(f"{k} "):  # every invalid repeat of one kind, each once
        return [why]
    return [f"{k} invalid ({why})"]


def ci_text(low: Any, high: Any, digits: int = 4) -> str:
    """A confidence interval as ``low–high``; empty when it lacks a bound."""
    lo, hi = fmt_number(low, digits), fmt_number(high, digits)
    return f"{lo}–{hi}" if lo and hi else ""


def params_text(params: Any, varying: set[str]) -> str:
    """The parameters that differ between the cells of one workload, as ``name=value`` pairs."""
    try:
        values = json.loads(params) if isinstance(params, str) else params
    except ValueError:
        return str(params)
    if not isinstance(values, dict):
        return "" if _missing(values) else str(values)
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items()) if k in varying)


def varying_params(report: pd.DataFrame) -> dict[str, set[str]]:
    """Per workload, the parameter names whose value differs among its cells (none: one set of parameters)."""
    out: dict[str, set[str]] = {}
    if "params" not in report.columns or "workload" not in report.columns:
        return out
    for workload, params in report.groupby("workload", sort=False)["params"]:
        parsed = []
        for p in params:
            try:
                value = json.loads(p) if isinstance(p, str) else p
            except ValueError:
                value = {"params": p}
            parsed.append(value if isinstance(value, dict) else {})
        names = {k for d in parsed for k in d}
        out[str(workload)] = {k for k in names if len({json.dumps(d.get(k), sort_keys=True) for d in parsed}) > 1}
    return out


# ---------------------------------------------------------------------------------------------------- the table
def summary_frame(report: pd.DataFrame, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """The summary's table as text cells: one row per report cell, the columns a person needs (see the module's
    docstring); a column the report lacks is left out, so any frame with a few of them renders."""
    varying = varying_params(report)
    unit = throughput_unit(report)
    stalls = cell_stalls(report, results)
    has = report.columns
    columns: list[tuple[str, list[str]]] = []
    records = report.to_dict("records")

    def add(title: str, values: list[str]) -> None:
        columns.append((title, values))

    for col, title in SHOWN:
        if col in has:
            add(title, [fmt_number(r.get(col)) for r in records])
        if col == "workload" and any(varying.values()):
            add("params", [params_text(r.get("params"), varying.get(str(r.get("workload")), set())) for r in records])
    for col, title in VARYING:
        if col in has and report[col].map(_key).nunique(dropna=False) > 1:
            usual = MISSING_MEANS.get(col)
            add(title, [fmt_number(usual if _missing(r.get(col)) else r.get(col)) for r in records])
    if "n" in has:
        add("n", [fmt_number(r.get("n")) for r in records])
    if "steady_samples_per_s_median" in has:
        per_cell_unit = unit is None and "unit" in has and any(not _missing(u) for u in report["unit"])
        values = []
        for r in records:
            v = fmt_number(r.get("steady_samples_per_s_median"))
            if v and per_cell_unit and not _missing(r.get("unit")):
                v += f" {r['unit']}/s"
            values.append(v)
        add(f"{unit or 'samples'}/s (median)" if not per_cell_unit else "throughput (median)", values)
    if "steady_samples_per_s_ci_low" in has and "steady_samples_per_s_ci_high" in has:
        add(
            "95% CI",
            [ci_text(r.get("steady_samples_per_s_ci_low"), r.get("steady_samples_per_s_ci_high")) for r in records],
        )
    for column in shown_in("markdown"):  # the schema's figures (farm.columns), where some cell has one
        col = column.report_column
        if column.shown and col in has and report[col].notna().any():
            add(column.shown.title, [format_figure(column, r.get(col)) for r in records])
    if "precision_ci" in has and report["precision_ci"].notna().any():
        add("precision", [precision_text(r) for r in records])
    if "speedup_vs_cpu" in has and report["speedup_vs_cpu"].notna().any():
        add("GPU/CPU", [_speedup(r) for r in records])
    if any(c in has for c in ("unstable", "outliers", "n_contended", "n_invalid")) or not all(
        math.isnan(s) for s in stalls
    ):
        add("flags", [cell_flags(r, s, invalid=True) for r, s in zip(records, stalls, strict=True)])
    return pd.DataFrame({title: values for title, values in columns}, index=range(len(records)))


def precision_text(rec: Mapping[Any, Any]) -> str:
    """A cell's precision against its target (farm.precision): ``±1.2% (met ±2%)``, ``±3.4% (short of ±2%)``;
    empty for a cell measured a fixed number of times."""
    target: Any = rec.get("precision_ci")
    half: Any = rec.get("ci_half_width_rel")
    if _missing(target):
        return ""
    reached = "no CI" if _missing(half) else f"±{float(half):.1%}"
    return f"{reached} ({'met' if rec.get('precision_met') is True else 'short of'} ±{float(target):.1%})"


def _speedup(rec: Mapping[Any, Any]) -> str:
    ratio = fmt_number(rec.get("speedup_vs_cpu"), 3)
    if not ratio:
        return ""
    ci = ci_text(rec.get("speedup_vs_cpu_ci_low"), rec.get("speedup_vs_cpu_ci_high"), 3)
    return f"{ratio}× ({ci})" if ci else f"{ratio}×"


def _md_cell(text: str) -> str:
    """A table cell's text as inert Markdown: workload names, parameters, units and device names come from users,
    plugins and results (farm.safe_text)."""
    from farm.safe_text import md_escape

    return md_escape(text)


#: Summary columns that hold numbers (aligned right); so does the throughput's, whatever its unit.
NUMBER_TITLES = frozenset(
    {"batch", "n", "95% CI", "GPU/CPU", "epochs", "train samples", "steps/exec", "precision"}
    | {c.shown.title for c in shown_in("markdown") if c.shown}
)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub pipe table of text cells; columns of numbers aligned right."""
    titles = [str(c) for c in frame.columns]
    rows = [[_md_cell(str(v)) for v in row] for row in frame.itertuples(index=False, name=None)]
    right = [t in NUMBER_TITLES or t.endswith("(median)") for t in titles]
    lines = ["| " + " | ".join(_md_cell(t) for t in titles) + " |"]
    lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def report_title(df: pd.DataFrame) -> str:
    """``Benchmark report: SWEEP`` for the sweep(s) whose results ``df`` holds."""
    sweeps = sorted({str(s) for s in df["sweep_id"].dropna()}) if "sweep_id" in df.columns else []
    return f"Benchmark report: {', '.join(sweeps)}" if sweeps else "Benchmark report"


def summary_markdown(
    report: pd.DataFrame,
    results: pd.DataFrame | None = None,
    *,
    title: str | None = None,
    note: str | None = None,
) -> str:
    """The whole ``report.md``: a heading, one sentence on what the sweep ran, the summary table, ``note`` (say,
    that invalid repeats were left out) and "How to read this"."""
    from farm.safe_text import md_escape

    lines = [f"# {md_escape(title or 'Benchmark report')}", ""]
    n_cells = len(report)
    titles: set[str] = set()
    data: list[str] = []
    if n_cells == 0:
        lines += ["No cell has a succeeded repeat yet: there is nothing to report.", ""]
    else:
        data = sorted({str(d) for d in report["data"].dropna()}) if "data" in report.columns else []
        said = f"{n_cells} cell{'s' if n_cells != 1 else ''}"
        if data:
            said += f", {' and '.join(md_escape(d) for d in data)} data"
        lines += [f"{said}; every statistic of every cell is in `report.csv`.", ""]
        table = summary_frame(report, results)
        titles = {str(c) for c in table.columns}
        lines.append(markdown_table(table))
    if note:
        lines += [note, ""]
    missing = energy_note(report, results)
    if missing:
        lines += [missing, ""]
    lines += scaling_markdown(results)
    lines.append(how_to_read(titles, "synthetic" in data))
    return "\n".join(lines)


def write_summary_md(
    path: Path,
    report: pd.DataFrame,
    results: pd.DataFrame | None = None,
    *,
    title: str | None = None,
    note: str | None = None,
) -> Path:
    """Write :func:`summary_markdown` to ``path`` whole or not at all (:func:`farm.reports.files.write_atomic`)."""
    from farm.reports.files import write_atomic

    text = summary_markdown(report, results, title=title, note=note)

    def fill(tmp: Path) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    return write_atomic(Path(path), fill)
