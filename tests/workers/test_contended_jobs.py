"""Real training runs through a real worker, beside load the test makes itself: a job that starts while CPU hogs
run waits (bounded) for a quiet host, says so in `farm status`, trains anyway when the wait is over, and is marked
contended and invalid with its figures and reason (every steady epoch disturbed); every repeat's verdict follows
its own figures, so the test passes on a machine that others load too; `farm resume --contended` re-runs exactly
the contended repeat and keeps its old result in the history."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml

from farm import defaults
from tests.helpers import farm_env, run_farm, wait_for

pytestmark = pytest.mark.slow

QUIET_WAIT_S = 20.0
"""The worker's bound on a job's wait for a quiet host: the hogged job waits this long, then trains. Long enough
that `farm status`, started while the job waits, still finds it waiting on a loaded machine (8 s once was not:
the CLI took longer than that to start beside the hogs and a full suite)."""

HOG = "import time\nt = time.time()\nwhile time.time() - t < 600: pass"


def sweep_file(tmp_path: Path, name: str) -> Path:
    spec = {
        "name": name,
        "defaults": {"backend": "jax", "data": "synthetic", "train_samples": 4000, "test_samples": 64, "epochs": 16},
        "jobs": [{"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 2, "units": 256}}],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def submit(env: dict[str, str], path: Path) -> str:
    out = run_farm(["submit", str(path), "--json", "--allow-unserved"], env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["sweep_id"]


def only_result(r: redis.Redis, sid: str, timeout: float = 300) -> dict:
    """Wait for the sweep's one job, watching Redis directly (a `farm status` process per poll would itself be
    CPU use beside the job)."""
    job = r.lrange(f"farm:sweep:{sid}:jobs", 0, -1)[0]
    wait_for(lambda: r.exists(f"farm:result:{job}"), timeout, f"the job of {sid}", interval=1.0)
    return json.loads(r.get(f"farm:result:{job}"))


def verdict_follows_figures(result: dict) -> None:
    """A repeat's verdict follows its own figures (whoever loaded the machine): an epoch whose others' CPU crossed
    the threshold is disturbed, and the repeat is contended (and invalid) exactly when every steady epoch was."""
    steady = result["epochs"][1:]
    for epoch in steady:
        if epoch["cpu_others"] > defaults.CONTENTION_CPU_THRESHOLD:
            assert epoch["disturbed"] is True, epoch
    everywhere = all(epoch["disturbed"] for epoch in steady)
    assert result["contended"] is everywhere, (result["contention"], steady)
    assert result["valid"] is not everywhere, result["invalid_reasons"]


def test_a_hog_beside_a_job_makes_it_wait_then_marks_it_and_resume_reruns_it(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    env = farm_env(redis_url, tmp_path / "cache")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    start_worker("measurer", FARM_QUIET_WAIT_S=repr(QUIET_WAIT_S))

    # Warm up the worker's fork server and compile cache; then a job with no load of the test's beside it.
    only_result(r, submit(env, sweep_file(tmp_path, "warm-up")))
    quiet = only_result(r, submit(env, sweep_file(tmp_path, "quiet")))
    assert quiet["status"] == "succeeded"
    assert quiet["contention"]["cores"] >= 1 and quiet["contention"]["window_s"] > 0
    verdict_follows_figures(quiet)  # on a quiet machine: not contended; on a loaded one, it says why

    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(2)]
    try:
        time.sleep(0.5)
        sid = submit(env, sweep_file(tmp_path, "hogged"))
        job = r.lrange(f"farm:sweep:{sid}:jobs", 0, -1)[0]
        wait_for(lambda: "quiet host" in (r.hget(f"farm:state:{job}", "note") or ""), 120, "the job to wait")
        status = run_farm(["status", sid, "--json"], env)
        (shown,) = json.loads(status.stdout)["jobs"]
        assert shown["note"].startswith("waiting for a quiet host (others "), shown
        hogged = only_result(r, sid)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert hogged["status"] == "succeeded"
    assert hogged["quiet_wait_s"] >= QUIET_WAIT_S and hogged["contention"]["quiet_reached"] is False
    assert hogged["contended"] is True and hogged["valid"] is False, hogged["contention"]
    assert hogged["contention"]["cpu_others"] > 0.2  # two busy hogs beside it on two cores, whatever else runs
    assert all(epoch["disturbed"] for epoch in hogged["epochs"][1:])
    assert any("other processes used" in reason for reason in hogged["invalid_reasons"])
    assert not r.hget(f"farm:state:{job}", "note")  # the note went with the wait

    rows = run_farm(["results", sid], env)
    assert rows.returncode == 0 and "contended" in rows.stdout.splitlines()[0]

    resumed = run_farm(["resume", sid, "--contended", "--json"], env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["enqueued"] == 1
    wait_for(lambda: r.llen(f"farm:history:{job}") == 1 and r.exists(f"farm:result:{job}"), 300, "the re-run")
    again = only_result(r, sid)
    assert again["attempt"] >= 1 and again["finished_at"] != hogged["finished_at"]
    verdict_follows_figures(again)
    history = [json.loads(h) for h in r.lrange(f"farm:history:{job}", 0, -1)]
    assert [h["contended"] for h in history] == [True]
    if not again["contended"]:
        nothing = run_farm(["resume", sid, "--contended", "--json"], env)
        assert json.loads(nothing.stdout)["enqueued"] == 0
