"""One worker process for exactly one plan: ``python -m workers --plan PLAN [--loglevel INFO]``.

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
    ap.add_argument("--plan", required=True, help="the worker's plan: JSON, or @FILE")
    ap.add_argument("--loglevel", default="INFO")
    args = ap.parse_args(argv)
    try:
        plan = parse_plan(args.plan)
    except (OSError, ValueError, TypeError) as e:
        print(f"error: --plan: {e}", file=sys.stderr)
        return 2
    from workers.worker import run_worker

    return run_worker(load_settings(), plan, loglevel=args.loglevel.upper())


if __name__ == "__main__":
    sys.exit(main())
