"""The farm's control plane with N = 10, 50, 200 workers against one Redis: what each worker and each job costs
Redis, how fast jobs are dispatched, and how the reaper and ``farm status``/``farm workers`` grow with N.

    .venv/bin/python -m benchmarks.control_plane [--workers 10,50,200] [--drain-per-worker 3] [--job-s 0.5]
        [--idle-s 20] [--json FILE]

Each N gets a fresh embedded redis-server with the farm's shipped durability (``appendonly yes``,
``appendfsync always``) and N real ``farm worker`` processes: ``workers.worker.run_worker`` itself (the real
registry heartbeat, reaper, Celery consumer with the farm's admission check, ledger leases and renewals, result
recording), forked from one launcher that imported Celery and the farm once, so each worker costs a few MB of
its own rather than an interpreter's start. Only the training process is replaced: ``run_child`` sleeps for the
job's length, reporting a ready event and one epoch event per epoch, and polls ``should_stop`` as the real
supervisor does. Every worker serves ``farm.cpu`` and its own host's queue (``farm.cpu.host-simNNNN``), as a
lab's CPU workers do.

Per N it measures, from ``INFO commandstats`` and ``INFO cpu`` deltas and the workers' own CPU (psutil):

1. **Idle**: Redis commands/s (total, per worker, the top commands), Redis' CPU, Redis' own time per PUBLISH
   and BRPOP (each worker holds a pattern subscription, which every PUBLISH is matched against), the workers'
   CPU and memory of their own (USS).
2. **Dispatch latency**: enqueue→start is a job's ``started_at`` (lease taken, state running) less its
   ``sent_at`` (message published). Measured for ``--trickle`` single jobs submitted one after another (the
   control plane's own latency) and for N/2 jobs submitted at once to idle workers (N/2 workers waking
   together: on 2 cores, mostly their Python CPU): p50 and p99.
3. **Draining**: ``--drain-per-worker`` × N short jobs (``--job-s`` each): jobs/s from the first message to the
   last result, commands per job (submit and worker together, net of the idle rate), Redis CPU per job and
   Redis memory per recorded job (``used_memory`` growth, and the job's own keys by ``MEMORY USAGE``), queue
   wait p50/p99.
4. **Running**: N long jobs, one per worker: commands/s per running job (lease renewals, progress, cancel
   checks), one reaper pass over N running jobs (wall time, round trips and commands, by ``Ledger.reap`` from
   here), and Redis connections per worker.
5. **Reading**: ``farm workers`` and ``farm status SWEEP`` as a user runs them (a fresh process each, median
   of 3), and ``Store.live_workers`` in this process.
6. **History**: ``--history-keys`` keys added under the farm's prefix (``DEBUG POPULATE``), as a Redis that has
   recorded a farm's results for years looks; then the reads, a reaper pass and a look for queued messages
   again: none of them may grow with the history.

Nothing here asserts; it prints a table per N (quoted in docs/operations.md, "Operating a farm of hundreds").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import redis
import yaml

import farm.submit
from farm.embedded import EmbeddedRedis
from farm.ledger import Ledger
from farm.lifecycle import cancel_sweep
from farm.progress import sweep_progress
from farm.queue import make_app
from farm.routing import cpu_tags
from farm.settings import FarmSettings
from farm.store import Store
from farm.sweep import load_sweep
from workers import execute
from workers.plans import WorkerPlan
from workers.supervisor import ChildOutcome
from workers.worker import run_worker

REPO = Path(__file__).resolve().parent.parent
FARM = str(Path(sys.executable).parent / "farm")


# -- the simulated training process ------------------------------------------------------------------------------
def sleeping_child(job_s: float, long_s: float) -> Callable[..., ChildOutcome]:
    """A ``run_child`` that trains nothing: ``job_s`` seconds per job (``long_s`` for jobs of more than one
    epoch), one epoch event per epoch, ``should_stop`` polled every ``poll_s`` as the supervisor does."""

    def run_child(
        envelope: Any,
        settings: FarmSettings,
        on_event: Callable[[dict[str, Any]], None],
        *,
        gpu_ids: list[str] | None = None,
        should_stop: Callable[[], str | None] = lambda: None,
        poll_s: float = 0.2,
        pool: Any = None,
        keepalive: list[Callable[[], None]] | None = None,
    ) -> ChildOutcome:
        started = time.time()
        epochs = envelope.job.epochs
        length = long_s if epochs > 1 else job_s
        on_event({"event": "ready", "pid": os.getpid()})
        records: list[dict[str, Any]] = []
        while True:
            now = time.time()
            while len(records) < epochs and now >= started + length * (len(records) + 1) / epochs:
                records.append({"epoch": len(records) + 1, "wall_s": length / epochs, "loss": 1.0, "accuracy": 0.1})
                on_event({"event": "epoch", "epoch": len(records), "epochs": epochs, "loss": 1.0, "accuracy": 0.1})
            if len(records) == epochs:
                break
            reason = should_stop()
            if reason:
                return ChildOutcome(status=reason, started_at=started, total_s=time.time() - started)
            time.sleep(min(poll_s, max(0.0, started + length * (len(records) + 1) / epochs - now)))
        total = time.time() - started
        result = {
            "epochs": records,
            "total_s": total,
            "phases": {"train_s": total},
            "unit": "samples",
            "train_samples_used": envelope.job.train_samples,
        }
        ready = {"versions": {"keras": "simulated"}, "pid": os.getpid(), "keras_backend": envelope.job.backend}
        return ChildOutcome(
            status="succeeded", ready=ready, result=result, total_s=total, started_at=started, job_started_at=started
        )

    return run_child


# -- the workers ---------------------------------------------------------------------------------------------------
def start_workers(n: int, settings: FarmSettings, logs: Path, job_s: float, long_s: float) -> list[int]:
    """Fork ``n`` workers from this process (which imported everything once); their pids."""
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                fd = os.open(logs / f"sim{i:04d}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                execute.run_child = sleeping_child(job_s, long_s)  # type: ignore[assignment]
                host = f"sim{i:04d}"
                plan = WorkerPlan(name=f"cpu@{host}", tags=cpu_tags(host), info={"gpus": [], "simulated": True})
                code = run_worker(settings, plan, loglevel="WARNING")
            finally:
                os._exit(code)
        pids.append(pid)
    return pids


def stop_workers(pids: list[int], timeout: float = 60.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    left = set(pids)
    while left and time.time() < deadline:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                left.discard(pid)
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def own_memory_mb(pids: list[int]) -> float:
    """What the workers hold of their own (USS): the memory a farm of them really costs."""
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_full_info().uss
    return total / 2**20


# -- Redis' own accounting ----------------------------------------------------------------------------------------
class CountingClient(redis.Redis):
    """A client that counts the commands it sends, by name (pipelined ones included), and its round trips: a
    reaper pass's cost without the other workers' traffic that ``INFO`` mixes in, and the benchmark's own
    polling, taken off the ``INFO`` deltas."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()
        self.round_trips = 0

    def reset(self) -> None:
        self.calls.clear()
        self.round_trips = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        self.calls[str(args[0]).lower()] += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        original = pipe.execute

        def execute(raise_on_error: bool = True) -> Any:
            self.round_trips += 1
            self.calls.update(str(command[0][0]).lower() for command in pipe.command_stack)
            if transaction:
                self.calls.update(("multi", "exec"))
            return original(raise_on_error)

        pipe.execute = execute  # type: ignore[method-assign]
        return pipe


class RedisMeter:
    """Deltas of ``INFO commandstats`` and ``INFO cpu`` between two snapshots, less the commands this benchmark's
    own client sent meanwhile (its polling for results, its ``INFO``)."""

    def __init__(self, client: CountingClient) -> None:
        self.r = client

    def snapshot(self) -> dict[str, Any]:
        stats = self.r.info("commandstats")
        cpu = self.r.info("cpu")
        return {
            "at": time.time(),
            "calls": {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()},
            "usecs": {k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in stats.items()},
            "own": Counter(self.r.calls),
            "usec": sum(int(v["usec"]) for v in stats.values()),
            "cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        }

    @staticmethod
    def delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        own = b["own"] - a["own"]
        calls = {k: b["calls"][k] - a["calls"].get(k, 0) - own.get(k, 0) for k in b["calls"]}
        calls = {k: v for k, v in calls.items() if v > 0 and k != "info"}
        raw = {k: b["calls"][k] - a["calls"].get(k, 0) for k in b["calls"]}
        us_per_call = {
            k: (b["usecs"][k] - a["usecs"].get(k, 0)) / raw[k] for k in calls if raw.get(k, 0) > 0 and k in b["usecs"]
        }
        return {
            "seconds": b["at"] - a["at"],
            "calls": calls,
            "us_per_call": us_per_call,
            "total": sum(calls.values()),
            "cpu_s": b["cpu_s"] - a["cpu_s"],
            "cmd_s": (b["usec"] - a["usec"]) / 1e6,
        }


# -- the phases --------------------------------------------------------------------------------------------------
def sweep_file(directory: Path, name: str, jobs: int, *, epochs: int = 1) -> Path:
    spec = {
        "name": name,
        "repeats": jobs,
        "defaults": {"backend": "jax", "data": "synthetic", "epochs": epochs, "train_samples": 64, "test_samples": 8},
        "jobs": [{"workload": "cifar10_mlp", "device": "cpu"}],
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def wait(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
    start = time.time()
    while not predicate():
        if time.time() - start > timeout:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return time.time() - start


def recorded(store: Store, job_ids: list[str]) -> int:
    return sum(store.have_results(job_ids))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def submit_and_wait(
    submitter: Store, reader: Store, settings: FarmSettings, directory: Path, name: str, jobs: int, timeout: float
) -> tuple[list[str], float]:
    """Submit ``jobs`` short jobs as a user would (through ``submitter``), and wait (polling through
    ``reader``) until each has a result; (job ids, seconds from the submit to the last result seen)."""
    sweep = load_sweep(sweep_file(directory, name, jobs))
    ids = [e.job_id for e in sweep.envelopes()]
    t0 = time.time()
    farm.submit.submit(sweep, settings, store=submitter)
    wait(lambda: recorded(reader, ids) == len(ids), timeout, f"{len(ids)} results of {name}", interval=0.2)
    return ids, time.time() - t0


def job_keys_bytes(client: redis.Redis, job_id: str) -> dict[str, int]:
    """What one recorded job keeps in Redis, key by key (``MEMORY USAGE``, the key's own overhead included),
    named by the key with the job id taken out: where the memory per job goes."""
    out: dict[str, int] = {}
    for key in client.scan_iter(match=f"*{job_id}*", count=1000):
        out[key.replace(job_id, "JOB")] = int(client.memory_usage(key, samples=0) or 0)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def latencies(store: Store, ids: list[str]) -> list[float]:
    out = []
    for state in store.states(ids):
        if state.get("sent_at") and state.get("started_at"):
            out.append(float(state["started_at"]) - float(state["sent_at"]))
    return out


def timed_cli(args: list[str], url: str, runs: int = 3) -> float:
    env = {**os.environ, "FARM_BROKER_URL": url, "NO_COLOR": "1"}
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([FARM, *args], env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def timed_call(fn: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def one_n(n: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    directory = root / f"n{n}"
    (directory / "logs").mkdir(parents=True)
    server = EmbeddedRedis(directory / "redis", extra_args=["--maxclients", "20000", "--enable-debug-command", "local"])
    server.start()
    settings = FarmSettings(broker_url=server.url, warm_start=False, cache_dir=directory / "cache")
    client = CountingClient.from_url(server.url, decode_responses=True)
    store = Store(client)  # the benchmark's own reads: left out of the figures
    submitter = Store(redis.Redis.from_url(server.url, decode_responses=True))  # a user's submit: counted
    meter = RedisMeter(client)
    out: dict[str, Any] = {"workers": n}
    pids: list[int] = []
    try:
        t0 = time.time()
        pids = start_workers(n, settings, directory / "logs", args.job_s, args.long_s)
        wait(lambda: len(store.live_workers()) >= n, 60 + 3 * n, f"{n} workers to register", 0.5)
        out["start_s"] = time.time() - t0
        print(f"N={n}: {n} workers registered in {time.time() - t0:.1f} s", flush=True)
        time.sleep(args.settle_s)

        # 1. idle
        a, cpu_a = meter.snapshot(), cpu_seconds(pids)
        time.sleep(args.idle_s)
        b, cpu_b = meter.snapshot(), cpu_seconds(pids)
        idle = RedisMeter.delta(a, b)
        out["idle"] = {
            "cmds_per_s": idle["total"] / idle["seconds"],
            "cmds_per_s_per_worker": idle["total"] / idle["seconds"] / n,
            "redis_cpu_pct": 100 * idle["cpu_s"] / idle["seconds"],
            "workers_cpu_pct": 100 * (cpu_b - cpu_a) / idle["seconds"],
            "top": dict(sorted(idle["calls"].items(), key=lambda kv: -kv[1])[:6]),
            "us_per_call": {k: round(v, 2) for k, v in idle["us_per_call"].items()},
            "memory_mb_per_worker": own_memory_mb(pids) / n,
        }
        idle_rate = idle["total"] / idle["seconds"]
        idle_cpu_rate = idle["cpu_s"] / idle["seconds"]
        print(f"N={n}: idle {json.dumps(out['idle'])}", flush=True)

        # 2. dispatch latency to idle workers
        probe = max(1, n // 2)
        ids, _ = submit_and_wait(submitter, store, settings, directory, "probe", probe, 120 + n)
        lat = latencies(store, ids)
        trickle: list[float] = []
        for i in range(args.trickle):
            one, _ = submit_and_wait(submitter, store, settings, directory, f"trickle-{i}", 1, 60)
            trickle += latencies(store, one)
        out["dispatch"] = {
            "burst_jobs": probe,
            "burst_p50_ms": 1000 * percentile(lat, 0.5),
            "burst_p99_ms": 1000 * percentile(lat, 0.99),
            "single_jobs": len(trickle),
            "single_p50_ms": 1000 * percentile(trickle, 0.5),
            "single_p99_ms": 1000 * percentile(trickle, 0.99),
        }
        print(f"N={n}: dispatch {json.dumps(out['dispatch'])}", flush=True)
        time.sleep(args.settle_s)

        # 3. draining short jobs
        jobs = args.drain_per_worker * n
        memory_before = int(client.info("memory")["used_memory"])
        a = meter.snapshot()
        ids, took = submit_and_wait(submitter, store, settings, directory, "drain", jobs, 300 + 2 * n)
        b = meter.snapshot()
        drained = RedisMeter.delta(a, b)
        states = store.states(ids)
        first_sent = min(float(s["sent_at"]) for s in states)
        last_done = max(float(s["finished_at"]) for s in states)
        net = drained["total"] - idle_rate * drained["seconds"]
        lat = latencies(store, ids)
        out["drain"] = {
            "jobs": jobs,
            "submit_to_last_result_s": took,
            "jobs_per_s": jobs / (last_done - first_sent),
            "cmds_per_job_gross": drained["total"] / jobs,
            "cmds_per_job_net": net / jobs,
            "redis_cpu_ms_per_job_net": 1000 * (drained["cpu_s"] - idle_cpu_rate * drained["seconds"]) / jobs,
            "redis_cmd_us_per_job": 1e6 * drained["cmd_s"] / jobs,
            "redis_kb_per_job": (int(client.info("memory")["used_memory"]) - memory_before) / jobs / 1024,
            "job_keys_bytes": job_keys_bytes(client, ids[0]),
            "wait_p50_s": percentile(lat, 0.5),
            "wait_p99_s": percentile(lat, 0.99),
            "top_per_job": {
                k: round(v / jobs, 1) for k, v in sorted(drained["calls"].items(), key=lambda kv: -kv[1])[:12]
            },
        }
        print(f"N={n}: drain {json.dumps(out['drain'])}", flush=True)
        time.sleep(args.settle_s)

        # 4. N long jobs running at once
        sweep = load_sweep(sweep_file(directory, "long", n, epochs=4))
        long_ids = [e.job_id for e in sweep.envelopes()]
        farm.submit.submit(sweep, settings, store=submitter)
        wait(lambda: client.scard(store.k("running")) >= n, 120 + n, f"{n} jobs running")
        time.sleep(args.settle_s)
        a = meter.snapshot()
        time.sleep(args.idle_s)
        b = meter.snapshot()
        busy = RedisMeter.delta(a, b)
        per_running = (busy["total"] / busy["seconds"] - idle_rate) / n
        counting = CountingClient.from_url(server.url, decode_responses=True)
        ledger = Ledger(Store(counting))
        app = make_app(settings, ["farm.cpu"])

        def reap_pass() -> tuple[float, int, int]:
            """One reaper pass from here (wall s, round trips, commands); the workers' own reapers take the
            farm-wide reaper lock many times a second at large N, so try until this pass holds it."""
            for _ in range(200):
                client.delete(store.k("reaper"))
                counting.reset()
                t = time.perf_counter()
                requeued = ledger.reap(
                    app,
                    "benchmark",
                    lease_ttl_s=settings.lease_ttl_s,
                    interval_s=settings.reap_interval_s,
                    max_attempts=settings.max_attempts,
                    outbox_grace_s=30.0,
                )
                took = time.perf_counter() - t
                if counting.round_trips > 1:  # it held the lock and looked
                    assert not requeued, requeued  # every holder is alive
                    return took, counting.round_trips, sum(counting.calls.values())
            raise SystemExit("the benchmark never got the reaper lock")

        reaps = [reap_pass() for _ in range(5)]
        out["running"] = {
            "running_jobs": n,
            "cmds_per_s": busy["total"] / busy["seconds"],
            "cmds_per_s_per_running_job": per_running,
            "top": dict(sorted(busy["calls"].items(), key=lambda kv: -kv[1])[:6]),
            "reap_ms": 1000 * statistics.median(r[0] for r in reaps),
            "reap_round_trips": reaps[0][1],
            "reap_commands": reaps[0][2],
            "connected_clients": int(client.info("clients")["connected_clients"]),
        }
        print(f"N={n}: running {json.dumps(out['running'])}", flush=True)

        # 5. reading
        out["reading"] = {
            "farm_workers_s": timed_cli(["workers"], server.url),
            "farm_status_s": timed_cli(["status", sweep.sweep_id], server.url),
            "live_workers_ms": 1000 * timed_call(store.live_workers),
            "sweep_progress_ms": 1000 * timed_call(lambda: sweep_progress(store, sweep.sweep_id)),
        }
        print(f"N={n}: reading {json.dumps(out['reading'])}", flush=True)
        if args.history_keys:
            # A farm used for years: its Redis holds every result, row and run log. DEBUG POPULATE makes that many
            # keys (small strings) under the farm's prefix; then the same reads and a reaper pass again.
            client.execute_command("DEBUG", "POPULATE", args.history_keys, store.k("history"), 64)
            out["history"] = {
                "keys": int(client.dbsize()),
                "farm_workers_s": timed_cli(["workers"], server.url),
                "farm_status_s": timed_cli(["status", sweep.sweep_id], server.url),
                "live_workers_ms": 1000 * timed_call(store.live_workers),
                "reap_ms": 1000 * statistics.median(reap_pass()[0] for _ in range(3)),
                "pending_messages_ms": 1000 * timed_call(lambda: ledger.pending_messages(include_unacked=True), 3),
            }
            print(f"N={n}: with history {json.dumps(out['history'])}", flush=True)
        cancel_sweep(store, sweep.sweep_id)
        wait(lambda: client.scard(store.k("running")) == 0, 60, "the long jobs to stop")
        out["long_jobs_cancelled"] = len(long_ids)
    finally:
        stop_workers(pids)
        server.stop()
    return out


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("workers", lambda r: f"{r['workers']}"),
        ("start (all registered), s", lambda r: f"{r['start_s']:.1f}"),
        ("worker memory of its own, MB", lambda r: f"{r['idle']['memory_mb_per_worker']:.1f}"),
        ("idle: Redis commands/s", lambda r: f"{r['idle']['cmds_per_s']:.0f}"),
        ("idle: commands/s per worker", lambda r: f"{r['idle']['cmds_per_s_per_worker']:.2f}"),
        ("idle: Redis CPU, % of a core", lambda r: f"{r['idle']['redis_cpu_pct']:.1f}"),
        ("idle: workers' CPU, % of a core", lambda r: f"{r['idle']['workers_cpu_pct']:.1f}"),
        (
            "idle: Redis µs per PUBLISH / BRPOP",
            lambda r: "{:.1f} / {:.1f}".format(
                r["idle"]["us_per_call"].get("publish", 0), r["idle"]["us_per_call"].get("brpop", 0)
            ),
        ),
        (
            "enqueue→start p50 / p99, ms: one job",
            lambda r: "{:.0f} / {:.0f}".format(r["dispatch"]["single_p50_ms"], r["dispatch"]["single_p99_ms"]),
        ),
        (
            "enqueue→start p50 / p99, ms: N/2 at once",
            lambda r: "{:.0f} / {:.0f}".format(r["dispatch"]["burst_p50_ms"], r["dispatch"]["burst_p99_ms"]),
        ),
        ("drain: jobs", lambda r: f"{r['drain']['jobs']}"),
        ("drain: jobs/s", lambda r: f"{r['drain']['jobs_per_s']:.1f}"),
        ("drain: commands per job (net of idle)", lambda r: f"{r['drain']['cmds_per_job_net']:.0f}"),
        ("drain: Redis CPU per job, ms (net)", lambda r: f"{r['drain']['redis_cpu_ms_per_job_net']:.2f}"),
        ("drain: Redis memory per recorded job, KB", lambda r: f"{r['drain']['redis_kb_per_job']:.1f}"),
        ("drain: a recorded job's own keys, KB", lambda r: f"{sum(r['drain']['job_keys_bytes'].values()) / 1024:.1f}"),
        (
            "drain: queue wait p50 / p99, s",
            lambda r: f"{r['drain']['wait_p50_s']:.2f} / {r['drain']['wait_p99_s']:.2f}",
        ),
        ("running: commands/s per running job", lambda r: f"{r['running']['cmds_per_s_per_running_job']:.2f}"),
        ("reaper pass over N running jobs, ms", lambda r: f"{r['running']['reap_ms']:.1f}"),
        (
            "reaper pass: round trips / commands",
            lambda r: f"{r['running']['reap_round_trips']} / {r['running']['reap_commands']}",
        ),
        ("Redis connections per worker", lambda r: f"{r['running']['connected_clients'] / r['workers']:.1f}"),
        ("`farm workers`, s (a fresh process)", lambda r: f"{r['reading']['farm_workers_s']:.2f}"),
        ("`farm status SWEEP`, s (a fresh process)", lambda r: f"{r['reading']['farm_status_s']:.2f}"),
        ("store.live_workers(), ms", lambda r: f"{r['reading']['live_workers_ms']:.1f}"),
    ]
    if all("history" in r for r in results):
        rows += [
            ("with history: keys in Redis", lambda r: f"{r['history']['keys']}"),
            ("with history: `farm workers`, s", lambda r: f"{r['history']['farm_workers_s']:.2f}"),
            ("with history: `farm status SWEEP`, s", lambda r: f"{r['history']['farm_status_s']:.2f}"),
            ("with history: reaper pass, ms", lambda r: f"{r['history']['reap_ms']:.1f}"),
            ("with history: messages scan, ms", lambda r: f"{r['history']['pending_messages_ms']:.1f}"),
        ]
    width = max(len(name) for name, _ in rows)
    lines = []
    for name, cell in rows:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{cell(r):>12}" for r in results))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="10,50,200", help="comma-separated N to run")
    parser.add_argument("--drain-per-worker", type=int, default=3)
    parser.add_argument("--job-s", type=float, default=0.5, help="length of a short job")
    parser.add_argument("--long-s", type=float, default=120.0, help="length of a long job (cancelled when measured)")
    parser.add_argument("--idle-s", type=float, default=20.0, help="length of each measured window")
    parser.add_argument("--settle-s", type=float, default=5.0)
    parser.add_argument(
        "--history-keys", type=int, default=500_000, help="keys of a long-used farm, for the reads again (0: skip)"
    )
    parser.add_argument("--trickle", type=int, default=20, help="single jobs submitted one after another")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory(prefix="farm-control-plane-") as tmp:
        for n in (int(x) for x in args.workers.split(",")):
            results.append(one_n(n, args, Path(tmp)))
    print()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
