"""What the tests share that is not a fixture; the fixtures built on it are in ``conftest.py``, and test modules
import from here, never from a conftest.

- the command line: the repository's root, the environment of a real ``farm`` process, that process (one, or several
  at once), and the isolation of in-process commands from the caller's FARM_* settings;
- servers, workers, waiting: a throwaway redis-server, a real ``farm worker`` process, waiting for a condition;
- jobs and machines: a small job's envelope, a plugin whose model does not build, the facts every host reports;
- sweeps and results: a sweep file of tiny jobs, hand-built result rows and results, and a finished sweep in a
  store.
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
from datetime import UTC, datetime
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


TINY_JOBS = {"FARM_MIN_STEADY_S": "0", "FARM_MIN_STEADY_STEPS": "0", "FARM_QUIET_WAIT_S": "0"}
"""Settings for the suite's tiny jobs (a few hundred samples, a fraction of a second per epoch): their steady
windows are too short to time by the farm's defaults (farm.validity), and a busy test machine would make each
wait for a quiet host. Tests of those behaviours set them back."""


FAST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
"""XLA's cheapest CPU compile: the suite's JAX processes use it (tests/conftest.py)."""

SUITE_COMPILE_CACHE_ENV = "BENCHFARM_TEST_COMPILE_CACHE"
"""The test run's shared JAX compilation cache (tests/conftest.py makes it): every farm the tests start uses it."""


def farm_env(broker_url: str, cache_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without its FARM_* settings, pointed at ``broker_url``, with no config file and
    no downloads; tiny jobs' steady windows count as valid and no job waits for a quiet host (``TINY_JOBS``);
    compilations cached for the whole test run; unless ``extra`` says otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(
        FARM_BROKER_URL=broker_url,
        FARM_CACHE_DIR=str(cache_dir),
        FARM_CONFIG=str(cache_dir / "none.toml"),
        FARM_ALLOW_DOWNLOAD="false",
        **TINY_JOBS,
    )
    if os.environ.get(SUITE_COMPILE_CACHE_ENV):
        env["FARM_COMPILE_CACHE_DIR"] = os.environ[SUITE_COMPILE_CACHE_ENV]
    env.update(extra)
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


# -- jobs and machines -------------------------------------------------------------------------------------------


def small_job_envelope(
    sweep: str,
    *,
    units: int = 8,
    train_samples: int = 64,
    test_samples: int = 16,
    time_limit_s: float | None = None,
    **spec: Any,
) -> JobEnvelope:
    """The envelope, in sweep ``<sweep>-1``, of a fashion_mnist_mlp job of one hidden layer of ``units`` on
    synthetic data: a job small enough to run in a test's own process tree in seconds. ``spec`` sets the rest of
    the job (backend, device, epochs, ...); ``time_limit_s`` None is the job's default limit."""
    job = JobSpec(
        sweep=sweep,
        workload="fashion_mnist_mlp",
        params={"hidden_layers": 1, "units": units},
        data="synthetic",
        train_samples=train_samples,
        test_samples=test_samples,
        **spec,
    )
    return JobEnvelope.for_job(job, f"{sweep}-1", time_limit_s=time_limit_s)


def broken_build_site(root: Path) -> Path:
    """``root`` as a site directory holding the distribution broken-models 0.3, whose workload ``broken_build``
    raises in its model's build: put on a worker's PYTHONPATH, the worker serves a workload that always fails
    for the job's own reason, never the machine's."""
    # imported here: that test module imports this one
    from tests.farm.test_workload_plugins import PLUGIN, write_distribution

    return write_distribution(
        root,
        "broken-models",
        "0.3",
        {"broken_build": "broken_mod:WORKLOAD"},
        {"broken_mod": PLUGIN.format(name="broken_build")},
    )


HOST_FACT_KEYS = ("host", "os", "python", "cpu_model", "cpu_cores_logical", "ram_gb", "benchfarm", "git_commit")
"""What farm.fingerprint.host_facts says of every machine, and so what every result's environment holds."""


def assert_has_keys(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    """Each of ``keys`` is in ``mapping``; a failure names the first one missing."""
    for key in keys:
        assert key in mapping, key


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


def cell_row(
    repeat: int,
    job_id: str,
    sweep_id: str,
    cell: tuple[str, str, str],
    *,
    batch_size: int = 32,
    status: str = "succeeded",
    **fields: Any,
) -> dict[str, Any]:
    """:func:`tidy_row` of repeat ``repeat`` of a three-epoch job in sweep ``sweep_id``, in ``cell`` (workload,
    device, backend) at ``batch_size``: the columns by which the reports put a row in its cell, which every
    hand-built results frame spells out the same way; ``fields`` fill in the rest, in their order."""
    workload, device, backend = cell
    return tidy_row(
        repeat,
        job_id=job_id,
        sweep_id=sweep_id,
        workload=workload,
        device=device,
        backend=backend,
        epochs=3,
        batch_size=batch_size,
        status=status,
        **fields,
    )


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


def succeeded_job(job: JobSpec, sweep_id: str, steady_s: float, **fields: Any) -> tuple[JobEnvelope, JobResult]:
    """``job``'s envelope in sweep ``sweep_id`` and its result: succeeded on worker w1 in three epochs of
    ``steady_s`` seconds, the first three times as long (it compiles); ``fields`` fill in the rest of the result.
    The farm's reports read a result's steady throughput from epochs past the first, so this is the shape every
    hand-built result needs."""
    env = JobEnvelope.for_job(job, sweep_id)
    result = JobResult(
        job_id=env.job_id,
        sweep_id=sweep_id,
        job=job,
        status=JobStatus.succeeded,
        worker="w1",
        epochs=[EpochRecord(epoch=k, wall_s=(3 if k == 0 else 1) * steady_s) for k in range(3)],
        **fields,
    )
    return env, result


def save_finished_sweep(
    store: Store, sweep_id: str, name: str, envelopes: list[JobEnvelope], results: list[JobResult]
) -> None:
    """Sweep ``sweep_id`` (named ``name``) of ``envelopes`` saved in ``store`` with every one of ``results``
    recorded: the store as a sweep leaves it once its last job is done."""
    store.save_sweep(sweep_id, {"sweep_id": sweep_id, "name": name, "jobs": len(envelopes)}, envelopes)
    for r in results:
        assert store.record_result(r)


def store_finished_sweep(
    store: Store,
    name: str,
    cells: dict[tuple[str, str], list[float]],
    *,
    keras: str = "3.15.1",
    day: int | None = None,
    hardware: str | None = None,
) -> str:
    """A finished sweep ``name`` in ``store``: for each (device, backend) cell one succeeded result per steady
    throughput given (samples per second; its first epoch three times as long), run with Keras ``keras``;
    returns the sweep's id. With ``day``, its jobs finished on 2026-11-``day`` (one a minute from 03:00); with
    ``hardware``, the results carry that hardware key and the matching software key, as a history needs."""
    sweep_id = f"{name}-0123456789"
    envelopes, results = [], []
    for (device, backend), values in cells.items():
        for i, v in enumerate(values):
            job = JobSpec(sweep=name, workload="fashion_mnist_mlp", device=device, backend=backend, epochs=3, repeat=i)
            extra: dict[str, Any] = {}
            if day is not None:
                extra["finished_at"] = datetime(2026, 11, day, 3, len(results), tzinfo=UTC)
            if hardware is not None:
                extra["environment"] = {
                    "hardware_key": hardware,
                    "software_key": f"py3.11.7 keras{keras} {backend}2.21.0",
                }
            env, result = succeeded_job(
                job,
                sweep_id,
                TRAIN / float(v),
                device_name="NVIDIA H100" if device == "gpu" else "cpu-x",
                train_samples_used=TRAIN,
                versions={"python": "3.11.7", "keras": keras, backend: "2.21.0"},
                **extra,
            )
            envelopes.append(env)
            results.append(result)
    expected = [float(v) for values in cells.values() for v in values]
    for r, v in zip(results, expected, strict=True):
        assert r.steady_samples_per_s == pytest.approx(v)
    save_finished_sweep(store, sweep_id, name, envelopes, results)
    return sweep_id


def processes_naming(marker: str) -> list[str]:
    """The live processes (not zombies) whose command line or environment holds ``marker``: the run's output
    directory is in the embedded redis-server's arguments and in every worker's and job's FARM_BROKER_URL."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().split(") ", 1)[1].startswith("Z"):
                continue
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except (OSError, IndexError):  # gone meanwhile, or not ours
            continue
        if needle in cmdline or needle in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {command[:200]}")
    return found


def submit_and_wait(redis_url: str, sweep: Path, env: dict[str, str], timeout: float = 300) -> list[Any]:
    """Submit ``sweep`` with the real ``farm submit`` and wait until every job of it has a result; the results
    (``JobResult``), in the sweep's job order."""
    import json as _json

    from farm.result import JobResult

    out = run_farm(["submit", str(sweep), "--json"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    sweep_id = _json.loads(out.stdout)["sweep_id"]
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    jobs = r.lrange(f"farm:sweep:{sweep_id}:jobs", 0, -1)
    wait_for(lambda: all(r.exists(f"farm:result:{j}") for j in jobs), timeout, f"every result of {sweep_id}")
    return [JobResult.model_validate_json(r.get(f"farm:result:{j}") or "{}") for j in jobs]
