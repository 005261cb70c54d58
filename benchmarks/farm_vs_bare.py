"""Steady-state throughput of the seed's CIFAR-10 MLP: a bare ``model.fit`` script against the farm's runner.

Both run the same model (Dense 3000 → 1000 → 10, SGD, batch 32) on synthetic data of CIFAR-10's shape, each in
a fresh process, interleaved (bare, farm, bare, farm, …) so drift of the machine hits both alike. The farm
side is the real training child (``workers.child`` through ``workers.supervisor.run_child``), with the farm's
input pipeline and, for comparison, Keras' own numpy path. Steady state excludes the first epoch.

    python benchmarks/farm_vs_bare.py [--samples 4000] [--epochs 4] [--rounds 3] [--backend tensorflow] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from farm.job import JobEnvelope, JobSpec  # noqa: E402
from farm.settings import FarmSettings  # noqa: E402
from farm.stats import ratio_ci  # noqa: E402
from workers.supervisor import run_child  # noqa: E402


def bare(samples: int, epochs: int, batch: int, backend: str, device: str = "cpu") -> list[float]:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if device == "cpu":  # what the farm does for a CPU job: no GPU in sight
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    elif backend == "jax":
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bare_fit.py"), str(samples), str(epochs),
                          str(batch)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["epoch_s"]


def farm(samples: int, epochs: int, batch: int, backend: str, pipeline: str, cache: str, rnd: int,
         device: str = "cpu") -> list[float]:
    job = JobSpec(sweep="bench", workload="cifar10_mlp", backend=backend, epochs=epochs, batch_size=batch,
                  data="synthetic", train_samples=samples, test_samples=256, input_pipeline=pipeline, repeat=rnd,
                  device=device)
    outcome = run_child(JobEnvelope.for_job(job, "bench"), FarmSettings(cache_dir=cache), lambda e: None)
    if outcome.status != "succeeded":
        raise RuntimeError(f"farm job {outcome.status}: {outcome.error}\n{outcome.stderr_tail}")
    return [e["wall_s"] for e in outcome.result["epochs"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backend", default="tensorflow")
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--pipelines", default="farm,keras", help="farm input pipelines to measure")
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="farm-bench-")
    pipelines = args.pipelines.split(",")
    steady: dict[str, list[float]] = {"bare model.fit": []} | {f"farm ({p} pipeline)": [] for p in pipelines}
    for rnd in range(args.rounds):
        runs = {"bare model.fit": bare(args.samples, args.epochs, args.batch, args.backend, args.device)}
        for p in pipelines:
            runs[f"farm ({p} pipeline)"] = farm(args.samples, args.epochs, args.batch, args.backend, p, cache, rnd,
                                                args.device)
        for name, epochs in runs.items():
            steady[name].extend(epochs[1:])
            print(f"round {rnd + 1}: {name:24s} epochs (s): " + " ".join(f"{t:.2f}" for t in epochs), flush=True)
    bare_s = steady["bare model.fit"]
    print(f"\ncifar10_mlp, {args.backend} on {args.device}, batch {args.batch}, {args.samples} synthetic samples, "
          f"{args.rounds} rounds x {args.epochs - 1} steady epochs")
    print("ratio = farm's median steady epoch time / bare's (1.00 = no overhead; < 1 = farm faster), "
          "with a 95% bootstrap CI")
    print(f"{'runner':24s} {'median epoch s':>15s} {'IQR':>7s} {'samples/s':>10s} {'ratio':>7s} {'95% CI':>15s}")
    for name, values in steady.items():
        med = statistics.median(values)
        q = statistics.quantiles(values, n=4) if len(values) > 1 else [med, med, med]
        ratio, low, high = ratio_ci(values, bare_s, seed=1)
        print(f"{name:24s} {med:15.3f} {q[2] - q[0]:7.3f} {args.samples / med:10.1f} {ratio:7.3f} "
              f"  [{low:.3f}, {high:.3f}]")


if __name__ == "__main__":
    main()
