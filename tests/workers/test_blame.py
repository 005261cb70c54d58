"""A user's broken sweep must not take the farm's workers offline (issue #24, item 3).

Failures are blamed on the job or on the machine (``workers.blame``): a job whose model does not build, whose
dataset is missing, or which fails the same way on two workers is the job's fault and never counts towards a
worker's quarantine. Two workers cannot share one name, and a job never goes to a worker without its backend."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml

from farm.ledger import Ledger
from farm.settings import FarmSettings
from farm.store import Store
from farm.sweep import load_sweep
from tests.farm.test_workload_plugins import write_distribution
from tests.helpers import REPO, broken_build_site, farm_env, run_farm, wait_for
from workers.blame import Blame, blame, signature
from workers.child import next_stage, out_of_memory
from workers.execute import JobExecutor
from workers.supervisor import ChildOutcome

DEFAULTS = {"backend": "jax", "data": "synthetic", "epochs": 1, "train_samples": 64, "test_samples": 16}


def write(tmp_path: Path, name: str, jobs: list[dict], **defaults: object) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "defaults": {**DEFAULTS, **defaults}, "jobs": jobs}))
    return path


def submit(path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return run_farm(["submit", str(path), "--json", *extra], env)


def results(r: redis.Redis, sweep_id: str) -> list[dict | None]:
    jobs = r.lrange(f"farm:sweep:{sweep_id}:jobs", 0, -1)
    return [json.loads(raw) if raw else None for raw in (r.get(f"farm:result:{j}") for j in jobs)]


def registry(r: redis.Redis, name: str) -> dict:
    raw = r.get(f"farm:worker:{name}")
    assert raw, f"worker {name} is not registered"
    return json.loads(raw)


# -- whose fault: from where the job's process failed -------------------------------------------------------


def failed_at(*events: dict, error: str = "RuntimeError: boom") -> ChildOutcome:
    """The outcome the supervisor builds from these events of a child that then failed."""
    stage = "import"
    for event in events:
        stage = str(event.get("stage") or next_stage(stage, event))
    return ChildOutcome(status="failed", error=error, stage=stage)


READY, STARTED = {"event": "ready"}, {"event": "started"}
DATA, BUILD = {"event": "phase", "phase": "data"}, {"event": "phase", "phase": "build"}


@pytest.mark.parametrize(
    "events, expected",
    [
        ((), Blame.machine),  # the framework did not import, or the process died before it was ready
        ((READY,), Blame.job),  # the job itself did not validate
        ((READY, STARTED), Blame.job),  # its dataset is missing or broken
        ((READY, STARTED, DATA), Blame.job),  # its model does not build
        ((READY, STARTED, DATA, {"event": "error", "stage": "memory"}), Blame.job),  # it does not fit
        ((READY, STARTED, DATA, BUILD), Blame.unknown),  # a crash while training: told by other workers
    ],
)
def test_a_failure_is_blamed_from_where_the_job_failed(events: tuple[dict, ...], expected: Blame) -> None:
    assert blame(failed_at(*events)) is expected


def test_a_data_parallel_step_xla_gave_up_on_is_the_jobs_failure() -> None:
    """XLA aborts a step whose all-reduce waited 40 s for a device (virtual CPU devices on too few cores): the
    job's size for this machine, never a reason to stop the worker."""
    stuck = ChildOutcome(
        status="failed",
        stage="fit",
        error="the training process was killed by SIGABRT",
        stderr_tail="F1207 rendezvous.cc:161] Termination timeout for `all reduce RendezvousKey{...}` of 40 seconds "
        "exceeded. Expected 2 threads to join the rendezvous, but only 1 of them arrived on time.",
    )
    assert blame(stuck) is Blame.job
    assert blame(ChildOutcome(status="failed", stage="fit", error="killed by SIGABRT")) is Blame.unknown


def test_out_of_memory_is_recognised_in_the_frameworks_own_words() -> None:
    assert out_of_memory(MemoryError())
    assert out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8.00GiB"))
    assert out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not out_of_memory(ValueError("Input 0 of layer dense is incompatible"))


def test_a_failures_signature_leaves_out_what_differs_from_run_to_run() -> None:
    one = failed_at(READY, STARTED, DATA, BUILD, error="ValueError: bad shape (32, 7) at 0x7f3a9c\ntraceback")
    two = failed_at(READY, STARTED, DATA, BUILD, error="ValueError: bad shape (64, 7) at 0x7f11aa\nother")
    assert signature(one) == signature(two) != signature(failed_at(READY, error=one.error or ""))


def test_the_ledger_says_where_else_a_job_failed_the_same_way(redis_url: str) -> None:
    ledger = Ledger(Store(redis.Redis.from_url(redis_url, decode_responses=True)))
    assert ledger.note_failure("j1", "w1", "build: RuntimeError") == []
    assert ledger.note_failure("j1", "w1", "build: RuntimeError") == []  # the same worker again says nothing
    assert ledger.note_failure("j1", "w2", "train: killed") == []  # another way of failing: not the same
    assert ledger.note_failure("j1", "w3", "build: RuntimeError") == ["w1"]
    assert ledger.failed_elsewhere("j1", "w1", "build: RuntimeError")
    assert not ledger.failed_elsewhere("j1", "w2", "train: killed")
    ledger.reset(["j1"])  # `farm resume` forgets it with the job's other run state
    assert not ledger.failed_elsewhere("j1", "w1", "build: RuntimeError")


# -- quarantine: counted only against the machine, forgiven, lifted ----------------------------------------


def executor(redis_url: str, **settings: object) -> JobExecutor:
    cfg = FarmSettings(broker_url=redis_url, quarantine_after=2, **settings)  # type: ignore[arg-type]
    return JobExecutor(Store(redis.Redis.from_url(redis_url, decode_responses=True)), cfg, "w1")


def test_failures_of_jobs_that_failed_the_same_way_elsewhere_are_forgiven(redis_url: str) -> None:
    ex = executor(redis_url)
    crash = failed_at(READY, STARTED, DATA, BUILD, error="RuntimeError: step failed")
    ex.ledger.note_failure("a", "w1", signature(crash))
    ex._count_against_machine("a", signature(crash), crash)
    ex.ledger.note_failure("a", "w2", signature(crash))  # the same job then failed the same way on w2
    ex.ledger.note_failure("b", "w1", signature(crash))
    ex._count_against_machine("b", signature(crash), crash)
    assert ex.quarantined is None and list(ex.failed_jobs) == ["b"]  # job a was broken, not this machine
    ex.ledger.note_failure("c", "w1", signature(crash))
    ex._count_against_machine("c", signature(crash), crash)
    assert ex.quarantined and "2 jobs in a row failed here" in ex.quarantined


def test_a_quarantine_lifts_itself_after_its_cool_down(redis_url: str) -> None:
    ex = executor(redis_url, quarantine_cooldown_s=600)
    broken = failed_at(error="importing Keras with the jax backend failed: ImportError('libcuda')")
    for job in ("a", "b"):
        ex._count_against_machine(job, signature(broken), broken)
    assert ex.quarantined and "framework's import" in ex.quarantined and "UTC or by restarting" in ex.quarantined
    assert not ex.lift_quarantine(now=ex.quarantined_at + 599)
    assert ex.lift_quarantine(now=ex.quarantined_at + 600)
    assert ex.quarantined is None and not ex.failed_jobs  # counted afresh: a still-broken machine stops again

    never = executor(redis_url, quarantine_cooldown_s=0)
    for job in ("a", "b"):
        never._count_against_machine(job, signature(broken), broken)
    assert never.quarantined and "restart the worker to lift it" in never.quarantined
    assert not never.lift_quarantine(now=time.time() + 10**6)


# -- real workers -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_broken_sweep_leaves_every_worker_serving(redis_url: str, start_worker, tmp_path: Path) -> None:
    """Models that raise in ``build`` and jobs whose real dataset is not on the workers, on two workers that
    stop after two failures in a row: every bad job is recorded failed with its reason, and both workers stay
    up and run the next good job. Before, the first jobs quarantined one worker, the retries the other."""
    site = broken_build_site(tmp_path / "site")
    env = farm_env(redis_url, tmp_path / "cache", PYTHONPATH=str(site))
    keras_home = str(tmp_path / "keras")  # no dataset archives anywhere a worker looks
    workers = [
        start_worker(n, FARM_QUARANTINE_AFTER="2", PYTHONPATH=str(site), KERAS_HOME=keras_home) for n in ("w1", "w2")
    ]
    r = redis.Redis.from_url(redis_url, decode_responses=True)

    bad = [{"workload": "broken_build", "params": {"width": w}} for w in (2, 3, 4)]
    bad += [
        {"workload": "fashion_mnist_mlp", "data": "real", "params": {"hidden_layers": 1, "units": u}} for u in (5, 6)
    ]
    out = submit(write(tmp_path, "broken", bad), env, "--allow-unserved")  # the real-data jobs: sent anyway
    assert out.returncode == 0, out.stderr
    sweep = json.loads(out.stdout)["sweep_id"]
    wait_for(lambda: all(results(r, sweep)), 600, "every bad job to be recorded")
    for result in results(r, sweep):
        assert result is not None and result["status"] == "failed", result
        assert "not built in these tests" in result["error"] or "DataUnavailable" in result["error"], result["error"]
    for w in workers:
        assert w.proc.poll() is None and not registry(r, w.name).get("quarantined"), w.text()[-3000:]

    good = submit(write(tmp_path, "good", [{"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1}}]), env)
    assert good.returncode == 0, good.stderr  # not refused as unserved: a worker still serves farm.cpu.be-jax
    wait_for(lambda: all(results(r, json.loads(good.stdout)["sweep_id"])), 300, "the good job after the bad sweep")
    [ok] = results(r, json.loads(good.stdout)["sweep_id"])
    assert ok is not None and ok["status"] == "succeeded", ok


@pytest.mark.slow
def test_a_job_that_fails_the_same_way_on_two_workers_is_given_up_saying_so(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    """A job failing while it trains (not clearly its fault) is tried again on another worker; failing there
    the same way, it is recorded failed at once, naming both workers, and counted against neither."""
    site = write_distribution(
        tmp_path / "site",
        "crashy-models",
        "0.1",
        {"crash_fit": "crash_mod:WORKLOAD"},
        {"crash_mod": CRASH_IN_FIT},
    )
    env = farm_env(redis_url, tmp_path / "cache", PYTHONPATH=str(site))
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    w1 = start_worker("w1", FARM_QUARANTINE_AFTER="1", FARM_MAX_ATTEMPTS="5", PYTHONPATH=str(site))
    out = submit(write(tmp_path, "crash", [{"workload": "crash_fit", "params": {}}]), env)
    assert out.returncode == 0, out.stderr
    sweep = json.loads(out.stdout)["sweep_id"]
    # One failure while training is blamed on w1 (quarantine_after=1): it hands the job back and stops.
    wait_for(lambda: bool(registry(r, "w1").get("quarantined")), 300, "w1 to stop after the crash")
    w2 = start_worker("w2", FARM_QUARANTINE_AFTER="1", FARM_MAX_ATTEMPTS="5", PYTHONPATH=str(site))
    wait_for(lambda: all(results(r, sweep)), 300, "the job to be recorded")
    [result] = results(r, sweep)
    assert result is not None and result["status"] == "failed" and result["attempt"] == 2, result
    assert result["error"].startswith("failed the same way on w1 and w2: "), result["error"]
    assert "crashes while it trains" in result["error"]
    assert not registry(r, "w2").get("quarantined"), w2.text()[-3000:]  # the job's fault: w2 serves on
    assert w1.proc.poll() is None


CRASH_IN_FIT = """
from pydantic import BaseModel, ConfigDict

from farm.workloads import Workload


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def build(params, input_shape, num_classes):
    import keras

    class CrashWhenTraining(keras.layers.Layer):
        def call(self, x, training=None):
            if training:
                raise RuntimeError("this model crashes while it trains")
            return x

    flat = [keras.Input(shape=input_shape), keras.layers.Flatten()]
    model = keras.Sequential([*flat, CrashWhenTraining(), keras.layers.Dense(num_classes)])
    return model, "sgd", "sparse_categorical_crossentropy"


def prepare(x, y):
    return x, y


WORKLOAD = Workload(
    name="crash_fit", dataset="fashion_mnist", params_model=Params, build_model=build, prepare=prepare, unit="images"
)
"""


# -- one name, one worker -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_worker_with_a_live_workers_name_is_refused(redis_url: str, start_worker, tmp_path: Path) -> None:
    first = start_worker("w1")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    env = farm_env(redis_url, tmp_path / "cache")
    second = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker", "--name", "w1", "--no-check-backends", "--cpu-only"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 2, second.stderr
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert lines[-1] == (
        f"error: a live worker named w1 already runs on host {socket.gethostname()} (pid {first.proc.pid}); "
        "choose another --name"
    ), second.stderr
    assert "Traceback" not in second.stderr
    assert registry(r, "w1")["pid"] == first.proc.pid and first.proc.poll() is None  # the first one untouched


@pytest.mark.slow
def test_a_dead_workers_entry_on_this_host_does_not_block_its_name(redis_url: str, start_worker) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    r.set("farm:worker:w1", json.dumps({"name": "w1", "host": socket.gethostname(), "pid": dead}), px=600_000)
    worker = start_worker("w1")
    wait_for(lambda: registry(r, "w1")["pid"] == worker.proc.pid, 60, "the new worker's own entry")
    assert not os.path.exists(f"/proc/{dead}")


# -- backends -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_never_goes_to_a_worker_without_its_backend(redis_url: str, start_worker, tmp_path: Path) -> None:
    """A worker started with ``FARM_BACKENDS=tensorflow`` advertises only TensorFlow and consumes only the default
    backend's queues: a JAX job is refused at submit in one line, and one queued anyway waits on its own queue
    (``farm.cpu.be-jax``), never delivered to that worker (its log, the store's run log and kombu's unacknowledged
    deliveries show nothing), and `farm status` counts it unserved, until a worker that offers JAX runs it."""
    worker = start_worker("tf-only", FARM_BACKENDS="tensorflow")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    entry = registry(r, "tf-only")
    assert list(entry["backends"]) == ["tensorflow"]
    assert "farm.cpu" in entry["queues"] and not [q for q in entry["queues"] if ".be-" in q], entry["queues"]
    env = farm_env(redis_url, tmp_path / "cache")
    listed = run_farm(["workers"], {**env, "COLUMNS": "250"})
    assert listed.returncode == 0 and "backends" in listed.stdout, listed.stdout
    assert [
        line for line in listed.stdout.splitlines() if "tf-only" in line and "tensorflow" in line and "jax" not in line
    ]
    path = write(tmp_path, "jax", [{"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1}}])
    refused = submit(path, env)
    assert refused.returncode == 2, refused.stderr
    assert "farm.cpu.be-jax" in refused.stderr and "no live worker offers the jax backend" in refused.stderr
    assert "Traceback" not in refused.stderr
    store = Store(r)
    assert not any(store.states([e.job_id for e in load_sweep(path).envelopes()]))  # nothing claimed

    queued = submit(path, env, "--allow-unserved")
    assert queued.returncode == 0, queued.stderr
    sweep = json.loads(queued.stdout)["sweep_id"]
    [job] = r.lrange(f"farm:sweep:{sweep}:jobs", 0, -1)
    time.sleep(5)  # the worker polls its queues continuously: give it the chance to misbehave
    assert r.llen("farm.cpu.be-jax") == 1 and not r.hlen("unacked")  # still on its queue, never delivered
    assert job not in worker.text() and store.runs(job) == [] and Ledger(store).attempts(job) == 0
    assert r.hget(f"farm:state:{job}", "state") == "queued" and results(r, sweep) == [None]
    status = json.loads(run_farm(["status", sweep, "--json"], env).stdout)
    assert status["unserved_queues"] == {"farm.cpu.be-jax": 1}, status
    assert not registry(r, "tf-only").get("quarantined") and worker.proc.poll() is None

    jax = start_worker("jax-only", FARM_BACKENDS="jax")
    wait_for(lambda: results(r, sweep) != [None], 300, "the JAX job on the worker that offers JAX")
    [result] = results(r, sweep)
    assert result is not None and result["status"] == "succeeded" and result["worker"] == "jax-only", result
    assert job in jax.text() and job not in worker.text()


@pytest.mark.slow
def test_a_stopped_worker_takes_jobs_again_after_its_cool_down(redis_url: str, start_worker, tmp_path: Path) -> None:
    """A worker whose JAX does not import stops after one failure (the machine's fault), then consumes its queues
    again once the cool-down is over: the job comes back to it for a second attempt, and it stops again."""
    broken = tmp_path / "broken-site" / "jax"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this machine has a broken JAX install')\n")
    start_worker(
        "w1",
        PYTHONPATH=str(broken.parent),
        FARM_QUARANTINE_AFTER="1",
        FARM_QUARANTINE_COOLDOWN_S="3",
        FARM_MAX_ATTEMPTS="3",
    )
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    out = submit(
        write(tmp_path, "jax", [{"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1}}]),
        farm_env(redis_url, tmp_path / "cache"),
    )
    assert out.returncode == 0, out.stderr
    sweep = json.loads(out.stdout)["sweep_id"]
    [job] = r.lrange(f"farm:sweep:{sweep}:jobs", 0, -1)
    wait_for(lambda: int(r.get(f"farm:attempts:{job}") or 0) >= 2, 300, "the job's second attempt on w1")
    wait_for(lambda: all(results(r, sweep)), 300, "the job to be given up after its attempts")
    [result] = results(r, sweep)
    assert result is not None and result["status"] == "failed" and "broken JAX install" in result["error"], result
    assert result["attempt"] == 3
