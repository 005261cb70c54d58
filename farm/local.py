"""The embedded default: a whole farm on this machine for ``farm run``.

It is the same system, smaller: a real Redis (our own, on a unix socket, unless a broker is configured),
real worker processes for the tags this machine has, and the same submit/status/report code. Workers are
started as separate processes through the workers' one entry point (``python -m workers`` with ``farm worker``'s
flags, run with this interpreter: the same code a lab's ``farm worker`` runs), never through the CLI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from farm import defaults
from farm.kept_redis import KeptRedis
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
        "report's statistics; --include-invalid keeps them). Use --workers 1 for figures you can trust."
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
        self.redis = KeptRedis(self.dir, create=True) if embedded else None
        self.cpu_workers = cpu_workers
        self.gpu_workers = gpu_workers
        self.worker_args = worker_args or []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.hurried = False
        self.stopping = False
        """Set once :meth:`stop` has begun: a signal handler must then let it finish, not raise into it."""

    def start(self) -> LocalFarm:
        """Start Redis, then the workers; if anything fails or is interrupted half-way (a Ctrl-C while Redis loads),
        whatever was started is stopped again before the error goes on."""
        try:
            return self._start()
        except BaseException:
            self.stop(timeout=0.0)
            raise

    def _start(self) -> LocalFarm:
        if self.redis:
            self.settings = self.settings.model_copy(update={"broker_url": self.redis.open()})
        logs = self.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "FARM_BROKER_URL": self.settings.broker_url}
        specs = self.specs()
        for name, extra in specs:
            log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
            cmd = [
                sys.executable,
                "-m",
                "workers",
                "--name",
                name,
                "--no-check-backends",
                *extra,
                *self.worker_args,
            ]
            # A session of its own: a Ctrl-C on the terminal reaches `farm run` alone, which decides what the
            # workers are told (stop after the job, or at once); and the worker's group can be killed whole.
            self.procs.append(
                subprocess.Popen(
                    cmd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            log.close()
        return self

    def specs(self) -> list[tuple[str, list[str]]]:
        """Each local worker's name and its flags: the CPU workers, then one per GPU."""
        specs = [(f"local-cpu-{i}", ["--cpu-only"]) for i in range(self.cpu_workers)]
        return specs + [(f"local-gpu{i}", ["--gpus", str(i)]) for i in range(self.gpu_workers)]

    @property
    def worker_names(self) -> list[str]:
        """The names the local workers are started with (a GPU worker registers as ``NAME-gpuN``)."""
        return [name for name, _ in self.specs()]

    def check_workers(self) -> list[str]:
        """Names of the workers that have died (their logs say why)."""
        return [f"worker {i} exited with code {p.returncode}" for i, p in enumerate(self.procs) if p.poll() is not None]

    def hurry(self) -> None:
        """Stop at once rather than after the running jobs (a second Ctrl-C): safe to call from a signal handler
        while :meth:`stop` waits, which then kills the workers' process groups (as ``farm worker``'s fleet does
        on a second signal: the jobs they held come back through the lease reaper when the farm runs again)."""
        self.hurried = True

    def stop(self, timeout: float | None = defaults.LOCAL_STOP_S) -> None:
        """Stop the workers (SIGTERM: each finishes its running job), then Redis. ``timeout`` None waits for the
        jobs as long as they last, unless :meth:`hurry` is called; past the timeout, or at once after a hurry,
        a worker's process group is killed. Redis is stopped whatever happens on the way (an exception, a
        signal), so no redis-server of this farm outlives it."""
        self.stopping = True
        try:
            self._stop_workers(timeout)
        finally:
            try:
                for p in self.procs:
                    _kill_group(p)  # nothing was left running if the workers stopped: this only reaps
            finally:
                self.procs.clear()
                if self.redis:
                    self.redis.close()  # stops it unless a command beside the run (farm status --run-dir) uses it

    def _stop_workers(self, timeout: float | None) -> None:
        """SIGTERM to each worker, then wait until they have all exited, the timeout has passed or :meth:`hurry`
        was called; :meth:`stop` kills what is left."""
        for p in self.procs:
            p.send_signal(signal.SIGTERM)  # a no-op for one that has exited
        deadline = None if timeout is None else time.monotonic() + timeout
        while any(p.poll() is None for p in self.procs) and not self.hurried:
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(0.1)

    def __enter__(self) -> LocalFarm:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _kill_group(p: subprocess.Popen[bytes]) -> None:
    """Kill a worker and its process group (it leads one: started in a session of its own) if it still runs, and
    reap it. Its job's process, in a group of its own, dies with it (PR_SET_PDEATHSIG)."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            p.kill()
    p.wait()
