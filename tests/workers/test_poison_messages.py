"""Hostile or broken messages pushed straight onto a farm queue: refused with a reason, counted, never executed,
never put back; the worker keeps serving real jobs afterwards, and so does any worker started later."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import pytest
import redis

from tests.helpers import farm_env, run_farm, wait_for, write_sweep

pytestmark = pytest.mark.slow


def celery_message(body: bytes, content_type: str, task: str = "farm.run_job") -> str:
    """A raw message in the form kombu's Redis transport stores it (Celery task protocol 2)."""
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": content_type,
            "headers": {"task": task, "id": "0" * 20, "lang": "py", "argsrepr": "", "kwargsrepr": ""},
            "properties": {
                "delivery_tag": f"tag-{task}-{content_type}",
                "body_encoding": "base64",
                "priority": 0,
                "delivery_info": {"exchange": "", "routing_key": "farm.cpu"},
            },
        }
    )


class Boom:
    """What a pickle exploit does if it is ever unpickled: here, create ``target``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def submit_tiny_job(env: dict[str, str], tmp_path: Path, name: str) -> str:
    sweep = write_sweep(tmp_path, name, samples=64, test_samples=16)
    out = run_farm(["submit", str(sweep), "--json", "--allow-unserved"], env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["sweep_id"]


def wait_succeeded(env: dict[str, str], sid: str, timeout: float = 180) -> dict:
    def succeeded() -> bool:
        return json.loads(run_farm(["status", sid, "--json"], env).stdout)["counts"].get("succeeded") == 1

    wait_for(succeeded, timeout, f"the job of {sid} to succeed")
    return json.loads(run_farm(["status", sid, "--json"], env).stdout)


def test_poison_messages_are_refused_and_the_worker_survives(redis_url: str, start_worker, tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    env = farm_env(redis_url, tmp_path / "cache")
    worker = start_worker("cpu-1")
    client = redis.Redis.from_url(redis_url)
    ok_args = [[{"job_id": "0" * 20}], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    poison = [
        b"\x00\xff garbage bytes, not JSON",
        b"{not JSON either",
        celery_message(pickle.dumps(((Boom(pwned),), {}, {})), "application/x-python-serialize"),
        celery_message(json.dumps(ok_args).encode(), "application/json"),  # wrong schema
        celery_message(json.dumps(ok_args).encode(), "application/json", task="os.system"),  # unknown task
        celery_message(json.dumps(ok_args).encode(), "application/json", task="celery.accumulate"),  # built-in
        celery_message(
            json.dumps(
                [
                    [
                        {
                            "job_id": "a" * 20,
                            "sweep_id": "x",
                            "time_limit_s": 10,
                            "job": {"sweep": "x", "workload": "evil_code"},
                        }
                    ],
                    {},
                    {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
                ]
            ).encode(),
            "application/json",
        ),  # unregistered workload
        celery_message(json.dumps([["x" * 5_000_000], {}, {}]).encode(), "application/json"),  # huge
    ]
    for raw in poison:
        client.lpush("farm.cpu", raw)
    wait_for(
        lambda: int(client.get("farm:rejected:count") or 0) >= len(poison), 60, "every poison message to be refused"
    )
    records = [json.loads(r) for r in client.lrange("farm:rejected", 0, -1)]
    reasons = [r["reason"] for r in records]
    assert any("not UTF-8" in r for r in reasons) and any("not JSON" in r for r in reasons)
    assert any("pickle" in r for r in reasons)
    assert any("evil_code" in r for r in reasons)
    assert any("'celery.accumulate'" in r for r in reasons) and any("'os.system'" in r for r in reasons)
    assert any("bytes, more than" in r for r in reasons)
    assert all(r["queue"] == "farm.cpu" and r["worker"] == "cpu-1" and r["size"] > 0 for r in records)
    assert max(len(r["raw"]) for r in records) <= 2048 * 4  # an escaped excerpt, never the 5 MB
    assert worker.proc.poll() is None, worker.text()[-3000:]
    assert not pwned.exists()
    assert client.llen("farm.cpu") == 0 and client.hlen("unacked") == 0

    # A real job still runs afterwards, and `farm status` shows the total and the latest reason.
    sid = submit_tiny_job(env, tmp_path, "after-poison")
    status = wait_succeeded(env, sid)
    assert status["rejected_messages"] == len(poison)
    assert status["latest_rejection"]["reason"] == reasons[0]
    table = run_farm(["status", sid], env).stdout
    assert f"{len(poison)} message(s) on the queues were refused" in " ".join(table.split())


def test_a_refused_entry_is_not_restored_to_kill_the_next_worker(redis_url: str, start_worker) -> None:
    """``LPUSH farm.cpu '[]'`` used to end the worker (exit code 0, so systemd did not restart it), and a
    message whose task header was a list was put back on the queue at shutdown, ending every worker started
    after it. Now both are refused; the worker stays up, and so does a second one started afterwards."""
    client = redis.Redis.from_url(redis_url)
    first = start_worker("cpu-1")
    task_a_list = json.loads(celery_message(b"[]", "application/json"))
    task_a_list["headers"]["task"] = ["farm.run_job"]
    for raw in (b"[]", json.dumps(task_a_list), b"{}", b"5"):
        client.lpush("farm.cpu", raw)
    wait_for(lambda: int(client.get("farm:rejected:count") or 0) >= 4, 60, "the four entries to be refused")
    assert first.proc.poll() is None, first.text()[-3000:]
    first.stop()
    assert first.proc.returncode == 0  # a requested (SIGTERM) shutdown
    assert client.llen("farm.cpu") == 0 and client.hlen("unacked") == 0  # nothing was restored

    second = start_worker("cpu-2")
    client.lpush("farm.cpu", b"[]")
    wait_for(lambda: int(client.get("farm:rejected:count") or 0) >= 5, 60, "the next entry to be refused")
    assert second.proc.poll() is None, second.text()[-3000:]
    assert "Unrecoverable error" not in first.text() + second.text()
