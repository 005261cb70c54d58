"""The farm's training child against a bare Keras script on the standard workloads (ResNet-50, the Transformer
text classifier), in training and inference, measured inside one process so the host's drift cancels.

``workloads_vs_bare.py`` compares whole runs (a real worker against a fresh bare process). On a shared 2-core VM
consecutive runs of these models differ by 1-22% (sd of the per-round log ratio, depending on the day), so a CI
of ±2% can need hundreds of rounds. Here one process holds both sides and alternates short blocks of them (ABBA
order, so a trend within a pair cancels too):

- **farm**: the model the farm builds (the workload registry's ``build_model``, compiled with the job's
  arguments), on the data the farm loads (``load_dataset`` of the workload's synthetic spec, then the
  workload's ``prepare``), run by the child's own code (``workers.training.fit`` or ``measure_offline``), timed
  by the child's callback (``epoch_callback``, its events written to a sink as the child writes them to its
  pipe), with the child's idle sampler, contention sampler and keep-alive checker running;
- **bare**: ``bare_workload.py``'s model, data and loops: plain ``fit`` with an epoch clock, or plain
  ``predict`` timed per pass.

Each block's figure is its mean epoch (or ``predict`` pass). What this leaves out is what differs between
processes (the fork server's child against a fresh interpreter); ``workloads_vs_bare.py`` covers that, with
wider CIs. A pair during which another process used the machine (the contention sampler's verdict over the
pair) is reported and left out.

    python -m benchmarks.workload_ablation --workload resnet50|text_transformer --mode train|inference
        [--pairs 60] [--epochs 2] [--samples N] [--json pairs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import keras  # after the environment above

from benchmarks.bare_keras import build_workload, run_workload, workload_data
from benchmarks.common import CONFIGS, paired_ratio_ci, versions
from benchmarks.farm_keras import FarmBlock
from farm.settings import FarmSettings
from workers.contention import ContentionSampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="resnet50", choices=sorted(CONFIGS))
    ap.add_argument("--mode", default="train", choices=["train", "inference"])
    ap.add_argument("--samples", type=int, default=0, help="samples per epoch; 0: workloads_vs_bare.py's")
    ap.add_argument("--epochs", type=int, default=2, help="epochs (inference: predict passes) per block")
    ap.add_argument("--pairs", type=int, default=60, help="block pairs (each: one bare, one farm block)")
    ap.add_argument("--json", type=Path, help="write every pair here as it ends")
    args = ap.parse_args()
    cfg = CONFIGS[args.workload]
    samples, batch, params = args.samples or cfg["samples"], cfg["batch"], cfg["params"]
    threshold = FarmSettings().contention_cpu_threshold

    x, y = workload_data(args.workload, samples, params)
    bare_model = build_workload(args.workload, params)
    with tempfile.TemporaryDirectory(prefix="farm-ablation-") as cache:
        farm = FarmBlock(args.workload, params, samples, batch, args.epochs, args.mode, Path(cache))
    counts = farm.model.count_params(), bare_model.count_params()
    if counts[0] != counts[1]:
        raise SystemExit(f"the sides built different models: farm {counts[0]} parameters, bare {counts[1]}")

    def bare() -> list[float]:
        return run_workload(bare_model, x, y, args.mode, args.epochs, batch).times

    bare(), farm()  # trace and compile both; not counted
    config = {
        "workload": args.workload,
        "mode": args.mode,
        "samples": samples,
        "batch": batch,
        "epochs_per_block": args.epochs,
        "params": params,
        "backend": keras.backend.backend(),
        "versions": versions([keras.backend.backend()]),
    }
    pairs: list[dict] = []
    for i in range(args.pairs):
        order = ("bare", "farm") if i % 2 == 0 else ("farm", "bare")  # ABBA: a trend within a pair cancels
        watch = ContentionSampler().start()
        t0 = time.perf_counter()
        got = {side: (bare if side == "bare" else farm)() for side in order}
        t1 = time.perf_counter()
        watch.stop()
        verdict = watch.window(t0, t1, threshold)
        pairs.append(
            {"pair": i + 1, "order": order, **got, "contended": verdict["contended"], "contention": verdict["figures"]}
        )
        if args.json:
            args.json.write_text(json.dumps({"config": config, "pairs": pairs}, default=str))
        b, f = statistics.mean(got["bare"]), statistics.mean(got["farm"])
        print(
            f"pair {i + 1}: bare {b:.4f} s  farm {f:.4f} s  ratio {f / b:.3f}   others' CPU "
            f"{verdict['figures'].get('cpu_others', 0.0):.1%}" + ("  CONTENDED" if verdict["contended"] else ""),
            flush=True,
        )
    summarise(config, pairs)


def summarise(config: dict, pairs: list[dict]) -> None:
    clean = [p for p in pairs if not p["contended"]]
    if not clean:
        print(f"\n{config['workload']} {config['mode']}: all {len(pairs)} pairs contended; no figure")
        return
    farm_s = [statistics.mean(p["farm"]) for p in clean]
    bare_s = [statistics.mean(p["bare"]) for p in clean]
    ratio, low, high = paired_ratio_ci(farm_s, bare_s)
    mid, m_low, m_high = paired_ratio_ci(farm_s, bare_s, center="median")
    print(
        f"\n{config['workload']} {config['mode']}, {config['backend']} on CPU, {len(clean)} of {len(pairs)} pairs "
        f"of {config['epochs_per_block']}-epoch blocks (contended pairs left out), one process: farm ÷ bare = "
        f"{ratio:.4f} (95% CI {low:.4f}–{high:.4f}); median of pairs {mid:.4f} ({m_low:.4f}–{m_high:.4f}); "
        f"mean epoch bare {statistics.median(bare_s):.4f} s, farm {statistics.median(farm_s):.4f} s (medians of blocks)"
    )


if __name__ == "__main__":
    main()
