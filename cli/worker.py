"""``farm worker``: serve the queues this machine's hardware qualifies for."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import BrokerOption, console, friendly_errors, settings


@friendly_errors
def worker_cmd(
    broker: str = BrokerOption,
    name: str = typer.Option(None, "--name", "-n", help="Worker name (default: kind@host.pid)."),
    cpu_only: bool = typer.Option(False, "--cpu-only", help="Serve CPU jobs only, even on a GPU box."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Where the dataset archives are (offline machines)."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Where decoded datasets are cached."),
    check_backends: bool = typer.Option(None, "--check-backends/--no-check-backends",
                                        help="Import each framework at start to check it sees the GPU (default: "
                                             "only when nvidia-smi lists GPUs)."),
    loglevel: str = typer.Option("INFO", "--loglevel", help="Log level."),
) -> None:
    """Run a worker: probe the hardware, derive tags, consume one queue per tag, one job at a time."""
    from farm.fingerprint import query_nvidia_smi
    from workers.devices import probe
    from workers.worker import WorkerPlan, default_name, run_worker

    cfg = settings(broker_url=broker, worker_name=name, data_dir=data_dir, cache_dir=cache_dir)
    gpus = [] if cpu_only else query_nvidia_smi()
    check = bool(gpus) if check_backends is None else check_backends
    report = probe(check_gpu_visibility=check, gpus=gpus)
    tags = list(report.tags)
    if gpus and check and not report.gpu_backends:
        console.print("[yellow]GPUs found but no installed Keras backend sees them: serving CPU jobs only[/]")
        tags = [t for t in tags if not (t == "gpu" or t.startswith("gpu.") or t.endswith(".gpu"))]
    plan = WorkerPlan(name=cfg.worker_name or default_name(tags), tags=tags,
                      info={"cpu_model": report.host.get("cpu_model"), "cpu_cores": report.host.get("cpu_cores_logical"),
                            "gpus": [g.model_dump() for g in report.gpus],
                            "backends": {b.name: b.version for b in report.backends if b.installed},
                            "keras": report.keras_version})
    run_worker(cfg, plan, loglevel=loglevel.upper())
