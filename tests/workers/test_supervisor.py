"""The supervisor: the child's environment (backend, device visibility, no secrets), and what becomes of a
child that is killed, runs out of time, or fails."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import redis
import yaml

from farm.job import JobEnvelope
from farm.settings import FarmSettings
from tests.helpers import farm_env, run_farm, small_job_envelope, wait_for
from workers.supervisor import child_env, run_child


def envelope(**kw: object) -> JobEnvelope:
    return small_job_envelope("t", **kw)


def test_cpu_job_sees_no_gpu_and_no_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FARM_BROKER_URL", "redis://:s3cret@h:6379/0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    env = child_env(envelope(device="cpu", backend="jax"), FarmSettings(cache_dir=tmp_path, data_dir=tmp_path / "d"))
    assert env["KERAS_BACKEND"] == "jax"
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["JAX_PLATFORMS"] == "cpu"
    assert "FARM_BROKER_URL" not in env and not any("s3cret" in v for v in env.values())
    assert env["FARM_CACHE_DIR"] == str(tmp_path) and env["FARM_DATA_DIR"] == str(tmp_path / "d")


def test_gpu_job_is_pinned_to_its_gpus(tmp_path: Path) -> None:
    env = child_env(envelope(device="gpu", backend="torch"), FarmSettings(cache_dir=tmp_path), gpu_ids=["2"])
    assert env["KERAS_BACKEND"] == "torch" and env["CUDA_VISIBLE_DEVICES"] == "2"
    assert "JAX_PLATFORMS" not in env


@pytest.mark.slow
def test_time_limit_ends_the_child(tmp_path: Path) -> None:
    env = envelope(backend="jax", epochs=10_000, train_samples=256, time_limit_s=8)
    t0 = time.monotonic()
    out = run_child(env, FarmSettings(cache_dir=tmp_path), lambda e: None)
    assert out.status == "timed_out" and "time limit of 8 s" in out.error
    assert time.monotonic() - t0 < 60


@pytest.mark.slow
def test_job_raising_is_a_failure_with_its_error(tmp_path: Path) -> None:
    # A GPU job on a machine whose backend sees no GPU: the child raises; the outcome carries the reason.
    out = run_child(envelope(device="gpu", backend="jax"), FarmSettings(cache_dir=tmp_path), lambda e: None)
    if out.status == "succeeded":
        pytest.skip("this machine has a GPU")
    assert out.status == "failed" and "sees none" in out.error


@pytest.mark.slow
def test_killed_child_is_recorded_failed_and_worker_keeps_serving(redis_url: str, start_worker, tmp_path: Path) -> None:
    env = farm_env(redis_url, tmp_path / "cache")
    worker = start_worker("cpu-1", FARM_MAX_ATTEMPTS="1")  # no second attempt: the failure is recorded at once
    sweep = tmp_path / "long.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "long",
                "defaults": {"backend": "jax", "data": "synthetic", "train_samples": 256, "test_samples": 16},
                "jobs": [
                    {"workload": "fashion_mnist_mlp", "epochs": 10_000, "params": {"hidden_layers": 1, "units": 8}}
                ],
            }
        )
    )
    sid = json.loads(run_farm(["submit", str(sweep), "--json", "--allow-unserved"], env).stdout)["sweep_id"]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    job_id = client.lrange(f"farm:sweep:{sid}:jobs", 0, -1)[0]
    wait_for(lambda: int(client.hget(f"farm:state:{job_id}", "epoch") or 0) >= 1, 120, "the job to train")
    os.kill(int(client.hget(f"farm:state:{job_id}", "child_pid")), signal.SIGKILL)  # as the OOM killer would
    wait_for(lambda: client.exists(f"farm:result:{job_id}"), 60, "the failure to be recorded")
    result = json.loads(client.get(f"farm:result:{job_id}"))
    assert result["status"] == "failed" and "SIGKILL" in result["error"]
    assert worker.proc.poll() is None
