"""The embedded default: a whole farm on this machine for ``farm run``.

It is the same system, smaller: a real Redis (our own, on a unix socket, unless a broker is configured),
real ``farm worker`` processes for the tags this machine has, and the same submit/status/report code.
Workers are started as separate processes (``farm worker``, run as ``python -m cli.main worker`` with this
interpreter), exactly as a lab starts them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from farm.embedded import EmbeddedRedis
from farm.settings import FarmSettings


def shared_machine_warning(cpu_workers: int, gpu_workers: int, cores: int | None = None) -> str | None:
    """What to tell the user before a local farm whose workers will measure each other: two workers on one
    machine run two jobs at once, and each job's steady window then shows the other's CPU use (a GPU job's
    input pipeline runs on the CPU too), so the repeats are marked contended and left out of the report."""
    workers = cpu_workers + gpu_workers
    if workers <= 1:
        return None
    cores = cores or os.cpu_count() or 1
    return (
        f"{workers} workers on {cores} core(s) run {workers} jobs at once: each job's measurement shares the "
        "machine with the others, so their repeats are likely to be marked contended (left out of the "
        "report's statistics; --include-contended keeps them). Use --workers 1 for figures you can trust."
    )


class LocalFarm:
    """Redis (embedded unless ``settings`` names a broker) plus ``cpu_workers`` CPU workers and one per GPU."""

    def __init__(
        self,
        directory: Path,
        settings: FarmSettings,
        *,
        embedded: bool,
        cpu_workers: int = 1,
        gpu_workers: int = 0,
        worker_args: list[str] | None = None,
    ) -> None:
        self.dir = Path(directory)
        self.settings = settings
        self.redis = EmbeddedRedis(self.dir / "redis") if embedded else None
        self.cpu_workers = cpu_workers
        self.gpu_workers = gpu_workers
        self.worker_args = worker_args or []
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> LocalFarm:
        if self.redis:
            self.redis.start()
            self.settings = self.settings.model_copy(update={"broker_url": self.redis.url})
        logs = self.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "FARM_BROKER_URL": self.settings.broker_url}
        specs = [(f"local-cpu-{i}", ["--cpu-only"]) for i in range(self.cpu_workers)]
        specs += [(f"local-gpu{i}", ["--gpus", str(i)]) for i in range(self.gpu_workers)]
        for name, extra in specs:
            log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
            cmd = [
                sys.executable,
                "-m",
                "cli.main",
                "worker",
                "--name",
                name,
                "--no-check-backends",
                *extra,
                *self.worker_args,
            ]
            self.procs.append(
                subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            )
        return self

    def check_workers(self) -> list[str]:
        """Names of the workers that have died (their logs say why)."""
        return [f"worker {i} exited with code {p.returncode}" for i, p in enumerate(self.procs) if p.poll() is not None]

    def stop(self, timeout: float = 30.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        if self.redis:
            self.redis.stop()

    def __enter__(self) -> LocalFarm:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
