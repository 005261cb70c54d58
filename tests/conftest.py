"""Shared fixtures: a throwaway real redis-server per test, real ``farm worker`` processes, and an environment
isolated from the caller's FARM_* settings. The plain functions and classes behind them are in tests/helpers.py.

Nothing here touches a Redis someone else uses: each server listens on a unix socket in a temporary directory of
its own and is killed at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from farm.embedded import EmbeddedRedis
from tests.helpers import (
    FAST_XLA_FLAGS,
    SUITE_COMPILE_CACHE_ENV,
    TINY_JOBS,
    WorkerProcess,
    farm_env,
    isolate_farm_env,
    throwaway_redis,
)

# Bytecode is cached for this run and the processes it starts, even where PYTHONDONTWRITEBYTECODE is set (this
# machine's image sets it). Without the cache every `farm` command, worker and training process the suite starts
# compiles the farm's modules again, and pytest rewrites every test module's asserts again in each of its xdist
# workers: a quarter of the fast loop's CPU time.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# The suite's tiny jobs, run in this process's settings too (the supervisor and result tests build FarmSettings
# from the environment): no window limits, no wait for a quiet host on a machine the suite itself keeps busy.
os.environ.update(TINY_JOBS)
# One JAX compilation cache for the whole run (its xdist workers inherit the variable): the suite's tiny jobs
# build the same few models again and again, and a compile found in the cache costs a fifth of one made anew
# (measured: 1.1 CPU-s for a 64-sample job against 4.3). Tests of the cache itself name their own directory.
_OWN_COMPILE_CACHE = SUITE_COMPILE_CACHE_ENV not in os.environ
if _OWN_COMPILE_CACHE:
    os.environ[SUITE_COMPILE_CACHE_ENV] = tempfile.mkdtemp(prefix="benchfarm-compiled-")
os.environ["FARM_COMPILE_CACHE_DIR"] = os.environ[SUITE_COMPILE_CACHE_ENV]
# The same cache for JAX used outside a farm's jobs (the tests that build the shipped models in their own process
# or a child of theirs: the same layers' initialisers again and again), and XLA's cheapest CPU compile for every
# JAX process of the run: the tests check what models hold and do, not how fast XLA's code runs (measured on the
# shipped models: 72 CPU-s with the default optimisation, 54 with these flags). One set of flags everywhere, so
# that every process finds the others' compilations (the flags are part of a cache entry's key).
os.environ.setdefault("XLA_FLAGS", FAST_XLA_FLAGS)
os.environ["JAX_COMPILATION_CACHE_DIR"] = str(Path(os.environ[SUITE_COMPILE_CACHE_ENV]) / "jax")
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's compilation cache goes with the run that made it."""
    if _OWN_COMPILE_CACHE and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ[SUITE_COMPILE_CACHE_ENV], ignore_errors=True)


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Each test's CPU, when asked for (FARM_TEST_CPU): no test needs the machine to itself, not even those
    about contention, which make their own load and judge each repeat by its own figures."""
    with _cpu_spent(item.nodeid):
        yield


@contextmanager
def _cpu_spent(nodeid: str) -> Iterator[None]:
    """With FARM_TEST_CPU set to a file: one JSON line per test with the CPU seconds it cost, its own and its
    waited-for processes' (workers, Redis, training children), for finding where a CPU-bound suite's time goes
    (``scripts/test_cpu.py`` sums them)."""
    path = os.environ.get("FARM_TEST_CPU")
    if not path:
        yield
        return
    before = os.times()
    yield
    after = os.times()
    own = after.user + after.system - before.user - before.system
    children = after.children_user + after.children_system - before.children_user - before.children_system
    with open(path, "a") as out:
        out.write(json.dumps({"test": nodeid, "own": round(own, 2), "children": round(children, 2)}) + "\n")


_MEASURED = json.loads((Path(__file__).parent / "module_seconds.json").read_text())
MODULE_SECONDS: dict[str, float] = _MEASURED.get("seconds", {})
FAST_SECONDS: dict[str, float] = _MEASURED.get("fast_seconds", {})
"""What each module took in a measured run, whole and fast loop (scripts/module_seconds.py writes them)."""


@pytest.hookimpl(trylast=True)  # after tests/hosts/conftest.py has marked its tests slow
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest modules first: xdist hands whole modules to its workers in this order (``--dist loadscope``,
    so a module's fixtures are built once), and a long module started last would keep the whole run waiting
    for it. A module not measured yet counts 10 s per slow test; one none of whose slow tests runs (the fast
    loop) counts what its fast tests took. Within a module the order is the file's."""
    cost: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        module = item.nodeid.split("::", 1)[0]
        first.setdefault(module, i)
        cost[module] = cost.get(module, 0.0) + 10.0 * (item.get_closest_marker("slow") is not None)
    for module in cost:
        table = MODULE_SECONDS if cost[module] else FAST_SECONDS  # no slow test of it runs: its fast ones' cost
        cost[module] = table.get(module, cost[module])
    items.sort(key=lambda item: (-cost[m := item.nodeid.split("::", 1)[0]], first[m]))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): six workers for runs with slow tests, which mostly wait (on leases,
    workers, training processes); three for the fast loop (``-m 'not slow'``), whose tests mostly compute, so
    that more workers would only add their own start-up (measured on 2 cores: 35 s with three, 42 s with six)."""
    return 3 if "not slow" in (config.getoption("markexpr") or "") else 6
