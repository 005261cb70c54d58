"""Steady-state throughput of the standard workloads, farm against a bare Keras script, training and inference:
ResNet-50 at a small image size and the Transformer text classifier, on CPU.

The farm side goes through the path users run (``farm submit``'s own code, a real Redis, a real ``farm
worker``); the bare side is ``benchmarks/bare_workload.py``, which builds the same models from Keras alone.
Rounds interleave the sides, and the order within a round turns every round, as in ``farm_vs_bare.py``. Steady
state excludes the first epoch (in inference: the first ``predict`` pass). Both sides feed numpy arrays.

    python benchmarks/workloads_vs_bare.py [--rounds 8] [--backend jax] [--workloads resnet50,text_transformer]
        [--modes train,inference] [--epochs N]

Prints, per workload and mode, the median steady epoch of each side and farm ÷ bare: the geometric mean of the
per-round ratios with a 95% CI by resampling rounds (rounds where either side was contended left out).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from farm.settings import FarmSettings
from workers.contention import ContentionSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from farm_vs_bare import FarmSide, paired_ratio_ci

HERE = Path(__file__).resolve().parent

#: Each workload's benchmark size on a 2-core CPU: small enough for a round in about a minute, big enough that
#: a steady epoch is seconds, not milliseconds (so the per-step callback's cost is not hidden by noise).
CONFIGS: dict[str, dict] = {
    "resnet50": {"params": {"image_size": 32, "classes": 10}, "samples": 256, "epochs": 4, "batch": 32},
    "text_transformer": {
        "params": {"seq_len": 64, "vocab_size": 5000, "width": 64, "depth": 2, "heads": 4, "classes": 2},
        "samples": 1024,
        "epochs": 4,
        "batch": 32,
    },
}


def bare(workload: str, mode: str, backend: str, cfg: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    args = [workload, mode, str(cfg["samples"]), str(cfg["epochs"]), str(cfg["batch"]), json.dumps(cfg["params"])]
    watch = ContentionSampler().start()
    try:
        out = subprocess.run(
            [sys.executable, str(HERE / "bare_workload.py"), *args], env=env, capture_output=True, text=True, check=True
        )
    finally:
        watch.stop()
    verdict = watch.window(watch.samples[0].at, watch.samples[-1].at, FarmSettings().contention_cpu_threshold)
    line = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "epochs": line["epoch_s"],
        "param_count": line["param_count"],
        "contention": verdict["figures"],
        "contended": verdict["contended"],
    }


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
    ap.add_argument("--json", type=Path, help="also write every run's epochs and contention here")
    args = ap.parse_args()
    raw: list[dict] = []
    names, modes = args.workloads.split(","), args.modes.split(",")
    per_round: dict[tuple[str, str, str], list[float]] = {}
    flags: dict[tuple[str, str, str], list[bool]] = {}
    with tempfile.TemporaryDirectory(prefix="farm-bench-") as d, FarmSide(Path(d), "cpu") as farm:
        for rnd in range(args.rounds):
            for name in names:
                cfg = {**CONFIGS[name], **({"epochs": args.epochs} if args.epochs else {})}
                for mode in modes:
                    sides = ["bare", "farm"] if rnd % 2 == 0 else ["farm", "bare"]
                    counts = {}
                    for side in sides:
                        if side == "bare":
                            out = bare(name, mode, args.backend, cfg)
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
                        key = (name, mode, side)
                        raw.append({"round": rnd + 1, "workload": name, "mode": mode, "side": side, **out})
                        if args.json:
                            args.json.write_text(json.dumps(raw, default=str))
                        per_round.setdefault(key, []).append(statistics.median(out["epochs"][1:]))
                        flags.setdefault(key, []).append(bool(out["contended"]))
                        print(
                            f"round {rnd + 1}: {name:16s} {mode:9s} {side:4s} epochs (s): "
                            + " ".join(f"{t:.3f}" for t in out["epochs"])
                            + f"   others' CPU {out['contention'].get('cpu_others', 0.0):.1%}"
                            + ("  CONTENDED" if out["contended"] else ""),
                            flush=True,
                        )
                    if counts["bare"] != counts["farm"]:
                        raise SystemExit(f"{name}: the two sides built different models: {counts}")
    print(f"\n{args.backend} on CPU, {args.rounds} rounds, interleaved; the farm side through a real worker and Redis")
    print(
        "farm/bare = geometric mean of the per-round ratios of median steady epochs; median = their median "
        "(a burst on the host that slows one side of a few rounds does not move it); 95% CIs by resampling rounds"
    )
    head = f"{'workload':16s} {'mode':9s} {'bare s':>8s} {'farm s':>8s} {'farm/bare':>9s} {'95% CI':>17s}"
    print(f"{head} {'median':>7s} {'95% CI':>17s} {'rounds':>6s}")
    for name in names:
        for mode in modes:
            farm_r, bare_r = per_round[(name, mode, "farm")], per_round[(name, mode, "bare")]
            clean = [
                i
                for i, (a, b) in enumerate(zip(flags[(name, mode, "farm")], flags[(name, mode, "bare")], strict=True))
                if not (a or b)
            ]
            pair = [farm_r[i] for i in clean], [bare_r[i] for i in clean]
            ratio, low, high = paired_ratio_ci(*pair)
            mid, m_low, m_high = paired_ratio_ci(*pair, center="median")
            print(
                f"{name:16s} {mode:9s} {statistics.median(bare_r):8.4f} {statistics.median(farm_r):8.4f} "
                f"{ratio:9.3f}   [{low:.3f}, {high:.3f}] {mid:7.3f}   [{m_low:.3f}, {m_high:.3f}] "
                f"{len(clean):3d}/{len(farm_r):<2d}"
            )


if __name__ == "__main__":
    main()
