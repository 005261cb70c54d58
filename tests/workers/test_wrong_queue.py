"""A valid job message on a queue that is not its own is refused, recorded, and sent again to its own queue
(issue #24 item 9): someone with Redis access moved a ``requires.host`` job's message to another queue and it ran
on the wrong host; a GPU job's moved to ``farm.cpu`` ran there and was recorded failed for good.

The mover is assumed careful: the message's routing key is rewritten to the queue it now sits on, so only the
job itself says where it belongs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from farm.embedded import EmbeddedRedis
from farm.job import JobEnvelope, JobSpec
from farm.queue import job_queue, make_app, publish
from farm.settings import FarmSettings
from tests.helpers import farm_env, run_farm, throwaway_redis, wait_for, write_sweep
from workers import intake

BASE: dict[str, Any] = {
    "sweep": "moved",
    "workload": "fashion_mnist_mlp",
    "params": {"hidden_layers": 1, "units": 8},
    "backend": "jax",
    "data": "synthetic",
    "train_samples": 64,
    "test_samples": 16,
}
JOBS = {
    "cpu": {},
    "cpu-host": {"requires": {"host": "lab9"}},
    "gpu": {"device": "gpu"},
    "gpu-h100": {"device": "gpu", "requires": {"gpu_model": "H100", "min_gpu_memory_gb": 80.0}},
    "gpu-host": {"device": "gpu", "requires": {"host": "lab3"}},
    "cpu-tensorflow": {"backend": "tensorflow"},  # the default backend's queue: farm.cpu, the JAX jobs' farm.cpu.be-jax
    "gpu-tensorflow": {"device": "gpu", "backend": "tensorflow"},
}


def envelopes() -> list[JobEnvelope]:
    return [JobEnvelope.for_job(JobSpec(**{**BASE, **extra}), "moved-1") for extra in JOBS.values()]


@pytest.fixture(scope="module")
def raws() -> Iterator[dict[str, bytes]]:
    """Each job's message exactly as the farm's own publish leaves it on its queue."""
    with throwaway_redis() as server:
        envs = envelopes()
        client = redis.Redis.from_url(server.url)
        app = make_app(FarmSettings(broker_url=server.url), {job_queue(e.job) for e in envs})
        publish(app, envs, {})
        found = {}
        for env in envs:
            [raw] = [r for r in client.lrange(job_queue(env.job), 0, -1) if env.job_id.encode() in r]
            found[env.job_id] = raw
        client.close()
        yield found


def moved(raw: bytes, queue: str) -> bytes:
    """The message as a careful mover leaves it on ``queue``: its routing key says that queue."""
    message = json.loads(raw)
    message["properties"]["delivery_info"]["routing_key"] = queue
    return json.dumps(message).encode()


def test_a_message_is_admitted_on_its_own_queue_only(raws: dict[str, bytes]) -> None:
    """Every job against every other job's queue (and a queue of another farm's prefix): only its own passes."""
    envs = envelopes()
    queues = sorted({job_queue(e.job) for e in envs} | {"farm.gpu.model-a100", "farm.cpu.host-lab3"})
    for env in envs:
        own = job_queue(env.job)
        for queue in queues:
            raw = moved(raws[env.job_id], queue)
            if queue == own:
                assert intake.admit(raw, queue)["headers"]["id"] == env.job_id
                continue
            with pytest.raises(intake.Refused) as refused:
                intake.admit(raw, queue)
            assert f"belongs on {own!r}, not on {queue!r}" in str(refused.value), str(refused.value)
        # a farm with another key prefix: its own name for the same job's queue, and only that one
        other = job_queue(env.job, "lab2")
        assert intake.admit(moved(raws[env.job_id], other), other, "lab2")
        with pytest.raises(intake.Refused):
            intake.admit(moved(raws[env.job_id], own), own, "lab2")


@pytest.mark.slow  # a real worker and its reaper
def test_a_moved_gpu_job_is_refused_by_a_cpu_worker_and_sent_back(
    redis_server: EmbeddedRedis, start_worker, tmp_path
) -> None:
    """The refused job is neither run nor failed: it stays queued in the ledger, in flight and on no queue, and
    the reaper's resend_vanished sends it again to its own queue once the outbox's grace has passed."""
    from farm.store import Store
    from farm.sweep import load_sweep

    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    store = Store(r)
    sweep_file = write_sweep(tmp_path, "moved", samples=64, device="gpu")
    out = run_farm(["submit", str(sweep_file), "--allow-unserved", "--json"], farm_env(redis_server.url, tmp_path))
    assert out.returncode == 0, out.stderr
    [job_id] = [e.job_id for e in load_sweep(sweep_file).envelopes()]
    [raw] = r.lrange("farm.gpu.be-jax", 0, -1)
    r.delete("farm.gpu.be-jax")
    r.lpush("farm.cpu.be-jax", moved(raw.encode(), "farm.cpu.be-jax").decode())
    start_worker("cpu-1", FARM_LEASE_TTL_S="4", FARM_HEARTBEAT_S="1", FARM_REAP_INTERVAL_S="1")
    wait_for(lambda: int(r.get("farm:rejected:count") or 0) >= 1, 120, "the moved message to be refused")
    assert (
        "belongs on 'farm.gpu.be-jax', not on 'farm.cpu.be-jax'" in json.loads(r.lindex("farm:rejected", 0))["reason"]
    )
    assert store.state(job_id)["state"] == "queued" and not store.has_result(job_id)
    assert r.zscore("farm:inflight", job_id) is not None  # in flight: the reaper will look for it
    r.zadd("farm:inflight", {job_id: time.time() - 3600}, xx=True)  # as if the outbox's grace had passed
    wait_for(lambda: r.llen("farm.gpu.be-jax") == 1, 120, "the reaper to send the job again to its own queue")
    assert json.loads(r.lindex("farm.gpu.be-jax", 0))["headers"]["id"] == job_id
    assert not store.has_result(job_id) and r.llen("farm.cpu.be-jax") == 0


def test_the_executor_sends_a_job_that_does_not_fit_to_its_own_queue(redis_url: str) -> None:
    """The second line, past the intake: a CPU worker handed a GPU job (or a job for another host) neither runs
    it nor fails it; the job goes to its own queue, still queued."""
    from farm.ledger import Ledger, Outcome
    from farm.store import Store
    from workers.execute import JobExecutor

    store = Store(redis.Redis.from_url(redis_url, decode_responses=True))
    settings = FarmSettings(broker_url=redis_url)
    cpu, cpu_host, gpu, *_ = envelopes()
    for env in (cpu_host, gpu):
        store.save_sweep(env.sweep_id, {"name": "moved"}, [env])
        Ledger(store).claim([(env.job_id, job_queue(env.job))])
        executor = JobExecutor(store, settings, "cpu-1", app=make_app(settings, [job_queue(cpu.job)]))
        assert executor.misfit(env) and not executor.misfit(cpu)
        assert executor.handle(env.model_dump(mode="json")) == Outcome.handed_back.value
        [raw] = store.r.lrange(job_queue(env.job), 0, -1)
        assert json.loads(raw)["headers"]["id"] == env.job_id
        assert store.state(env.job_id)["state"] == "queued" and not store.has_result(env.job_id)
