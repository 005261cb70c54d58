"""Reproducibility, measured: the same small sweep run twice under different names on a quiet machine, then a
third time with a CPU hog (processes this script starts and stops) beside the worker for part of the run.

    .venv/bin/python -m benchmarks.reproducibility [--repeats 5] [--epochs 4] [--samples 2000] [--hogs 2]

Prints, per cell:
- the two quiet runs' median throughput with 95% CIs, and whether each median falls inside the other's CI;
- the hog run's contended marks against which repeats' steady windows overlapped the hog (every overlapping
  repeat should be flagged, no other one), and the sampler's own CPU cost per job;
- the quiet and hog runs' medians, with the contended repeats left out (the report's default) and kept.

Run it on a quiet machine: the first two runs are the baseline. One real ``farm worker`` on an embedded Redis,
as ``farm run`` starts them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from farm.local import LocalFarm
from farm.reports.aggregate import aggregate, results_frame
from farm.rows import result_row
from farm.settings import FarmSettings
from farm.store import Store
from farm.submit import submit
from farm.sweep import load_sweep_data

HOG = "import time\nwhile True: pass"


def spec(name: str, repeats: int, epochs: int, samples: int) -> dict[str, Any]:
    return {
        "name": name,
        "repeats": repeats,
        "defaults": {
            "backend": "jax",
            "data": "synthetic",
            "epochs": epochs,
            "train_samples": samples,
            "test_samples": 256,
        },
        "jobs": [
            {"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 3, "units": 256}},
            {"workload": "cifar10_mlp", "params": {"hidden_units": [512, 256]}},
        ],
    }


def run_sweep(
    store: Store, settings: FarmSettings, data: dict[str, Any], during: Any = None
) -> tuple[pd.DataFrame, list[Any]]:
    """Submit, wait for every result (calling ``during(done)`` as results come in), return rows and results."""
    sweep = load_sweep_data(data, "benchmark")
    submit(sweep, settings, store=store)
    ids = [e.job_id for e in sweep.envelopes()]
    while True:
        results = store.results(ids)
        done = sum(r is not None for r in results)
        if during is not None:
            during(done, len(ids))
        if done == len(ids):
            break
        time.sleep(0.5)
    return results_frame(result_row(r) for r in results if r is not None), results  # every one is, by now


def steady_window(result: Any) -> tuple[float | None, float | None]:
    """The wall-clock span the contended mark judges: from the end of the first epoch to the end of training."""
    timeline = result.timeline or {}
    start, end = timeline.get("first_step_at"), timeline.get("train_end_at")
    if start is None or not result.epochs:
        return start, end
    first = result.epochs[0]
    return start + first.wall_s + (first.val_s or 0.0), end


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--hogs", type=int, default=2, help="busy processes started beside the worker")
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="farm-repro-") as d,
        LocalFarm(Path(d), FarmSettings(), embedded=True, cpu_workers=1) as farm,
    ):
        store = Store.from_settings(farm.settings)
        while not store.live_workers():
            time.sleep(0.2)
        run_sweep(store, farm.settings, spec("warm-up", 1, 2, 256))  # fork server, compile cache
        quiet = [
            run_sweep(store, farm.settings, spec(f"quiet-{i}", args.repeats, args.epochs, args.samples))[0]
            for i in (1, 2)
        ]

        hog: dict[str, Any] = {"procs": [], "start": None, "end": None}
        total = 2 * args.repeats

        def hog_control(done: int, n: int) -> None:
            # The hog runs from a third of the sweep to two thirds: some repeats before, during and after it.
            if hog["start"] is None and done >= n // 3:
                hog["procs"] = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
                hog["start"] = time.time()
            elif hog["start"] is not None and hog["end"] is None and done >= (2 * n) // 3:
                for p in hog["procs"]:
                    p.kill()
                    p.wait()
                hog["end"] = time.time()

        try:
            hogged, results = run_sweep(
                store, farm.settings, spec("hogged", args.repeats, args.epochs, args.samples), during=hog_control
            )
        finally:
            for p in hog["procs"]:
                p.kill()
    hog_end = hog["end"] or time.time()

    print(
        f"\n{total} jobs per run (2 cells x {args.repeats} repeats), {args.epochs} epochs, {args.samples} "
        f"synthetic samples, JAX on CPU, one worker; hog: {args.hogs} busy process(es)"
    )
    print("\n1. Quiet vs quiet: median steady samples/s [95% CI]")
    a, b = (aggregate(q).set_index("workload") for q in quiet)
    for cell in a.index:
        ma, la, ha = a.loc[
            cell, ["steady_samples_per_s_median", "steady_samples_per_s_ci_low", "steady_samples_per_s_ci_high"]
        ]
        mb, lb, hb = b.loc[
            cell, ["steady_samples_per_s_median", "steady_samples_per_s_ci_low", "steady_samples_per_s_ci_high"]
        ]
        agree = "agree" if (lb <= ma <= hb) or (la <= mb <= ha) else "DISAGREE"
        print(
            f"  {cell:18s} run 1 {ma:8.1f} [{la:.1f}, {ha:.1f}]   run 2 {mb:8.1f} [{lb:.1f}, {hb:.1f}]   "
            f"{mb / ma - 1:+.1%}  {agree}; contended repeats: {int(a.loc[cell, 'n_contended'])}, "
            f"{int(b.loc[cell, 'n_contended'])}"
        )

    print("\n2. Hog run: contended marks against overlap with the hog")
    counts = {"overlapped, flagged": 0, "overlapped, not flagged": 0, "clear, flagged": 0, "clear, not flagged": 0}
    for r in results:
        start, end = steady_window(r)
        overlapped = bool(start and end and hog["start"] and start < hog_end and end > hog["start"])
        key = f"{'overlapped' if overlapped else 'clear'}, {'flagged' if r.contended else 'not flagged'}"
        counts[key] += 1
        print(
            f"  {r.job.workload:18s} repeat {r.job.repeat}  others' CPU {r.contention.get('cpu_others', 0):5.1%}  "
            f"{'contended' if r.contended else 'quiet':9s}  {'overlapped the hog' if overlapped else ''}"
        )
    print("  " + "; ".join(f"{k}: {v}" for k, v in counts.items()))
    cost = sorted(
        r.contention["sampler_cpu_s"] / r.phases.train_s
        for r in results
        if r.contention.get("sampler_cpu_s") is not None and r.phases.train_s
    )
    if cost:
        print(
            "  the sampler's own CPU per job, as a share of one core over its training: "
            f"median {cost[len(cost) // 2]:.3%}, max {cost[-1]:.3%} ({len(cost)} jobs)"
        )

    print("\n3. Quiet vs hog, median steady samples/s: contended repeats left out (default) and kept")
    q = aggregate(pd.concat(quiet, ignore_index=True)).set_index("workload")
    out = aggregate(hogged).set_index("workload")
    kept = aggregate(hogged, include_invalid=True).set_index("workload")
    for cell in q.index:
        mq = q.loc[cell, "steady_samples_per_s_median"]
        mo, mk = out.loc[cell, "steady_samples_per_s_median"], kept.loc[cell, "steady_samples_per_s_median"]
        print(
            f"  {cell:18s} quiet {mq:8.1f}   hog run without contended {mo:8.1f} ({mo / mq - 1:+.1%}, "
            f"n={int(out.loc[cell, 'n'])})   with contended {mk:8.1f} ({mk / mq - 1:+.1%}, "
            f"n={int(kept.loc[cell, 'n'])})"
        )


if __name__ == "__main__":
    main()
