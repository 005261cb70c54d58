"""How long the whole-sweep commands take on a large sweep: submit, cancel, resume, and a re-submit that has
nothing to send, against an embedded redis-server of its own.

    .venv/bin/python -m benchmarks.lifecycle_speed [--jobs 20000] [--rounds 3]

Prints the median and range over rounds of each step. The sweep is ``--jobs`` tiny synthetic JAX jobs (20
cells × repeats); nothing trains: only the farm's own bookkeeping and Redis round trips are timed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import redis
import yaml

import farm.submit
from farm.embedded import EmbeddedRedis
from farm.lifecycle import cancel_sweep, resume_sweep
from farm.settings import FarmSettings
from farm.store import Store
from farm.sweep import load_sweep


def one_round(directory: Path, jobs: int, index: int) -> dict[str, float]:
    cells = 20
    spec = {
        "name": f"big-{index}",
        "repeats": jobs // cells,
        "defaults": {"backend": "jax", "data": "synthetic", "epochs": 1},
        "jobs": [
            {"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 8 + i}} for i in range(cells)
        ],
    }
    path = directory / f"big-{index}.yaml"
    path.write_text(yaml.safe_dump(spec))
    server = EmbeddedRedis(directory / f"redis-{index}")
    server.start()
    try:
        settings = FarmSettings(broker_url=server.url)
        store = Store(redis.Redis.from_url(server.url, decode_responses=True))
        sweep = load_sweep(path)
        times: dict[str, float] = {}
        t = time.perf_counter()
        out = farm.submit.submit(sweep, settings, store=store)
        times["submit"] = time.perf_counter() - t
        assert out.enqueued == len(sweep.jobs)
        t = time.perf_counter()
        again = farm.submit.submit(load_sweep(path), settings, store=store)
        times["re-submit (nothing to send)"] = time.perf_counter() - t
        assert again.enqueued == 0
        t = time.perf_counter()
        cancelled = cancel_sweep(store, sweep.sweep_id)
        times["cancel"] = time.perf_counter() - t
        assert cancelled.cancelled == len(sweep.jobs) and cancelled.removed_messages == len(sweep.jobs)
        t = time.perf_counter()
        resumed = resume_sweep(store, settings, sweep.sweep_id)
        times["resume after cancel"] = time.perf_counter() - t
        assert resumed.enqueued == len(sweep.jobs)
        return times
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="farm-") as d:
        for i in range(args.rounds):
            rounds.append(one_round(Path(d), args.jobs, i))
    print(f"{args.jobs:,} jobs, {args.rounds} rounds (median, min–max):")
    for step in rounds[0]:
        values = [r[step] for r in rounds]
        print(f"  {step:<28} {statistics.median(values):6.2f} s   ({min(values):.2f}–{max(values):.2f})")


if __name__ == "__main__":
    main()
