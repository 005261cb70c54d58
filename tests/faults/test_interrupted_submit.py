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
from tests.helpers import REPO, run_farm, run_farm_together, wait_for

JOBS, REPEATS = 6, 500  # 3,000 jobs: three publishing rounds of 1,000


def big_sweep(tmp_path: Path, name: str, repeats: int = REPEATS) -> Path:
    spec = {
        "name": name,
        "repeats": repeats,
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
    for key in ("farm.cpu.be-jax", "farm.gpu.be-jax"):
        ids.update(json.loads(raw)["headers"]["id"] for raw in r.lrange(key, 0, -1))
    return ids


def check_no_job_stranded(farm: Farm, sid: str) -> dict:
    """Every claimed job has its message on a queue or a debt in the outbox."""
    r = farm.r
    on_queue = queued_messages(r)
    owed = set(r.zrange("farm:outbox", 0, -1))
    counts = {"claimed": 0, "on_queue": 0, "owed": 0, "stranded": 0}
    for job_id in farm.jobs(sid):
        if not farm.state(job_id):  # never claimed
            continue
        counts["claimed"] += 1
        counts["on_queue"] += int(job_id in on_queue)
        counts["owed"] += int(job_id in owed and job_id not in on_queue)
        counts["stranded"] += int(job_id not in on_queue and job_id not in owed)
    return counts


def interrupt_when_sending(farm: Farm, proc: subprocess.Popen, rng: random.Random, kill) -> None:
    """Wait until the submit is sending, then interrupt it a random moment later."""
    wait_for(
        lambda: farm.r.llen("farm.cpu.be-jax") > 0 or proc.poll() is not None,
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
    claimed = Ledger(store).claim([(e.job_id, "farm.cpu.be-jax") for e in envelopes])  # claimed, then "killed"
    assert len(claimed) == 5 and not farm.r.llen("farm.cpu.be-jax")
    farm.r.zadd("farm:outbox", {j: time.time() - defaults.OUTBOX_GRACE_S - 1 for j in claimed})
    start_worker("payer", FARM_LEASE_TTL_S="4", FARM_HEARTBEAT_S="1", FARM_REAP_INTERVAL_S="1")
    wait_for(lambda: all(farm.result(j) for j in claimed), 300, "the owed jobs to run")
    assert farm.r.zcard("farm:outbox") == 0


# -- two identical submits at once, and a submit stopped by a signal (#24 item 9) ----------------------------------


def test_two_identical_submits_at_once_send_each_message_once(farm: Farm, tmp_path: Path) -> None:
    """No worker: every message stays on its queue, so LLEN counts exactly what was sent. Before the debts were
    each one payer's, the submit that lost the claims paid the winner's debts while the winner was publishing
    them (21,000 messages for 20,000 jobs)."""
    for trial in range(4):
        farm.r.flushdb()
        sweep = big_sweep(tmp_path, f"twice-{trial}", repeats=50)  # 300 jobs: one claiming round each
        args = ["submit", str(sweep), "--json", "--allow-unserved"]
        done = run_farm_together({"a": (args, farm.env), "b": (args, farm.env)}, timeout=300)
        assert all(out.returncode == 0 for out in done.values()), {k: v.stderr for k, v in done.items()}
        sent = [json.loads(out.stdout)["enqueued"] for out in done.values()]
        on_queue = queued_messages(farm.r)
        assert sum(farm.r.llen(q) for q in ("farm.cpu.be-jax", "farm.gpu.be-jax")) == JOBS * 50, (trial, sent)
        assert max(on_queue.values()) == 1 and sum(sent) == JOBS * 50, (trial, sent)
        assert farm.r.zcard("farm:outbox") == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signalled_submit_says_to_run_it_again(farm: Farm, tmp_path: Path, sig: int) -> None:
    """SIGINT or SIGTERM while sending: one line saying to run the same submit again, exit 128 + signal; what it
    claimed and did not send is given back at once (the re-run does not wait for it), and `farm status` calls
    the jobs it never claimed interrupted; the re-run sends exactly the missing messages."""
    sweep = big_sweep(tmp_path, f"signalled-{sig}")
    proc = start_submit(farm, sweep)
    interrupt_when_sending(farm, proc, random.Random(sig), functools.partial(proc.send_signal, sig))  # noqa: S311
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the submit finished before the signal came")
    assert proc.returncode == 128 + sig, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted" in lines[0] and "run the same submit again" in lines[0], err
    assert farm.r.zcard("farm:paying") == 0  # nothing left for the re-run to wait for
    sid = farm.r.zrange("farm:sweeps", 0, -1)[0]
    status = farm.cli("status", sid)
    if status["counts"].get("not_enqueued"):
        assert status["interrupted"] is True
        shown = run_farm(["status", sid], farm.env)
        assert "interrupted: run the same submit again" in shown.stdout, shown.stdout
    resubmit_and_check(farm, sweep)
    assert farm.cli("status", sid)["interrupted"] is False


def test_a_submit_killed_before_its_claims_is_called_interrupted(farm: Farm, tmp_path: Path) -> None:
    """Killed between recording the sweep and claiming its jobs (as a SIGKILL leaves it): `farm status` says to
    run the same submit again, not "no device for them here", which stays for jobs `farm run` leaves out."""
    from farm.ledger import Ledger
    from farm.store import Store
    from farm.sweep import load_sweep

    sweep = load_sweep(big_sweep(tmp_path, "killed-early", repeats=2))
    store = Store(farm.r)
    Ledger(store).begin_submit(sweep.sweep_id)
    store.save_sweep(sweep.sweep_id, {"name": "killed-early"}, sweep.envelopes())  # ... then SIGKILL
    shown = run_farm(["status", sweep.sweep_id], farm.env)
    assert shown.returncode == 0, shown.stderr
    assert "interrupted: run the same submit again" in shown.stdout and "no device" not in shown.stdout
    resubmit = run_farm(["submit", str(tmp_path / "killed-early.yaml"), "--allow-unserved"], farm.env)
    assert resubmit.returncode == 0, resubmit.stderr
    assert sum(queued_messages(farm.r).values()) == JOBS * 2
    assert "interrupted" not in run_farm(["status", sweep.sweep_id], farm.env).stdout


def test_jobs_left_out_on_purpose_are_not_called_interrupted(farm: Farm, tmp_path: Path) -> None:
    from farm.settings import load_settings
    from farm.store import Store
    from farm.submit import submit
    from farm.sweep import load_sweep

    sweep = load_sweep(big_sweep(tmp_path, "left-out", repeats=2))
    outcome = submit(sweep, load_settings(broker_url=farm.url), store=Store(farm.r), accept=lambda q: False)
    assert outcome.skipped == JOBS * 2
    shown = run_farm(["status", sweep.sweep_id], farm.env)
    assert "no device for them here" in shown.stdout and "interrupted" not in shown.stdout, shown.stdout
