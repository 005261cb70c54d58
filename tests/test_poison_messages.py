"""Hostile or broken messages pushed straight onto a farm queue: refused with a reason, never executed, and
the worker keeps serving real jobs afterwards."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import pytest
import redis
import yaml

from tests.conftest import farm_env, run_farm, wait_for

pytestmark = pytest.mark.slow


def celery_message(body: bytes, content_type: str, task: str = "farm.run_job") -> str:
    """A raw message in the form kombu's Redis transport stores it (Celery task protocol 2)."""
    return json.dumps({
        "body": base64.b64encode(body).decode(), "content-encoding": "utf-8", "content-type": content_type,
        "headers": {"task": task, "id": f"forged-{task}", "lang": "py", "argsrepr": "", "kwargsrepr": ""},
        "properties": {"delivery_tag": f"tag-{task}-{content_type}", "body_encoding": "base64", "priority": 0,
                       "delivery_info": {"exchange": "", "routing_key": "farm.cpu"}},
    })


class Boom:
    def __reduce__(self):  # what a pickle exploit would do if it were ever unpickled
        return (Path.touch, (Path("/tmp/farm-pwned"),))


def test_poison_messages_are_refused_and_the_worker_survives(redis_url: str, start_worker, tmp_path: Path) -> None:
    Path("/tmp/farm-pwned").unlink(missing_ok=True)
    env = farm_env(redis_url, tmp_path / "cache")
    worker = start_worker("cpu-1")
    client = redis.Redis.from_url(redis_url)
    ok_args = [[{"job_id": "0" * 20}], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    poison = [
        b"\x00\xff garbage bytes, not JSON",
        celery_message(pickle.dumps(((Boom(),), {}, {})), "application/x-python-serialize"),
        celery_message(json.dumps(ok_args).encode(), "application/json"),  # wrong schema
        celery_message(json.dumps(ok_args).encode(), "application/json", task="os.system"),  # unknown task
        celery_message(json.dumps([[{"job_id": "a" * 20, "sweep_id": "x", "time_limit_s": 10,
                                     "job": {"sweep": "x", "workload": "evil_code"}}], {}, {}]).encode(),
                       "application/json"),  # unregistered workload
        celery_message(json.dumps([["x" * 5_000_000], {}, {}]).encode(), "application/json"),  # huge
    ]
    for raw in poison:
        client.lpush("farm.cpu", raw)
    wait_for(lambda: client.llen("farm:rejected") >= len(poison), 60, "every poison message to be refused")
    reasons = [json.loads(r)["reason"] for r in client.lrange("farm:rejected", 0, -1)]
    assert any("not JSON" in r for r in reasons)
    assert any("pickle" in r for r in reasons)
    assert any("evil_code" in r for r in reasons)
    assert worker.proc.poll() is None, worker.text()[-3000:]
    assert not Path("/tmp/farm-pwned").exists()

    # A real job still runs afterwards.
    sweep = tmp_path / "after.yaml"
    sweep.write_text(yaml.safe_dump({"name": "after-poison", "defaults": {"backend": "jax", "data": "synthetic",
                                     "train_samples": 64, "test_samples": 16, "epochs": 1},
                                     "jobs": [{"workload": "fashion_mnist_mlp",
                                               "params": {"hidden_layers": 1, "units": 8}}]}))
    sid = json.loads(run_farm(["submit", str(sweep), "--json", "--allow-unserved"], env).stdout)["sweep_id"]

    def succeeded() -> bool:
        out = json.loads(run_farm(["status", sid, "--json"], env).stdout)
        return out["counts"].get("succeeded") == 1

    wait_for(succeeded, 180, "a real job after the poison")
