"""``farm status``: every job's state and epoch, the sweep's overall bar, and what is waiting for whom."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import BrokerOption, JsonOption, RunDirOption, console, friendly_errors, print_json, settings, untrusted
from cli.progress_view import STALE_HEARTBEAT_S, STALE_HEARTBEATS, elapsed_since, progress_line, render
from cli.sweep_args import resolve
from farm import defaults

if TYPE_CHECKING:
    from farm.store import Store


@friendly_errors
def status_cmd(
    sweep_id: str = typer.Argument(
        None, help="Sweep id (or a unique prefix, or the sweep's name); default: the latest sweep."
    ),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until the sweep has settled."),
    interval: float = typer.Option(defaults.STATUS_REFRESH_S, help="Refresh period of --watch, seconds."),
    cells: bool = typer.Option(
        False,
        "--cells",
        help="One line per cell instead: its median so far and where it stands against its precision target "
        "(still measuring, met, or which cap stopped it); for a fixed count, how many repeats were valid.",
    ),
    broker: str = BrokerOption,
    run_dir: Path = RunDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Show a sweep's progress: each job's state and epoch k/N, overall bar, jobs no live worker can take."""
    from farm.progress import sweep_progress
    from farm.store import Store

    cfg = settings(run_dir, broker_url=broker)
    store = Store.from_settings(cfg)
    stale_s = STALE_HEARTBEATS * cfg.heartbeat_s
    sid = resolve(store, sweep_id)
    if cells:
        print_cells(store, sid, as_json)
        return
    if as_json:
        print_json(sweep_progress(store, sid).to_json())
        return
    if not watch:
        console.print(render(sweep_progress(store, sid), stale_after_s=stale_s))
        return
    import gc

    from rich.live import Live

    gc.enable()  # `farm` runs short commands without the collector (cli.main); watching may last hours
    if not console.is_terminal:  # a log: a progress line every few seconds, then the final view
        watch_lines(store, sid, interval, stale_s)
        return
    with Live(render(sweep_progress(store, sid), stale_after_s=stale_s), console=console, refresh_per_second=4) as live:
        while True:
            try:
                progress = sweep_progress(store, sid)
            except Exception as e:  # noqa: BLE001 - Redis restarting: keep watching, reconnect by itself
                live.console.print(f"[yellow]lost the store ({untrusted(e)}); retrying…[/]")
                time.sleep(interval)
                continue
            live.update(render(progress, stale_after_s=stale_s))
            if progress.settled():
                break
            time.sleep(interval)


def watch_lines(store: Store, sid: str, interval: float, stale_after_s: float = STALE_HEARTBEAT_S) -> None:
    """``farm status --watch`` off a terminal: a progress line at most every PROGRESS_LINE_S seconds (and when a
    job finishes) until the sweep has settled, then the sweep's view once, plain."""
    from farm.progress import PROGRESS_LINE_S, sweep_progress

    last_at, last_done = 0.0, -1
    while True:
        try:
            progress = sweep_progress(store, sid)
        except Exception as e:  # noqa: BLE001 - Redis restarting: keep watching, reconnect by itself
            console.print(f"lost the store ({e}); retrying…", markup=False, highlight=False)
            time.sleep(interval)
            continue
        settled = progress.settled()
        if settled or time.monotonic() - last_at >= PROGRESS_LINE_S or progress.finished != last_done:
            console.print(progress_line(progress, elapsed_since(progress)), markup=False, highlight=False)
            last_at, last_done = time.monotonic(), progress.finished
        if settled:
            break
        time.sleep(interval)
    console.print(render(progress, stale_after_s=stale_after_s))


def print_cells(store: Store, sid: str, as_json: bool) -> None:
    """``--cells``: each cell's line (farm.cell_verdict), as text or as ``{"sweep_id", "cells": [line, ...]}``."""
    from farm.cell_verdict import sweep_cell_lines

    lines = sweep_cell_lines(store, sid)
    if as_json:
        print_json({"sweep_id": sid, "cells": lines})
        return
    for line in lines or ["no repeat recorded yet"]:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
