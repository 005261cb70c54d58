"""Several workers under one command (``farm worker`` on a multi-GPU box): one process per plan, stopped
together on Ctrl-C/SIGTERM.

Each worker is its own process (its own Celery worker, its own pinned GPU), started as
``python -m workers --plan JSON`` with the command's settings in its environment. On SIGTERM/SIGINT the
fleet passes SIGTERM to every worker, which finishes its running job (Celery's warm shutdown) and exits; a
second signal passes SIGKILL, and the jobs they held come back through the lease reaper. A worker that dies
on its own is restarted after a pause. The fleet's own exit code is non-zero when a worker's last exit was (a
supervisor above it sees the failure).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from types import FrameType

from farm.safe_text import log_handler
from workers.plans import WorkerPlan

log = logging.getLogger("farm.worker")
RESTART_DELAY_S = 10.0


def worker_command(plan: WorkerPlan, loglevel: str = "INFO") -> list[str]:
    return [sys.executable, "-m", "workers", "--plan", json.dumps(asdict(plan)), f"--loglevel={loglevel}"]


def fleet_exit_code(codes: list[int | None]) -> int:
    """0 when every worker stopped cleanly, else the first failure's code (a worker killed by signal N counts
    as 128 + N, as a shell reports it)."""
    for code in codes:
        if code:
            return 128 - code if code < 0 else code
    return 0


def run_fleet(plans: list[WorkerPlan], settings_env: dict[str, str], loglevel: str = "INFO") -> int:
    """Run every plan as a child process until told to stop; returns the exit code for the command.
    ``settings_env`` (``FARM_*`` variables) carries the command's own settings (its flags) to each worker."""
    logging.basicConfig(level=logging.INFO, handlers=[log_handler()])  # no stranger's control characters
    env = {**os.environ, **settings_env}
    procs: dict[str, subprocess.Popen] = {}
    stopping = {"signals": 0}

    def start(plan: WorkerPlan) -> None:
        procs[plan.name] = subprocess.Popen(worker_command(plan, loglevel), env=env)
        log.info(
            "started worker %s (pid %d) for %s",
            plan.name,
            procs[plan.name].pid,
            f"GPU {','.join(plan.gpu_ids)}" if plan.gpu_ids else "CPU jobs",
        )

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping["signals"] += 1
        sig = signal.SIGTERM if stopping["signals"] == 1 else signal.SIGKILL
        log.info("stopping %d worker(s) with %s", len(procs), sig.name)
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(sig)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for plan in plans:
        start(plan)
    restart_at: dict[str, float] = {}
    by_name = {p.name: p for p in plans}
    while True:
        alive = [n for n, p in procs.items() if p.poll() is None]
        if stopping["signals"]:
            if not alive:
                return fleet_exit_code([p.returncode for p in procs.values()])
        else:
            for name, p in procs.items():
                if p.poll() is not None and name not in restart_at:
                    log.error(
                        "worker %s exited with code %s; restarting in %.0f s", name, p.returncode, RESTART_DELAY_S
                    )
                    restart_at[name] = time.monotonic() + RESTART_DELAY_S
            for name, when in list(restart_at.items()):
                if time.monotonic() >= when:
                    del restart_at[name]
                    start(by_name[name])
        time.sleep(0.5)
