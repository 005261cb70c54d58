"""The warm path: the next job's process is started (Keras imported) ahead of its job, yet every job runs in
a fresh process of its own, with its own environment, and nothing leaks from the job before."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from farm.fingerprint import host_facts
from farm.job import JobEnvelope, JobSpec
from farm.settings import FarmSettings
from workers.execute import build_result
from tests.conftest import wait_for
from workers.supervisor import WarmPool, run_child

pytestmark = pytest.mark.slow


def run(pool: WarmPool, tmp_path: Path, **kw: object):
    spec = dict(sweep="warm", workload="fashion_mnist_mlp", params={"hidden_layers": 1, "units": 8},
                data="synthetic", train_samples=64, test_samples=16, epochs=2, backend="jax")
    spec.update(kw)
    env = JobEnvelope.for_job(JobSpec(**spec), "warm-1")
    outcome = run_child(env, FarmSettings(cache_dir=tmp_path), lambda e: None, pool=pool)
    assert outcome.status == "succeeded", (outcome.error, outcome.stderr_tail)
    return build_result(env, outcome, 1, "w", host_facts())


def test_each_job_gets_a_fresh_prestarted_process(tmp_path: Path) -> None:
    pool = WarmPool()
    try:
        first = run(pool, tmp_path, mixed_precision=True, repeat=0)
        wait_for(lambda: pool._child is not None and bool(pool._child.outcome.ready), 60, "the warm child")
        time.sleep(1.0)  # the first job's threads are gone by now: the warm child must outlive them
        assert pool._child.alive()
        warm_pid = pool._child.proc.pid
        second = run(pool, tmp_path, repeat=1)
        assert second.environment["pid"] == warm_pid
        other_backend = run(pool, tmp_path, backend="tensorflow", repeat=2)
    finally:
        pool.close()
    # Fresh processes, and the warm one was started only once the previous job's training had ended.
    pids = [r.environment["pid"] for r in (first, second, other_backend)]
    assert len(set(pids)) == 3
    assert second.timeline["spawned_at"] >= first.timeline["train_end_at"]
    # The second was warm: Keras was imported before the job came, so the job waited for nothing.
    assert second.timeline["spawned_at"] + second.phases.import_s <= second.timeline["job_started_at"] + 0.5
    # Nothing leaks: the first job's mixed-precision policy is not the second's.
    assert first.environment["dtype_policy"] == "mixed_bfloat16"
    assert second.environment["dtype_policy"] == "float32"
    # A job of another backend does not get the warm JAX process: it gets a fresh TensorFlow one.
    assert other_backend.environment["keras_backend"] == "tensorflow" and "tensorflow" in other_backend.versions
    # Each CPU job's process sees no GPU.
    assert {r.environment["cuda_visible_devices"] for r in (first, second, other_backend)} == {""}
