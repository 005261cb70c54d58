"""`farm submit` interrupted at a random point of a large submit (the submitter killed with SIGTERM or SIGKILL,
or Redis killed with SIGKILL): no job is left `queued` without its message or a recorded debt, and running the
same submit again sends exactly the messages that are missing — each job's message is on a queue once."""

from __future__ import annotations

import functools
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
import yaml

from farm.embedded import EmbeddedRedis
from tests.faults.helpers import Farm
from tests.helpers import REPO, run_farm, wait_for

JOBS, REPEATS = 6, 500  # 3,000 jobs: three publishing rounds of 1,000


def big_sweep(tmp_path: Path, name: str) -> Path:
    spec = {
        "name": name,
        "repeats": REPEATS,
        "defaults": {"backend": "jax", "data": "synthetic", "train_samples": 64, "test_samples": 16, "epochs": 1},
        "jobs": [
            {"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 8 + i}} for i in range(JOBS)
        ],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def start_submit(farm: Farm, sweep: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "submit", str(sweep), "--json", "--allow-unserved"],
        env=farm.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def queued_messages(r: redis.Redis) -> Counter:
    ids: Counter = Counter()
    for key in ("farm.cpu", "farm.gpu"):
        ids.update(json.loads(raw)["headers"]["id"] for raw in r.lrange(key, 0, -1))
    return ids


def check_no_job_stranded(farm: Farm, sid: str) -> dict:
    """Every claimed job has its message on a queue or a debt in the outbox."""
    r = farm.r
    on_queue = queued_messages(r)
    owed = set(r.zrange("farm:outbox", 0, -1))
    counts = {"claimed": 0, "on_queue": 0, "owed": 0, "stranded": 0}
    for job_id in farm.jobs(sid):
        if not r.exists(f"farm:state:{job_id}"):
            continue
        counts["claimed"] += 1
        counts["on_queue"] += int(job_id in on_queue)
        counts["owed"] += int(job_id in owed and job_id not in on_queue)
        counts["stranded"] += int(job_id not in on_queue and job_id not in owed)
    return counts


def interrupt_when_sending(farm: Farm, proc: subprocess.Popen, rng: random.Random, kill) -> None:
    """Wait until the submit is sending, then interrupt it a random moment later."""
    wait_for(
        lambda: farm.r.llen("farm.cpu") > 0 or proc.poll() is not None,
        120,
        "the submit to start sending",
        interval=0.005,
    )
    time.sleep(rng.uniform(0.0, 0.25))
    kill()


def resubmit_and_check(farm: Farm, sweep: Path, sid_hint: str | None = None) -> None:
    out = run_farm(["submit", str(sweep), "--json", "--allow-unserved"], farm.env, timeout=300)
    assert out.returncode == 0, out.stderr
    sid = json.loads(out.stdout)["sweep_id"]
    ids = farm.jobs(sid)
    assert len(ids) == JOBS * REPEATS
    on_queue = queued_messages(farm.r)
    assert set(on_queue) == set(ids) and max(on_queue.values()) == 1, "each job's message on a queue once"
    assert farm.r.zcard("farm:outbox") == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_submitter_strands_nothing(farm: Farm, tmp_path: Path, sig: int) -> None:
    rng = random.Random(sig * 7919)  # noqa: S311  (reproducible moments, nothing secret)
    for trial in range(3):
        farm.r.flushdb()
        sweep = big_sweep(tmp_path, f"killed-{sig}-{trial}")
        proc = start_submit(farm, sweep)
        interrupt_when_sending(farm, proc, rng, functools.partial(proc.send_signal, sig))
        proc.wait(60)
        sids = farm.r.zrange("farm:sweeps", 0, -1)
        if sids:
            counts = check_no_job_stranded(farm, sids[0])
            assert counts["stranded"] == 0, (trial, counts)
        resubmit_and_check(farm, sweep)


def test_redis_killed_mid_submit_strands_nothing(redis_server: EmbeddedRedis, farm: Farm, tmp_path: Path) -> None:
    rng = random.Random(20261201)  # noqa: S311  (reproducible moments, nothing secret)
    for trial in range(3):
        farm.r.flushdb()
        sweep = big_sweep(tmp_path, f"redis-killed-{trial}")
        proc = start_submit(farm, sweep)
        interrupt_when_sending(farm, proc, rng, redis_server.kill)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0 or not err.strip()
        if proc.returncode:
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err  # one clear line
        redis_server.start()  # the append-only file is replayed
        farm.r = redis.Redis.from_url(redis_server.url, decode_responses=True)
        sids = farm.r.zrange("farm:sweeps", 0, -1)
        if sids:
            assert check_no_job_stranded(farm, sids[0])["stranded"] == 0
        resubmit_and_check(farm, sweep)


def test_the_reaper_pays_an_interrupted_submit_without_a_resubmit(
    farm: Farm, start_worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody submits again: a worker's housekeeping sends the owed messages after the outbox's grace."""
    from farm import defaults
    from farm.ledger import Ledger
    from farm.store import Store
    from farm.sweep import load_sweep

    sweep = load_sweep(big_sweep(tmp_path, "owed"))
    envelopes = sweep.envelopes()[:5]
    store = Store(farm.r)
    store.save_sweep(sweep.sweep_id, {"name": "owed"}, envelopes)
    claimed = Ledger(store).claim([(e.job_id, "farm.cpu") for e in envelopes])  # claimed, then "killed"
    assert len(claimed) == 5 and not farm.r.llen("farm.cpu")
    farm.r.zadd("farm:outbox", {j: time.time() - defaults.OUTBOX_GRACE_S - 1 for j in claimed})
    start_worker("payer", FARM_LEASE_TTL_S="4", FARM_HEARTBEAT_S="1", FARM_REAP_INTERVAL_S="1")
    wait_for(lambda: all(farm.result(j) for j in claimed), 300, "the owed jobs to run")
    assert farm.r.zcard("farm:outbox") == 0
