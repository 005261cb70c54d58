"""The warm path: each job's process is forked from a fork server that imported Keras once, yet every job runs
in a fresh process of its own, with its own environment and device visibility, and nothing leaks from the
job before. A server that dies or cannot serve costs a job at most, never the worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from farm.fingerprint import host_facts
from farm.job import JobEnvelope
from farm.settings import FarmSettings
from tests.helpers import REPO, small_job_envelope, wait_for
from workers.execute import build_result
from workers.supervisor import ChildOutcome, WarmPool, child_env, env_key, run_child

pytestmark = pytest.mark.slow

TINY = dict(epochs=2, backend="jax")


def envelope(time_limit_s: float | None = None, **kw: object) -> JobEnvelope:
    return small_job_envelope("warm", time_limit_s=time_limit_s, **{**TINY, **kw})


def run(
    pool: WarmPool, tmp_path: Path, gpu_ids: list[str] | None = None, time_limit_s: float | None = None, **kw: object
) -> ChildOutcome:
    env = envelope(time_limit_s, **kw)
    return run_child(env, FarmSettings(cache_dir=tmp_path), lambda e: None, pool=pool, gpu_ids=gpu_ids, poll_s=0.05)


def succeeded(outcome: ChildOutcome, **kw: object):
    assert outcome.status == "succeeded", (outcome.error, outcome.stderr_tail)
    return build_result(envelope(**kw), outcome, 1, "w", host_facts())


def server_pid(pool: WarmPool, tmp_path: Path, **kw: object) -> int:
    key = env_key(child_env(envelope(**kw), FarmSettings(cache_dir=tmp_path)))
    return pool._servers[key].proc.pid


def test_each_job_gets_a_fresh_forked_process(tmp_path: Path) -> None:
    pool = WarmPool()
    try:
        first = run(pool, tmp_path, mixed_precision=True, repeat=0)
        jax_server = server_pid(pool, tmp_path)
        second = run(pool, tmp_path, repeat=1)
        third = run(pool, tmp_path, repeat=2)
        other_backend = run(pool, tmp_path, backend="tensorflow", repeat=3)
        tf_server = server_pid(pool, tmp_path, backend="tensorflow")
    finally:
        pool.close()
    results = [
        succeeded(first, mixed_precision=True, repeat=0),
        succeeded(second, repeat=1),
        succeeded(third, repeat=2),
        succeeded(other_backend, backend="tensorflow", repeat=3),
    ]
    # Every job ran in a process of its own, forked from its backend's server (not the worker's child).
    pids = [r.environment["pid"] for r in results]
    assert len(set(pids)) == 4 and os.getpid() not in pids
    assert [o.ready["ppid"] for o in (first, second, third)] == [jax_server] * 3
    assert other_backend.ready["ppid"] == tf_server != jax_server
    assert all(r.environment["forked"] is True for r in results)
    # The forked child imported nothing itself; the first job waited for its server's import, and says so.
    assert first.ready["import_s"] > second.ready["import_s"]
    # Nothing leaks: the first job's mixed-precision policy is not the second's.
    assert results[0].environment["dtype_policy"] == "mixed_bfloat16"
    assert results[1].environment["dtype_policy"] == "float32"
    # Same seed-independent model: the same metrics would come from a fresh interpreter (checked below).
    assert other_backend.ready["keras_backend"] == "tensorflow" and "tensorflow" in results[3].versions
    # Each CPU job's process sees no GPU.
    assert {r.environment["cuda_visible_devices"] for r in results} == {""}
    # JAX jobs share the compilation cache (here the test run's: tests/conftest.py); TensorFlow has none.
    assert results[1].environment["compile_cache"] == str(Path(os.environ["FARM_COMPILE_CACHE_DIR"]) / "jax")
    assert results[3].environment["compile_cache"] is None


def test_a_forked_job_trains_exactly_like_a_fresh_interpreter(tmp_path: Path) -> None:
    """Same job, same seed: the forked process and a cold interpreter reach the same weights' metrics."""
    warm, cold = WarmPool(), WarmPool(enabled=False)
    try:
        forked = succeeded(run(warm, tmp_path, seed=7), seed=7)
        fresh_outcome = run(cold, tmp_path, seed=7)
    finally:
        warm.close()
        cold.close()
    fresh = succeeded(fresh_outcome, seed=7)
    assert forked.environment["forked"] is True and fresh.environment["forked"] is False
    assert forked.test_loss == pytest.approx(fresh.test_loss, rel=1e-5)
    assert forked.train_loss == pytest.approx(fresh.train_loss, rel=1e-5)


def test_compile_cache_lives_under_the_cache_dir_or_can_be_turned_off(tmp_path: Path) -> None:
    pool = WarmPool()
    try:
        env = envelope()
        off = run_child(env, FarmSettings(cache_dir=tmp_path, compile_cache=False), lambda e: None, pool=pool)
        assert succeeded(off).environment["compile_cache"] is None
        assert not (tmp_path / "compiled").exists()
        default = run_child(env, FarmSettings(cache_dir=tmp_path, compile_cache_dir=None), lambda e: None, pool=pool)
    finally:
        pool.close()
    assert succeeded(default).environment["compile_cache"] == str(tmp_path / "compiled" / "jax")
    assert any((tmp_path / "compiled" / "jax").iterdir())


def test_each_device_set_gets_its_own_server_and_visibility(tmp_path: Path) -> None:
    pool = WarmPool()
    try:
        cpu = run(pool, tmp_path)
        gpu1 = run(pool, tmp_path, gpu_ids=["1"], device="gpu")
    finally:
        pool.close()
    assert cpu.ready["cuda_visible_devices"] == ""
    assert gpu1.ready["cuda_visible_devices"] == "1" and gpu1.ready["forked"] is True
    assert gpu1.ready["ppid"] != cpu.ready["ppid"]
    # This machine has no GPU: the job says so rather than training on the CPU.
    assert gpu1.status == "failed" and "sees none" in (gpu1.error or "")


def test_time_limit_kills_the_forked_job_and_the_server_serves_on(tmp_path: Path) -> None:
    pool = WarmPool()
    try:
        run(pool, tmp_path)  # the server is up
        server = server_pid(pool, tmp_path)
        slow = run(pool, tmp_path, time_limit_s=1.0, epochs=500, train_samples=2000, repeat=1)
        after = run(pool, tmp_path, repeat=2)
    finally:
        pool.close()
    assert slow.status == "timed_out"
    with pytest.raises(ProcessLookupError):
        os.kill(slow.ready["pid"], 0)
    assert after.status == "succeeded" and after.ready["ppid"] == server


def test_a_dead_server_fails_its_running_job_and_is_replaced(tmp_path: Path) -> None:
    pool = WarmPool()
    try:
        run(pool, tmp_path)
        server = server_pid(pool, tmp_path)
        killer = threading.Timer(2.0, os.kill, (server, signal.SIGKILL))
        killer.start()
        victim = run(pool, tmp_path, epochs=500, train_samples=2000, repeat=1)
        killer.join()
        after = run(pool, tmp_path, repeat=2)
        replacement = server_pid(pool, tmp_path)
    finally:
        pool.close()
    assert victim.status == "failed" and "fork server" in (victim.error or ""), victim.error
    assert after.status == "succeeded" and after.ready["ppid"] == replacement != server


def test_a_server_that_cannot_import_is_not_tried_again(tmp_path: Path) -> None:
    pool = WarmPool()
    env = {**child_env(envelope(), FarmSettings(cache_dir=tmp_path)), "KERAS_BACKEND": "no_such_backend"}
    try:
        assert pool.server(env) is None
        assert "importing Keras with the no_such_backend backend failed" in pool._refused[env_key(env)]
        assert pool.server(env) is None and not pool._servers
    finally:
        pool.close()


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_importing_keras_touches_no_device(backend: str) -> None:
    """What makes forking safe: after the server's import, the framework holds no device (and would say so)."""
    code = (
        "from workers.child import import_framework; from workers.zygote import device_touched; "
        f"import_framework('{backend}'); assert device_touched('{backend}') is None; "
        "import jax; jax.devices(); print(device_touched('jax'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "KERAS_BACKEND": backend},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "initialised" in out.stdout


def test_worker_pool_closes_its_servers(tmp_path: Path) -> None:
    pool = WarmPool()
    run(pool, tmp_path)
    server = server_pid(pool, tmp_path)
    pool.close()
    wait_for(lambda: _gone(server), 10, "the fork server to exit")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie of ours counts as gone
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False
