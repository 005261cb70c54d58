"""A plugin whose model fails to build (its ``build_model`` raises) through a real worker: the job is recorded
``failed`` with the plugin's error, and the same worker process goes on to train the next job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
import yaml

from tests.helpers import broken_build_site, farm_env, run_farm, wait_for

pytestmark = pytest.mark.slow

DEFAULTS = {"backend": "jax", "data": "synthetic", "epochs": 1, "train_samples": 64, "test_samples": 16}


def submit(tmp_path: Path, env: dict[str, str], name: str, job: dict) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "defaults": DEFAULTS, "jobs": [job]}))
    out = run_farm(["submit", str(path), "--json"], env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["sweep_id"]


def test_a_plugin_that_fails_to_build_is_recorded_failed_and_the_worker_serves_on(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    site = broken_build_site(tmp_path / "site")
    env = farm_env(redis_url, tmp_path / "cache", PYTHONPATH=str(site))
    worker = start_worker("w1", FARM_MAX_ATTEMPTS="1", PYTHONPATH=str(site))
    r = redis.Redis.from_url(redis_url, decode_responses=True)

    def result_of(sid: str) -> dict | None:
        [job] = r.lrange(f"farm:sweep:{sid}:jobs", 0, -1)
        raw = r.get(f"farm:result:{job}")
        return json.loads(raw) if raw else None

    broken = submit(tmp_path, env, "broken", {"workload": "broken_build", "params": {"width": 4}})
    wait_for(lambda: result_of(broken) is not None, 300, "the broken plugin's job to be recorded")
    failed = result_of(broken)
    assert failed is not None and failed["status"] == "failed"
    assert "not built in these tests" in failed["error"] and failed["worker"] == "w1"

    plain = submit(tmp_path, env, "after", {"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1}})
    wait_for(lambda: result_of(plain) is not None, 300, "the next job on the same worker")
    ok = result_of(plain)
    assert ok is not None and ok["status"] == "succeeded", ok
    assert ok["worker"] == "w1" and worker.proc.poll() is None
