"""Hosts whose clocks disagree (issue #24 item 5): every moment one host writes and another compares with its own
"now" is on the Redis server's clock, so a worker or submitter minutes or hours off is seen as it is.

The skewed host is a store whose local clock is off (``Store(local_clock=...)``, what ``farm.clock`` reads); the
reader is this process with the true clock, through the real ``farm`` commands. A real worker process whose whole
clock is off is in ``test_a_worker_an_hour_behind_is_live_and_its_heartbeats_are_fresh``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import Result

from farm.job import JobEnvelope
from farm.ledger import Ledger
from farm.queue import make_app
from farm.result import JobStatus
from farm.settings import FarmSettings
from farm.store import Store
from farm.sweep import load_sweep
from tests.helpers import farm_env, run_farm, wait_for, write_sweep

SKEWS = [-3600.0, -60.0, 60.0, 3600.0]
"""How far off the other host's clock is: a minute and an hour, behind and ahead."""


def skewed(skew: float) -> Callable[[], float]:
    return lambda: time.time() + skew


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    yield r
    r.close()


def server_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def cpu_envelopes(tmp_path: Path, jobs: int = 1) -> tuple[str, list[JobEnvelope]]:
    sweep = load_sweep(write_sweep(tmp_path, "skew", jobs=jobs))
    return sweep.sweep_id, sweep.envelopes()


@pytest.mark.parametrize("skew", SKEWS)
def test_the_server_clock_reads_the_same_on_every_host(client: redis.Redis, skew: float) -> None:
    store = Store(client, local_clock=skewed(skew))
    assert abs(store.now() - server_now(client)) < 5
    assert abs(store.clock.offset + skew) < 5  # the offset absorbs the host's error


@pytest.mark.parametrize("skew", SKEWS)
def test_a_skewed_worker_is_live_and_a_dead_one_is_not(client: redis.Redis, skew: float) -> None:
    worker = Store(client, local_clock=skewed(skew))
    worker.register_worker("alive", {"name": "alive", "queues": ["farm.cpu.be-jax"]}, ttl_s=30)
    worker.register_worker("dying", {"name": "dying", "queues": ["farm.cpu.be-jax"]}, ttl_s=0.2)
    reader = Store(client)
    assert {w["name"] for w in reader.live_workers()} == {"alive", "dying"}
    entry = next(w for w in reader.live_workers() if w["name"] == "alive")
    assert abs(entry["heartbeat_at"] - server_now(client)) < 5
    time.sleep(0.4)  # past the dying worker's entry (it expires on the server): not a duration under test
    assert [w["name"] for w in reader.live_workers()] == ["alive"]


@pytest.mark.parametrize("skew", SKEWS)
def test_a_skewed_submitters_debts_are_paid_after_the_grace_not_before(
    client: redis.Redis, tmp_path: Path, skew: float
) -> None:
    """The outbox is scored by the submitter and read by a reaper elsewhere: a submitter behind must not have its
    debts paid at once (sent twice), one ahead must not have them wait an hour."""
    _, envs = cpu_envelopes(tmp_path)
    submitter = Ledger(Store(client, local_clock=skewed(skew)))
    assert submitter.claim([(envs[0].job_id, "farm.cpu.be-jax")]) == {envs[0].job_id}
    reaper = Ledger(Store(client))
    assert reaper.debts(older_than_s=30) == []
    time.sleep(0.4)
    assert reaper.debts(older_than_s=0.2) == [envs[0].job_id]


@pytest.mark.parametrize("skew", [-3600.0, 3600.0])
def test_messages_in_flight_are_stamped_on_the_server_clock(
    client: redis.Redis, redis_url: str, tmp_path: Path, skew: float
) -> None:
    store = Store(client, local_clock=skewed(skew))
    sid, envs = cpu_envelopes(tmp_path)
    store.save_sweep(sid, {"name": "skew"}, envs)
    ledger = Ledger(store)
    ledger.claim([(envs[0].job_id, "farm.cpu.be-jax")])
    ledger.send(make_app(FarmSettings(broker_url=redis_url), ["farm.cpu.be-jax"]), envs)
    sent_at = client.zscore(store.k("inflight"), envs[0].job_id)
    assert sent_at is not None and abs(sent_at - server_now(client)) < 5
    assert Ledger(Store(client)).resend_vanished(make_app(FarmSettings(broker_url=redis_url)), older_than_s=30) == []
    manifest = Store(client).sweep_manifest(sid)
    assert manifest is not None
    assert abs(client.zscore(store.k("sweeps"), sid) - server_now(client)) < 5


# -- the commands that read what a skewed worker wrote --------------------------------------------------------------


def running_job(client: redis.Redis, tmp_path: Path, skew: float, heartbeat_age_s: float = 0.0) -> str:
    """A sweep of one job that a worker whose clock is ``skew`` off is running, its last heartbeat
    ``heartbeat_age_s`` ago (by that worker's reckoning, which is the server's)."""
    worker = Store(client, local_clock=skewed(skew))
    sid, envs = cpu_envelopes(tmp_path)
    worker.save_sweep(sid, {"name": "skew", "submitted_at": worker.now()}, envs)
    worker.register_worker(
        "w-skewed", {"name": "w-skewed", "queues": ["farm.cpu.be-jax"], "host": "elsewhere"}, ttl_s=60
    )
    worker.set_state(envs[0].job_id, JobStatus.running, worker="w-skewed", queue="farm.cpu.be-jax")
    worker.update_progress(envs[0].job_id, heartbeat_at=worker.now() - heartbeat_age_s)
    return sid


@pytest.mark.parametrize("skew", SKEWS)
def test_workers_submit_and_status_see_a_skewed_worker_as_it_is(
    invoke: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    client: redis.Redis,
    tmp_path: Path,
    skew: float,
) -> None:
    monkeypatch.setenv("FARM_BROKER_URL", redis_url)
    sid = running_job(client, tmp_path, skew)

    listed = invoke("workers", "--json")
    assert listed.exit_code == 0, listed.output
    assert [w["name"] for w in json.loads(listed.output)] == ["w-skewed"]
    table = invoke("workers")
    assert "1 live worker(s)" in table.output and "w-skewed" in table.output
    assert "3600 s ago" not in table.output and "-3600 s ago" not in table.output

    # submit's check of live workers: the skewed worker serves farm.cpu.be-jax, so nothing is refused as unserved
    other = write_sweep(tmp_path, "more", jobs=2, units=40)
    sub = invoke("submit", str(other), "--json")
    assert sub.exit_code == 0, sub.output
    assert json.loads(sub.output)["enqueued"] == 2

    st = json.loads(invoke("status", sid, "--json").output)
    assert st["live_workers"] == 1 and st["unserved_queues"] == {}
    (job,) = st["jobs"]
    assert job["state"] == "running" and job["heartbeat_age_s"] is not None and abs(job["heartbeat_age_s"]) < 10
    text = invoke("status", sid)
    assert text.exit_code == 0 and "no heartbeat" not in text.output and "no live worker" not in text.output


def test_status_ages_heartbeats_by_the_configured_heartbeat(
    invoke: Callable[..., Result],
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    client: redis.Redis,
    tmp_path: Path,
) -> None:
    """A farm configured with a 20 s heartbeat is not late 30 s after one (issue #25): stale is three of the farm's
    heartbeats, not three of the default's."""
    monkeypatch.setenv("FARM_BROKER_URL", redis_url)
    sid = running_job(client, tmp_path, -60.0, heartbeat_age_s=30)
    assert "no heartbeat for 3" in invoke("status", sid).output  # the default 5 s heartbeat: 15 s is stale
    monkeypatch.setenv("FARM_LEASE_TTL_S", "60")  # the settings want a lease of three heartbeats at least
    monkeypatch.setenv("FARM_REAP_INTERVAL_S", "20")  # and a reaper no more often than the heartbeat
    monkeypatch.setenv("FARM_HEARTBEAT_S", "20")
    quiet = invoke("status", sid)
    assert quiet.exit_code == 0 and "no heartbeat" not in quiet.output
    monkeypatch.setenv("FARM_HEARTBEAT_S", "8")
    assert "no heartbeat for 3" in invoke("status", sid).output


# -- a real worker process whose clock is an hour behind ------------------------------------------------------------


SITECUSTOMIZE = """
import time as _time

_real = _time.time
_time.time = lambda: _real() + {skew!r}  # this process's whole clock, as on a host that is {skew} s off
"""


@pytest.mark.slow
def test_a_worker_an_hour_behind_is_live_and_its_heartbeats_are_fresh(
    redis_url: str, client: redis.Redis, tmp_path: Path, start_worker: Callable[..., object]
) -> None:
    """The worker process's ``time.time`` is an hour behind (a ``sitecustomize`` on its PYTHONPATH, nothing in
    the farm's code): ``farm workers`` lists it, ``farm submit`` finds it serves the jobs, its jobs run, and the
    heartbeats and the registry entry it wrote read as fresh on the true clock."""
    skew = -3600.0
    hook = tmp_path / "skewed_clock"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE.format(skew=skew))
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    start_worker("behind", PYTHONPATH=path, FARM_HEARTBEAT_S="1")

    env = farm_env(redis_url, tmp_path / "cache")
    listed = run_farm(["workers", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["name"] == "behind" and abs(entry["heartbeat_at"] - server_now(client)) < 600

    sub = run_farm(["submit", str(write_sweep(tmp_path, "behind", jobs=2)), "--json"], env)  # no --allow-unserved
    assert sub.returncode == 0, sub.stderr
    sid = json.loads(sub.stdout)["sweep_id"]
    ids = client.lrange(f"farm:sweep:{sid}:jobs", 0, -1)
    wait_for(lambda: all(client.exists(f"farm:result:{j}") for j in ids), 300, "the skewed worker's jobs")
    for job_id in ids:
        state = client.hgetall(f"farm:state:{job_id}")
        assert state["state"] == "succeeded", state
        assert abs(float(state["heartbeat_at"]) - server_now(client)) < 600, state
    st = run_farm(["status", sid, "--json"], env)
    assert st.returncode == 0 and json.loads(st.stdout)["counts"] == {"succeeded": 2}
