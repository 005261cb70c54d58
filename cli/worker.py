"""``farm worker``: serve the queues this machine's hardware qualifies for — one worker per GPU."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import (
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    BrokerOption,
    console,
    fail,
    friendly_errors,
    settings,
    untrusted,
)


@friendly_errors
def worker_cmd(
    broker: str = BrokerOption,
    name: str = typer.Option(None, "--name", "-n", help="Worker name (default: cpu@HOST, gpuN@HOST)."),
    gpus: str = typer.Option(
        "all", "--gpus", help="Which GPUs get a worker, each pinned to its GPU: 'all' or indices like '0,2'."
    ),
    cpu_only: bool = typer.Option(False, "--cpu-only", help="One CPU worker, even on a GPU box."),
    allow_cpu_jobs: bool = typer.Option(
        False,
        "--allow-cpu-jobs",
        help="On a GPU box, also run a CPU worker (CPU jobs then run beside GPU jobs and may skew both).",
    ),
    data_dir: Path = typer.Option(None, "--data-dir", help="Where the dataset archives are (offline machines)."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Where decoded datasets are cached."),
    check_backends: bool = typer.Option(
        None,
        "--check-backends/--no-check-backends",
        help="Import each framework at start to check it sees the GPU (default: only when nvidia-smi lists GPUs).",
    ),
    loglevel: str = typer.Option("INFO", "--loglevel", help="Log level."),
) -> None:
    """Run workers: probe the hardware, derive tags, one worker per GPU (pinned), one job at a time each.

    On a machine without GPUs (or with --cpu-only) it runs one CPU worker. Ctrl-C or SIGTERM stops every
    worker after its running job; a second signal stops them at once (their jobs go back to the queue).
    A worker whose consumer died exits non-zero, so a supervisor restarts it.
    """
    from workers.plans import PlanError, plan_workers
    from workers.worker import run_worker

    cfg = settings(broker_url=broker, worker_name=name, data_dir=data_dir, cache_dir=cache_dir)

    # Plugins first: a name clash stops the worker before it probes anything or talks to Redis.
    from farm import workloads

    try:
        broken = workloads.load_plugins()
    except workloads.WorkloadConflict as e:
        fail(str(e))
    for entry, why in broken.items():
        console.print(
            f"[yellow]workload plugin {untrusted(entry)} not loaded (its jobs go to other workers): {untrusted(why)}[/]"
        )

    from farm.fingerprint import query_nvidia_smi
    from workers.devices import BackendInfo, offered_backends, probe
    from workers.fleet import run_fleet

    found = [] if cpu_only else query_nvidia_smi()
    check = bool(found) if check_backends is None else check_backends
    report = probe(check_gpu_visibility=check, gpus=found)
    offered = offered_backends(report, cfg.backends)
    if not offered:
        installed = ", ".join(b.name for b in report.backends if b.installed) or "none"
        keras = "" if report.keras_version else ", and Keras is missing"
        fail(
            f"no Keras backend to offer here (installed: {installed}{keras}; FARM_BACKENDS={cfg.backends or 'unset'})",
            EXIT_USAGE if cfg.backends else EXIT_UNAVAILABLE,
        )
    if found and check and not report.gpu_backends:
        console.print("[yellow]GPUs found but no installed Keras backend sees them: serving CPU jobs only[/]")
        found = []
    info = {
        "cpu_model": report.host.get("cpu_model"),
        "cpu_cores": report.host.get("cpu_cores_logical"),
        "ram_gb": report.host.get("ram_gb"),
        "keras": report.keras_version,
        # The backends this worker offers (FARM_BACKENDS may hide installed ones): submit and routing respect them.
        "backends": {b: (report.backend(b) or BackendInfo(name=b, installed=True)).version for b in offered},
    }
    info["workloads"] = workloads.advertised()
    info["workload_errors"] = broken
    plugins = workloads.plugin_names()
    try:
        plans = plan_workers(
            found,
            selection=gpus,
            cpu_only=cpu_only,
            allow_cpu_jobs=allow_cpu_jobs,
            name=cfg.worker_name,
            info=info,
            plugins=plugins,
            key_prefix=cfg.key_prefix,
            backends=offered,
        )
    except PlanError as e:
        fail(str(e))
    if len(plans) == 1:
        # Celery's exit code, non-zero when the consumer died: a supervisor restarts the worker.
        raise typer.Exit(run_worker(cfg, plans[0], loglevel=loglevel.upper()))
    given = {"FARM_BROKER_URL": broker, "FARM_DATA_DIR": data_dir, "FARM_CACHE_DIR": cache_dir}
    raise typer.Exit(run_fleet(plans, {k: str(v) for k, v in given.items() if v}, loglevel=loglevel.upper()))
