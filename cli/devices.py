"""``farm devices`` and ``farm workers``: what this machine has, and which workers are live on the farm."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cli.common import (
    EXIT_UNAVAILABLE,
    BrokerOption,
    JsonOption,
    RunDirOption,
    console,
    fail,
    friendly_errors,
    open_store,
    print_json,
    untrusted,
)

if TYPE_CHECKING:
    from farm.store import Store


@friendly_errors
def devices_cmd(
    fast: bool = typer.Option(False, "--fast", help="Skip importing each framework to ask whether it sees a GPU."),
    as_json: bool = JsonOption,
) -> None:
    """What this machine has: CPU, GPUs, Keras backends (and whether they see a GPU), and its worker tags."""
    from workers.devices import probe  # frameworks are only ever imported in probe's child processes

    report = probe(check_gpu_visibility=not fast)
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    h = report.host
    console.print(
        f"[bold]{h['host']}[/]: {h['cpu_model']}, {h['cpu_cores_logical']} logical cores "
        f"({h['cpu_cores_physical']} physical), {h['ram_gb']} GB RAM; {h['os']}; Python {h['python']}"
    )
    gpus = Table(title="GPUs", title_justify="left")
    for col in ("index", "name", "memory GB", "driver", "CUDA"):
        gpus.add_column(col)
    for g in report.gpus:
        gpus.add_row(str(g.index), untrusted(g.name), f"{g.memory_gb:g}", untrusted(g.driver), untrusted(g.cuda))
    console.print(gpus if report.gpus else "GPUs: none found (nvidia-smi absent or lists none)")
    backends = Table(title=f"Keras {report.keras_version or 'not installed'} backends", title_justify="left")
    for col in ("backend", "installed", "version", "sees GPU", "note"):
        backends.add_column(col)
    for b in report.backends:
        sees = "" if b.sees_gpu is None else ("yes" if b.sees_gpu else "no")
        backends.add_row(
            b.name, "yes" if b.installed else "no", untrusted(b.version), sees, untrusted((b.error or "")[:80])
        )
    console.print(backends)
    console.print("worker tags: " + ", ".join(report.tags))


@friendly_errors
def workers_cmd(
    wait_for: int = typer.Option(
        0,
        "--wait-for",
        min=0,
        help="First wait until this many workers are live and taking jobs (a script's `farm worker &` has then "
        "registered); exit 1 after --timeout.",
    ),
    timeout: float = typer.Option(120.0, "--timeout", min=0.0, help="Seconds --wait-for waits at most."),
    broker: str = BrokerOption,
    run_dir: Path = RunDirOption,
    as_json: bool = JsonOption,
) -> None:
    """The live workers: where they run, what they serve, what they are doing."""
    store = open_store(broker, run_dir)
    workers = wait_for_workers(store, wait_for, timeout) if wait_for else store.live_workers()
    if as_json:
        print_json(workers)
        return
    table = Table(title=f"{len(workers)} live worker(s)", title_justify="left")
    for col in ("name", "host", "tags", "backends", "workloads", "datasets", "job", "heartbeat"):
        table.add_column(col)
    now = store.now()  # registry entries are stamped on the Redis server's clock, whatever this host's says
    for w in workers:
        # Everything a worker registered is a stranger's text: shown, its markup never read.
        doing = untrusted(w.get("job") or "idle")
        if w.get("quarantined"):
            doing = f"[red]stopped: {untrusted(w['quarantined'])}[/]"
        table.add_row(
            untrusted(w.get("name", "")),
            untrusted(w.get("host", "")),
            untrusted(", ".join(str(t) for t in w.get("tags", []) if ".wl-" not in str(t) and ".be-" not in str(t))),
            untrusted(", ".join(str(b) for b in w["backends"])) if isinstance(w.get("backends"), dict) else "?",
            workloads_cell(w),
            datasets_cell(w),
            doing,
            f"{now - w.get('heartbeat_at', now):.0f} s ago",
        )
    console.print(table)


def wait_for_workers(store: Store, count: int, timeout: float) -> list[dict]:
    """The live workers once ``count`` of them take jobs (not stopped for failures); one line and exit 1 when
    fewer have after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        workers = store.live_workers()
        taking = sum(1 for w in workers if not w.get("quarantined"))
        if taking >= count:
            return workers
        if time.monotonic() >= deadline:
            fail(f"{taking} live worker(s) taking jobs after {timeout:g} s, not {count}", code=EXIT_UNAVAILABLE)
        time.sleep(0.5)


def datasets_cell(worker: dict) -> str:
    """The real datasets a worker holds (``cifar10``), may download (``fashion_mnist (download)``) or lacks
    (``cifar10 (missing)``); ``?`` for a worker that does not say."""
    have = worker.get("datasets")
    if not isinstance(have, dict):
        return "?"
    return untrusted(", ".join(n if s == "held" else f"{n} ({s})" for n, s in sorted(have.items())))


def workloads_cell(worker: dict) -> str:
    """The workloads a worker has: the shipped ones as one count, each plugin with its package and version, and
    the plugins that failed to load."""
    have = worker.get("workloads") or {}
    shipped = [n for n, w in have.items() if isinstance(w, dict) and w.get("package") == "benchfarm"]
    plugins = [
        untrusted(f"{n} ({w.get('package')} {w.get('version')})")
        for n, w in sorted(have.items())
        if isinstance(w, dict) and w.get("package") != "benchfarm"
    ]
    broken = [f"[red]{untrusted(n)}: not loaded[/]" for n in sorted(worker.get("workload_errors") or {})]
    return ", ".join([f"{len(shipped)} built-in", *plugins, *broken]) if have else "?"
