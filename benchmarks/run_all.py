"""Every benchmark of the farm itself, one after another, each printing its own figures.

    .venv/bin/python -m benchmarks.run_all [--skip peer,report] [--quick]

Runs, in this order: ``farm_speed.py`` (per-job overhead cold and warm, dispatch, scheduling efficiency,
start-up, ``farm report`` over 100,000 results), ``farm_vs_bare.py`` (harness overhead against a bare
``model.fit``, JAX), ``hook_cost.py`` (what the farm adds per training step), ``report_speed.py``
(aggregation alone), ``lifecycle_speed.py`` (submit, cancel and resume of a 20,000-job sweep) and
``peer_ray.py`` (the same sweep through benchfarm and Ray Tune; skipped with a note when Ray is not installed).
Run it on a quiet machine: the figures are wall-clock times. ``--quick`` shortens the slow parts (fewer rounds,
the overhead's back-to-back paths only, Ray's actor-reuse mode only) for a first look; quote the full run.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def plan(quick: bool) -> list[tuple[str, list[str]]]:
    speed = ["farm_speed.py"] + (["--quick"] if quick else [])
    vs_bare = [
        "farm_vs_bare.py",
        "--backend",
        "jax",
        "--pipelines",
        "keras",
        "--samples",
        "3000",
        "--epochs",
        "4",
        "--rounds",
        "2" if quick else "5",
    ]
    peer = ["peer_ray.py"] + (["--ray-mode", "reuse"] if quick else [])
    lifecycle = ["lifecycle_speed.py", "--rounds", "1" if quick else "3"]
    steps = [
        ("speed", speed),
        ("vs_bare", vs_bare),
        ("hooks", ["hook_cost.py"]),
        ("report", ["report_speed.py"]),
        ("lifecycle", lifecycle),
        ("peer", peer),
    ]
    if importlib.util.find_spec("ray") is None:
        print(
            "Ray is not installed: the peer comparison runs benchfarm's side only (pip install 'ray[tune]' for both)",
            flush=True,
        )
        steps[-1] = ("peer", [*peer, "--skip-ray"])
    return steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip", default="", help="comma-separated: speed, vs_bare, hooks, report, peer")
    ap.add_argument("--quick", action="store_true", help="shorter runs for a first look")
    args = ap.parse_args()
    skip = {s for s in args.skip.split(",") if s}
    failed = []
    for name, argv in plan(args.quick):
        if name in skip:
            continue
        module = f"benchmarks.{Path(argv[0]).stem}"  # run as a module of the checkout: it imports benchmarks.common
        print(f"\n# {name}: python -m {module} {' '.join(argv[1:])}", flush=True)
        t0 = time.monotonic()
        rc = subprocess.run([sys.executable, "-m", module, *argv[1:]], cwd=HERE.parent).returncode
        print(f"# {name}: exit {rc} after {time.monotonic() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
