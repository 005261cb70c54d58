"""Redis-level faults against real workers (#24): keys of the wrong type, a full Redis while a job is recorded,
ACL users that lack the farm's commands. No such fault takes a worker down or loses a trained result, and every
command line that meets one says so in one line (exit 1), without a traceback or the broker's password.

The wrong-typed keys are each of the types Redis has on each kind of key a worker reads: its queues and their
priority lists, kombu's ``unacked`` hash, ``unacked_index`` zset and bindings, and the farm's own keys of a job
(its state hash, run log, attempt counter) and of the farm (the running set, the in-flight zset).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from farm.errors import escape
from tests.faults.helpers import FAST, Farm, wait_running
from tests.helpers import WorkerProcess, farm_env, run_farm, wait_for, write_sweep

WRONG_VALUES: dict[str, Callable[[redis.Redis, str], object]] = {
    "string": lambda r, k: r.set(k, "x"),
    "hash": lambda r, k: r.hset(k, "x", "1"),
    "set": lambda r, k: r.sadd(k, "x"),
    "zset": lambda r, k: r.zadd(k, {"x": 1}),
    "list": lambda r, k: r.rpush(k, "x"),
}


def put_wrong(r: redis.Redis, key: str, kind: str) -> None:
    r.delete(key)
    WRONG_VALUES[kind](r, key)


def quarantined(r: redis.Redis, prefix: str = "farm") -> list[str]:
    return sorted(r.scan_iter(match=f"{prefix}:quarantined:*"))


def test_wrong_typed_queue_keys_are_moved_aside_and_the_worker_serves_on(
    redis_url: str, start_worker, farm: Farm, tmp_path: Path
) -> None:
    """Every queue key and priority list the worker polls, given each wrong type in turn while it runs (and one
    before it starts): the worker stays up, each key is renamed aside and recorded, and jobs still run."""
    r = farm.r
    first_key = "farm.cpu"
    put_wrong(r, first_key, "string")  # before the worker starts: it used to die at once, every start
    worker = start_worker("w1", **FAST)
    queues = sorted(r.smembers("farm:queues"))
    assert "farm.cpu" in queues and len(queues) >= 2
    wait_for(lambda: r.type(first_key) == "none", 30, "the wrong-typed queue to be moved aside")
    keys = [*queues, "farm.cpu\x06\x163", "farm.cpu\x06\x169"]
    wrong = ["hash", "set", "zset", "string"]
    for i, key in enumerate(keys):
        kind = wrong[i % len(wrong)]
        put_wrong(r, key, kind)
        wait_for(lambda key=key: r.type(key) == "none", 30, f"{key!r} ({kind}) to be moved aside")
        assert worker.proc.poll() is None, worker.text()[-3000:]
    moved = quarantined(r)
    assert len(moved) == len(keys) + 1, moved
    reasons = [json.loads(e)["reason"] for e in r.lrange("farm:rejected", 0, -1)]
    for i, key in enumerate(keys):
        said = f"Redis key {escape(key)} holds a {wrong[i % len(wrong)]}, not the list"
        assert any(reason.startswith(said) for reason in reasons), (said, reasons)
    assert int(r.get("farm:rejected:count")) == len(keys) + 1

    sid = farm.submit(write_sweep(tmp_path, "after-wrong-types", jobs=2, epochs=1, samples=64))
    farm.wait_all_recorded(sid, 180)
    assert farm.statuses(sid) == {"succeeded": 2}
    assert worker.proc.poll() is None
    assert "Unrecoverable error" not in worker.text() and "Traceback" not in worker.text()


@pytest.mark.parametrize(("key", "kind"), [("unacked", "string"), ("unacked_index", "hash"), ("unacked", "zset")])
def test_wrong_typed_ack_keys_do_not_stop_a_delivery(
    redis_url: str, start_worker, farm: Farm, tmp_path: Path, key: str, kind: str
) -> None:
    """kombu notes each delivered message in ``unacked``/``unacked_index``: wrong-typed, the note failed and the
    consumer died with the message popped. Now the key is moved aside and the job runs."""
    r = farm.r
    worker = start_worker("w1", **FAST)
    put_wrong(r, key, kind)
    sid = farm.submit(write_sweep(tmp_path, "ack-keys", jobs=1, epochs=1, samples=64))
    farm.wait_all_recorded(sid, 180)
    assert farm.statuses(sid) == {"succeeded": 1}
    assert r.type(key) in ("none", "hash" if key == "unacked" else "zset")
    assert any(k.startswith(f"farm:quarantined:{key}:") for k in quarantined(r))
    wait_for(lambda: r.hlen("unacked") == 0, 30, "the job's message to be acked")
    assert worker.proc.poll() is None, worker.text()[-3000:]
    assert "Unrecoverable error" not in worker.text()


def test_a_wrong_typed_binding_is_repaired_when_a_worker_declares_its_queues(
    redis_url: str, start_worker, farm: Farm, tmp_path: Path
) -> None:
    r = farm.r
    put_wrong(r, "_kombu.binding.farm.cpu", "string")
    worker = start_worker("w1", **FAST)
    assert r.type("_kombu.binding.farm.cpu") == "set"  # moved aside and declared again
    sid = farm.submit(write_sweep(tmp_path, "binding", jobs=1, epochs=1, samples=64))
    farm.wait_all_recorded(sid, 180)
    assert farm.statuses(sid) == {"succeeded": 1}
    assert worker.proc.poll() is None
    assert any(k.startswith("farm:quarantined:_kombu.binding.farm.cpu:") for k in quarantined(r))


def test_the_farms_own_keys_of_the_wrong_type_are_moved_aside(
    redis_url: str, start_worker, farm: Farm, tmp_path: Path
) -> None:
    """A job's state hash replaced by a string, its run log and attempt counter by other types, and the farm's
    running and in-flight sets by a string: the job still runs once and is recorded."""
    r = farm.r
    sid = farm.submit(write_sweep(tmp_path, "own-keys", jobs=1, epochs=1, samples=64))
    (job_id,) = farm.jobs(sid)
    put_wrong(r, f"farm:state:{job_id}", "string")
    put_wrong(r, f"farm:runs:{job_id}", "hash")
    put_wrong(r, f"farm:attempts:{job_id}", "set")
    put_wrong(r, "farm:running", "string")
    put_wrong(r, "farm:inflight", "list")
    worker = start_worker("w1", **FAST)
    farm.wait_all_recorded(sid, 180)
    assert farm.statuses(sid) == {"succeeded": 1}
    assert farm.state(job_id)["state"] == "succeeded"
    assert [run["event"] for run in farm.runs(job_id)] == ["start", "end"]
    moved = quarantined(r)
    for key in (f"farm:state:{job_id}", f"farm:runs:{job_id}", f"farm:attempts:{job_id}", "farm:running"):
        assert any(k.startswith(f"farm:quarantined:{key}:") for k in moved), moved
    assert worker.proc.poll() is None, worker.text()[-3000:]


def spooled(tmp_path: Path, worker: str = "w1") -> list[Path]:
    return sorted((tmp_path / "cache" / "spool" / worker).glob("*.json"))


def test_a_full_redis_while_a_job_is_recorded_loses_nothing(
    redis_url: str, start_worker, farm: Farm, tmp_path: Path
) -> None:
    """Redis reaches maxmemory (noeviction) while a job trains: the worker stays up, keeps the job's lease, keeps
    the result in its spool, and the job never says succeeded without a result; once Redis has room the same
    run's result is recorded (one run, no re-run) and the worker takes the next job."""
    r = farm.r
    worker = start_worker("w1", **FAST)
    sid = farm.submit(write_sweep(tmp_path, "full", jobs=1, epochs=30, samples=2000))
    (job_id,) = farm.jobs(sid)
    wait_running(farm, job_id, 1)
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", "1")
    try:
        wait_for(lambda: bool(spooled(tmp_path)), 180, "the trained result to be spooled")
        for _ in range(10):  # several leases long: the worker holds on
            assert farm.result(job_id) is None
            assert farm.state(job_id)["state"] == "running"
            assert worker.proc.poll() is None, worker.text()[-3000:]
            time.sleep(1)
    finally:
        r.config_set("maxmemory", "0")
    farm.wait_all_recorded(sid, 120)
    assert farm.statuses(sid) == {"succeeded": 1}
    assert farm.check_ledger(sid)["recorded_twice"] == 0
    assert [run["event"] for run in farm.runs(job_id)] == ["start", "end"]  # the first run was recorded
    wait_for(lambda: not spooled(tmp_path), 30, "the spool to be emptied")

    sid2 = farm.submit(write_sweep(tmp_path, "after-full", jobs=1, epochs=1, samples=64, units=20))
    farm.wait_all_recorded(sid2, 180)
    assert farm.statuses(sid2) == {"succeeded": 1}
    assert worker.proc.poll() is None
    assert "Unrecoverable error" not in worker.text()


def test_a_spooled_result_is_recorded_by_the_next_start(
    redis_url: str, start_worker, farm: Farm, tmp_path: Path
) -> None:
    """The worker is killed while a full Redis refuses its result: the result stays in its spool, and the next
    start of that worker records it once Redis has room; the job is not run again."""
    r = farm.r
    worker = start_worker("w1", **FAST)
    sid = farm.submit(write_sweep(tmp_path, "killed", jobs=1, epochs=30, samples=2000))
    (job_id,) = farm.jobs(sid)
    wait_running(farm, job_id, 1)
    r.config_set("maxmemory", "1")
    wait_for(lambda: bool(spooled(tmp_path)), 180, "the trained result to be spooled")
    worker.stop(signal.SIGKILL)
    r.config_set("maxmemory", "0")
    assert farm.result(job_id) is None
    again = start_worker("w1", **FAST)
    farm.wait_all_recorded(sid, 60)
    result = farm.result(job_id)
    assert result is not None and result["status"] == "succeeded" and result["attempt"] == 1
    assert not spooled(tmp_path)
    assert sum(run["event"] == "start" for run in farm.runs(job_id)) == 1
    wait_for(lambda: not r.sismember("farm:running", job_id), 30, "the job to leave the running set")
    assert again.proc.poll() is None


def acl_url(url: str, user: str) -> str:
    return url.replace("unix://", f"unix://{user}:s3cret-pw@", 1)


def one_line_error(out: subprocess.CompletedProcess[str], *words: str) -> None:
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and "s3cret-pw" not in out.stderr + out.stdout
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("rules", "refused"),
    [
        (["+@all", "-eval", "-evalsha"], "'eval'"),  # no Lua scripts
        (["+@read", "+@connection", "+time"], ""),  # read-only
    ],
)
def test_acl_users_without_the_farms_commands_get_one_line(
    redis_url: str, farm: Farm, tmp_path: Path, rules: list[str], refused: str
) -> None:
    r = farm.r
    r.execute_command("ACL", "SETUSER", "limited", "on", ">s3cret-pw", "~*", "&*", *rules)
    sweep = write_sweep(tmp_path, "acl", jobs=1, epochs=1, samples=64)
    first = farm.submit(sweep)  # as the default user, so that cancel has a sweep to act on
    env = farm_env(acl_url(redis_url, "limited"), tmp_path / "cache")
    words = ["no permissions", refused] if refused else ["no permissions"]
    one_line_error(
        run_farm(["submit", str(write_sweep(tmp_path, "acl2", jobs=1, units=30)), "--allow-unserved"], env), *words
    )
    one_line_error(run_farm(["cancel", first], env), "no permissions")
    out = run_farm(["worker", "--name", "acl-w", "--no-check-backends", "--cpu-only"], env)
    one_line_error(out, "no permissions", "+@scripting")
    assert farm.store.worker("acl-w") is None


def snapshot(url: str) -> dict[bytes, bytes | None]:
    """Every key of the Redis and its serialized value: what a command that writes nothing leaves as it was."""
    r = redis.Redis.from_url(url)
    try:
        return {key: r.dump(key) for key in r.keys("*")}
    finally:
        r.close()


@pytest.mark.parametrize(
    ("rules", "refused"),
    [
        (
            ["+@all", "-eval", "-evalsha"],
            "'eval'",
        ),  # no Lua scripts: the sweep used to be saved, then the claim refused
        (["+@all", "-evalsha"], "'evalsha'"),  # redis-py runs a cached script by EVALSHA
        (["+@all", "-eval"], "'eval'"),  # and a script Redis has not cached yet by EVAL
        (["+@all", "-hset"], "'hset'"),  # run inside the ledger's scripts, checked by Redis command by command
        (["+@all", "-lpush"], "'lpush'"),  # kombu's publish: the jobs used to be claimed, then never sent
        (["+@all", "-@write"], "no permissions"),
        (["+@read", "+@connection", "+time"], "no permissions"),  # read-only
    ],
)
def test_a_submit_the_acl_refuses_writes_nothing(
    redis_url: str, farm: Farm, tmp_path: Path, rules: list[str], refused: str
) -> None:
    """Whatever command of a submit its user may not run, the submit says so in one line (exit 1) before it
    writes anything: every key of the Redis is as it was."""
    farm.r.execute_command("ACL", "SETUSER", "limited", "on", ">s3cret-pw", "~*", "&*", *rules)
    farm.submit(write_sweep(tmp_path, "before", jobs=1, epochs=1, samples=64))  # a farm with a sweep in it
    before = snapshot(redis_url)
    env = farm_env(acl_url(redis_url, "limited"), tmp_path / "cache")
    out = run_farm(["submit", str(write_sweep(tmp_path, "refused", jobs=2, units=30)), "--allow-unserved"], env)
    one_line_error(out, "no permissions", refused)
    assert snapshot(redis_url) == before


def test_a_full_redis_gives_commands_one_line(redis_url: str, farm: Farm, tmp_path: Path) -> None:
    r = farm.r
    first = farm.submit(write_sweep(tmp_path, "full-cli", jobs=1, epochs=1, samples=64))
    r.config_set("maxmemory", "1")
    env = farm_env(redis_url, tmp_path / "cache")
    sweep = write_sweep(tmp_path, "full-cli2", jobs=2, units=40)
    one_line_error(run_farm(["submit", str(sweep), "--allow-unserved"], env), "full", "maxmemory")
    one_line_error(run_farm(["cancel", first], env), "full", "maxmemory")
    assert run_farm(["status", first], env).returncode == 0  # reading still works


def test_a_worker_started_against_a_full_redis_waits_and_then_serves(
    redis_url: str, start_worker, farm: Farm, tmp_path: Path
) -> None:
    r = farm.r
    r.config_set("maxmemory", "1")
    worker = WorkerProcess("w1", farm_env(redis_url, tmp_path / "cache", **FAST), tmp_path / "w1.log", [])
    try:
        wait_for(lambda: "worker w1 serving" in worker.text(), 60, "the worker to start serving")
        assert worker.proc.poll() is None, worker.text()[-3000:]
        assert farm.store.worker("w1") is None
        r.config_set("maxmemory", "0")
        worker.wait_registered(redis_url, 30)
        sid = farm.submit(write_sweep(tmp_path, "after-full-start", jobs=1, epochs=1, samples=64))
        farm.wait_all_recorded(sid, 180)
        assert farm.statuses(sid) == {"succeeded": 1}
        assert "Unrecoverable error" not in worker.text() and "Traceback" not in worker.text()
    finally:
        worker.stop()
