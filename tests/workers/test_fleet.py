"""``farm worker`` on a (pretend) multi-GPU box: one worker process per GPU, each pinned to its GPU, all
stopped together by one SIGTERM. The GPUs come from a fake ``nvidia-smi``; the pinning is checked by its
effect on the training process' environment."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml

from tests.helpers import REPO, farm_env, run_farm, wait_for

pytestmark = pytest.mark.slow

GPUS = "0, NVIDIA H100 80GB HBM3, 81559, GPU-0, 550.54.15\n1, NVIDIA A100-SXM4-40GB, 40960, GPU-1, 550.54.15\n"


def fake_nvidia_smi(directory: Path) -> None:
    script = directory / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nif [ \"$#\" -gt 0 ]; then cat <<'EOF'\n{GPUS}EOF\nfi\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_one_worker_per_gpu_pinned_and_stopped_together(redis_url: str, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_nvidia_smi(bin_dir)
    env = farm_env(
        redis_url, tmp_path / "cache", FARM_MAX_ATTEMPTS="1", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    )
    log = open(tmp_path / "fleet.log", "wb")  # noqa: SIM115
    fleet = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "--no-check-backends", "--name", "box"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        wait_for(lambda: len(client.keys("farm:worker:*")) == 2, 60, "two pinned workers")
        workers = {w["name"]: w for w in json.loads(run_farm(["workers", "--json"], env).stdout)}
        assert set(workers) == {"box-gpu0", "box-gpu1"}
        assert workers["box-gpu0"]["gpu_ids"] == ["0"] and workers["box-gpu1"]["gpu_ids"] == ["1"]
        assert "farm.gpu.model-a100" in workers["box-gpu1"]["queues"]
        assert not any(q.startswith("farm.cpu") for w in workers.values() for q in w["queues"])

        # A job that asks for the A100 runs on GPU 1's worker, in a process that sees only GPU 1. (There is no
        # real GPU here, so the training fails; the record still shows where and how it ran.)
        sweep = tmp_path / "a100.yaml"
        sweep.write_text(
            yaml.safe_dump(
                {
                    "name": "wants-a100",
                    "defaults": {
                        "backend": "jax",
                        "data": "synthetic",
                        "train_samples": 32,
                        "test_samples": 8,
                        "device": "gpu",
                        "requires": {"gpu_model": "A100"},
                    },
                    "jobs": [{"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 4}}],
                }
            )
        )
        sid = json.loads(run_farm(["submit", str(sweep), "--json"], env).stdout)["sweep_id"]
        job_id = client.lrange(f"farm:sweep:{sid}:jobs", 0, -1)[0]
        wait_for(lambda: client.exists(f"farm:result:{job_id}"), 120, "the A100 job's record")
        result = json.loads(client.get(f"farm:result:{job_id}"))
        assert result["worker"] == "box-gpu1"
        assert result["environment"]["cuda_visible_devices"] == "1"
        assert [g["index"] for g in result["environment"]["gpus"]] == [1]
    finally:
        fleet.send_signal(signal.SIGTERM)  # the fleet passes it on to both workers
    t0 = time.monotonic()
    fleet.wait(60)
    log.close()
    assert fleet.returncode == 0, (tmp_path / "fleet.log").read_text()[-3000:]
    assert time.monotonic() - t0 < 60
    wait_for(lambda: not client.keys("farm:worker:*"), 10, "the workers to leave the registry")
