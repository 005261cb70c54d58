"""Steady-state throughput of the standard workloads, farm against a bare Keras script, training and inference:
ResNet-50 at a small image size and the Transformer text classifier, on CPU.

The farm side goes through the path users run (``farm submit``'s own code, a real Redis, a real ``farm
worker``); the bare side is ``benchmarks/bare_workload.py``, which builds the same models from Keras alone.
Rounds interleave the sides, and the order within a round turns every round, as in ``farm_vs_bare.py``. Steady
state excludes the first epoch (in inference: the first ``predict`` pass). Both sides feed numpy arrays.

    python -m benchmarks.workloads_vs_bare [--rounds 8] [--backend jax] [--workloads resnet50,text_transformer]
        [--modes train,inference] [--epochs N] [--json runs.json]
    python -m benchmarks.workloads_vs_bare --pool runs1.json runs2.json   # several runs' rounds together

Prints, per workload and mode, the median steady epoch of each side and farm ÷ bare: the geometric mean and the
median of the per-round ratios, each with a 95% CI by resampling rounds (rounds where either side was contended
left out).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.common import (
    CONFIGS,
    FarmSide,
    add_raw_arguments,
    farm_env,
    paired_ratio_ci,
    pool,
    run_bare_workload,
    versions,
)

HERE = Path(__file__).resolve().parent


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--workloads", default="resnet50,text_transformer")
    ap.add_argument("--modes", default="train,inference")
    ap.add_argument(
        "--epochs", type=int, default=0, help="epochs (inference: predict passes) per run; 0: each workload's own"
    )
    add_raw_arguments(ap)
    args = ap.parse_args()
    if args.pool:
        config, raw = pool(args.pool)
        summarise(config, raw)
        return
    names, modes = args.workloads.split(","), args.modes.split(",")
    configs = {name: {**CONFIGS[name], **({"epochs": args.epochs} if args.epochs else {})} for name in names}
    config = {
        "backend": args.backend,
        "device": "cpu",
        "configs": configs,
        "versions": versions([args.backend]),
        **farm_env(),
    }
    raw: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="farm-bench-") as d, FarmSide(Path(d), "cpu") as farm:
        for rnd in range(args.rounds):
            for name in names:
                cfg = configs[name]
                for mode in modes:
                    sides = ["bare", "farm"] if rnd % 2 == 0 else ["farm", "bare"]
                    counts = {}
                    for side in sides:
                        if side == "bare":
                            out = run_bare_workload(name, mode, args.backend, cfg)
                        else:
                            out = farm.run(
                                cfg["samples"],
                                cfg["epochs"],
                                cfg["batch"],
                                args.backend,
                                "keras",
                                workload=name,
                                params=cfg["params"],
                                mode=mode,
                                test_samples=16,
                            )
                        counts[side] = out["param_count"]
                        raw.append({"round": rnd + 1, "workload": name, "mode": mode, "side": side, **out})
                        if args.json:
                            args.json.write_text(json.dumps({"config": config, "runs": raw}, default=str))
                        print(
                            f"round {rnd + 1}: {name:16s} {mode:9s} {side:4s} epochs (s): "
                            + " ".join(f"{t:.3f}" for t in out["epochs"])
                            + f"   others' CPU {out['contention'].get('cpu_others', 0.0):.1%}"
                            + ("  CONTENDED" if out["contended"] else ""),
                            flush=True,
                        )
                    if counts["bare"] != counts["farm"]:
                        raise SystemExit(f"{name}: the two sides built different models: {counts}")
    summarise(config, raw)


def summarise(config: dict, raw: list[dict]) -> None:
    """farm ÷ bare per workload and mode, paired by round, contended rounds left out."""
    per_round: dict[tuple[str, str, str], dict[int, tuple[float, bool]]] = {}
    for run in raw:
        key = (run["workload"], run["mode"], run["side"])
        per_round.setdefault(key, {})[run["round"]] = (statistics.median(run["epochs"][1:]), bool(run["contended"]))
    rounds = max(run["round"] for run in raw)
    print(f"\n{config['backend']} on CPU, {rounds} rounds, interleaved; the farm side through a real worker and Redis")
    if config.get("farm_env"):
        print(f"farm settings changed for this run: {config['farm_env']}")
    print(
        "farm/bare = geometric mean of the per-round ratios of median steady epochs; median = their median "
        "(a burst on the host that slows one side of a few rounds does not move it); 95% CIs by resampling rounds"
    )
    head = f"{'workload':16s} {'mode':9s} {'bare s':>8s} {'farm s':>8s} {'farm/bare':>9s} {'95% CI':>17s}"
    print(f"{head} {'median':>7s} {'95% CI':>17s} {'rounds':>7s}")
    for (name, mode, side), farm_runs in per_round.items():
        if side != "farm":
            continue
        bare_runs = per_round[(name, mode, "bare")]
        clean = [r for r in farm_runs if r in bare_runs and not (farm_runs[r][1] or bare_runs[r][1])]
        pair = [farm_runs[r][0] for r in clean], [bare_runs[r][0] for r in clean]
        ratio, low, high = paired_ratio_ci(*pair)
        mid, m_low, m_high = paired_ratio_ci(*pair, center="median")
        print(
            f"{name:16s} {mode:9s} {statistics.median(pair[1]):8.4f} {statistics.median(pair[0]):8.4f} "
            f"{ratio:9.3f}   [{low:.3f}, {high:.3f}] {mid:7.3f}   [{m_low:.3f}, {m_high:.3f}] "
            f"{len(clean):3d}/{len(farm_runs):<3d}"
        )


if __name__ == "__main__":
    main()
