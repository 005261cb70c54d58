"""Where a harness overhead lives: the bare script against the farm's training child run directly, with no
worker, Redis or queue in the path, once as a fresh interpreter and once forked from a fork server.

    .venv/bin/python -m benchmarks.child_vs_bare [--backend jax] [--pipeline keras] [--rounds 8]
    .venv/bin/python -m benchmarks.child_vs_bare --workload text_transformer [--mode inference]   # vs bare_workload.py

If ``farm_vs_bare.py`` (through a real worker) shows an overhead and this does not, it is in the worker's path
(its processes, its environment); if this shows it too, it is inside the child (``workers.training``).
Interleaved rounds, the order turning each round; prints each side's ratio to bare per round and their
geometric means with a 95% bootstrap CI over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import CONFIGS, paired_ratio_ci, run_bare_fit, run_bare_workload, yardstick
from farm.settings import FarmSettings
from farm.sweep import load_sweep_data
from workers.supervisor import WarmPool, run_child


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--pipeline", default="keras", help="the farm's input_pipeline (keras or farm)")
    ap.add_argument("--workload", default="cifar10_mlp", choices=["cifar10_mlp", *sorted(CONFIGS)])
    ap.add_argument("--mode", default="train", choices=["train", "inference"])
    ap.add_argument("--samples", type=int, default=0, help="0: 1000 for cifar10_mlp, else workloads_vs_bare.py's")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    cfg = {**CONFIGS.get(args.workload, {"params": {}, "samples": 1000}), "epochs": args.epochs, "batch": args.batch}
    args.samples = args.samples or cfg["samples"]
    cfg["samples"] = args.samples
    with tempfile.TemporaryDirectory(prefix="farm-child-") as d:
        settings = FarmSettings(cache_dir=Path(d) / "cache")
        spec = {
            "name": "child-vs-bare",
            "defaults": {
                "backend": args.backend,
                "device": "cpu",
                "data": "synthetic",
                "epochs": args.epochs,
                "batch_size": args.batch,
                "train_samples": args.samples,
                "test_samples": 256 if args.workload == "cifar10_mlp" else 16,
                "input_pipeline": args.pipeline,
                "mode": args.mode,
            },
            "jobs": [{"workload": args.workload, "params": cfg["params"]}],
        }
        envelope = load_sweep_data(spec, "benchmark").envelopes()[0]
        pool = WarmPool()
        sides = ["bare", "fresh", "forked"]
        medians: dict[str, list[float]] = {s: [] for s in sides}
        cpu_medians: dict[str, list[float]] = {s: [] for s in sides}
        try:
            for rnd in range(args.rounds):
                for side in sides[rnd % 3 :] + sides[: rnd % 3]:
                    if side == "bare" and args.workload != "cifar10_mlp":
                        got = run_bare_workload(args.workload, args.mode, args.backend, cfg)
                        epochs, cpu = got["epochs"], got["cpu"]
                    elif side == "bare":
                        epochs, cpu = run_bare_fit(
                            args.samples,
                            args.epochs,
                            args.batch,
                            args.backend,
                            "cpu",
                            yardstick(args.backend, args.pipeline),
                        )
                    else:
                        out = run_child(
                            envelope, settings, lambda _event: None, pool=pool if side == "forked" else None
                        )
                        if out.status != "succeeded":
                            raise RuntimeError(f"{side} child {out.status}: {out.error}")
                        epochs = [e["wall_s"] for e in out.result["epochs"]]
                        cpu = [e["cpu_s"] for e in out.result["epochs"]]
                    medians[side].append(statistics.median(epochs[1:]))
                    cpu_medians[side].append(statistics.median(cpu[1:]))
                    print(f"round {rnd + 1}: {side:6s} " + " ".join(f"{t:.3f}" for t in epochs), flush=True)
        finally:
            pool.close()
    print(
        f"\n{args.workload} {args.mode}, {args.backend}, pipeline {args.pipeline}, {args.rounds} rounds: "
        "child ÷ bare, median steady epoch"
    )
    for side in ("fresh", "forked"):
        ratio, low, high = paired_ratio_ci(medians[side], medians["bare"])
        per_round = ", ".join(f"{a / b:.3f}" for a, b in zip(medians[side], medians["bare"], strict=True))
        print(f"  {side:6s} {ratio:.3f} [{low:.3f}, {high:.3f}]   per round: {per_round}")
        c_ratio, c_low, c_high = paired_ratio_ci(cpu_medians[side], cpu_medians["bare"])
        print(f"  {side:6s} process CPU per epoch {c_ratio:.3f} [{c_low:.3f}, {c_high:.3f}]")


if __name__ == "__main__":
    main()
