"""``farm cancel`` and ``farm resume``: stop a sweep; run again exactly what has no successful result."""

from __future__ import annotations

import typer

from cli.common import BrokerOption, JsonOption, console, friendly_errors, open_store, print_json, settings
from cli.status import resolve


@friendly_errors
def cancel_cmd(
    sweep_id: str = typer.Argument(..., help="Sweep id, prefix or name."),
    broker: str = BrokerOption,
    as_json: bool = JsonOption,
) -> None:
    """Cancel a sweep: queued jobs leave the queues, running ones are stopped, all are recorded cancelled."""
    from farm.lifecycle import cancel_sweep

    store = open_store(broker)
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
    as_json: bool = JsonOption,
) -> None:
    """Re-enqueue exactly the jobs without a successful result that are neither queued nor running (or, with
    --contended, the repeats whose measurement was contended)."""
    from farm.lifecycle import resume_sweep
    from farm.store import Store

    cfg = settings(broker_url=broker)
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
