"""``farm submit``: validate a sweep file, show its job matrix, enqueue it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.common import BrokerOption, JsonOption, console, friendly_errors, print_json, settings
from farm import workloads
from farm.sweep import Sweep, load_sweep


def matrix_table(sweep: Sweep) -> Table:
    table = Table(title=f"{sweep.sweep_id}: {len(sweep.jobs)} jobs = {sweep.cells} cells × "
                        f"{sweep.spec.repeats} repeats", title_justify="left")
    for col in ("workload", "device", "backend", "epochs", "batch", "data", "samples", "params", "queue"):
        table.add_column(col, overflow="fold")
    from farm.routing import queue_for

    for job in sweep.jobs:
        if job.repeat:
            continue
        base = workloads.get(job.workload).validate_params({}).model_dump(mode="json")
        params = ", ".join(f"{k}={v}" for k, v in job.params.items() if base.get(k) != v) or "defaults"
        table.add_row(job.workload, job.device, job.backend, str(job.epochs), str(job.batch_size), job.data,
                      str(job.train_samples or "all"), params, queue_for(job))
    return table


@friendly_errors
def submit_cmd(
    sweep_file: Path = typer.Argument(..., help="Sweep file (YAML, TOML or JSON).", exists=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show the job matrix; enqueue nothing."),
    name: str = typer.Option(None, "--name", help="Run under another sweep name (a fresh set of job ids)."),
    broker: str = BrokerOption,
    as_json: bool = JsonOption,
) -> None:
    """Validate a sweep file and enqueue its jobs; prints the sweep id."""
    from farm.submit import plan, submit  # Celery: imported only when submitting

    sweep = load_sweep(sweep_file, name=name)
    per_queue = plan(sweep)
    if dry_run:
        if as_json:
            print_json({"sweep_id": sweep.sweep_id, "jobs": len(sweep.jobs), "cells": sweep.cells,
                        "repeats": sweep.spec.repeats, "per_queue": per_queue, "dry_run": True,
                        "job_ids": [j.job_id for j in sweep.jobs]})
            return
        console.print(matrix_table(sweep))
        console.print("jobs per queue: " + ", ".join(f"{q} {n}" for q, n in sorted(per_queue.items())))
        console.print("[dim]dry run: nothing enqueued[/]")
        return
    outcome = submit(sweep, settings(broker_url=broker))
    if as_json:
        print_json({"sweep_id": outcome.sweep_id, "jobs": outcome.jobs, "enqueued": outcome.enqueued,
                    "already_queued_or_done": outcome.already, "per_queue": outcome.per_queue})
        return
    console.print(f"submitted [bold]{outcome.sweep_id}[/]: {outcome.enqueued} jobs enqueued"
                  + (f", {outcome.already} already queued or done" if outcome.already else ""))
    if outcome.per_queue:
        console.print("per queue: " + ", ".join(f"{q} {n}" for q, n in sorted(outcome.per_queue.items())))
    typer.echo(outcome.sweep_id)
