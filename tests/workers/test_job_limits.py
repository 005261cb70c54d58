"""A job cannot take its worker (or the host) down, through a real worker (issue 24, items 7 and 8).

A test-only plugin misbehaves in its ``build_model``, in the job's own process: it allocates twice the job's
memory limit, builds a model whose activations need gigabytes (a plugin with no submit-side estimate), writes
100 MB to stderr without a newline and raises a 20 MB message, or starts ``sleep`` processes that escape its
process group (same group, ``setsid``, double fork) and then returns or dies. Each is recorded as it should be,
and the same worker process serves on with its memory bounded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import redis
import yaml

from tests.farm.test_workload_plugins import write_distribution
from tests.helpers import farm_env, run_farm, wait_for

pytestmark = pytest.mark.slow

LIMIT_MB = 1536
"""The job's memory limit in these tests: room for a forked JAX child (about 0.5 GB of data), far below the host."""

DEFAULTS = {"backend": "jax", "data": "synthetic", "epochs": 1, "train_samples": 64, "test_samples": 16}

PLUGIN = """
import os
import subprocess
import sys

from pydantic import BaseModel, ConfigDict

from farm.workloads import Workload


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    what: str = "fine"
    token: str = "0"


def tiny(input_shape, num_classes):
    import keras

    model = keras.Sequential(
        [keras.Input(shape=input_shape), keras.layers.Flatten(), keras.layers.Dense(num_classes, activation="softmax")]
    )
    return model, keras.optimizers.SGD(), "sparse_categorical_crossentropy"


def spawn_escapees(token):
    # Same process group; a new session; a double fork (the shell exits at once, its sleep is orphaned).
    subprocess.Popen(["sleep", "1000." + token])
    subprocess.Popen(["sleep", "1000." + token], start_new_session=True)
    subprocess.run(["sh", "-c", "setsid sleep 1000." + token + " >/dev/null 2>&1 & sleep 1000." + token + " &"])


def build(params, input_shape, num_classes):
    import keras
    import numpy as np

    if params.what == "alloc":
        np.ones(2 * int(os.environ["FARM_JOB_MEMORY_LIMIT"]) // 8)  # twice the job's limit, touched
        raise AssertionError("allocated twice the job's memory limit")
    if params.what == "huge":
        # Few weights, gigabytes of activations at batch 64: no submit-side estimate can see it.
        model = keras.Sequential(
            [
                keras.Input(shape=input_shape),
                keras.layers.UpSampling2D(size=32),
                keras.layers.Conv2D(16, 3, padding="same"),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(num_classes, activation="softmax"),
            ]
        )
        return model, keras.optimizers.SGD(), "sparse_categorical_crossentropy"
    if params.what == "chatty":
        chunk = "x" * (1 << 20)
        for _ in range(100):
            sys.stderr.write(chunk)
        sys.stderr.flush()
        raise RuntimeError("y" * (20 << 20))
    if params.what.startswith("escape"):
        spawn_escapees(params.token)
        if params.what == "escape_and_die":
            os.kill(os.getpid(), 9)
        if params.what == "escape_and_hang":
            import time

            time.sleep(1000)
    return tiny(input_shape, num_classes)


def prepare(x, y):
    import numpy as np

    return np.asarray(x, dtype=np.float32) / 255.0, np.asarray(y, dtype=np.int32).reshape(-1)


WORKLOAD = Workload(
    name="misbehaves", dataset="cifar10", params_model=Params, build_model=build, prepare=prepare, unit="images"
)
"""


@pytest.fixture(params=["forked"])
def worker_and_submit(request: pytest.FixtureRequest, redis_url: str, start_worker, tmp_path: Path):
    """A worker with the misbehaving plugin installed (its jobs' processes forked from its fork server, or fresh
    interpreters when the test asks for ``fresh``), and a function that runs one job on it."""
    entry, module = {"misbehaves": "misbehaves_mod:WORKLOAD"}, {"misbehaves_mod": PLUGIN}
    site = write_distribution(tmp_path / "site", "misbehaving-models", "0.1", entry, module)
    env = farm_env(redis_url, tmp_path / "cache", PYTHONPATH=str(site))
    worker = start_worker(
        "w1",
        FARM_MAX_ATTEMPTS="1",
        FARM_QUARANTINE_AFTER="100",
        FARM_JOB_MEMORY_LIMIT_MB=str(LIMIT_MB),
        FARM_WARM_START=str(request.param == "forked").lower(),
        PYTHONPATH=str(site),
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)

    def run(name: str, job: dict, while_running: Callable[[], None] = lambda: None) -> dict:
        """Submit a sweep of this one job, call ``while_running``, and return the job's recorded result."""
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, "defaults": DEFAULTS, "jobs": [job]}))
        out = run_farm(["submit", str(path), "--json"], env)
        assert out.returncode == 0, out.stderr
        sid = json.loads(out.stdout)["sweep_id"]
        [job_id] = r.lrange(f"farm:sweep:{sid}:jobs", 0, -1)
        while_running()
        wait_for(lambda: r.exists(f"farm:result:{job_id}"), 300, f"the {name} job to be recorded")
        return json.loads(r.get(f"farm:result:{job_id}") or "{}")

    return worker, run


def misbehaving(what: str, tag: str = "0", **extra: object) -> dict:
    return {"workload": "misbehaves", "params": {"what": what, "token": tag}, **extra}


def test_memory_a_job_over_its_limit_fails_as_out_of_memory_and_the_worker_serves_on(worker_and_submit) -> None:
    worker, run = worker_and_submit
    allocated = run("alloc", misbehaving("alloc"))
    assert allocated["status"] == "failed", allocated
    print("over its limit:", allocated["error"].splitlines()[0])  # shown with -s: the closing note quotes it
    assert allocated["error"].startswith("out of memory: MemoryError"), allocated["error"]
    assert f"limit: RLIMIT_DATA of {LIMIT_MB / 1024:.1f} GB" in allocated["error"].splitlines()[0]

    # A plugin model with no estimate of its own: measured on the worker before fit, refused with its estimate.
    huge = run("huge", misbehaving("huge", batch_size=64))
    assert huge["status"] == "failed", huge
    first = huge["error"].splitlines()[0]
    print("too big a model:", first)
    assert first.startswith("out of memory: the model needs about "), first
    assert "at batch size 64" in first and "refused before training" in first and "RLIMIT_DATA" in first

    fine = run("fine", misbehaving("fine"))
    assert fine["status"] == "succeeded", fine
    assert worker.proc.poll() is None


def test_output_a_flood_on_stderr_and_a_huge_error_leave_the_worker_small(worker_and_submit) -> None:
    worker, run = worker_and_submit
    assert run("warm", misbehaving("fine"))["status"] == "succeeded"
    before = psutil.Process(worker.proc.pid).memory_info().rss
    chatty = run("chatty", misbehaving("chatty"))
    grown = psutil.Process(worker.proc.pid).memory_info().rss - before
    assert grown < 40 * 2**20, f"the worker grew by {grown / 2**20:.0f} MB"
    assert chatty["status"] == "failed"
    assert chatty["error"].startswith("RuntimeError: yyyy"), chatty["error"][:100]
    assert len(chatty["error"]) < 9000 and "more characters)" in chatty["error"]
    assert run("after", misbehaving("fine"))["status"] == "succeeded"
    assert worker.proc.poll() is None


def sleepers(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["cmdline"] and f"1000.{token}" in proc.info["cmdline"] and proc.info["status"] != "zombie":
            found.append(proc)
    return found


@pytest.mark.parametrize("worker_and_submit", ["forked", "fresh"], indirect=True)
@pytest.mark.parametrize(
    ("what", "status"), [("escape", "succeeded"), ("escape_and_die", "failed"), ("escape_and_hang", "timed_out")]
)
def test_processes_a_job_started_die_with_it_however_they_left_its_group(
    worker_and_submit, what: str, status: str
) -> None:
    worker, run = worker_and_submit
    token = f"{os.getpid()}{len(what)}"
    job = misbehaving(what, token, **({"time_limit_s": 60.0} if what == "escape_and_hang" else {}))

    def all_four_running() -> None:
        if what == "escape_and_hang":  # they are seen alive first, so the time limit kills them and not chance
            wait_for(lambda: len(sleepers(token)) == 4, 60, "the job's four sleep processes")

    result = run(what, job, all_four_running)
    assert result["status"] == status, result
    try:
        wait_for(lambda: not sleepers(token), 10, "the job's processes to be gone")
    finally:
        for proc in sleepers(token):
            proc.kill()
    assert worker.proc.poll() is None
