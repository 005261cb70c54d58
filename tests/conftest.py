"""Shared fixtures: a throwaway real redis-server per test and real ``farm worker`` processes.

Nothing here touches a Redis someone else uses: each server listens on a unix socket in the test's own
temporary directory and is killed at teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis

from farm.embedded import EmbeddedRedis

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def redis_server() -> Iterator[EmbeddedRedis]:
    # A short directory: unix socket paths are limited to ~100 characters, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="farm-") as d:
        server = EmbeddedRedis(Path(d) / "redis")
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


def farm_env(broker_url: str, cache_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(FARM_BROKER_URL=broker_url, FARM_CACHE_DIR=str(cache_dir), FARM_CONFIG=str(cache_dir / "none.toml"),
               FARM_ALLOW_DOWNLOAD="false", **extra)
    return env


def run_farm(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    """The real ``farm`` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


class WorkerProcess:
    """A real ``farm worker`` subprocess; its log is kept for assertions and failure reports."""

    def __init__(self, name: str, env: dict[str, str], log: Path, extra: list[str]) -> None:
        self.name = name
        self.env = env
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--name", name,
                                      "--no-check-backends", "--cpu-only", *extra],
                                     env=env, cwd=REPO, stdout=self._fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_registered(self, url: str, timeout: float = 60) -> None:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.exists(f"farm:worker:{self.name}"):
                time.sleep(0.5)  # registration happens just before Celery starts consuming
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.text()}")
            time.sleep(0.1)
        raise TimeoutError(f"worker did not register:\n{self.text()}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._fh.close()


@pytest.fixture
def start_worker(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)

    def start(name: str = "w1", extra: list[str] | None = None, **env_extra: str) -> WorkerProcess:
        w = WorkerProcess(name, farm_env(redis_url, cache, **env_extra), tmp_path / f"{name}.log", extra or [])
        started.append(w)
        w.wait_registered(redis_url)
        return w

    yield start
    for w in started:
        w.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
