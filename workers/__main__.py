"""A worker process: ``python -m workers [--plan PLAN | --name N --cpu-only --gpus 0,2 ...] [--loglevel INFO]``.

The one entry point of a worker process. Without ``--plan`` it does what ``farm worker`` does, with the same
flags (:func:`workers.launch.serve`: probe, plan, run one worker or the fleet); ``farm run``'s embedded farm
starts its workers this way. With ``--plan`` it runs exactly that plan.

``farm worker`` probes the machine and decides what each worker serves; on a box with several GPUs it runs one
process per GPU through this entry point (``workers.fleet``), so each worker pins its own GPU. PLAN is a JSON
object (or ``@file`` holding one) with the fields of :class:`workers.plans.WorkerPlan`:

    {"name": "gpu0@lab3", "tags": ["gpu", "gpu.model-h100", ...], "gpu_ids": ["0"], "info": {...}}

Settings (broker, data and cache directories, leases) come from the environment and the config file, as for
every command (``FARM_*``; see ``farm config``). The exit code is Celery's: non-zero when the worker's consumer
died, so a supervisor restarts it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from farm.settings import load_settings
from workers.plans import WorkerPlan


def parse_plan(text: str) -> WorkerPlan:
    """A plan from its JSON, or from the file named after ``@``."""
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("a plan is a JSON object")
    return WorkerPlan(**data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    ap.add_argument("--plan", help="the worker's plan: JSON, or @FILE (default: probe this machine and plan)")
    ap.add_argument("--loglevel", default="INFO")
    # farm worker's flags, for a worker that probes and plans (no --plan): same names, same meaning.
    ap.add_argument("--broker", "-b", default=None)
    ap.add_argument("--name", "-n", default=None)
    ap.add_argument("--gpus", default="all")
    ap.add_argument("--gpu-groups", default="")
    ap.add_argument("--cpu-only", action="store_true")
    ap.add_argument("--allow-cpu-jobs", action="store_true")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--check-backends", action=argparse.BooleanOptionalAction, default=None)
    args = ap.parse_args(argv)
    if args.plan is None:
        return probe_and_serve(args)
    try:
        plan = parse_plan(args.plan)
    except (OSError, ValueError, TypeError) as e:
        print(f"error: --plan: {e}", file=sys.stderr)
        return 2
    from workers.worker import run_worker

    return run_worker(load_settings(), plan, loglevel=args.loglevel.upper())


def probe_and_serve(args: argparse.Namespace) -> int:
    """``farm worker``'s work with its flags: bad settings or no backend to offer give one line and exit 2 or 1."""
    from pydantic import ValidationError

    from farm.settings import settings_problem
    from workers.launch import LaunchError, serve, settings_env

    overrides = {
        "broker_url": args.broker,
        "worker_name": args.name,
        "data_dir": args.data_dir,
        "cache_dir": args.cache_dir,
    }
    try:
        cfg = load_settings(**overrides)
        return serve(
            cfg,
            gpus=args.gpus,
            gpu_groups=args.gpu_groups,
            cpu_only=args.cpu_only,
            allow_cpu_jobs=args.allow_cpu_jobs,
            check_backends=args.check_backends,
            loglevel=args.loglevel,
            settings_env=settings_env(args.broker, args.data_dir, args.cache_dir),
        )
    except ValidationError as e:
        print(f"error: {settings_problem(e, [k for k, v in overrides.items() if v is not None])}", file=sys.stderr)
        return 2
    except LaunchError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
