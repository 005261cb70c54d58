"""What the tests share that is not a fixture; the fixtures built on it are in ``conftest.py``, and test modules
import from here, never from a conftest.

- the command line: the repository's root, the environment of a real ``farm`` process, that process (one, or several
  at once), and the isolation of in-process commands from the caller's FARM_* settings;
- servers, workers, waiting: a throwaway redis-server, a real ``farm worker`` process, waiting for a condition;
- sweeps and results: a sweep file of tiny jobs, hand-built result rows, and a finished sweep in a store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
import yaml

from farm.columns import RESULT_COLUMNS
from farm.embedded import EmbeddedRedis
from farm.job import JobEnvelope, JobSpec
from farm.result import EpochRecord, JobResult, JobStatus
from farm.store import Store

# -- the command line --------------------------------------------------------------------------------------------


REPO = Path(__file__).resolve().parent.parent


def farm_env(broker_url: str, cache_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without its FARM_* settings, pointed at ``broker_url``, with no config file and
    no downloads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(
        FARM_BROKER_URL=broker_url,
        FARM_CACHE_DIR=str(cache_dir),
        FARM_CONFIG=str(cache_dir / "none.toml"),
        FARM_ALLOW_DOWNLOAD="false",
        **extra,
    )
    return env


def isolate_farm_env(monkeypatch: pytest.MonkeyPatch, config: Path) -> None:
    """No FARM_* variable from the caller's shell, ``config`` as the config file (tests leave it absent or
    write it), and a wide console so rich does not wrap what the tests look for."""
    for key in list(os.environ):
        if key.startswith("FARM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FARM_CONFIG", str(config))
    monkeypatch.setenv("COLUMNS", "250")


def run_farm(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real ``farm`` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def run_farm_together(
    runs: Mapping[str, tuple[list[str], dict[str, str]]], timeout: float = 120
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Several real ``farm`` command lines (name: arguments and environment), each in a process of its own, all
    started at once: independent commands start up side by side, and commands that wait (on a server that does
    not answer) wait together. Each finished process as :func:`run_farm` gives it."""
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        for name, (args, env) in runs.items():
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        done = {}
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=timeout)
            done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        return done
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- servers, workers, waiting -----------------------------------------------------------------------------------


@contextmanager
def throwaway_redis(make: Callable[..., EmbeddedRedis] = EmbeddedRedis, **kwargs: Any) -> Iterator[EmbeddedRedis]:
    """A real redis-server on a unix socket in a directory of its own, stopped and removed on leaving.

    The directory is short: unix socket paths are limited to ~100 characters, pytest's tmp_path can be longer.
    """
    with tempfile.TemporaryDirectory(prefix="farm-") as d:
        server = make(Path(d) / "redis", **kwargs)
        server.start()
        try:
            yield server
        finally:
            server.stop()


class WorkerProcess:
    """A real ``farm worker`` subprocess; its log is kept for assertions and failure reports."""

    def __init__(self, name: str, env: dict[str, str], log: Path, extra: list[str]) -> None:
        self.name = name
        self.env = env
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115  (closed by stop(), after the process)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--name", name, "--no-check-backends", "--cpu-only", *extra],
            env=env,
            cwd=REPO,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_registered(self, url: str, timeout: float = 60) -> None:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.exists(f"{self.env.get('FARM_KEY_PREFIX', 'farm')}:worker:{self.name}"):
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


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# -- sweeps and results ------------------------------------------------------------------------------------------


def write_sweep(
    tmp_path: Path,
    name: str,
    jobs: int = 1,
    epochs: int = 1,
    samples: int = 2000,
    test_samples: int = 64,
    units: int = 8,
    **defaults: object,
) -> Path:
    """``tmp_path/<name>.yaml``: ``jobs`` distinct small JAX jobs on synthetic data (hidden widths ``units``,
    ``units`` + 1, ...), of about ``epochs`` × 0.1 s each at the default ``samples``."""
    spec = {
        "name": name,
        "defaults": {
            "backend": "jax",
            "data": "synthetic",
            "train_samples": samples,
            "test_samples": test_samples,
            "epochs": epochs,
            **defaults,
        },
        "jobs": [
            {"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": units + i}} for i in range(jobs)
        ],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


TRAIN = 60_000
"""The training samples of every stored result (so that a throughput is TRAIN over an epoch's time)."""


PARAMS = json.dumps({"hidden": 256}, separators=(",", ":"))
"""The workload parameters of every hand-built row, as the store keeps them."""


def tidy_row(repeat: int = 0, **fields: Any) -> dict[str, Any]:
    """A tidy result row (every column of farm.rows.RESULT_COLUMNS, None where nothing is said) of repeat
    ``repeat`` of a job on real data with the farm's default settings; ``fields`` fill in the rest."""
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(
        params=PARAMS,
        data="real",
        steps_per_execution=1,
        jit_compile="auto",
        mixed_precision=False,
        input_pipeline="farm",
        mode="train",
        repeat=repeat,
        seed=42 + repeat,
    )
    row.update(fields)
    return row


def tight(center: float, n: int, seed: int = 1, cv: float = 0.005) -> list[float]:
    """``n`` throughputs around ``center``, spread as on a quiet machine (coefficient of variation ``cv``)."""
    return list(center * (1 + cv * np.random.default_rng(seed).standard_normal(n)))


def only_row(frame: pd.DataFrame, **match: Any) -> pd.Series:
    """The row of ``frame`` whose columns hold the values given; there must be exactly one."""
    mask = np.ones(len(frame), dtype=bool)
    for column, value in match.items():
        mask &= (frame[column] == value).to_numpy(dtype=bool)
    assert mask.sum() == 1, frame
    return frame.loc[mask].iloc[0]


def store_finished_sweep(store: Store, name: str, cells: dict[tuple[str, str], list[float]]) -> str:
    """A finished sweep ``name`` in ``store``: for each (device, backend) cell one succeeded result per steady
    throughput given (samples per second; its first epoch three times as long); returns the sweep's id."""
    sweep_id = f"{name}-0123456789"
    envelopes, results = [], []
    for (device, backend), values in cells.items():
        for i, v in enumerate(values):
            job = JobSpec(sweep=name, workload="fashion_mnist_mlp", device=device, backend=backend, epochs=3, repeat=i)
            env = JobEnvelope.for_job(job, sweep_id)
            wall = TRAIN / float(v)
            envelopes.append(env)
            results.append(
                JobResult(
                    job_id=env.job_id,
                    sweep_id=sweep_id,
                    job=job,
                    status=JobStatus.succeeded,
                    worker="w1",
                    device_name="NVIDIA H100" if device == "gpu" else "cpu-x",
                    train_samples_used=TRAIN,
                    versions={"python": "3.11.7", "keras": "3.15.1", backend: "2.21.0"},
                    epochs=[
                        EpochRecord(epoch=0, wall_s=3 * wall),
                        EpochRecord(epoch=1, wall_s=wall),
                        EpochRecord(epoch=2, wall_s=wall),
                    ],
                )
            )
    store.save_sweep(sweep_id, {"sweep_id": sweep_id, "name": name, "jobs": len(envelopes)}, envelopes)
    expected = [float(v) for values in cells.values() for v in values]
    for r, v in zip(results, expected, strict=True):
        assert r.steady_samples_per_s == pytest.approx(v)
        assert store.record_result(r)
    return sweep_id
