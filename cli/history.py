"""``farm history``: the same cells across every run of a sweep, in time order, with where each one changed."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import (
    EXIT_REGRESSION,
    EXIT_UNAVAILABLE,
    BrokerOption,
    JsonOption,
    RunDirOption,
    console,
    fail,
    friendly_errors,
    open_store,
    print_json,
)
from cli.report_view import number_text

if TYPE_CHECKING:
    import pandas as pd

    from farm.store import Store

#: The cell columns shown on their own; the others go into one ``cell`` column when they vary.
SHOWN_CELL = [("workload", "workload"), ("device", "device"), ("backend", "backend"), ("batch_size", "batch")]


def select_sweeps(store: Store, patterns: list[str]) -> list[str]:
    """The sweep ids to line up, in the store's order (submission time): every sweep when ``patterns`` is
    empty, else those whose id or name starts with, equals or glob-matches (``nightly-*``) one of them.

    Re-runs of a sweep under another ``--name`` have other ids (``name-digest``), so a common name prefix or a
    glob is how a lab selects "every run of the nightly sweep". A pattern that matches nothing is a usage
    error: a typo must not silently shrink the history."""
    ids = store.sweep_ids()
    if not patterns:
        return ids
    names = {sid: str((store.sweep_manifest(sid) or {}).get("name") or "") for sid in ids}
    chosen: set[str] = set()
    for pattern in patterns:
        hits = {sid for sid in ids if _matches(pattern, sid) or (names[sid] and _matches(pattern, names[sid]))}
        if not hits:
            fail(f"no sweep matches {pattern!r}")
        chosen |= hits
    return [sid for sid in ids if sid in chosen]


def _matches(pattern: str, text: str) -> bool:
    return text.startswith(pattern) or fnmatch.fnmatchcase(text, pattern)


def _median_ci(rec: dict[Any, Any]) -> str:
    m, lo, hi = rec.get("median"), rec.get("ci_low"), rec.get("ci_high")
    if m is None or m != m:
        return ""
    if lo is None or lo != lo or hi is None or hi != hi:
        return number_text(m)
    return f"{number_text(m)} [{number_text(lo)}, {number_text(hi)}]"


def change_mark(rec: dict[Any, Any], first: bool) -> str:
    """The change column of one row, with rich markup: flagged slowdowns red, speedups green (a drift says
    so), the change against the baseline dim when not flagged, ``baseline`` for a cell's first sweep."""
    if not rec.get("n"):
        return "[yellow]no values[/]"
    if first:
        return "[dim]baseline[/]"
    pct = rec.get("change_pct")
    if pct is None or pct != pct:
        return ""
    text = f"{pct:+.1f}%"
    if not rec.get("change"):
        return f"[dim]{text}[/]"
    drift = str(rec.get("changed") or "").startswith("gradual drift")
    if pct < 0:
        return f"[bold red]▼ {text} {'drift' if drift else 'slower'}[/]"
    return f"[green]▲ {text} {'drift' if drift else 'faster'}[/]"


def _p(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return f"{v:.2g}" if v < 0.001 else f"{v:.3f}"


def _when(iso: Any) -> str:
    """``2026-11-08T03:02:00+00:00`` → ``2026-11-08 03:02`` (the column says UTC)."""
    text = str(iso or "")
    return text[:16].replace("T", " ") if len(text) >= 16 else text


def history_title(threshold: float, window: int, units: list[str]) -> str:
    from farm.reports.history import DEFAULT_ALPHA

    return (
        f"history: median steady {'|'.join(units)}/s per cell, sweeps in time order; flagged when |change| > "
        f"{threshold:.0%} against the last {window} sweeps (or, for a slow drift, the first {window} since the last "
        f"change) and the rank test gives p < {DEFAULT_ALPHA:g}"
    )


def history_tables(history: pd.DataFrame) -> list[Table]:
    """One table per cell and hardware key (its title names them), one row per sweep that ran it, in time
    order, flagged changes marked: a cell's identity is said once, so the rows stay narrow."""
    from farm.columns import CELL_COLUMNS

    shown = {c for c, _ in SHOWN_CELL}
    extra = [c for c in CELL_COLUMNS if c not in shown and history[c].astype(str).nunique(dropna=False) > 1]
    tables = []
    for _, cell in history.groupby([*CELL_COLUMNS, "hardware_key"], dropna=False, sort=False):
        first = cell.iloc[0]
        name = [str(first["workload"]), str(first["device"]), str(first["backend"]), f"batch {first['batch_size']}"]
        name += [f"{c}={first[c]}" for c in extra]
        unit = f"{first['unit']}/s"
        title = escape(f"{' · '.join(name)} on {first['hardware_key']}")  # strangers' names: markup not read
        table = Table(title=title, title_justify="left")
        for title in ("sweep", "finished (UTC)", "n", f"median {unit} [95% CI]", "change", "p", "what changed"):
            table.add_column(escape(title), justify="right" if title in ("n", "p") or "median" in title else "left")
        for k, rec in enumerate(cell.to_dict("records")):
            table.add_row(
                escape(str(rec["sweep_id"])),
                _when(rec.get("when")),
                number_text(rec.get("n")),
                _median_ci(rec),
                change_mark(rec, k == 0),
                _p(rec.get("p_value")),
                escape(str(rec.get("changed") or "")),
            )
        tables.append(table)
    return tables


def print_whole(renderable: Any) -> None:
    """Print a table whole: on a terminal rich fits it to the window (folding, never cutting); off one (a file, a
    CI log) the farm's console writes it as plain aligned columns, each line as long as it is, no box drawing."""
    console.print(renderable)


def _check_path(path: Path | None, suffixes: tuple[str, ...], option: str) -> None:
    """Refuse before any work a file that could not be written: a wrong suffix (usage, exit 2), a missing
    directory or a directory in its place (environment, exit 1)."""
    if path is None:
        return
    if path.suffix.lower() not in suffixes:
        fail(f"{option} {path}: the file name should end in {' or '.join(s or 'no suffix' for s in suffixes)}")
    if path.is_dir():
        fail(f"cannot write {path}: it is a directory", code=EXIT_UNAVAILABLE)
    if not path.parent.is_dir():
        fail(f"cannot write {path}: directory {path.parent} does not exist", code=EXIT_UNAVAILABLE)


@friendly_errors
def history_cmd(
    sweeps: list[str] = typer.Argument(
        None,
        metavar="[SWEEP_NAME_OR_PREFIX]...",
        help="Sweeps to line up: ids, names, prefixes of either, or globs ('nightly-*'). Default: every sweep "
        "in the store.",
        show_default=False,
    ),
    workload: str = typer.Option(None, "--workload", "-w", help="Only this workload's cells."),
    csv: Path = typer.Option(None, "--csv", help="Write the history (one row per cell × sweep) to this CSV file."),
    html: Path = typer.Option(None, "--html", help="Write the history as a self-contained HTML page."),
    threshold: float = typer.Option(
        0.05, "--threshold", "-t", min=0.0, help="Smallest relative change of the median that counts."
    ),
    window: int = typer.Option(5, "--window", min=1, help="How many earlier sweeps a sweep is compared with."),
    fail_on_regression: bool = typer.Option(
        False,
        "--fail-on-regression",
        help=f"Exit {EXIT_REGRESSION} when the newest sweep of any cell is a flagged slowdown (for CI).",
    ),
    as_json: bool = JsonOption,
    broker: str = BrokerOption,
    run_dir: Path = RunDirOption,
) -> None:
    """Line up the matching cells of many sweeps (per hardware) in time order, and flag the sweep where a
    cell's throughput (steady samples/s) changed beyond its noise, naming what changed in the fingerprint there
    (e.g. "keras 3.15.1 → 3.16.0"; "no software change recorded" when nothing did).

    Cells match as in farm compare: every cell column plus the hardware key; the sweep name and the software
    differ. Only succeeded, valid repeats count (not contended, throttled or too short to time); a sweep is placed
    at the median time its jobs finished.

    The rule, per cell: the sweeps since the last flagged change form a segment. A sweep is a STEP when its
    median differs from the pooled repeats of the segment's last --window sweeps by more than --threshold
    AND a Mann-Whitney rank test on the repeats gives p < 0.05. A slow DRIFT is caught by also comparing, once
    the segment is longer than --window, with the segment's first --window sweeps by the same rule. After a
    flagged change the segment restarts there, so a lasting step is flagged once, where it happened. Each
    sweep needs repeats (with 1 repeat a sweep the test can rarely reach p < 0.05).

    Exit status: 0 when the history ran (whatever it found); 3 with --fail-on-regression when the newest sweep
    of some cell is a flagged slowdown (a speedup is reported, not a failure); 2 for a usage error (no such
    sweep or workload); 1 when Redis is unreachable or a file cannot be written.
    """
    _check_path(csv, (".csv", ""), "--csv")
    _check_path(html, (".html", ".htm"), "--html")
    store = open_store(broker, run_dir)
    ids = select_sweeps(store, list(sweeps or []))
    if not ids:
        fail("no sweep has been submitted to this farm yet")

    from cli.report_view import frames_for  # pandas: only for the commands that use it
    from farm.reports.history import history_frame, regressions

    frames = []
    for sid in ids:
        df = frames_for(store, sid)
        if workload is not None:
            df = df[df["workload"] == workload]
        frames.append((sid, df))
    if workload is not None and all(df.empty for _, df in frames):
        fail(f"no job of workload {workload!r} in the {len(ids)} selected sweep(s)")
    try:
        history = history_frame(frames, threshold=threshold, window=window)
    except ValueError as e:
        fail(str(e))
    slower = regressions(history)
    if as_json:
        _print_json(history, ids, threshold=threshold, window=window, regressions=len(slower))
    elif history.empty:
        console.print(f"no succeeded results in the {len(ids)} selected sweep(s): nothing to line up")
    else:
        title = history_title(threshold, window, sorted(set(history["unit"].astype(str))))
        console.print(title, highlight=False, markup=False, soft_wrap=True)
        for table in history_tables(history):
            print_whole(table)
        _summary(history, ids)
    if csv is not None:
        from farm.reports.files import write_atomic
        from farm.safe_text import csv_safe  # no text cell a spreadsheet would run as a formula

        write_atomic(csv, lambda tmp: csv_safe(history).to_csv(tmp, index=False))
        if not as_json:
            console.print(f"wrote {len(history)} rows to {csv}", markup=False, highlight=False)
    if html is not None:
        _write_html(history, html, ids, quiet=as_json)
    if fail_on_regression and len(slower):
        if not as_json:
            console.print(f"[bold red]{len(slower)} cell(s) regressed in their newest sweep[/]")
        raise typer.Exit(EXIT_REGRESSION)


def _print_json(history: pd.DataFrame, ids: list[str], *, threshold: float, window: int, regressions: int) -> None:
    """The history for scripts: the rule's settings, the sweeps lined up, one record per cell × sweep (the CSV's
    columns; missing values as null) and how many cells regressed in their newest sweep."""
    import json

    print_json(
        {
            "sweeps": ids,
            "threshold": threshold,
            "window": window,
            "rows": json.loads(history.to_json(orient="records")) if not history.empty else [],
            "changes_flagged": int(history["change"].astype(bool).sum()) if not history.empty else 0,
            "regressions": regressions,
        }
    )


def _summary(history: pd.DataFrame, ids: list[str]) -> None:
    """The closing line: cells, the sweeps shown, flagged changes; and which selected sweeps are not shown (a
    cancelled or failed sweep has no succeeded repeat to line up), so the count matches what is on screen."""
    from farm.columns import CELL_COLUMNS

    cells = history.groupby([*CELL_COLUMNS, "hardware_key"], dropna=False).ngroups
    flagged = history[history["change"].astype(bool)]
    down = int((flagged["change_pct"] < 0).sum())
    shown = set(history["sweep_id"].astype(str))
    absent = [sid for sid in ids if sid not in shown]
    console.print(
        f"{cells} cell(s) over {len(shown)} sweep(s); {len(flagged)} change(s) flagged: {down} slower, "
        f"{len(flagged) - down} faster",
        highlight=False,
        markup=False,
    )
    if absent:
        console.print(
            f"not shown: {len(absent)} selected sweep(s) with no succeeded, valid repeat ({', '.join(absent)})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def _write_html(history: pd.DataFrame, path: Path, ids: list[str], *, quiet: bool = False) -> None:
    """The history as HTML, drawn by :func:`farm.reports.html_history.write_history_html` (imported here: the plotting
    library is an optional extra, and only this option needs it)."""
    import importlib

    try:  # looked up, not imported by name: the HTML report is its own module, with its own extra
        write_history_html = importlib.import_module("farm.reports.html_history").write_history_html
    except (ImportError, AttributeError) as e:
        fail(f"cannot write {path}: the HTML report is not available ({e})", code=EXIT_UNAVAILABLE)
    title = f"benchfarm history: {len(ids)} sweep(s), {ids[0]} … {ids[-1]}" if len(ids) > 1 else ids[0]
    write_history_html(history, path, title=title)
    if not quiet:
        console.print(f"wrote {path}", markup=False, highlight=False)
