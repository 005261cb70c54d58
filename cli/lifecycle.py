"""``farm cancel``, ``farm resume`` and ``farm forget``: stop a sweep; run again exactly what has no successful
result; delete a finished sweep for good."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cli.common import (
    BrokerOption,
    JsonOption,
    RunDirOption,
    console,
    fail,
    friendly_errors,
    open_store,
    print_json,
    settings,
)
from cli.sweep_args import resolve


@friendly_errors
def cancel_cmd(
    sweep_id: str = typer.Argument(..., help="Sweep id, prefix or name."),
    broker: str = BrokerOption,
    run_dir: Path = RunDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Cancel a sweep: queued jobs leave the queues, running ones are stopped, all are recorded cancelled."""
    from farm.lifecycle import cancel_sweep

    store = open_store(broker, run_dir)
    sid = resolve(store, sweep_id)
    out = cancel_sweep(store, sid)
    if as_json:
        print_json(
            {
                "sweep_id": sid,
                "cancelled": out.cancelled,
                "removed_messages": out.removed_messages,
                "running_stopped": out.running,
            }
        )
        return
    console.print(
        f"cancelled {out.cancelled} job(s) of {sid}: {out.removed_messages} taken off the queues, "
        f"{out.running} running job(s) told to stop. `farm resume {sid}` runs them again."
    )


@friendly_errors
def resume_cmd(
    sweep_id: str = typer.Argument(..., help="Sweep id, prefix or name."),
    contended: bool = typer.Option(
        False,
        "--contended",
        help="Re-run only the repeats marked contended (their "
        "measurement was disturbed by other work), as new attempts; the old results "
        "stay in each job's history.",
    ),
    broker: str = BrokerOption,
    run_dir: Path = RunDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Re-enqueue exactly the jobs without a successful result that are neither queued nor running (or, with
    --contended, the repeats whose measurement was contended)."""
    from farm.lifecycle import resume_sweep
    from farm.store import Store

    cfg = settings(run_dir, broker_url=broker)
    store = Store.from_settings(cfg)
    sid = resolve(store, sweep_id)
    out = resume_sweep(store, cfg, sid, contended=contended)
    if as_json:
        print_json(
            {
                "sweep_id": sid,
                "enqueued": out.enqueued,
                "succeeded": out.succeeded,
                "in_flight": out.in_flight,
                "contended_only": contended,
            }
        )
        return
    what = "contended repeat(s)" if contended else "job(s)"
    console.print(
        f"{sid}: {out.enqueued} {what} enqueued again; {out.succeeded} "
        f"{'clean successes kept' if contended else 'already succeeded'}, {out.in_flight} still queued "
        "or running"
    )


@friendly_errors
def forget_cmd(
    sweep_id: str = typer.Argument(..., help="Sweep id, or a prefix or name that only one sweep has."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask: delete at once (needed without a terminal)."),
    broker: str = BrokerOption,
    run_dir: Path = RunDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete a finished sweep for good: its jobs, results, histories and runs (export them first with
    `farm results SWEEP -o sweep.parquet`). Jobs another sweep of the same name lists are kept. Refused while
    any of its jobs is queued or running (`farm cancel` it first)."""
    from farm.lifecycle import SweepBusy, forget_sweep

    if not sweep_id.strip():
        fail("farm forget needs the id of the sweep to forget")
    store = open_store(broker, run_dir)
    sid = resolve(store, sweep_id)
    matches = [s for s in store.sweep_ids() if s.startswith(sweep_id)]
    if sweep_id != sid and len(matches) > 1:  # other commands take the latest; a deletion must not guess
        shown = ", ".join(matches[-3:]) + (f" and {len(matches) - 3} more" if len(matches) > 3 else "")
        fail(f"{sweep_id!r} matches {len(matches)} sweeps ({shown}): give the id of the one to forget")
    if not yes:
        if not interactive():
            fail(f"farm forget deletes sweep {sid} and its results for good: add --yes to confirm")
        jobs = len(store.sweep_job_ids(sid))
        if not typer.confirm(f"Delete sweep {sid}, its {jobs} job(s) and their results, for good?"):
            fail(f"sweep {sid} was left as it is")
    try:
        out = forget_sweep(store, sid)
    except SweepBusy as e:
        fail(str(e))
    if as_json:
        print_json({"sweep_id": sid, "deleted": out.deleted, "kept": out.kept, "withdrawn_messages": out.withdrawn})
        return
    kept = f"; {out.kept} kept (another sweep of the same name lists them)" if out.kept else ""
    stray = f"; {out.withdrawn} leftover message(s) taken off the queues" if out.withdrawn else ""
    console.print(f"forgot {sid}: {out.deleted} job(s) deleted with their results{kept}{stray}")


def interactive() -> bool:
    """Whether a person can answer a question here (standard input is a terminal)."""
    return sys.stdin.isatty()
