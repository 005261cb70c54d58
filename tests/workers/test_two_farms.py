"""Two farms on one Redis, told apart by their key prefix (issue #24 item 6): each has its own queues, bindings,
unacknowledged deliveries and control exchange, so neither takes (and drops) the other's messages. The default
farm's names stay what they always were."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from farm import defaults
from farm.job import JobEnvelope
from farm.ledger import Ledger
from farm.queue import is_farm_queue, job_queue, make_app, tag_queue
from farm.settings import FarmSettings
from farm.store import Store
from farm.sweep import load_sweep
from tests.helpers import WorkerProcess, farm_env, run_farm, wait_for, write_sweep
from workers.plans import plan_workers

OTHER = "lab-b"
"""The second farm's key prefix."""


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()


def test_the_default_farm_keeps_its_names() -> None:
    settings = FarmSettings(broker_url="redis://localhost:1/0")
    conf = make_app(settings, ["farm.cpu"]).conf
    assert settings.key_prefix == defaults.KEY_PREFIX and tag_queue("cpu") == "farm.cpu"
    assert conf.control_exchange == "celery"
    assert conf.broker_transport_options["unacked_key"] == "unacked"
    assert conf.broker_transport_options["unacked_index_key"] == "unacked_index"
    assert [p.queues for p in plan_workers([], host="lab3")] == [["farm.cpu", "farm.cpu.host-lab3"]]


def test_another_prefix_names_everything_of_its_own() -> None:
    settings = FarmSettings(broker_url="redis://localhost:1/0", key_prefix=OTHER)
    conf = make_app(settings, [tag_queue("cpu", OTHER)]).conf
    assert conf.task_default_queue == "lab-b.cpu"
    assert conf.control_exchange == "lab-b.celery"
    options = conf.broker_transport_options
    assert {options[k] for k in ("unacked_key", "unacked_index_key", "unacked_mutex_key")} == {
        "lab-b.unacked",
        "lab-b.unacked_index",
        "lab-b.unacked_mutex",
    }
    (plan,) = plan_workers([], host="lab3", key_prefix=OTHER)
    assert plan.queues == ["lab-b.cpu", "lab-b.cpu.host-lab3"]


@pytest.mark.parametrize(
    ("name", "prefix", "mine"),
    [
        ("farm.cpu", "farm", True),
        ("farm.gpu.model-h100.mem-80.host-lab3", "farm", True),
        ("farm.cpu.wl-tiny_cnn", "farm", True),
        ("farm.gpu.host-lab3.be-jax.wl-tiny_cnn", "farm", True),
        ("lab-b.cpu", "farm", False),
        ("farm.x.cpu", "farm", False),  # the queue of a farm prefixed "farm.x", not of "farm"
        ("farm.cpu.cpu", "farm", False),  # of a farm prefixed "farm.cpu"
        ("farm.x.cpu", "farm.x", True),
        ("farm.cpu", "lab-b", False),
        ("farm.unacked", "farm", False),
    ],
)
def test_a_farm_knows_its_queues_from_any_other(name: str, prefix: str, mine: bool) -> None:
    assert is_farm_queue(name, prefix) is mine


def envelopes(tmp_path: Path, name: str, jobs: int) -> list[JobEnvelope]:
    return load_sweep(write_sweep(tmp_path, name, jobs=jobs)).envelopes()


def test_a_delivery_is_counted_and_restored_by_its_own_farm(
    client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    """The same sweep submitted to both farms (the same job ids): a message of one farm delivered and not yet
    acknowledged sits in that farm's own ``unacked`` hash; the other farm counts neither its queued nor its
    delivered messages as its own."""
    envs = envelopes(tmp_path, "both", 2)
    farms = {p: Store(client, p) for p in (defaults.KEY_PREFIX, OTHER)}
    apps = {}
    for prefix, store in farms.items():
        ledger = Ledger(store)
        ledger.claim([(e.job_id, job_queue(e.job, prefix)) for e in envs])
        apps[prefix] = make_app(FarmSettings(broker_url=redis_url, key_prefix=prefix), [job_queue(envs[0].job, prefix)])
        ledger.send(apps[prefix], envs[:1] if prefix == OTHER else envs)
    assert client.llen("farm.cpu.be-jax") == 2 and client.llen("lab-b.cpu.be-jax") == 1  # JAX jobs

    with apps[OTHER].connection_for_read() as conn:
        queue = conn.SimpleQueue("lab-b.cpu.be-jax")
        message = queue.get(timeout=5)  # delivered, not acknowledged: kombu notes it in the farm's unacked hash
        assert message.headers["id"] == envs[0].job_id
        assert client.hlen("lab-b.unacked") == 1 and not client.exists("unacked")
        assert Ledger(farms[OTHER]).pending_messages(include_unacked=True) == {envs[0].job_id}
        assert Ledger(farms[OTHER]).pending_messages(include_unacked=False) == set()
        assert Ledger(farms["farm"]).pending_messages(include_unacked=True) == {e.job_id for e in envs}
        # `farm cancel` of the default farm takes only its own messages off the queues
        assert Ledger(farms["farm"]).withdraw_messages([envs[0].job_id]) == 1
        message.requeue()
        queue.close()
    assert client.llen("lab-b.cpu.be-jax") == 1 and client.llen("farm.cpu.be-jax") == 1


@pytest.mark.slow
def test_two_farms_on_one_redis_run_every_job_of_both(redis_url: str, tmp_path: Path, client: redis.Redis) -> None:
    """A worker of each farm on the same machine, both serving CPU jobs: each runs exactly its own farm's jobs
    (it never even receives the other's, which it would drop as belonging to no sweep), and every job of both
    finishes."""
    started: list[WorkerProcess] = []
    envs: dict[str, dict[str, str]] = {}
    try:
        for prefix, name in ((defaults.KEY_PREFIX, "wa"), (OTHER, "wb")):
            cache = tmp_path / f"cache-{prefix}"
            cache.mkdir()
            envs[prefix] = farm_env(redis_url, cache, FARM_KEY_PREFIX=prefix)
            started.append(WorkerProcess(name, envs[prefix], tmp_path / f"{name}.log", []))
        for w in started:
            w.wait_registered(redis_url)
        ids: dict[str, list[str]] = {}
        for prefix in envs:
            sweep = write_sweep(tmp_path, f"s-{prefix}", jobs=3, units=8 if prefix == OTHER else 20)
            sub = run_farm(["submit", str(sweep), "--json"], envs[prefix])  # each sees its own worker serve it
            assert sub.returncode == 0, sub.stderr
            sid = json.loads(sub.stdout)["sweep_id"]
            ids[prefix] = client.lrange(f"{prefix}:sweep:{sid}:jobs", 0, -1)
            assert len(ids[prefix]) == 3

        def all_done() -> bool:
            return all(client.exists(f"{p}:result:{j}") for p, js in ids.items() for j in js)

        wait_for(all_done, 300, "every job of both farms", interval=1)
        for (prefix, own), worker, other in zip(ids.items(), started, reversed(started), strict=True):
            for job_id in own:
                result = json.loads(client.get(f"{prefix}:result:{job_id}"))
                assert result["status"] == "succeeded" and result["worker"] == worker.name, result
                assert job_id not in other.text(), f"{other.name} received a job of the farm {prefix}"
            assert Store(client, prefix).rejections() == (0, None)
        workers = {
            p: [w["name"] for w in json.loads(run_farm(["workers", "--json"], e).stdout)] for p, e in envs.items()
        }
        assert workers == {"farm": ["wa"], OTHER: ["wb"]}
    finally:
        for w in started:
            w.stop()
