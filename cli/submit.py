"""``farm submit``: validate a sweep file, show its job matrix, enqueue it."""

from __future__ import annotations

import collections
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import (
    BrokerOption,
    JsonOption,
    RunDirOption,
    console,
    error_line,
    fail,
    friendly_errors,
    print_json,
    settings,
    untrusted,
)
from farm import defaults
from farm.errors import FarmUnavailable, Problem, SpecError

if TYPE_CHECKING:
    from rich.table import Table

    from farm.feasibility import DataShortfall
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
    several = any(job.devices > 1 for job in sweep.jobs)  # data-parallel cells: how many devices each spans
    columns = ["workload", "device", *(["devices"] if several else []), "backend", "epochs", "batch", "data"]
    for col in (*columns, "samples", "params", "memory", "queue"):
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
            *([str(job.devices)] if several else []),
            job.backend,
            str(job.epochs),
            f"max (from {job.batch_size})" if job.batch_search else str(job.batch_size),
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
        False,
        "--allow-unserved",
        help="Enqueue jobs that no live worker can run yet (no worker serves them, or none has their dataset): "
        "they wait for one to come.",
    ),
    skip_unserved: bool = typer.Option(
        False,
        "--skip-unserved",
        help="Enqueue only the jobs live workers can run, and list the rest (a later submit of the sweep sends them).",
    ),
    broker: str = BrokerOption,
    run_dir: Path = RunDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Validate a sweep file, check that live workers can run it, and enqueue its jobs; prints the sweep id.

    Jobs that no live worker serves (e.g. GPU jobs on a farm of CPU workers), or whose real dataset none of the
    workers serving them holds or may download, are refused with exit code 2 unless --allow-unserved (queue them
    anyway) or --skip-unserved (leave them out) is given; so are jobs whose memory estimate exceeds the largest
    live worker of their device kind. --dry-run shows all of these, and each cell's memory estimate.
    """
    from farm.sweep import load_sweep

    sweep = load_sweep(sweep_file, name=name)  # every job validated before anything touches Redis

    from farm.feasibility import data_shortfalls, too_big
    from farm.store import Store
    from farm.submit import plan, unserved  # Celery: imported only if there is something to send

    if allow_unserved and skip_unserved:
        fail("--allow-unserved queues the jobs no live worker can run, --skip-unserved leaves them out: give one")
    cfg = settings(run_dir, broker_url=broker)
    per_queue = plan(sweep, cfg.key_prefix)
    if dry_run:
        show_dry_run(sweep, cfg, per_queue, as_json)
        return
    store = Store.from_settings(cfg)
    live = store.live_workers()
    missing = unserved(sweep, store)
    problems = too_big(sweep, live)  # no flag lets these through: they cannot run anywhere
    short = data_shortfalls(sweep, live, cfg.key_prefix)
    no_data = [d for d in short if not d.download]
    if not (allow_unserved or skip_unserved):
        problems += unservable(missing, no_data)
    if problems:
        raise SpecError(problems, str(sweep_file))
    left_out = left_out_lines(sweep, missing, no_data, live, cfg.key_prefix) if skip_unserved else {}
    outcome = _submit_or_say_interrupted(sweep, cfg, store, skip=set().union(*left_out.values()))
    if as_json:
        print_json(
            {
                "sweep_id": outcome.sweep_id,
                "jobs": outcome.jobs,
                "enqueued": outcome.enqueued,
                "already_queued_or_done": outcome.already,
                "per_queue": outcome.per_queue,
                "unserved": missing,
                "left_out": {why: len(ids) for why, ids in left_out.items()},
            }
        )
        return
    console.print(
        f"submitted [bold]{outcome.sweep_id}[/]: {outcome.enqueued} jobs enqueued"
        + (f", {outcome.already} already queued or done" if outcome.already else "")
        + (f", {outcome.skipped} left out" if outcome.skipped else "")
    )
    for why, ids in left_out.items():
        console.print(f"left out: {len(ids)} job(s) {why}", style="yellow", markup=False, highlight=False)
    for d in short:
        if d.download:
            console.print(f"warning: {d}", style="yellow", markup=False, highlight=False)
    if outcome.per_queue:
        console.print("per queue: " + ", ".join(f"{q} {n}" for q, n in sorted(outcome.per_queue.items())))
    if outcome.owed_elsewhere:
        console.print(
            f"[yellow]{outcome.owed_elsewhere} job(s) are being sent by another submit of them (or one that "
            "stopped moments ago): they go out with it, or with a worker's reaper[/]"
        )
    typer.echo(outcome.sweep_id)


def unservable(missing: dict[str, int], no_data: list[DataShortfall]) -> list[Problem]:
    """One problem per queue no live worker serves, and per dataset no worker serving its jobs has: what a
    submit refuses unless it is told to queue them anyway or to leave them out."""
    problems = [
        Problem(
            f"queue {q}",
            f"{n} job(s) that no live worker can run{plugin_hint(q)}; start a worker that serves it, or pass "
            "--allow-unserved to queue them anyway (--skip-unserved to leave them out)",
        )
        for q, n in sorted(missing.items())
    ]
    return problems + [Problem(f"queue {d.queue}", f"{d}; or pass --allow-unserved / --skip-unserved") for d in no_data]


def show_dry_run(sweep: Sweep, cfg: FarmSettings, per_queue: dict[str, int], as_json: bool) -> None:
    """``--dry-run``: the job matrix and what the live workers make of it (unserved queues, jobs too large,
    datasets no worker has), or why the workers could not be asked; nothing is enqueued."""
    from farm.feasibility import GIB, data_shortfalls, estimate_bytes, too_big
    from farm.store import Store
    from farm.submit import unserved

    big: list[Problem] | None
    short: list[DataShortfall] = []
    try:
        store = Store.from_settings(cfg)
        live = store.live_workers()
        missing: dict[str, int] | None = unserved(sweep, store)
        big = too_big(sweep, live)
        short = data_shortfalls(sweep, live, cfg.key_prefix)
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
                "data_missing": [str(d) for d in short if not d.download],
                "data_download": [str(d) for d in short if d.download],
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
    for d in short:
        console.print(f"{'data' if d.download else 'no data'}: {d}", style="yellow", markup=False, highlight=False)
    console.print("[dim]dry run: nothing enqueued[/]")


def left_out_lines(
    sweep: Sweep, missing: dict[str, int], no_data: list[DataShortfall], live: list[dict], key_prefix: str
) -> dict[str, set[str]]:
    """What ``--skip-unserved`` leaves out, by reason (``on farm.gpu: no live GPU worker``): the ids of the jobs
    no live worker can run, for want of a worker of their device, of one that serves their queue (a backend,
    a plugin) or of their dataset."""
    from farm.queue import job_queue

    devices = {  # the device kinds some live worker serves: a queue is PREFIX.DEVICE[.more]
        str(q)[len(key_prefix) + 1 :].split(".", 1)[0]
        for w in live
        if isinstance(w, dict) and not w.get("quarantined")
        for q in (w.get("queues") or [])
        if str(q).startswith(key_prefix + ".")
    }
    why: dict[str, set[str]] = {}
    for job in sweep.jobs:
        queue = job_queue(job, key_prefix)
        if queue in missing:
            reason = (
                f"no live worker serves it{plugin_hint(queue)}"
                if job.device in devices
                else f"no live {job.device.upper()} worker"
            )
            why.setdefault(f"on {queue}: {reason}", set()).add(job.job_id)
    for d in no_data:
        why.setdefault(
            f"on {d.queue}: they need the {d.dataset} dataset, which no live worker serving them holds", set()
        ).update(d.job_ids)
    return why


def _submit_or_say_interrupted(
    sweep: Sweep, cfg: FarmSettings, store: Store, skip: Collection[str] = ()
) -> SubmitOutcome:
    """Submit with SIGINT and SIGTERM turned into a clean stop: what was claimed and not sent is given back, and
    one line says to run the same submit again (exit 130 or 143), instead of a traceback or a silent death."""
    from farm.submit import SubmitInterrupted, restore_signals, stop_on_signals, submit

    previous = stop_on_signals()
    try:
        return submit(sweep, cfg, store=store, skip=skip)
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
