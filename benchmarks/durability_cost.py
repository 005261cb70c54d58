"""What ``appendfsync always`` (the farm's shipped setting) costs per job, against ``everysec``.

    .venv/bin/python -m benchmarks.durability_cost [--jobs 200] [--rounds 5] [--worker-jobs 6] [--dir DIR]

1. **The farm's writes, per job.** Each round starts a fresh redis-server (``farm.embedded.EmbeddedRedis``, its
   append-only file in ``--dir``: put it on the disk you mean to measure, not a tmpfs) under each policy, in
   alternating order, and drives the same workload through the farm's own code: ``farm.submit.submit`` of
   ``--jobs`` jobs (sweep, claims, Celery messages, outbox), then, per job, what a worker does around a run
   (the message taken from the queue and acknowledged through kombu, ``has_result``, lease taken, state set to
   running, run logged, one heartbeat and one progress update, lease checked, end logged, result recorded,
   lease released). Printed per job: wall time of the submit and of the run bookkeeping (median and range
   over rounds), Redis' own command time (``INFO commandstats``; it does not include the fsync), and the
   commands per job. Then one untimed round per policy under ``strace -c`` (when strace is installed) counts
   redis-server's ``fdatasync``/``fsync`` calls per job.
2. **A real worker, per job.** One real ``farm worker`` (CPU, JAX) against an embedded Redis runs
   ``--worker-jobs`` tiny jobs; the ``INFO commandstats`` delta over the sweep, per job, and the same
   worker's idle rate (commands/s while it waits), so a job's own commands can be told from the background.

Nothing here asserts: it prints figures (quoted in docs/operations.md, "Durability").
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import yaml

import farm.submit
from farm.embedded import AppendFsync, EmbeddedRedis
from farm.job import JobEnvelope
from farm.ledger import Lease, Ledger
from farm.queue import job_queue, make_app
from farm.result import JobResult, JobStatus
from farm.settings import FarmSettings
from farm.store import Store
from farm.sweep import load_sweep

REPO = Path(__file__).resolve().parent.parent
POLICIES: tuple[AppendFsync, AppendFsync] = ("everysec", "always")
STRACE = shutil.which("strace")
TINY = {"backend": "jax", "data": "synthetic", "train_samples": 256, "test_samples": 32, "epochs": 1}


def sweep_file(directory: Path, name: str, jobs: int) -> Path:
    """``jobs`` distinct tiny CPU jobs (one cell, ``jobs`` seeds)."""
    spec = {
        "name": name,
        "defaults": TINY,
        "matrix": {"seed": list(range(jobs))},
        "jobs": [{"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 16}}],
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Command name -> (calls, microseconds) since the server started."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in stats.items()}


def delta(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    out = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls - c0:
            out[name] = (calls - c0, usec - u0)
    return out


def total(stats: dict[str, tuple[int, int]], exclude: tuple[str, ...] = ("info",)) -> tuple[int, int]:
    """(calls, microseconds) over all commands but the measurement's own ``INFO``."""
    kept = [v for k, v in stats.items() if k not in exclude]
    return sum(c for c, _ in kept), sum(u for _, u in kept)


def run_bookkeeping(store: Store, settings: FarmSettings, sweep_path: Path) -> dict[str, float]:
    """Submit the sweep, then take, run (no training) and record each job as a worker's code does.

    Returns the two phases' wall times. Redis time and commands are read around it by the caller."""
    sweep = load_sweep(sweep_path)
    t0 = time.perf_counter()
    out = farm.submit.submit(sweep, settings, store=store)
    t1 = time.perf_counter()
    assert out.enqueued == len(sweep.jobs), out
    ledger = Ledger(store)
    queues = sorted({job_queue(j) for j in sweep.jobs})
    app = make_app(settings, queues)
    worker = "bench-worker"
    with app.connection_for_read() as conn:
        for queue in queues:
            simple = conn.SimpleQueue(app.amqp.queues[queue], no_ack=False)
            while True:
                try:
                    message = simple.get(block=False)
                except simple.Empty:
                    break
                envelope = JobEnvelope.model_validate(message.payload[0][0])  # (args, kwargs, embed)
                job_id = envelope.job_id
                assert not store.has_result(job_id)
                lease = ledger.take(job_id, worker, settings.lease_ttl_s)
                assert isinstance(lease, Lease), lease
                now = time.time()
                store.set_state(
                    job_id, JobStatus.running, worker=worker, attempt=lease.attempt, started_at=now, epoch=0
                )
                store.log_run(job_id, event="start", worker=worker, attempt=lease.attempt, at=now)
                ledger.renew(lease, settings.lease_ttl_s)  # one heartbeat
                store.update_progress(job_id, heartbeat_at=time.time())
                store.update_progress(job_id, epoch=1, epochs=1, loss=0.5, accuracy=0.5)  # one epoch event
                assert ledger.holds(lease)
                store.log_run(job_id, event="end", worker=worker, attempt=lease.attempt, at=time.time())
                result = JobResult(
                    job_id=job_id,
                    sweep_id=envelope.sweep_id,
                    job=envelope.job,
                    status=JobStatus.succeeded,
                    attempt=lease.attempt,
                    worker=worker,
                )
                assert ledger.record(lease, result)
                ledger.release(lease)
                message.ack()
            simple.close()
    t2 = time.perf_counter()
    return {"submit_s": t1 - t0, "run_s": t2 - t1}


@contextmanager
def server(directory: Path, policy: AppendFsync) -> Iterator[EmbeddedRedis]:
    s = EmbeddedRedis(directory, appendfsync=policy)
    s.start()
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(directory, ignore_errors=True)


def one_round(base: Path, policy: AppendFsync, jobs: int, index: int, count_fsyncs: bool = False) -> dict[str, Any]:
    with server(base / f"r-{policy}-{index}", policy) as s:
        settings = FarmSettings(broker_url=s.url)
        store = Store(redis.Redis.from_url(s.url, decode_responses=True))
        path = sweep_file(base, f"dur-{policy}-{index}", jobs)
        tracer = None
        if count_fsyncs:
            assert s.proc is not None
            trace_out = base / f"strace-{policy}-{index}.txt"
            tracer = subprocess.Popen(
                [
                    STRACE or "strace",
                    "-f",
                    "-c",
                    "-e",
                    "trace=fdatasync,fsync",
                    "-o",
                    str(trace_out),
                    "-p",
                    str(s.proc.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # attached
        before = commandstats(store.r)
        times = run_bookkeeping(store, settings, path)
        after = commandstats(store.r)
        out: dict[str, Any] = {**times, "stats": delta(before, after)}
        if tracer is not None:
            time.sleep(1.5)  # everysec: the last second's fsync
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
            text = trace_out.read_text()
            out["fsyncs"] = sum(
                int(m.group(1))
                for m in re.finditer(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?f(?:data)?sync$", text, re.M)
            )
        return out


def med_range(values: list[float]) -> str:
    return f"{statistics.median(values):7.3f} ({min(values):.3f}–{max(values):.3f})"


def bookkeeping(base: Path, jobs: int, rounds: int) -> None:
    print(f"## The farm's writes per job: {jobs} jobs submitted and recorded, {rounds} rounds per policy")
    print(f"append-only file in {base} (filesystem: {fs_type(base)})")
    results: dict[str, list[dict[str, Any]]] = {p: [] for p in POLICIES}
    one_round(base, "always", min(jobs, 20), -1)  # warm-up: imports, page cache
    for i in range(rounds):
        order = POLICIES if i % 2 == 0 else POLICIES[::-1]
        for policy in order:
            results[policy].append(one_round(base, policy, jobs, i))
    print(
        f"{'policy':9} {'submit ms/job':>24} {'run bookkeeping ms/job':>26} {'Redis µs/job':>14} {'commands/job':>13}"
    )
    for policy in POLICIES:
        rs = results[policy]
        submit_ms = [r["submit_s"] * 1000 / jobs for r in rs]
        run_ms = [r["run_s"] * 1000 / jobs for r in rs]
        calls = [total(r["stats"])[0] / jobs for r in rs]
        usec = [total(r["stats"])[1] / jobs for r in rs]
        print(
            f"{policy:9} {med_range(submit_ms):>24} {med_range(run_ms):>26} {statistics.median(usec):14.0f} "
            f"{statistics.median(calls):13.1f}"
        )
    a, e = results["always"], results["everysec"]
    cost = statistics.median([(x["submit_s"] + x["run_s"]) * 1000 / jobs for x in a]) - statistics.median(
        [(x["submit_s"] + x["run_s"]) * 1000 / jobs for x in e]
    )
    print(f"always minus everysec, submit + bookkeeping: {cost:+.3f} ms of wall time per job (medians)")
    stats = a[-1]["stats"]
    top = sorted(stats.items(), key=lambda kv: -kv[1][0])
    print(
        "commands per job (always, last round): " + ", ".join(f"{k} {c / jobs:.2f}" for k, (c, _) in top if k != "info")
    )
    if STRACE:
        counts = {p: one_round(base, p, jobs, 99, count_fsyncs=True).get("fsyncs", 0) for p in POLICIES}
        print(
            "fsyncs by redis-server per job (strace -c, untimed round): "
            + ", ".join(f"{p} {counts[p] / jobs:.2f}" for p in POLICIES)
        )
    else:
        print("fsyncs per job: strace not installed, not counted")


def fs_type(path: Path) -> str:
    try:
        out = subprocess.run(
            [shutil.which("df") or "df", "--output=fstype", str(path)], capture_output=True, text=True, check=True
        )
        return out.stdout.split()[-1]
    except (OSError, subprocess.CalledProcessError):
        return "?"


def real_worker(base: Path, jobs: int) -> None:
    """Commands a real ``farm worker`` issues per tiny job, and while idle."""
    print(f"\n## A real worker (CPU, JAX), {jobs} tiny jobs, appendfsync always")
    with server(base / "r-worker", "always") as s:
        client = redis.Redis.from_url(s.url, decode_responses=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
        env.update(
            FARM_BROKER_URL=s.url,
            FARM_CACHE_DIR=str(base / "cache"),
            FARM_CONFIG=str(base / "none.toml"),
            FARM_ALLOW_DOWNLOAD="false",
        )
        log = open(base / "worker.log", "wb")  # noqa: SIM115 - closed below, after the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--name", "bench", "--no-check-backends", "--cpu-only"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while not client.exists("farm:worker:bench"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("worker did not start: " + (base / "worker.log").read_text()[-2000:])
                time.sleep(0.2)
            time.sleep(5)  # past its start-up writes
            idle_s = 20.0
            before = commandstats(client)
            time.sleep(idle_s)
            idle = delta(before, commandstats(client))
            idle_rate = total(idle)[0] / idle_s
            print(
                f"idle: {idle_rate:.2f} commands/s ("
                + ", ".join(
                    f"{k} {c / idle_s:.2f}"
                    for k, (c, _) in sorted(idle.items(), key=lambda kv: -kv[1][0])
                    if k != "info"
                )
                + ")"
            )
            # A first job outside the count: the worker's warm start and the dataset's first generation.
            warm = load_sweep(sweep_file(base, "warm", 1))
            farm.submit.submit(warm, FarmSettings(broker_url=s.url))
            wait_done(client, [j.job_id for j in warm.jobs], proc)
            time.sleep(2)
            sweep = load_sweep(sweep_file(base, "worker", jobs))
            before = commandstats(client)
            t0 = time.monotonic()
            farm.submit.submit(sweep, FarmSettings(broker_url=s.url))
            wait_done(client, [j.job_id for j in sweep.jobs], proc)
            elapsed = time.monotonic() - t0
            during = delta(before, commandstats(client))
            calls = total(during)[0]
            print(
                f"sweep: {jobs} jobs in {elapsed:.1f} s, {calls / jobs:.1f} commands per job in all (submit "
                f"included); less the idle rate over the sweep: {(calls - idle_rate * elapsed) / jobs:.1f}"
            )
            print(
                "per job: "
                + ", ".join(
                    f"{k} {c / jobs:.2f}"
                    for k, (c, _) in sorted(during.items(), key=lambda kv: -kv[1][0])
                    if k != "info"
                )
            )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


def wait_done(client: redis.Redis, job_ids: list[str], proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not all(client.exists(f"farm:result:{j}") for j in job_ids):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the worker did not finish the sweep")
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--worker-jobs", type=int, default=6, help="0: skip the real worker")
    ap.add_argument("--dir", type=Path, default=None, help="where the append-only files go (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dur-", dir=args.dir) as d:
        base = Path(d)
        bookkeeping(base, args.jobs, args.rounds)
        if args.worker_jobs:
            real_worker(base, args.worker_jobs)


if __name__ == "__main__":
    main()
