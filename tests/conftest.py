"""Shared fixtures: a throwaway real redis-server per test, real ``farm worker`` processes, and an environment
isolated from the caller's FARM_* settings. The plain functions and classes behind them are in tests/helpers.py.

Nothing here touches a Redis someone else uses: each server listens on a unix socket in a temporary directory of
its own and is killed at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from farm.embedded import EmbeddedRedis
from tests.helpers import WorkerProcess, farm_env, isolate_farm_env, throwaway_redis


@pytest.fixture
def redis_server() -> Iterator[EmbeddedRedis]:
    with throwaway_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


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


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No FARM_* setting of the caller, no config file (its absent path is returned), never the machine's shared
    Redis (the default broker is one that refuses at once), a wide console."""
    config = tmp_path / "no-such-config.toml"
    isolate_farm_env(monkeypatch, config)
    monkeypatch.setenv("FARM_BROKER_URL", "redis://127.0.0.1:1/0")
    return config


@pytest.fixture
def invoke(isolated_env: Path) -> Callable[..., Result]:
    """``farm`` in this process through typer's CliRunner, in the isolated environment."""
    from cli.main import app

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, list(args))

    return run
