"""``farm run``: the whole loop on this machine — Redis, workers, submit, watch, report — in one command."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import typer
from rich.live import Live

from cli.common import console, err_console, fail, friendly_errors, settings
from cli.progress_view import STALE_HEARTBEATS, progress_line, render
from cli.report_view import KEEP_FLAG, frames_for, invalid_line, print_report
from farm import defaults

if TYPE_CHECKING:
    import pandas as pd

    from farm.local import LocalFarm
    from farm.store import Store
    from farm.submit import SubmitOutcome

OUTPUT_FILES = ("results.csv", "report.csv", "report.md")
"""What ``farm run`` leaves in its output directory (besides logs and the embedded Redis' data)."""


def make_output_dir(output: Path) -> None:
    """Create the output directory up front: a path that cannot be one fails in one line before anything runs."""
    from farm.reports.files import OutputError

    try:
        output.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot use {output} as the output directory: it is a file") from None
    except OSError as e:
        raise OutputError(f"cannot create the output directory {output}: {e.strerror or e}") from None


def write_outputs(df: pd.DataFrame, report: pd.DataFrame, output: Path, note: str | None = None) -> None:
    """results.csv (one row per job) and report.csv (one row per cell, every statistic), then report.md (the
    summary a person reads: farm.reports.markdown), each written whole or not at all (farm.reports.files): a full
    disk never leaves a truncated file that reads as a shorter sweep. ``note`` (say, that contended repeats were
    left out) follows report.md's table, so the file read alone says what its ``n`` counts; the CSVs stay plain
    tables for scripts."""
    from farm.reports.files import write_frame
    from farm.reports.markdown import report_title, write_summary_md

    for name, frame in zip(OUTPUT_FILES[:2], (df, report), strict=True):
        write_frame(frame, output / name)
    write_summary_md(output / OUTPUT_FILES[2], report, df, title=report_title(df), note=note)


def write_scaling(df: pd.DataFrame, output: Path) -> Path | None:
    """``scaling.csv`` beside the report when the sweep has data-parallel cells (farm.reports.scaling)."""
    from farm.reports.files import write_frame
    from farm.reports.scaling import scaling

    table = scaling(df)
    if table.empty:
        return None
    write_frame(table, output / "scaling.csv")
    return output / "scaling.csv"


def write_html(df: pd.DataFrame, report: pd.DataFrame, output: Path) -> Path | None:
    """``report.html`` beside the CSVs (farm.reports.html_sweep: charts, summary, environment), whole or not at all.
    Without the plot extra the run still succeeds: a one-line warning says what to install; returns None."""
    from rich.markup import escape

    from farm.reports.html_sweep import PlotExtraMissing, write_report_html
    from farm.reports.markdown import report_title

    path = output / "report.html"
    try:
        write_report_html(report, df, path, title=report_title(df))
    except PlotExtraMissing as e:
        err_console.print(
            f"[yellow]warning:[/] no {escape(str(path))}: {escape(str(e))}", highlight=False, soft_wrap=True
        )
        return None
    return path


def watch(store: Store, sweep_id: str, local_queues: set[str], farm: LocalFarm, output: Path, started: float) -> None:
    """Follow the sweep until every job this machine can run has ended: on a terminal a live view, off one (a
    file, a CI log) a progress line every few seconds (done/running/queued, elapsed, ETA) and one at the end.
    Fails in one line when every local worker has died."""
    from farm.progress import PROGRESS_LINE_S, TERMINAL_STATES, sweep_progress

    live = Live(console=console, refresh_per_second=2) if console.is_terminal else None
    last_line = 0.0
    try:
        if live is not None:
            live.start()
        while True:
            progress = sweep_progress(store, sweep_id)
            elapsed = time.time() - started
            local_jobs = [j for j in progress.jobs if j.queue in local_queues]
            finished = all(j.state in TERMINAL_STATES for j in local_jobs)
            if live is not None:
                live.update(render(progress, elapsed, stale_after_s=STALE_HEARTBEATS * farm.settings.heartbeat_s))
            elif finished or time.monotonic() - last_line >= PROGRESS_LINE_S:
                console.print(progress_line(progress, elapsed), markup=False, highlight=False)
                last_line = time.monotonic()
            if finished:
                break
            dead = farm.check_workers()
            if dead and len(dead) == len(farm.procs):
                fail(f"every local worker died ({'; '.join(dead)}); see {output / 'logs'}", code=1)
            stopped = stopped_taking_jobs(store, farm)
            if stopped:
                fail(
                    f"every local worker stopped taking jobs ({stopped}); the sweep is kept: run the same command "
                    f"to go on once the cause is fixed; see {output / 'logs'}",
                    code=1,
                )
            time.sleep(1.0)
    finally:
        if live is not None:
            live.stop()  # on a terminal, rich ends the view's last line: the report starts on a line of its own


def stopped_taking_jobs(store: Store, farm: LocalFarm) -> str | None:
    """Why every local worker has stopped taking jobs (too many failures in a row here: workers.quarantine), or
    None while one still takes them: the run would otherwise wait for a cool-down with nothing running."""
    names = farm.worker_names
    entries = [w for w in store.live_workers() if any(str(w.get("name", "")).startswith(n) for n in names)]
    if len(entries) < len(names) or not all(w.get("quarantined") for w in entries):
        return None
    return "; ".join(f"{w['name']}: {w['quarantined']}" for w in entries)


class Interrupted(KeyboardInterrupt):
    """``farm run`` was told to stop (SIGINT, SIGTERM, SIGHUP) while it ran the sweep."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What stops ``farm run``: Ctrl-C, a service manager, a closed terminal. Each stops the local farm cleanly."""


class Stopper:
    """``farm run``'s signal handling: the first signal says what happens and ends the run (the local workers
    finish their running job, then the embedded Redis stops); a second one stops them at once. Either way the
    workers and Redis are stopped before ``farm run`` exits, with code 128 + the first signal's number."""

    FIRST = "stopping: waiting for the running job to end; press Ctrl-C again to stop at once"
    SECOND = "stopping at once: the running jobs are killed and run again when the sweep resumes"

    def __init__(self, farm: LocalFarm) -> None:
        self.farm = farm
        self.signum = 0
        self.count = 0
        self.stopping = False
        self.said_first = False

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            self.signum = signum
            if not self.said_first:
                self.said_first = True
                _say(self.FIRST)
            if not (self.stopping or self.farm.stopping):  # a stop under way is never cut short: it goes on
                raise Interrupted
            return
        if self.count == 2:
            _say(self.SECOND)
        self.farm.hurry()

    @contextmanager
    def installed(self, held_once_stopped: bool = False) -> Iterator[Stopper]:
        """These handlers for :data:`STOP_SIGNALS` inside the block, the previous ones after it; with
        ``held_once_stopped``, after a block left because of a signal those signals are ignored (the process is on
        its way out)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self.handle) for sig in STOP_SIGNALS}
        previous_hook = sys.unraisablehook

        def lost(unraisable: Any) -> None:
            """The first signal's exception landed in a finalizer (a ``__del__``), where Python prints it and
            swallows it: the stop is not lost and no traceback is shown; the signal is sent again."""
            if isinstance(unraisable.exc_value, Interrupted) and self.count == 1:
                self.count = 0
                resend = threading.Timer(0.05, os.kill, (os.getpid(), self.signum))  # once the hook has returned
                resend.daemon = True
                resend.start()
                return
            previous_hook(unraisable)

        sys.unraisablehook = lost
        try:
            yield self
        finally:
            sys.unraisablehook = previous_hook
            if self.signum and held_once_stopped:
                # Told to stop, and stopped: ``farm run`` is on its way out with 128 + the signal. Later stop
                # signals are ignored, not handled by Python: the interpreter puts its handlers back to the default
                # while it finalizes (an ignored signal it leaves ignored), and a second Ctrl-C landing there would
                # kill the process by SIGINT (exit -2) instead of letting it exit with 130.
                for sig in STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_IGN)
            else:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)


def _say(line: str) -> None:
    """One line on stderr from a signal handler; a terminal that is gone (SIGHUP) is not an error."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def say_already_done(outcome: SubmitOutcome, output: Path) -> None:
    """Running the same ``farm run`` again measures nothing new: say so, and how to measure again."""
    if outcome.jobs and not outcome.enqueued and outcome.already:
        console.print(
            f"every job of this sweep was already queued or done in {output / 'redis'}: the figures below are the "
            "ones recorded then; `--name NEW` measures again under a new sweep name",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@friendly_errors
def run_cmd(
    sweep_file: Path = typer.Argument(..., help="Sweep file (YAML, TOML or JSON)."),
    output: Path = typer.Option(
        Path("out"),
        "-o",
        "--output",
        help="Directory for results.csv, report.csv, report.md, report.html, the worker logs and the embedded "
        "Redis' data (which later commands reach with --run-dir).",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        max=64,
        help="CPU workers to start (more than the cores "
        "allow makes repeats contend with each other: they are marked contended and left "
        "out of the report).",
    ),
    name: str = typer.Option(None, "--name", help="Run under another sweep name (a fresh set of job ids)."),
    broker: str = typer.Option(
        None,
        "--broker",
        "-b",
        help="Redis URL of a farm to use instead of the embedded Redis that this command starts in OUTPUT/redis "
        "(FARM_BROKER_URL or the config file name one too).",
        show_default=False,
    ),
) -> None:
    """Run a sweep end to end on this machine: jobs for devices it lacks are skipped and listed.

    The report leaves out repeats marked contended (other processes used the machine while they were measured;
    several --workers on too few cores make them contend with each other) and says how many."""
    import socket

    from farm import workloads
    from farm.cell_verdict import sweep_cell_lines
    from farm.fingerprint import query_nvidia_smi
    from farm.local import LocalFarm, shared_machine_warning
    from farm.queue import tag_queue
    from farm.routing import cpu_tags, gpu_tags, with_backends, with_plugins
    from farm.store import Store
    from farm.submit import submit
    from farm.sweep import load_sweep
    from workers.devices import offered_here

    sweep = load_sweep(sweep_file, name=name)
    cfg = settings(broker_url=broker)
    make_output_dir(output)
    embedded = "broker_url" not in cfg.model_fields_set
    gpus = query_nvidia_smi()
    host = socket.gethostname()
    plugins = workloads.plugin_names()  # the local workers have them too
    tags = cpu_tags(host) + [t for g in gpus for t in gpu_tags(g, host)]
    # The queues the local workers consume: their hardware's, for the backends they offer, with their plugins.
    offered = with_backends(tags, offered_here(cfg.backends))
    local_queues = {tag_queue(t, cfg.key_prefix) for t in with_plugins(offered, plugins)}
    started = time.time()
    warning = shared_machine_warning(workers, len(gpus))
    if warning:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    farm = LocalFarm(output, cfg, embedded=embedded, cpu_workers=workers, gpu_workers=len(gpus))
    stopper = Stopper(farm)
    with stopper.installed(held_once_stopped=True):
        try:
            farm.start()
            store = Store.from_settings(farm.settings)
            outcome = submit(sweep, farm.settings, store=store, accept=lambda q: q in local_queues)
            console.print(
                f"sweep [bold]{outcome.sweep_id}[/]: {outcome.jobs} jobs, {outcome.enqueued} enqueued"
                + (f", {outcome.already} already queued or done" if outcome.already else "")
                + (f", {outcome.skipped} skipped (no such device or backend here)" if outcome.skipped else "")
            )
            say_already_done(outcome, output)
            watch(store, outcome.sweep_id, local_queues, farm, output, started)
            df = frames_for(store, outcome.sweep_id)
            cells = sweep_cell_lines(store, outcome.sweep_id)
        except Interrupted:
            pass  # told below, once the farm has stopped
        finally:
            stopper.stopping = True  # a signal from here on is told, never raised: the stop below must finish
            farm.stop(timeout=None if stopper.signum else defaults.LOCAL_STOP_S)
        if stopper.signum:  # still inside: a late second signal is told, not raised as a traceback
            err_console.print(
                f"stopped; the sweep's state is kept in {output / 'redis'}: the same command resumes it",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(128 + stopper.signum)
    finish(Finished(sweep_file, output, outcome.sweep_id, embedded, started), df, cells, cfg.prices)


@dataclass
class Finished:
    """What ``farm run`` tells once its farm has stopped: where the run's files and Redis are."""

    sweep_file: Path
    output: Path
    sweep_id: str
    embedded: bool
    started: float

    @property
    def reach(self) -> str:
        """The flag that lets a later command reach the Redis the run kept (none for a lab's broker)."""
        return f" --run-dir {shlex.quote(str(self.output))}" if self.embedded else ""

    @property
    def rerun(self) -> tuple[str, str]:
        """How to re-run contended repeats once the farm has stopped: resume with ``reach``, then the same run."""
        again = f"farm run {shlex.quote(str(self.sweep_file))} -o {shlex.quote(str(self.output))}"
        return (self.reach, f" and then `{again}`") if self.embedded else ("", "")  # a lab's workers run them


def finish(run: Finished, df: pd.DataFrame, cells: list[str], prices: dict[str, float]) -> None:
    """The run's report, written (results.csv, report.csv, report.md, report.html) and printed, with one line per
    cell, the jobs this machine could not run, and how to reach the sweep again."""
    from farm.progress import TERMINAL_STATES
    from farm.reports.aggregate import aggregate
    from farm.reports.cost import with_costs
    from farm.reports.frames import invalid_total

    report = with_costs(aggregate(df), prices)  # invalid repeats left out: `--include-invalid` keeps them
    keep = f"`farm report {run.sweep_id} {KEEP_FLAG}{run.reach}`"
    count, kinds = invalid_total(report)
    contended = int(report["n_contended"].sum()) if len(report) else 0
    note = invalid_line(
        count, kinds, included=False, keep=keep, contended=contended, sweeps=[run.sweep_id], rerun=run.rerun
    )
    skipped = df[~df["status"].isin(TERMINAL_STATES)]
    not_run = (
        f"{len(skipped)} job(s) need a device or backend this machine lacks "
        f"({', '.join(sorted(set(skipped['device'].astype(str))))}): not run here"
        if len(skipped)
        else None
    )
    notes = [note, *(f"- {line}" for line in cells), not_run]
    write_outputs(df, report, run.output, note="\n\n".join(filter(None, notes)))  # report.md says what it lacks
    scaled = write_scaling(df, run.output)
    html = write_html(df, report, run.output)
    print_report(report, included=False, keep=keep, sweeps=[run.sweep_id], results=df, rerun=run.rerun)
    for line in [*cells, not_run]:
        if line:
            console.print(
                line, style="yellow" if line is not_run else "", markup=False, highlight=False, soft_wrap=True
            )
    output = run.output
    console.print(
        f"done in {time.time() - run.started:.0f} s; wrote {output / 'results.csv'}, "
        f"{output / 'report.csv'}, {output / 'report.md'}"
        + (f", {scaled}" if scaled else "")
        + (f", {html}" if html else ""),
        markup=False,
        highlight=False,
    )
    if run.embedded:
        console.print(
            f"the sweep stays in {output / 'redis'}: add{run.reach} to any farm command to reach it, e.g. "
            f"`farm report {run.sweep_id}{run.reach}`",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
