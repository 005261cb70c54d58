"""How a sweep's progress is drawn: the status table and bar (``farm status``, ``farm run``'s live view) and the
one-line progress a log gets. Shared by the commands that show progress; no command module imports another."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from cli.common import untrusted
from farm import defaults

STATE_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "queued": "dim",
    "lost": "magenta",
}
MAX_ROWS = 40
STALE_HEARTBEATS = 3
"""A running job whose last heartbeat is older than this many heartbeat periods (the farm's ``heartbeat_s``) is
shown as having none."""
STALE_HEARTBEAT_S = STALE_HEARTBEATS * defaults.WORKER_HEARTBEAT_S

if TYPE_CHECKING:
    from farm.progress import SweepProgress


def clock(seconds: float | None) -> str:
    """``h:mm:ss``; ``?`` when not known."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def elapsed_since(progress: SweepProgress, started: float | None = None) -> float | None:
    """Seconds since ``started`` (a ``time.time()`` of this host), else since the sweep was submitted (a moment
    on the Redis server's clock, as is ``progress.read_at``: the submitter may have been another host, its clock
    off); None if unknown."""
    if started is not None:
        return max(0.0, time.time() - started)
    if progress.submitted_at is None:
        return None
    now = progress.read_at if progress.read_at is not None else time.time()
    return max(0.0, now - progress.submitted_at)


def timing(progress: SweepProgress, elapsed_s: float | None) -> str:
    """``elapsed 0:01:23, ETA 0:00:40`` (the ETA at the pace of the jobs finished so far; left out once every
    runnable job has finished, ``?`` before the first has)."""
    text = f"elapsed {clock(elapsed_s)}"
    if progress.finished < progress.runnable:
        text += f", ETA {clock(progress.eta_s(elapsed_s) if elapsed_s is not None else None)}"
    return text


def progress_line(progress: SweepProgress, elapsed_s: float | None) -> str:
    """One plain line for logs: jobs done/running/queued of those that can run, elapsed time and ETA."""
    done = progress.finished
    failed = sum(progress.counts.get(s, 0) for s in ("failed", "timed_out", "cancelled"))
    waiting = sum(progress.counts.get(s, 0) for s in ("queued", "lost"))
    line = (
        f"{progress.sweep_id}: {done}/{progress.runnable} jobs done"
        + (f" ({failed} failed)" if failed else "")
        + f", {progress.counts.get('running', 0)} running, {waiting} queued; {timing(progress, elapsed_s)}"
    )
    if progress.not_enqueued:
        line += f"; {progress.not_enqueued} not sent ({not_sent_why(progress)})"
    return line


def not_sent_why(progress: SweepProgress) -> str:
    """Why the sweep's jobs that were never sent were not: a submit that stopped before claiming them (or one
    still at it), or ``farm run`` leaving out jobs for devices its machine lacks."""
    if progress.interrupted:
        return "interrupted: run the same submit again"
    return "no device for them here"


def render(progress: SweepProgress, elapsed_s: float | None = None, stale_after_s: float = STALE_HEARTBEAT_S) -> Group:
    """The sweep's table of jobs, its counts and what waits for whom, and a bar of the jobs that can run (those
    never sent to a queue, like the GPU jobs ``farm run`` skips on a CPU machine, are not counted against it)
    with the time elapsed (``elapsed_s``; default: since the sweep was submitted) and an ETA. A running job
    without a heartbeat for ``stale_after_s`` (``STALE_HEARTBEATS`` of the farm's heartbeat periods) says so."""
    if elapsed_s is None:
        elapsed_s = elapsed_since(progress)
    table = Table(
        title=f"{progress.sweep_id} — {progress.finished}/{progress.runnable} finished, "
        f"{progress.live_workers} live worker(s)",
        title_justify="left",
    )
    for col in ("job", "workload", "device", "backend", "rep", "state", "epoch", "loss", "acc", "worker"):
        table.add_column(col)
    # Running jobs first, then the rest in queue order, jobs never sent (no device for them here) last; long
    # sweeps show the first MAX_ROWS.
    order = sorted(
        progress.jobs, key=lambda j: (j.state == "not_enqueued", j.state != "running", j.state in ("succeeded",))
    )
    for j in order[:MAX_ROWS]:
        style = STATE_STYLE.get(j.state, "")
        state = f"[{style}]{j.state}[/]" if style else j.state
        if j.state in ("queued", "lost") and j.queue in progress.unserved_queues:
            state += " [yellow](no live worker)[/]"
        elif j.state == "running" and j.heartbeat_age_s is not None and j.heartbeat_age_s > stale_after_s:
            state += f" [magenta](no heartbeat for {j.heartbeat_age_s:.0f} s)[/]"
        elif j.note:
            state += f" [yellow]({untrusted(j.note)})[/]"
        table.add_row(  # workload, worker, error: strangers' text, its markup not read
            untrusted(j.job_id[:10]),
            untrusted(j.workload),
            untrusted(j.device),
            untrusted(j.backend),
            str(j.repeat),
            state,
            f"{j.epoch}/{j.epochs}",
            f"{j.loss:.4f}" if j.loss is not None else "",
            f"{j.accuracy:.3f}" if j.accuracy is not None else "",
            untrusted(j.worker),
        )
    parts: list = [table]
    if len(order) > MAX_ROWS:
        parts.append(f"… and {len(order) - MAX_ROWS} more jobs (use --json for all)")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(progress.counts.items()))
    parts.append(f"states: {counts}")
    if progress.not_enqueued:
        parts.append(f"{progress.not_enqueued} job(s) not sent to any queue ({not_sent_why(progress)}): not counted")
    for queue, n in sorted(progress.unserved_queues.items()):
        parts.append(f"[yellow]{n} job(s) on {untrusted(queue)} wait: no live worker serves {untrusted(queue)}[/]")
    for name, reason in sorted(progress.quarantined.items()):
        parts.append(f"[red]worker {untrusted(name)} stopped taking jobs: {untrusted(reason)}[/]")
    if progress.rejected_messages:
        parts.append(rejected_line(progress))
    bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[timing]}"))
    bar.add_task("sweep", total=progress.runnable or 1, completed=progress.finished, timing=timing(progress, elapsed_s))
    parts.append(bar)
    errors = [j for j in progress.jobs if j.error and j.state in ("failed", "timed_out")][:5]
    for j in errors:
        parts.append(f"[red]{untrusted(j.job_id[:10])} {j.state}: {untrusted(j.error)}[/]")
    return Group(*parts)


def rejected_line(progress: SweepProgress) -> str:
    """The farm's refused messages: the total and the newest reason. The reason quotes a stranger's message:
    non-printable characters and rich markup in it are escaped."""
    from rich.markup import escape as escape_markup

    from farm.errors import escape

    text = (
        f"{progress.rejected_messages} message(s) on the queues were refused as not valid farm jobs (the "
        f"latest 1,000 are kept in the store's `rejected` list)"
    )
    latest = progress.latest_rejection or {}
    if latest.get("reason"):
        where = f" on {latest['queue']}" if latest.get("queue") else ""
        text += f"; latest{where}: {str(latest['reason'])[:300]}"
    return f"[yellow]{escape_markup(escape(text))}[/]"
