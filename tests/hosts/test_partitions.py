"""Faults between hosts: a worker host cut off mid-job, a worker host that cannot reach Redis at start, the
submitter cut off mid-submit, and the Redis host gone for longer than a lease.

Each test starts from a reset lab (no farm process, every link up, Redis empty). Leases are short (4 s, a
heartbeat a second). Times are measured and written out, never asserted: they depend on the machine's load.
"""

from __future__ import annotations

import json
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.faults.helpers import Farm
from tests.helpers import wait_for, write_sweep
from tests.hosts.lab import FAST, HostSpec, Lab
from tests.hosts.partition import REGIMES, run_partition, write_timings

LAB_WORKERS = [HostSpec("lab-w1"), HostSpec("lab-w2"), HostSpec("lab-w3")]
LEASE_S = float(FAST["FARM_LEASE_TTL_S"])


@pytest.fixture
def farm(lab: Lab, tmp_path: Path) -> Farm:
    """A reset lab, and a reader of its ledger through Redis' local unix socket (not the lab's network)."""
    lab.reset()
    assert lab.redis is not None
    return Farm(lab.redis.local_url, tmp_path)


@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_cut_off_worker_is_fenced_and_its_job_runs_elsewhere(lab: Lab, tmp_path: Path, regime: str) -> None:
    """The host running a job loses its link past the lease: the job runs on the other host; a result written
    with the cut-off run's generation is refused; when the link comes back the cut-off worker's renewal is
    refused (the job's generation moved on), its training process is gone (stopped by its worker, or by itself
    when the keep-alives stopped) and it records nothing; the ledger holds one result and no overlapping runs.
    The timings go to partition_timings.json."""
    run = run_partition(lab, tmp_path, regime=regime)
    timings = tmp_path / "partition_timings.json"
    write_timings(timings, [run])
    print(f"\npartition timings ({timings}):", json.dumps(run.timings()))

    assert run.rightful != run.victim
    assert run.late_result_refused, "a result carrying the cut-off run's generation was written"
    assert run.result["status"] == "succeeded", run.result.get("error")
    assert run.result["worker"] == f"cpu@{run.rightful}" and run.result["host"] == run.rightful
    assert run.ledger == {"jobs": 1, "recorded": 1, "lost": 0, "recorded_twice": 0, "concurrent_runs": 0}
    # The cut-off run was put back by the reaper (lost), then given up by its own worker once it heard (a newer
    # generation held the job): never recorded.
    stale = [r for r in run.runs if r["worker"] == f"cpu@{run.victim}" and r["event"] == "end"]
    assert {r["ended"] for r in stale} == {"lost", "lease_lost"}, run.runs
    starts = [r for r in run.runs if r["event"] == "start"]
    assert [r["worker"] for r in starts] == [f"cpu@{run.victim}", f"cpu@{run.rightful}"]
    assert starts[1]["generation"] > starts[0]["generation"]
    victim = next(p for p in lab.procs if p.what == "worker" and p.host.name == run.victim)
    wait_for(lambda: "this run is abandoned" in victim.text(), 60, "the cut-off worker to say it gave the run up")
    # It goes on serving: alive, back in the registry.
    assert victim.alive(), victim.text()[-3000:]
    lab.wait_registered([f"cpu@{run.victim}"], timeout=60)


def test_worker_that_cannot_reach_redis_at_start_waits_with_backoff(lab: Lab, farm: Farm, tmp_path: Path) -> None:
    """A worker host whose network is down when ``farm worker`` starts: one clear line per try (the password
    masked), waits that grow, no exit (no crash loop); once the link is up it registers and serves."""
    assert lab.redis is not None
    lab.cut("lab-w3")
    worker = lab.start_worker("lab-w3")
    tries = re.compile(r"cannot reach Redis at (\S+).*\(try (\d+); trying again in ([\d.]+) s\)")

    def waits() -> list[float]:
        return [float(m.group(3)) for m in tries.finditer(worker.text())]

    wait_for(lambda: len(waits()) >= 3 or not worker.alive(), 90, "three tries to reach Redis", interval=0.2)
    text = worker.text()
    assert worker.alive(), text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    seen = waits()
    assert len(seen) >= 3 and seen[2] > seen[0], seen  # it backs off (1 s, 2 s, 4 s … each ±20%)
    assert all(m.group(1).startswith("rediss://:***@") for m in tries.finditer(text)), text[-2000:]
    assert "TLS handshake" not in text, text[-2000:]  # the host is unreachable: TLS is not the trouble, and not blamed
    assert lab.redis.password not in text
    assert farm.store.worker("cpu@lab-w3") is None
    print(
        "\nthe worker waiting for Redis said:",
        *[line for line in text.splitlines() if "cannot reach" in line],
        sep="\n  ",
    )

    lab.heal("lab-w3")
    lab.wait_registered(["cpu@lab-w3"], timeout=90, procs=[worker])
    assert "reached Redis" in worker.text()
    sweep = write_sweep(tmp_path, "after-wait", jobs=1, samples=64, requires={"host": "lab-w3"})
    sid = lab.farm_json("submit", "submit", str(sweep))["sweep_id"]
    farm.wait_all_recorded(sid, 180)
    result = farm.result(farm.jobs(sid)[0]) or {}
    assert result.get("status") == "succeeded" and result.get("host") == "lab-w3", result.get("error")


JOBS, REPEATS = 8, 1000  # 8,000 jobs: eight publishing rounds of 1,000


def big_sweep(path: Path) -> Path:
    spec = {
        "name": path.stem,
        "repeats": REPEATS,
        "defaults": {"backend": "jax", "data": "synthetic", "train_samples": 64, "test_samples": 16, "epochs": 1},
        "jobs": [
            {"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 8 + i}} for i in range(JOBS)
        ],
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def queued_messages(farm: Farm) -> Counter:
    """Job id -> how many messages for it are on the farm's queues."""
    ids: Counter = Counter()
    for key in farm.r.scan_iter(match="farm.*"):
        if farm.r.type(key) == "list":
            ids.update(json.loads(raw)["headers"]["id"] for raw in farm.r.lrange(key, 0, -1))
    return ids


def test_submitter_cut_off_mid_submit_leaves_a_resumable_state(lab: Lab, farm: Farm, tmp_path: Path) -> None:
    """The submitter's link goes down while a large sweep is being sent: the submit fails with one clear line;
    every job it claimed has its message on a queue or a debt in the outbox (none stranded); once the link is
    back, the same ``farm submit`` sends exactly what is missing, and ``farm resume`` then sends nothing: each
    job's message is on a queue exactly once."""
    sweep = big_sweep(tmp_path / "cut-submit.yaml")
    submit = lab.start_farm("submit", "submit", str(sweep), "--json", "--allow-unserved", what="submit")
    wait_for(
        lambda: farm.r.llen("farm.cpu.be-jax") > 0 or not submit.alive(),
        180,
        "the submit to start sending",
        interval=0.01,
    )
    time.sleep(random.uniform(0.0, 0.3))  # noqa: S311  (a moment within the sending, nothing secret)
    was_sending = submit.alive()
    lab.cut("submit")
    try:
        submit.popen.wait(120)
    finally:
        lab.heal("submit")
    out = submit.text()
    if was_sending:
        assert submit.popen.returncode != 0, out[-2000:]
        errors = [line for line in out.splitlines() if line.strip()]
        assert "Traceback" not in out and len(errors) == 1 and "error" in errors[0].lower(), out[-2000:]
        print(f"\nthe cut-off submit said: {errors[0]}")
        assert lab.redis is not None and lab.redis.password not in out
    sids = farm.r.zrange("farm:sweeps", 0, -1)
    on_queue = queued_messages(farm)
    owed = set(farm.r.zrange("farm:outbox", 0, -1))
    claimed = [j for j in (farm.jobs(sids[0]) if sids else []) if farm.state(j)]
    stranded = [j for j in claimed if j not in on_queue and j not in owed]
    print(
        f"\ncut mid-submit: sending={was_sending}, claimed {len(claimed)}, on a queue {len(on_queue)}, "
        f"owed {len(owed - set(on_queue))}, stranded {len(stranded)}"
    )
    assert not stranded
    assert max(on_queue.values(), default=1) == 1

    again = lab.farm_json("submit", "submit", str(sweep), "--allow-unserved", timeout=300)
    sid = again["sweep_id"]
    ids = farm.jobs(sid)
    assert len(ids) == JOBS * REPEATS
    on_queue = queued_messages(farm)
    assert set(on_queue) == set(ids) and max(on_queue.values()) == 1, "each job's message on a queue once"
    assert farm.r.zcard("farm:outbox") == 0
    resumed = lab.farm("submit", "resume", sid, "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert queued_messages(farm) == on_queue, "resume sent nothing twice"


@pytest.mark.parametrize("how", ["link", "process"])
def test_redis_host_down_past_the_lease_loses_nothing(lab: Lab, farm: Farm, tmp_path: Path, how: str) -> None:
    """The Redis host goes away (its link down, or redis-server stopped) for three leases while jobs run on
    three hosts: when it returns, every job is recorded exactly once and none ran twice at the same time."""
    assert lab.redis is not None
    hosts = [s.name for s in LAB_WORKERS]
    procs = [lab.start_worker(h, **FAST) for h in hosts]
    lab.wait_registered([f"cpu@{h}" for h in hosts], procs=procs)
    sweep = write_sweep(tmp_path, f"redis-down-{how}", jobs=6, epochs=40)
    sid = lab.farm_json("submit", "submit", str(sweep))["sweep_id"]
    jobs = farm.jobs(sid)

    def some_running() -> bool:
        return any(farm.state(j).get("state") == "running" and int(farm.state(j).get("epoch") or 0) >= 1 for j in jobs)

    wait_for(some_running, 180, "a job to train", interval=0.1)
    before = farm.statuses(sid)
    down_at = time.time()
    if how == "link":
        lab.cut("redis")
    else:
        lab.redis.stop()
    try:
        time.sleep(3 * LEASE_S)
    finally:
        if how == "link":
            lab.heal("redis")
        else:
            lab.redis.start()
    back_at = time.time()
    farm.r.connection_pool.disconnect()  # the old socket's server is gone when it was restarted
    farm.wait_all_recorded(sid, 300)
    ledger = farm.check_ledger(sid)
    print(f"\nRedis down ({how}) {back_at - down_at:.1f} s; before: {dict(before)}, after: {dict(farm.statuses(sid))}")
    assert ledger == {"jobs": 6, "recorded": 6, "lost": 0, "recorded_twice": 0, "concurrent_runs": 0}
    assert farm.statuses(sid) == Counter(succeeded=6)
    assert all(p.alive() for p in procs), [p.text()[-2000:] for p in procs if not p.alive()]
    for p in procs:
        p.stop(signal.SIGTERM)
