"""How a sweep's report is read and drawn in the terminal: its results frame from the store, the report table
with its invalid-repeat marks and reading notes, the speedup table. Shared by ``farm results``/``farm report``,
``farm compare``, ``farm history`` and ``farm run``; no command module imports another."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cli.common import console, err_console, untrusted
from farm.columns import format_figure, shown_in

REPORT_SHOWN = [
    ("workload", "workload"),
    ("device", "device"),
    ("backend", "backend"),
    ("batch_size", "batch"),
    ("device_name", "device name"),
    ("n", "n"),
    ("steady_epoch_s_median", "epoch s"),
    ("steady_samples_per_s_median", "samples/s (median)"),
    ("steady_samples_per_s_ci", "95% CI"),
    ("speedup_vs_cpu", "GPU/CPU"),
    ("flags", "flags"),
]
"""The printed report's columns (report column or a derived one, title). The throughput's title names the
workloads' unit when they share one (``images/s (median)``); ``95% CI`` is the bootstrap interval of that median;
``flags`` says which cells not to read as solid: ``unstable`` (too wide a spread), outliers and stalls."""
#: The marker column, shown after ``n`` only when some cell has invalid repeats (a quiet sweep's table stays
#: as narrow as before).
INVALID_TITLE = "invalid"
#: The flag that keeps invalid repeats in the statistics, as the hints name it.
KEEP_FLAG = "--include-invalid"

IncludeInvalidOption = typer.Option(
    False,
    KEEP_FLAG,
    help="Keep invalid repeats in the statistics: contended (other processes used the machine while they were "
    "measured), throttled, a CPU clock that changed, or a steady window too short to time. By default they are "
    "left out and counted, with why.",
)
#: The flag's older name, kept working (hidden): it means the same as --include-invalid.
IncludeContendedOption = typer.Option(False, "--include-contended", hidden=True, help="Same as --include-invalid.")

if TYPE_CHECKING:
    import pandas as pd

    from farm.store import Store


def number_text(v: object) -> str:
    """A figure as the tables show it: four significant digits below 1,000, whole numbers with thousands
    separators above; nothing for a missing value (None or NaN). Not escaped: anything but a float is
    ``str(v)``, which a caller that may be shown a stranger's text escapes."""
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _fmt(v: object) -> str:
    if v is None or isinstance(v, float):
        return number_text(v)
    return untrusted(v)  # a table cell: a workload's, device's or unit's name is shown, its markup not read


def _positive(v: object) -> int:
    """A count from a report cell; 0 for a missing or non-numeric one."""
    return int(v) if isinstance(v, (int, float)) and v == v and v > 0 else 0


def invalid_marker(rec: dict, included: bool) -> str:
    """A cell's mark in the terminal table: how many of its repeats were invalid, whether they were left out or
    kept, why (by kind) and, when some were contended, the worst share of its cores others took; empty for a
    clean cell. A report from before ``n_invalid`` existed marks its contended repeats."""
    k = _positive(rec.get("n_invalid")) if "n_invalid" in rec else _positive(rec.get("n_contended"))
    if not k:
        return ""
    why = [str(rec["invalid_kinds"])] if isinstance(rec.get("invalid_kinds"), str) and rec["invalid_kinds"] else []
    cpu = rec.get("contended_cpu_max")
    if _positive(rec.get("n_contended")) and isinstance(cpu, (int, float)) and cpu == cpu:
        why.append(f"cpu {cpu:.0%}")
    mark = f"{k} {'kept' if included else 'left out'}"
    return f"{mark} ({'; '.join(why)})" if why else mark


def ci_text(low: object, high: object) -> str:
    """A confidence interval as ``low–high`` in the table's number format; empty when it has no bounds."""
    lo, hi = _fmt(low), _fmt(high)
    return f"{lo}–{hi}" if lo and hi else ""


def report_table(report: pd.DataFrame, include_invalid: bool = False, results: pd.DataFrame | None = None) -> Table:
    """The report's headline columns, one row per cell: the median steady throughput with its 95% CI and the
    cell's flags (unstable, outliers, stalls: counted from ``results`` when given); an ``invalid`` column marks
    cells with invalid repeats when there are any (``n`` is what the statistics rest on, so it reads with that
    mark)."""
    from farm.reports.frames import MISSING_MEANS
    from farm.reports.markdown import cell_flags, cell_stalls, precision_text, throughput_unit

    table = Table(
        title="report: one row per sweep cell; medians over its repeats, steady state (epochs after the first)",
        title_justify="left",
    )
    counted = "n_invalid" if "n_invalid" in report.columns else "n_contended"  # older reports: contended only
    marked = counted in report.columns and bool((report[counted].fillna(0) > 0).any())
    unit = throughput_unit(report)
    stalls = cell_stalls(report, results)
    shown = shown_columns(report)
    figures = {c.report_column: c for c in shown_in("terminal")}
    for col, title in shown:
        if col == "steady_samples_per_s_median":
            title = f"{unit or 'samples'}/s (median)"
        right = col not in ("workload", "device", "backend", "mode", "device_name", "flags")
        table.add_column(title, justify="right" if right else "left")
        if marked and col == "n":
            table.add_column(INVALID_TITLE)
    for rec, stall in zip(report.to_dict("records"), stalls, strict=True):
        row = []
        for col, _ in shown:
            if col == "steady_samples_per_s_ci":
                row.append(ci_text(rec.get("steady_samples_per_s_ci_low"), rec.get("steady_samples_per_s_ci_high")))
            elif col == "flags":
                row.append(cell_flags(rec, stall))
            elif col == "precision_ci":
                row.append(precision_text(rec))
            elif col in figures:
                row.append(format_figure(figures[col], rec.get(col)))
            elif col == "steady_samples_per_s_median" and unit is None and rec.get("unit"):
                row.append(f"{_fmt(rec.get(col))} {untrusted(rec['unit'])}/s" if _fmt(rec.get(col)) else "")
            elif col in MISSING_MEANS and not _fmt(rec.get(col)):
                row.append(_fmt(MISSING_MEANS[col]))
            else:
                row.append(_fmt(rec.get(col)))
            if marked and col == "n":
                row.append(invalid_marker(rec, include_invalid))
        table.add_row(*row)
    keep_whole(table, FOLDABLE)
    return table


def shown_columns(report: pd.DataFrame) -> list[tuple[str, str]]:
    """REPORT_SHOWN, plus what only some sweeps have: the mode (train or inference) where a cell serves
    inference, and before the speedup the figures the schema shows in the terminal (farm.columns: accuracy,
    latency, TFLOP/s, ...) where some cell has one."""
    shown = list(REPORT_SHOWN)

    def has(col: str) -> bool:
        return col in report.columns and bool(report[col].notna().any())

    if "mode" in report.columns and bool(report["mode"].eq("inference").any()):
        shown.insert(shown.index(("batch_size", "batch")) + 1, ("mode", "mode"))
    if has("devices_per_job"):  # data-parallel cells: how many devices each spans
        shown.insert(shown.index(("batch_size", "batch")), ("devices_per_job", "devices"))
    if has("batch_scope"):  # cells that stated their batch per device: the batch column is the global one
        shown.insert(shown.index(("batch_size", "batch")) + 1, ("batch_scope", "batch per"))
    if has("batch_max"):  # cells that searched for their largest batch
        shown.insert(shown.index(("batch_size", "batch")) + 1, ("batch_max", "batch max"))
    at = shown.index(("speedup_vs_cpu", "GPU/CPU"))
    figures = [(c.report_column, c.shown.title_in("terminal")) for c in shown_in("terminal") if c.shown]
    shown[at:at] = [(col, title) for col, title in figures if has(col)]
    if has("precision_ci"):  # cells measured to a precision: how close each came (farm.precision)
        shown.insert(shown.index(("speedup_vs_cpu", "GPU/CPU")), ("precision_ci", "precision"))
    return shown


#: Report columns whose text may fold onto more lines on a narrow terminal; numbers never do.
FOLDABLE = ("workload", "device name", "flags", INVALID_TITLE)


def keep_whole(table: Table, foldable: tuple[str, ...]) -> None:
    """On a narrow terminal, fold the text columns (``foldable`` titles) and keep every number on one line: a
    figure broken across lines (``8,99`` / ``8``) reads as two. When even that cannot fit the terminal, rich
    folds every column (nothing is cut either way)."""
    whole = [c for c in table.columns if not str(c.header).startswith(foldable)]
    widths = [max((len(str(v)) for v in c.cells), default=0) for c in whole]
    folding = len(table.columns) - len(whole)
    if sum(widths) + 3 * len(table.columns) + 1 + 10 * folding > console.width:
        return
    for column, width in zip(whole, widths, strict=True):
        column.no_wrap = True
        column.min_width = width


def invalid_line(
    count: int,
    kinds: str,
    *,
    included: bool,
    keep: str,
    contended: int = 0,
    sweeps: list[str] | None = None,
    rerun: tuple[str, str] = ("", ""),
) -> str | None:
    """The one line that says invalid repeats were left out (or kept) and why (``kinds``: ``"2 contended, 1 too
    short"``), how to keep them and, when ``contended`` of them were contended, how to re-run those (``farm resume
    --contended`` of ``sweeps``, the sweep(s) whose contended repeats they are); None when there were none.
    ``keep`` is the command or flag that keeps them where this line is shown. ``rerun`` is for ``farm run``,
    whose farm has stopped once it prints this: the flag that lets ``farm resume`` reach its Redis, and what then
    runs the resumed jobs."""
    if count <= 0:
        return None
    why = f" ({kinds})" if kinds else ""
    resume = ""
    if contended > 0 and sweeps:
        flag, then = rerun
        commands = " / ".join(f"`farm resume {s} --contended{flag}`" for s in sweeps)
        resume = f"; {commands}{then} re-runs the contended ones"
    if included:
        return f"{count} invalid repeat(s) kept in the statistics ({KEEP_FLAG}{'; ' + kinds if kinds else ''}){resume}"
    return f"{count} invalid repeat(s) left out of the statistics{why}; {keep} keeps them{resume}"


def print_invalid(line: str | None) -> None:
    """Print an :func:`invalid_line` in yellow, when there is one (plain text: no markup is read from it)."""
    if line:
        console.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)  # one line, unwrapped


def warn_pooled_software(report: pd.DataFrame) -> None:
    """Say so when a cell pools repeats that ran on different software: its spread may be the software's."""
    if "software_keys" not in report.columns:
        return
    for rec in report[report["software_keys"] > 1].to_dict("records"):
        err_console.print(
            f"[yellow]warning:[/] {untrusted(rec['workload'])} on {untrusted(rec['device'])} "
            f"({untrusted(rec['backend'])}, batch {rec['batch_size']}) pools results from {rec['software_keys']} "
            f"software stacks: {untrusted(rec['software_key'])}",
            highlight=False,
        )


def reading_notes(report: pd.DataFrame) -> list[str]:
    """The lines that keep the table from being misread: what an ``unstable`` flag means, when one is shown, and
    that accuracy on synthetic data is chance level, when the sweep trained on any."""
    notes = []
    if "unstable" in report.columns and bool(report["unstable"].fillna(False).astype(bool).any()):
        notes.append(
            "unstable: the repeats scatter too much (spread over 10%, or a CI wider than ±10%) to trust the median; "
            "run more repeats on a quiet machine"
        )
    if "data" in report.columns and bool((report["data"] == "synthetic").any()):
        notes.append(
            "synthetic data (random inputs and labels): a test accuracy near 1/classes (≈10% for 10 classes) is "
            "chance level, as expected; such a sweep measures speed, not learning"
        )
    return notes


def print_report(
    report: pd.DataFrame,
    *,
    included: bool,
    keep: str,
    sweeps: list[str],
    results: pd.DataFrame | None = None,
    rerun: tuple[str, str] = ("", ""),
) -> None:
    """The report as ``farm report`` and ``farm run`` show it, one way for both: the table of cells (flags
    counted from ``results`` when given), the line on invalid repeats (``keep``: how to keep them where this
    is shown), the warning on pooled software, then the GPU-over-CPU speedups when there are any."""
    from farm.reports.aggregate import speedups
    from farm.reports.frames import invalid_total
    from farm.reports.markdown import energy_note

    console.print(report_table(report, included, results))
    for line in [*reading_notes(report), energy_note(report, results)]:
        if line:
            console.print(line, style="dim", markup=False, highlight=False)  # off a terminal: one line each
    count, kinds = invalid_total(report)
    contended = int(report["n_contended"].fillna(0).sum()) if "n_contended" in report.columns else 0
    print_invalid(
        invalid_line(count, kinds, included=included, keep=keep, contended=contended, sweeps=sweeps, rerun=rerun)
    )
    warn_pooled_software(report)
    ups = speedups(report)
    if len(ups):
        console.print(speedup_table(ups))
    if results is not None:
        print_scaling(results, included)


def print_scaling(results: pd.DataFrame, included: bool) -> None:
    """The scaling table of the data-parallel cells (throughput at N devices over 1, efficiency), if any."""
    from farm.reports.markdown import SCALING_TITLES, scaling_lines
    from farm.reports.scaling import scaling

    table_frame = scaling(results, include_invalid=included)
    if table_frame.empty:
        return
    table = Table(title="Scaling over devices: throughput at N devices over 1 device; efficiency = speedup / N")
    for title in SCALING_TITLES:
        table.add_column(title, justify="left" if title in ("workload", "device", "backend", "hardware") else "right")
    for row in scaling_lines(table_frame):
        table.add_row(*(untrusted(v) for v in row))
    keep_whole(table, ("workload", "hardware"))
    console.print(table)


def speedup_table(ups: pd.DataFrame) -> Table:
    """The headline, one row per GPU cell with a CPU counterpart: both medians, the speedup and its 95% CI.
    The parameters are shown only where one workload ran with several (the CSV has them all)."""
    varies = "params" in ups.columns and bool((ups.groupby("workload")["params"].nunique() > 1).any())
    head = ["workload", *(["params"] if varies else []), "backend", "batch_size"]
    head += [c for c in ups.columns if c not in (*head, "params", "device_name") and not c.startswith(_SPEEDUP_DATA)]
    table = Table(title="GPU over CPU: steady throughput, median over repeats", title_justify="left")
    for col in head:
        table.add_column("batch" if col == "batch_size" else col, justify="right" if col == "batch_size" else "left")
    for title in ("device name", "CPU /s", "GPU /s", "GPU/CPU", "95% CI"):
        table.add_column(title, justify="left" if title == "device name" else "right")
    for rec in ups.to_dict("records"):
        table.add_row(
            *(_fmt(rec.get(c)) for c in head),
            _fmt(rec.get("device_name")),
            _fmt(rec.get("cpu_samples_per_s_median")),
            _fmt(rec.get("gpu_samples_per_s_median")),
            _fmt(rec.get("speedup_vs_cpu")),
            ci_text(rec.get("speedup_vs_cpu_ci_low"), rec.get("speedup_vs_cpu_ci_high")),
        )
    keep_whole(table, ("workload", "params", "device name"))
    return table


_SPEEDUP_DATA = ("cpu_samples", "gpu_samples", "speedup_vs_cpu")


def frames_for(store: Store, sweep_id: str) -> pd.DataFrame:
    """The sweep's tidy results frame, read from its stored rows."""
    from farm.reports.aggregate import columns_frame  # pandas: imported only by the commands that use it
    from farm.rowstore import sweep_columns

    return columns_frame(sweep_columns(store, sweep_id))
