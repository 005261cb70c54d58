"""How fast does ``farm dashboard`` answer over a farm of 100,000 jobs?

Fills a throwaway redis-server with ``--sweeps`` sweeps of ``--jobs`` jobs each (20 × 5,000 by default), submitted
through the farm's own submit (messages waiting on the queue, states queued): the first ``--finished`` sweeps
then finish (a result recorded for every job, 1 % of them failed, their messages taken off the queue), the next
one is running (a fifth of its jobs recorded, two running on two registered workers, the rest queued), the
rest wait. Nothing trains: results are written as a worker writes them (``Store.record_results``).

Then it starts the real dashboard as a separate process (``farm dashboard --broker URL --port 0``) and times,
over HTTP from this process, ``--requests`` requests one after the other of each page: the overview ``/``
(every sweep on one page, so all 100,000 jobs' states are counted), its JSON, a finished 5,000-job sweep's
page (progress, jobs and its HTML report) and its JSON, the running sweep's page and a waiting sweep's. The
first request of each is printed on its own (it pays for the counting, or for drawing the report); then the
median and the maximum of the rest, which the dashboard's caches serve as a browser's refreshes would be
(counts kept a few seconds, a finished sweep's report until it changes); and the overview requested
``--paced`` times at the pages' refresh interval, 5 s apart, as a watching browser does, so that every live
sweep's counts have expired and are counted again each time. Finally, in this process, what one
full recount of every sweep's states costs: Redis counting (``SORT_RO``) and the pipelined fallback.

    .venv/bin/python -m benchmarks.dashboard_speed [--sweeps 20] [--jobs 5000] [--finished 6] [--requests 30]
"""

from __future__ import annotations

import argparse
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis
import yaml

import farm.submit
from farm.broker_scan import remove_messages
from farm.dashboard.counts import StateReader
from farm.embedded import EmbeddedRedis
from farm.job import JobEnvelope
from farm.result import EpochRecord, JobResult, JobStatus
from farm.settings import FarmSettings
from farm.store import Store
from farm.sweep import load_sweep

REPO = Path(__file__).resolve().parent.parent
CELLS = 20
#: The dashboard's default refresh interval: how often a watching browser reloads the overview.
REFRESH_S = 5.0


def sweep_spec(name: str, jobs: int) -> dict[str, Any]:
    """``jobs`` tiny synthetic jobs: 20 cells (the hidden width varies) × ``jobs / 20`` repeats."""
    return {
        "name": name,
        "repeats": max(1, jobs // CELLS),
        "defaults": {"backend": "jax", "data": "synthetic", "epochs": 3},
        "jobs": [
            {"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 8 + i}} for i in range(CELLS)
        ],
    }


def result_for(env: JobEnvelope, k: int) -> JobResult:
    """A finished run of ``env``'s job as a worker records it: three epochs, the first slower; 1 in 100 failed."""
    failed = k % 100 == 99
    slower = 1 + (k % 7) / 100
    return JobResult(
        job_id=env.job_id,
        sweep_id=env.sweep_id,
        job=env.job,
        status=JobStatus.failed if failed else JobStatus.succeeded,
        worker=f"bench-w{k % 4}",
        error="RuntimeError: a benchmark's planted failure" if failed else None,
        device_name="cpu-bench",
        train_samples_used=1000,
        epochs=[] if failed else [EpochRecord(epoch=e, wall_s=(3.0 if e == 0 else 1.0) * slower) for e in range(3)],
    )


def record(store: Store, envelopes: list[JobEnvelope]) -> None:
    for start in range(0, len(envelopes), 1000):
        part = envelopes[start : start + 1000]
        store.record_results([result_for(env, start + i) for i, env in enumerate(part)])


def fill(
    store: Store, settings: FarmSettings, directory: Path, sweeps: int, jobs: int, finished: int
) -> dict[str, str]:
    """The farm described above; returns a finished, the running and a waiting sweep's ids."""
    ids: list[str] = []
    running_jobs: list[str] = []
    for i in range(sweeps):
        path = directory / f"bench-{i:02d}.yaml"
        path.write_text(yaml.safe_dump(sweep_spec(f"bench-{i:02d}", jobs)))
        sweep = load_sweep(path)
        farm.submit.submit(sweep, settings, store=store)
        ids.append(sweep.sweep_id)
        envelopes = sweep.envelopes()
        if i < finished:
            record(store, envelopes)
            remove_messages(store.r, [e.job_id for e in envelopes], store.known_queues(), store.p)
        elif i == finished:
            done = envelopes[: len(envelopes) // 5]
            record(store, done)
            remove_messages(store.r, [e.job_id for e in done], store.known_queues(), store.p)
            for k, env in enumerate(envelopes[len(done) : len(done) + 2]):
                store.set_state(env.job_id, JobStatus.running, worker=f"bench-w{k}", epoch=1, epochs=3)
                running_jobs.append(env.job_id)
    for k in range(4):
        store.register_worker(
            f"bench-w{k}",
            {
                "name": f"bench-w{k}",
                "host": "bench-host",
                "queues": store.known_queues() or [],
                "backends": {"jax": "0"},
                "job": running_jobs[k] if k < len(running_jobs) else None,
                "quarantined": False,
            },
            ttl_s=3600,
        )
    return {"finished": ids[0], "running": ids[finished], "waiting": ids[-1]}


def start_dashboard(url: str) -> tuple[subprocess.Popen[str], str]:
    farm_bin = str(Path(sys.executable).parent / "farm")
    proc = subprocess.Popen(
        [farm_bin, "dashboard", "--broker", url, "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    match = re.search(r"http://[^/\s]+:(\d+)/", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"the dashboard printed no URL: {line!r} {proc.communicate()[1][-2000:]}")
    return proc, f"http://127.0.0.1:{match.group(1)}"


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def timed_get(url: str) -> tuple[float, int]:
    t = time.perf_counter()
    with _OPENER.open(url, timeout=600) as response:
        size = len(response.read())
        assert response.status == 200, (url, response.status)
    return time.perf_counter() - t, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--finished", type=int, default=6)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--paced", type=int, default=8, help="overview requests at the pages' refresh interval (5 s) apart")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dash-") as d:
        server = EmbeddedRedis(Path(d) / "redis", appendonly=False)
        server.start()
        try:
            settings = FarmSettings(broker_url=server.url)
            store = Store(redis.Redis.from_url(server.url, decode_responses=True))
            t0 = time.perf_counter()
            sweeps = fill(store, settings, Path(d), args.sweeps, args.jobs, args.finished)
            total = sum(int(store.r.llen(store.k("sweep", s, "jobs"))) for s in store.sweep_ids())
            print(
                f"{total:,} jobs in {args.sweeps} sweeps ({args.finished} finished, 1 running, "
                f"{args.sweeps - args.finished - 1} waiting); filled in {time.perf_counter() - t0:.0f} s"
            )
            proc, base = start_dashboard(server.url)
            try:
                pages = [
                    ("/ (overview, every sweep on it)", "/"),
                    ("/api/overview", "/api/overview"),
                    (f"/sweep/ID: finished, {args.jobs:,} jobs, with its report", f"/sweep/{sweeps['finished']}"),
                    ("/api/sweep/ID: finished", f"/api/sweep/{sweeps['finished']}"),
                    ("/sweep/ID: running, with its report", f"/sweep/{sweeps['running']}"),
                    ("/sweep/ID: waiting, no report", f"/sweep/{sweeps['waiting']}"),
                ]
                print(f"dashboard: {args.requests} requests per page one after the other (seconds):")
                print(f"  {'page':<52} {'first':>7} {'median':>7} {'max':>7} {'size':>9}")
                for label, path in pages:
                    first, size = timed_get(base + path)
                    rest = [timed_get(base + path)[0] for _ in range(args.requests - 1)]
                    print(
                        f"  {label:<52} {first:7.3f} {statistics.median(rest):7.3f} {max(rest):7.3f} "
                        f"{size / 1000:7.0f} kB"
                    )
                if args.paced:  # as a browser refreshes: the live sweeps' counts have expired each time
                    paced = []
                    for _ in range(args.paced):
                        time.sleep(REFRESH_S)
                        paced.append(timed_get(base + "/")[0])
                    label = f"/ every {REFRESH_S:g} s, live sweeps recounted ({args.paced} requests)"
                    print(f"  {label:<52} {'':>7} {statistics.median(paced):7.3f} {max(paced):7.3f}")
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=60)
            reader = StateReader(store)
            ids = store.sweep_ids()
            for how in ("SORT_RO (Redis counts)", "pipelined HGET (fallback)"):
                reader.server_side = how.startswith("SORT")
                t = time.perf_counter()
                counted = sum(reader.counts(s).total for s in ids)
                print(f"one full recount of {counted:,} jobs' states, {how}: {time.perf_counter() - t:.3f} s")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
