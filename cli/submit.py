"""``farm submit``: validate a sweep file, show its job matrix, enqueue it."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import (
    BrokerOption,
    JsonOption,
    console,
    error_line,
    friendly_errors,
    print_json,
    settings,
    untrusted,
)
from farm import defaults
from farm.errors import FarmUnavailable, Problem, SpecError

if TYPE_CHECKING:
    from rich.table import Table

    from farm.settings import FarmSettings
    from farm.store import Store
    from farm.submit import SubmitOutcome
    from farm.sweep import Sweep


def jobs_line(sweep: Sweep) -> str:
    """How many jobs and why: cells × repeats, or for cells measured to a precision, the repeats they start with
    and what they grow to (``20 jobs = 4 cells × 5 repeats to start; each grows until ±2% or 20 valid``)."""
    targets = {job.precision for job in sweep.jobs if job.precision is not None}
    starts = collections.Counter(job.cell_key() for job in sweep.jobs)
    per_cell = sorted(set(starts.values()))
    repeats = str(per_cell[0]) if len(per_cell) == 1 else f"{per_cell[0]}–{per_cell[-1]}"
    line = f"{len(sweep.jobs)} jobs = {sweep.cells} cells × {repeats} repeats"
    if not targets:
        return line
    shown = ", ".join(sorted(f"±{t.ci:.1%} or {t.max_repeats} valid" for t in targets))
    every = "each cell grows" if all(job.precision for job in sweep.jobs) else "cells with a target grow"
    return f"{line} to start; {every} until {shown}"


def matrix_table(sweep: Sweep, key_prefix: str = defaults.KEY_PREFIX) -> Table:
    from rich.table import Table

    from farm import workloads
    from farm.feasibility import describe, estimate_bytes

    table = Table(title=f"{sweep.sweep_id}: {jobs_line(sweep)}", title_justify="left")
    for col in ("workload", "device", "backend", "epochs", "batch", "data", "samples", "params", "memory", "queue"):
        table.add_column(col, overflow="fold")
    from farm.queue import job_queue

    for job in sweep.jobs:
        if job.repeat:
            continue
        base = workloads.get(job.workload).validate_params({}).model_dump(mode="json")
        params = ", ".join(f"{k}={v}" for k, v in job.params.items() if base.get(k) != v) or "defaults"
        need = estimate_bytes(job)
        table.add_row(
            untrusted(job.workload),
            job.device,
            job.backend,
            str(job.epochs),
            str(job.batch_size),
            untrusted(job.data),
            str(job.train_samples or "all"),
            untrusted(params),  # a parameter's value is the user's (or a plugin's default): markup not read
            "?" if need is None else describe(need),
            job_queue(job, key_prefix),
        )
    return table


@friendly_errors
def submit_cmd(
    sweep_file: Path = typer.Argument(
        ..., help="Sweep file (YAML, TOML or JSON); - reads YAML or JSON from standard input.", exists=False
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show the job matrix; enqueue nothing."),
    name: str = typer.Option(None, "--name", help="Run under another sweep name (a fresh set of job ids)."),
    allow_unserved: bool = typer.Option(
        False, "--allow-unserved", help="Enqueue jobs that no live worker can run yet (they wait for one to come)."
    ),
    broker: str = BrokerOption,
    as_json: bool = JsonOption,
) -> None:
    """Validate a sweep file, check that live workers can run it, and enqueue its jobs; prints the sweep id.

    Jobs that no live worker serves (e.g. GPU jobs on a farm of CPU workers) are refused with exit code 2
    unless --allow-unserved is given, and so are jobs whose memory estimate exceeds the largest live worker of
    their device kind; --dry-run shows both, and each cell's estimate.
    """
    from farm.sweep import load_sweep

    sweep = load_sweep(sweep_file, name=name)  # every job validated before anything touches Redis

    from farm.feasibility import GIB, estimate_bytes, too_big
    from farm.store import Store
    from farm.submit import plan, unserved  # Celery: imported only if there is something to send

    cfg = settings(broker_url=broker)
    per_queue = plan(sweep, cfg.key_prefix)
    if dry_run:
        big: list[Problem] | None
        try:
            store = Store.from_settings(cfg)
            missing: dict[str, int] | None = unserved(sweep, store)
            big = too_big(sweep, store.live_workers())
        except FarmUnavailable as e:
            missing, big, reason = None, None, str(e)
        if as_json:
            memory = {j.job_id: None if (b := estimate_bytes(j)) is None else round(b / GIB, 3) for j in sweep.jobs}
            print_json(
                {
                    "sweep_id": sweep.sweep_id,
                    "jobs": len(sweep.jobs),
                    "cells": sweep.cells,
                    "repeats": sweep.spec.repeats,
                    "precision": sweep.spec.precision.model_dump() if sweep.spec.precision else None,
                    "per_queue": per_queue,
                    "dry_run": True,
                    "unserved": missing,
                    "too_big": None if big is None else [str(p) for p in big],
                    "memory_gb": memory,
                    "job_ids": [j.job_id for j in sweep.jobs],
                }
            )
            return
        console.print(matrix_table(sweep, cfg.key_prefix))
        console.print("jobs per queue: " + ", ".join(f"{q} {n}" for q, n in sorted(per_queue.items())))
        if missing is None:
            console.print(f"live workers not checked: {reason}", style="yellow", markup=False, highlight=False)
        for q, n in sorted((missing or {}).items()):
            console.print(f"[yellow]{n} job(s) on {untrusted(q)}: no live worker serves it[/]")
        for p in big or []:
            console.print(f"too large: {p}", style="yellow", markup=False, highlight=False)
        console.print("[dim]dry run: nothing enqueued[/]")
        return
    store = Store.from_settings(cfg)
    missing = unserved(sweep, store)
    problems = too_big(sweep, store.live_workers())  # no flag lets these through: they cannot run anywhere
    if missing and not allow_unserved:
        problems += [
            Problem(
                f"queue {q}",
                f"{n} job(s) that no live worker can run{plugin_hint(q)}; start a worker that serves it, "
                "or pass --allow-unserved to queue them anyway",
            )
            for q, n in sorted(missing.items())
        ]
    if problems:
        raise SpecError(problems, str(sweep_file))
    outcome = _submit_or_say_interrupted(sweep, cfg, store)
    if as_json:
        print_json(
            {
                "sweep_id": outcome.sweep_id,
                "jobs": outcome.jobs,
                "enqueued": outcome.enqueued,
                "already_queued_or_done": outcome.already,
                "per_queue": outcome.per_queue,
                "unserved": missing,
            }
        )
        return
    console.print(
        f"submitted [bold]{outcome.sweep_id}[/]: {outcome.enqueued} jobs enqueued"
        + (f", {outcome.already} already queued or done" if outcome.already else "")
    )
    if outcome.per_queue:
        console.print("per queue: " + ", ".join(f"{q} {n}" for q, n in sorted(outcome.per_queue.items())))
    if outcome.owed_elsewhere:
        console.print(
            f"[yellow]{outcome.owed_elsewhere} job(s) are being sent by another submit of them (or one that "
            "stopped moments ago): they go out with it, or with a worker's reaper[/]"
        )
    typer.echo(outcome.sweep_id)


def _submit_or_say_interrupted(sweep: Sweep, cfg: FarmSettings, store: Store) -> SubmitOutcome:
    """Submit with SIGINT and SIGTERM turned into a clean stop: what was claimed and not sent is given back, and
    one line says to run the same submit again (exit 130 or 143), instead of a traceback or a silent death."""
    from farm.submit import SubmitInterrupted, restore_signals, stop_on_signals, submit

    previous = stop_on_signals()
    try:
        return submit(sweep, cfg, store=store)
    except SubmitInterrupted as e:
        error_line(str(e))
        raise typer.Exit(e.exit_code) from None
    finally:
        restore_signals(previous)


def plugin_hint(queue: str) -> str:
    """For a plugin workload's queue, which plugin the live workers lack; for a backend's, that backend."""
    _, _, workload = queue.partition(".wl-")
    backend = queue.partition(".be-")[2].partition(".")[0]
    hints = [f"has the workload plugin {workload!r} installed"] if workload else []
    hints += [f"offers the {backend} backend"] if backend else []
    return f" (no live worker {' and '.join(hints)})" if hints else ""
