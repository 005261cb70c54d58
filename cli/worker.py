"""``farm worker``: serve the queues this machine's hardware qualifies for — one worker per GPU. The work is
:func:`workers.launch.serve`, the same as ``python -m workers`` (which ``farm run`` starts): one worker entry point."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import BrokerOption, console, fail, friendly_errors, settings


@friendly_errors
def worker_cmd(
    broker: str = BrokerOption,
    name: str = typer.Option(None, "--name", "-n", help="Worker name (default: cpu@HOST, gpuN@HOST)."),
    gpus: str = typer.Option(
        "all", "--gpus", help="Which GPUs get a worker, each pinned to its GPU: 'all' or indices like '0,2'."
    ),
    gpu_groups: str = typer.Option(
        "",
        "--gpu-groups",
        help="Also a worker per group of this many GPUs, for data-parallel jobs spanning them (e.g. 4, or 2,4: "
        "consecutive GPUs, as many groups as fit); a GPU never runs two jobs at once.",
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
    from workers.launch import LaunchError, serve, settings_env

    cfg = settings(broker_url=broker, worker_name=name, data_dir=data_dir, cache_dir=cache_dir)
    try:
        code = serve(
            cfg,
            gpus=gpus,
            gpu_groups=gpu_groups,
            cpu_only=cpu_only,
            allow_cpu_jobs=allow_cpu_jobs,
            check_backends=check_backends,
            loglevel=loglevel,
            settings_env=settings_env(broker, data_dir, cache_dir),
            warn=lambda line: console.print(line, style="yellow", markup=False, highlight=False),
        )
    except LaunchError as e:
        fail(str(e), e.code)
    # Celery's exit code, non-zero when the consumer died: a supervisor restarts the worker.
    raise typer.Exit(code)
