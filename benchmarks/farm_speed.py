"""How much of a lab's machine time the farm spends on itself. Prints one table per measurement:

- per-job overhead, cold (a fresh process per job, started when the job arrives) and warm (the next job's
  process started, Keras imported, as soon as the previous one exits): a worker receiving a job → its first
  training step, and its last step → the result stored, both excluding data loading, model building and
  evaluation;
- dispatch: ``farm submit`` of a 1,000-job sweep, and the latency from enqueue to a job starting on an idle
  worker against a bare Celery no-op round trip measured in the same run;
- scheduling efficiency: a sweep of short jobs on K = 1 and 2 workers, makespan over the ideal (sum of the
  jobs' busy times / K);
- start-up: ``farm --help`` and ``farm status``; ``farm report`` over 100,000 stored results.

    python -m benchmarks.farm_speed [--only overhead,dispatch,scheduling,startup,report]

``--only dispatch-submit`` runs the submit half of the dispatch measurement alone (no workers needed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from farm.embedded import EmbeddedRedis
from farm.local import LocalFarm
from farm.settings import FarmSettings
from farm.store import Store
from farm.submit import submit
from farm.sweep import load_sweep_data

REPO = Path(__file__).resolve().parent.parent

TINY = {"backend": "jax", "data": "synthetic", "train_samples": 256, "test_samples": 32, "epochs": 2}


def sweep(name: str, jobs: int, **defaults: object) -> dict:
    return {
        "name": name,
        "defaults": {**TINY, **defaults},
        "matrix": {"seed": list(range(jobs))},
        "jobs": [{"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 16}}],
    }


@contextmanager
def farm(workers: int, warm: bool = True, device: str = "cpu") -> Iterator[tuple[LocalFarm, Store]]:
    os.environ["FARM_WARM_START"] = "true" if warm else "false"
    gpu = device == "gpu"
    with (
        tempfile.TemporaryDirectory(prefix="fs-") as d,
        LocalFarm(
            Path(d), FarmSettings(), embedded=True, cpu_workers=0 if gpu else workers, gpu_workers=workers if gpu else 0
        ) as lf,
    ):
        store = Store.from_settings(lf.settings)
        deadline = time.monotonic() + 60
        while len(store.live_workers()) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        yield lf, store


def run_sweep(lf: LocalFarm, store: Store, spec: dict, timeout: float = 900) -> list[dict]:
    s = load_sweep_data(spec)
    submit(s, lf.settings, store=store)
    ids = [j.job_id for j in s.jobs]
    deadline = time.monotonic() + timeout
    while not all(store.has_result(j) for j in ids):
        if time.monotonic() > deadline:
            raise TimeoutError("sweep did not finish")
        time.sleep(0.2)
    results = [store.result(j) for j in ids]
    bad = [r for r in results if r.status.value != "succeeded"]
    if bad:
        raise RuntimeError(f"{len(bad)} jobs did not succeed: {bad[0].error}")
    return [{"r": r, "sent_at": float(store.state(r.job_id).get("sent_at") or 0)} for r in results]


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def overhead(device: str = "cpu", backend: str = "jax", quick: bool = False) -> None:
    print(f"\n## Per-job overhead ({backend} on {device}, tiny jobs, 1 worker; excluding data, build and evaluation)")
    print("back to back: 8 jobs queued at once; spaced: one job at a time, the worker idle 6 s before each")
    print(
        f"{'path':22s} {'jobs':>4s} {'receive→first step s (median, max)':>36s} "
        f"{'last step→stored s (median, max)':>34s}"
    )
    paths = [
        ("cold, back to back", False, False),
        ("warm, back to back", True, False),
        ("cold, spaced", False, True),
        ("warm, spaced", True, True),
    ]
    for label, warm, spaced in paths[:2] if quick else paths:
        tag = f"overhead-{device}-{backend}-{label.replace(' ', '').replace(',', '-')}"
        with farm(1, warm=warm, device=device) as (lf, store):
            if spaced:
                rows = []
                for i in range(5):
                    rows += run_sweep(lf, store, sweep(f"{tag}-{i}", 1, device=device, backend=backend))
                    time.sleep(6)
            else:
                rows = run_sweep(lf, store, sweep(tag, 8, device=device, backend=backend))
        # The first job of the warm path has no pre-started process: leave it out of every path alike.
        rows = sorted(rows, key=lambda x: x["r"].timeline["received_at"])[1:]
        ins, outs = [], []
        for x in rows:
            t, p = x["r"].timeline, x["r"].phases
            ins.append(t["first_step_at"] - t["received_at"] - p.data_s - p.build_s)
            outs.append(t["recorded_at"] - t["train_end_at"] - p.eval_s)
        print(f"{label:22s} {len(rows):4d} {med(ins):27.3f}, {max(ins):6.3f} {med(outs):25.3f}, {max(outs):6.3f}")


def dispatch() -> None:
    print("\n## Dispatch")
    dispatch_submit()
    dispatch_latency()


def dispatch_submit() -> None:
    """``farm submit`` of a 1,000-job sweep: through the Python API, and as the command a user runs."""
    with tempfile.TemporaryDirectory(prefix="fs-") as d, EmbeddedRedis(Path(d) / "r") as server:
        settings = FarmSettings(broker_url=server.url)
        big = {
            "name": "dispatch-1000",
            "defaults": TINY,
            "matrix": {"seed": list(range(250)), "params.hidden_layers": [1, 2, 3, 4]},
            "jobs": [{"workload": "fashion_mnist_mlp"}],
        }
        t0 = time.perf_counter()
        s = load_sweep_data(big)
        t1 = time.perf_counter()
        out = submit(s, settings)
        t2 = time.perf_counter()
        assert out.enqueued == 1000
        path = Path(d) / "big.json"
        path.write_text(json.dumps({**big, "name": "dispatch-cli"}))
        env = {**os.environ, "FARM_BROKER_URL": server.url}
        # The real command, five times, each under a fresh sweep name: 1,000 new jobs validated and enqueued
        # every time (a re-submit would enqueue nothing). Then the same file again: nothing new to send.
        cmd = [sys.executable, "-m", "cli.main", "submit", str(path), "--allow-unserved", "--json"]
        fresh = []
        for i in range(5):
            t3 = time.perf_counter()
            cli = subprocess.run(
                [*cmd, "--name", f"dispatch-cli-{i}"], env=env, cwd=REPO, capture_output=True, text=True
            )
            fresh.append(time.perf_counter() - t3)
            assert cli.returncode == 0, cli.stderr
            assert json.loads(cli.stdout)["enqueued"] == 1000, cli.stdout
        again = timed_runs([*cmd, "--name", "dispatch-cli-0"], env, 3)
        print(
            f"submit 1,000 jobs (API): expand+validate {t1 - t0:.2f} s, enqueue {t2 - t1:.2f} s, total {t2 - t0:.2f} s"
        )
        print(
            f"submit 1,000 jobs (`farm submit` command, process start included): median {med(fresh):.2f} s, "
            f"min {min(fresh):.2f} s (n={len(fresh)}); the same sweep again (nothing to send): "
            f"median {med(again):.2f} s"
        )


def dispatch_latency() -> None:
    """From enqueue to the job starting on an idle worker, against a bare Celery no-op round trip."""
    with farm(1) as (lf, store):
        # Bare Celery: a no-op task on the same broker, its own solo worker.
        env = {**os.environ, "FARM_BROKER_URL": lf.settings.broker_url}
        noop = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "benchmarks.noop_app",
                "worker",
                "-P",
                "solo",
                "-Q",
                "noop",
                "--without-mingle",
                "--without-gossip",
                "-l",
                "WARNING",
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            os.environ["FARM_BROKER_URL"] = lf.settings.broker_url
            from benchmarks import noop_app  # reads FARM_BROKER_URL at import

            client = redis.Redis.from_url(lf.settings.broker_url)
            bare = []
            time.sleep(3)
            for i in range(30):
                token = f"t{i}"
                sent = time.time()
                noop_app.noop.apply_async(args=[token], queue="noop")
                while not client.exists(f"noop:{token}"):
                    time.sleep(0.0005)
                bare.append(float(client.get(f"noop:{token}")) - sent)
            farm_lat = []
            for i in range(10):
                rows = run_sweep(lf, store, sweep(f"latency-{i}", 1))
                r = rows[0]
                farm_lat.append(r["r"].timeline["received_at"] - r["sent_at"])
                time.sleep(0.5)
        finally:
            noop.terminate()
            noop.wait(10)
        b = med(bare[5:])
        print(
            f"enqueue → start on an idle worker: farm median {med(farm_lat) * 1000:.1f} ms "
            f"(n={len(farm_lat)}), bare Celery no-op median {b * 1000:.1f} ms (n={len(bare) - 5}); "
            f"ratio {med(farm_lat) / b:.2f}"
        )


def scheduling() -> None:
    print("\n## Scheduling efficiency (12 short jax jobs)")
    print(f"{'K':>2s} {'makespan s':>11s} {'sum busy s':>11s} {'ideal s':>8s} {'makespan/ideal':>15s}")
    for k in (1, 2):
        with farm(k) as (lf, store):
            t0 = time.time()
            rows = run_sweep(lf, store, sweep(f"sched-{k}", 12, train_samples=2000))
            end = max(x["r"].timeline["recorded_at"] for x in rows)
            busy = sum(x["r"].timeline["recorded_at"] - x["r"].timeline["received_at"] for x in rows)
            makespan = end - t0
            print(f"{k:2d} {makespan:11.2f} {busy:11.2f} {busy / k:8.2f} {makespan / (busy / k):15.3f}")


def timed(cmd: list[str], env: dict, runs: int = 5) -> float:
    """Median wall seconds of ``runs`` runs of a command that must succeed."""
    return med(timed_runs(cmd, env, runs))


def timed_runs(cmd: list[str], env: dict, runs: int) -> list[float]:
    """Wall seconds of each of ``runs`` runs of a command that must succeed."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        assert out.returncode == 0, out.stderr
    return times


def startup(runs: int = 9) -> None:
    print(f"\n## Start-up ({runs} runs each, interleaved; process start included)")
    farm_bin = str(Path(sys.executable).parent / "farm")
    with tempfile.TemporaryDirectory(prefix="fs-") as d, EmbeddedRedis(Path(d) / "r") as server:
        env = {**os.environ, "FARM_BROKER_URL": server.url}
        s = load_sweep_data(sweep("startup", 20))
        submit(s, FarmSettings(broker_url=server.url))
        commands = {
            "farm --help": [farm_bin, "--help"],
            "farm status": [farm_bin, "status", s.sweep_id],
            "farm status --json": [farm_bin, "status", s.sweep_id, "--json"],
        }
        times: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(runs):  # interleaved, so a burst of load elsewhere on the machine hits all alike
            for label, cmd in commands.items():
                times[label] += timed_runs(cmd, env, 1)
        for label, t in times.items():
            print(f"{label}: median {med(t):.3f} s, min {min(t):.3f} s")


def report(n: int = 100_000) -> None:
    print(f"\n## farm report over {n:,} stored results")
    from farm.job import JobEnvelope, JobSpec
    from farm.result import EpochRecord, JobResult, JobStatus

    with tempfile.TemporaryDirectory(prefix="fs-") as d, EmbeddedRedis(Path(d) / "r", appendonly=False) as server:
        store = Store(redis.Redis.from_url(server.url, decode_responses=True))
        cells = [
            JobSpec(
                sweep="big",
                workload="fashion_mnist_mlp",
                params={"hidden_layers": h},
                batch_size=b,
                data="synthetic",
                epochs=e,
            )
            for h in range(1, 11)
            for b in (16, 32, 64, 128, 256)
            for e in (2, 3, 4, 5)
        ]
        t0 = time.perf_counter()
        ids, pipe, results = [], store.r.pipeline(transaction=False), []
        for i in range(n):
            job = cells[i % len(cells)].model_copy(update={"repeat": i // len(cells)})
            env = JobEnvelope.for_job(JobSpec.model_validate(job.model_dump()), "big-1")
            res = JobResult(
                job_id=env.job_id,
                sweep_id="big-1",
                job=env.job,
                status=JobStatus.succeeded,
                train_samples_used=1000,
                device_name="cpu",
                epochs=[EpochRecord(epoch=e + 1, wall_s=1.0 + 0.01 * ((i * 7 + e) % 13)) for e in range(3)],
            )
            ids.append(env.job_id)
            pipe.set(store.k("job", env.job_id), env.model_dump_json())
            results.append(res)
            if len(results) >= 1000:  # as a worker writes them: result, row and its shared part together
                pipe.execute()
                store.record_results(results)
                results.clear()
        pipe.execute()
        store.record_results(results)
        store.save_sweep("big-1", {"sweep_id": "big-1", "name": "big"}, [])
        store.r.rpush(store.k("sweep", "big-1", "jobs"), *ids)
        store.r.zadd(store.k("sweeps"), {"big-1": time.time()})
        print(f"(writing them took {time.perf_counter() - t0:.0f} s)")
        env = {**os.environ, "FARM_BROKER_URL": server.url}
        out = Path(d) / "report.csv"
        farm_bin = str(Path(sys.executable).parent / "farm")
        print(
            f"farm report big-1 -o report.csv: {timed([farm_bin, 'report', 'big-1', '-o', str(out)], env, 3):.2f} s "
            f"({len(out.read_text().splitlines()) - 1} cells)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="overhead,dispatch,scheduling,startup,report")
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="device of the overhead jobs")
    ap.add_argument("--backend", default="jax", help="backend of the overhead jobs")
    ap.add_argument("--quick", action="store_true", help="overhead: the back-to-back paths only")
    args = ap.parse_args()
    for name in args.only.split(","):
        if name == "overhead":
            overhead(args.device, args.backend, args.quick)
            continue
        {
            "dispatch": dispatch,
            "dispatch-submit": dispatch_submit,
            "scheduling": scheduling,
            "startup": startup,
            "report": report,
        }[name]()


if __name__ == "__main__":
    main()
