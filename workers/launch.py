"""Start this machine's workers: probe the hardware, derive the plans (one worker per GPU, pinned, or one CPU
worker), then run the one plan here or the fleet of them.

The one implementation behind both ways a worker is started: ``farm worker`` (the CLI, for a person or a
service file) and ``python -m workers`` (what ``farm run``'s embedded farm and the fleet start). The core
(``farm``) starts workers as processes of this package, never through the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from farm.errors import escape
from farm.settings import FarmSettings

if TYPE_CHECKING:
    from workers.plans import WorkerPlan

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 1


class LaunchError(Exception):
    """A worker that cannot start here: one line for the user, and the exit code (2: its settings, 1: this
    machine)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def serve(
    cfg: FarmSettings,
    *,
    gpus: str = "all",
    gpu_groups: str = "",
    cpu_only: bool = False,
    allow_cpu_jobs: bool = False,
    check_backends: bool | None = None,
    loglevel: str = "INFO",
    settings_env: dict[str, str] | None = None,
    warn: Callable[[str], None] = print,
) -> int:
    """Probe, plan and run this machine's workers until they stop; returns the exit code (Celery's for one
    worker, the fleet's for several: non-zero when a consumer died, so a supervisor restarts it).
    ``settings_env`` (``FARM_*`` variables) carries settings given as flags to a fleet's worker processes;
    ``warn`` gets each warning as one plain line (its stranger's text already escaped)."""
    from farm import workloads

    # Plugins first: a name clash stops the worker before it probes anything or talks to Redis.
    try:
        broken = workloads.load_plugins()
    except workloads.WorkloadConflict as e:
        raise LaunchError(str(e)) from None
    for entry, why in broken.items():
        warn(f"workload plugin {escape(entry)} not loaded (its jobs go to other workers): {escape(why)}")
    plans = _plans(cfg, gpus, group_sizes(gpu_groups), cpu_only, allow_cpu_jobs, check_backends, broken, warn)
    if len(plans) == 1:
        from workers.worker import run_worker

        return run_worker(cfg, plans[0], loglevel=loglevel.upper())
    from workers.fleet import run_fleet

    return run_fleet(plans, settings_env or {}, loglevel=loglevel.upper())


def group_sizes(text: str) -> list[int]:
    """``--gpu-groups 2,4`` as sizes; a LaunchError (exit 2) naming what is not a size."""
    sizes = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if not part.isdigit():
            raise LaunchError(f"--gpu-groups {text!r}: expected GPU counts such as 2,4, not {part!r}", EXIT_USAGE)
        sizes.append(int(part))
    return sizes


def _plans(
    cfg: FarmSettings,
    gpus: str,
    gpu_groups: list[int],
    cpu_only: bool,
    allow_cpu_jobs: bool,
    check_backends: bool | None,
    broken: dict[str, str],
    warn: Callable[[str], None],
) -> list[WorkerPlan]:
    """The worker plans for this machine's hardware and installed backends."""
    from farm import workloads
    from farm.fingerprint import query_nvidia_smi
    from workers.datasets.fetch import availability
    from workers.devices import BackendInfo, offered_backends, probe
    from workers.plans import PlanError, plan_workers

    found = [] if cpu_only else query_nvidia_smi()
    check = bool(found) if check_backends is None else check_backends
    report = probe(check_gpu_visibility=check, gpus=found)
    offered = offered_backends(report, cfg.backends)
    if not offered:
        installed = ", ".join(b.name for b in report.backends if b.installed) or "none"
        keras = "" if report.keras_version else ", and Keras is missing"
        raise LaunchError(
            f"no Keras backend to offer here (installed: {installed}{keras}; FARM_BACKENDS={cfg.backends or 'unset'})",
            EXIT_USAGE if cfg.backends else EXIT_UNAVAILABLE,
        )
    if found and check and not report.gpu_backends:
        warn("GPUs found but no installed Keras backend sees them: serving CPU jobs only")
        found = []
    info = {
        "cpu_model": report.host.get("cpu_model"),
        "cpu_cores": report.host.get("cpu_cores_logical"),
        "ram_gb": report.host.get("ram_gb"),
        "keras": report.keras_version,
        # The backends this worker offers (FARM_BACKENDS may hide installed ones): submit and routing respect them.
        "backends": {b: (report.backend(b) or BackendInfo(name=b, installed=True)).version for b in offered},
        "workloads": workloads.advertised(),
        # The real datasets this worker holds or may fetch: submit warns of, or refuses, jobs whose data no
        # worker that serves them has.
        "datasets": availability(cfg.data_dir, cfg.allow_download),
        "workload_errors": broken,
    }
    try:
        return plan_workers(
            found,
            selection=gpus,
            cpu_only=cpu_only,
            allow_cpu_jobs=allow_cpu_jobs,
            name=cfg.worker_name,
            info=info,
            plugins=workloads.plugin_names(),
            key_prefix=cfg.key_prefix,
            backends=offered,
            gpu_groups=[] if cpu_only else gpu_groups,
        )
    except PlanError as e:
        raise LaunchError(str(e)) from None


def settings_env(broker: str | None, data_dir: Path | None, cache_dir: Path | None) -> dict[str, str]:
    """The settings given as flags, as the ``FARM_*`` variables a fleet's worker processes read."""
    given = {"FARM_BROKER_URL": broker, "FARM_DATA_DIR": data_dir, "FARM_CACHE_DIR": cache_dir}
    return {k: str(v) for k, v in given.items() if v}
