"""How much does others' CPU on a job's cores slow its steady epochs? The figure behind the contended threshold
of a cell measured to a precision (``farm.precision.contention_threshold``, ``defaults.CONTENTION_SLOWDOWN``).

A bare Keras script (``benchmarks.bare_fit``: the seed's CIFAR-10 MLP, no farm code) trains while duty-cycled
hogs use a known share of the machine's cores: each hog spins for ``share × period`` of every ``period`` on one
core. Levels run interleaved in shuffled rounds, so a drift of the machine over the run falls on every level
alike. Per level: the steady epoch's median time over the quiet level's in the same round (geometric mean over
rounds, with a bootstrap CI), the others' share the hogs actually used (their CPU seconds over the wall time
and the cores), and the slowdown per unit of that share. The slope through the origin over all levels is the
figure to set ``CONTENTION_SLOWDOWN`` from.

    python -m benchmarks.contention_sensitivity [--rounds 4] [--levels 0 0.05 0.1 0.2] [--samples 4000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, bare_env

HOG = """
import sys, time
share, period = float(sys.argv[1]), 0.02
while True:
    start = time.perf_counter()
    while time.perf_counter() - start < share * period:
        pass
    time.sleep(max(0.0, period - (time.perf_counter() - start)))
"""


def cpu_seconds(pid: int) -> float:
    """A process's CPU seconds so far (utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_level(share: float, cores: int, args: argparse.Namespace) -> dict:
    """One bare fit with hogs using ``share`` of the cores (one hog per core at that duty); its steady epoch and
    the others' share the hogs used while it ran."""
    hogs = [] if share <= 0 else [subprocess.Popen([sys.executable, "-c", HOG, str(share)]) for _ in range(cores)]
    try:
        time.sleep(0.2 if hogs else 0)
        before = sum(cpu_seconds(h.pid) for h in hogs)
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.bare_fit", str(args.samples), str(args.epochs), "32"],
            cwd=REPO,
            env=bare_env("tensorflow"),
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - t0
        used = sum(cpu_seconds(h.pid) for h in hogs) - before
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    epochs = json.loads(done.stdout.strip().splitlines()[-1])["epoch_s"]
    return {"share": share, "steady_s": statistics.median(epochs[1:]), "others": used / wall / cores}


def geomean_ci(ratios: list[float], rng: random.Random, draws: int = 2000) -> tuple[float, float, float]:
    """Geometric mean of ``ratios`` with a percentile bootstrap 95% CI."""
    logs = [math.log(r) for r in ratios]
    means = sorted(statistics.fmean(rng.choices(logs, k=len(logs))) for _ in range(draws))
    return math.exp(statistics.fmean(logs)), math.exp(means[int(0.025 * draws)]), math.exp(means[int(0.975 * draws)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2])
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    rng = random.Random(args.seed)  # noqa: S311 - an order to replay, not a secret
    levels = sorted(set(args.levels) | {0.0})
    rounds: list[dict[float, dict]] = []
    for r in range(args.rounds):
        order = levels[:]
        rng.shuffle(order)
        rounds.append({share: run_level(share, cores, args) for share in order})
        steady = ", ".join(f"{s:.0%} {rounds[-1][s]['steady_s']:.3f} s" for s in levels)
        print(f"round {r + 1}/{args.rounds}: {steady}")
    print(f"\n{cores} core(s); bare fit of the seed CIFAR-10 MLP, {args.samples} samples, {args.epochs} epochs")
    print(f"{'asked':>6} {'others used':>11} {'steady ratio':>12} {'95% CI':>15} {'slowdown/others':>15}")
    points = []
    for share in levels:
        ratios = [rd[share]["steady_s"] / rd[0.0]["steady_s"] for rd in rounds]
        used = statistics.fmean(rd[share]["others"] for rd in rounds)
        mean, lo, hi = geomean_ci(ratios, rng)
        per = (mean - 1) / used if used > 0 else float("nan")
        if share > 0:
            points.append((used, mean - 1))
        print(f"{share:>6.0%} {used:>11.1%} {mean:>12.3f} {f'{lo:.3f}–{hi:.3f}':>15} {per:>15.2f}")
    slope = sum(x * y for x, y in points) / sum(x * x for x, _ in points) if points else float("nan")
    print(f"\nslowdown per unit of others' CPU (least squares through the origin): {slope:.2f}")


if __name__ == "__main__":
    main()
