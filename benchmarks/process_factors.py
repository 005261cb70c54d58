"""Whether what the farm's training child process has, and a bare script's process does not, slows training:
fresh processes, interleaved, the order turning each round, of the bare script (``bare_workload.py``) as it is
and with one of the child's traits added, and of the farm's own code path alone:

- **bare**: as ``workloads_vs_bare.py`` runs it;
- **imports**: the modules the training child imports (the farm's workloads, job and settings models, the
  child's training, dataset, inference and FLOP code) imported first, so the process holds what the child's
  holds (its heap, its garbage collector's objects);
- **env**: with the child's own environment (``workers.supervisor.child_env`` of the same job: ``FARM_*``
  settings, ``XLA_PYTHON_CLIENT_PREALLOCATE``, ``PYTHONUNBUFFERED``), which also changes the size of the
  environment block and so the initial stack's placement;
- **globals**: after what the child sets process-wide before it builds the model
  (``workers.training.seed_everything`` with the job's seed, and ``use_compile_cache`` on a cache directory kept
  for the whole benchmark, so that after the first round the compiled steps come from the cache as in a farm
  child);
- **farm_code**: not the bare script but the farm's own model, data and child code path for the job
  (``workload_ablation.FarmBlock``: the registry's model, ``load_dataset``, the child's ``fit`` or
  ``measure_offline`` with its callback and threads), alone in a fresh process, as the training child runs it
  but with no worker, fork server or event pipe.

Prints each variant ÷ bare: the geometric mean of per-round ratios of median steady epochs, 95% CI by
resampling rounds.

    python -m benchmarks.process_factors [--workload text_transformer] [--mode train] [--rounds 14]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import CONFIGS, bare_env, paired_ratio_ci
from farm.settings import FarmSettings
from farm.sweep import load_sweep_data
from workers.supervisor import child_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD_IMPORTS = (
    "import farm.job, farm.settings, farm.workloads, workers.child, workers.datasets, workers.flops, "
    "workers.inference, workers.training; farm.workloads.names()"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="text_transformer", choices=sorted(CONFIGS))
    ap.add_argument("--mode", default="train", choices=["train", "inference"])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=14)
    ap.add_argument("--variants", default="imports,env,globals,farm_code", help="which to run beside bare")
    args = ap.parse_args()
    cfg = CONFIGS[args.workload]
    script_args = [
        args.workload,
        args.mode,
        str(cfg["samples"]),
        str(args.epochs),
        str(cfg["batch"]),
        json.dumps(cfg["params"]),
    ]
    spec = {
        "name": "process-factors",
        "defaults": {
            "backend": "jax",
            "device": "cpu",
            "data": "synthetic",
            "epochs": args.epochs,
            "batch_size": cfg["batch"],
            "train_samples": cfg["samples"],
            "mode": args.mode,
        },
        "jobs": [{"workload": args.workload, "params": cfg["params"]}],
    }
    plain = bare_env("jax")
    envelope = load_sweep_data(spec, "benchmark").envelopes()[0]
    farm_env = child_env(envelope, FarmSettings())
    print("the child's environment differs in:", sorted(k for k, v in farm_env.items() if plain.get(k) != v))
    run_script = (
        f"import runpy, sys; sys.argv = ['bare_workload.py', *{script_args!r}]; "  # run from the checkout (cwd)
    )
    run_script += "runpy.run_module('benchmarks.bare_workload', run_name='__main__')"
    cache = tempfile.mkdtemp(prefix="farm-factors-")
    child_globals = (
        "import pathlib, workers.training as t; "
        f"t.seed_everything({envelope.job.seed_effective}, 'jax'); t.use_compile_cache('jax', pathlib.Path({cache!r}))"
    )
    farm_code = (
        "import json, pathlib, tempfile; from benchmarks.farm_keras import "
        f"FarmBlock; block = FarmBlock({args.workload!r}, {cfg['params']!r}, {cfg['samples']}, {cfg['batch']}, "
        f"{args.epochs}, {args.mode!r}, pathlib.Path(tempfile.mkdtemp())); print(json.dumps({{'epoch_s': block()}}))"
    )
    variants = {
        "bare": (run_script, plain),
        "imports": (f"{CHILD_IMPORTS}\n{run_script}", plain),  # run from the checkout: farm and workers import
        "env": (run_script, farm_env),
        "globals": (f"{child_globals}\n{run_script}", plain),
        "farm_code": (farm_code, plain),
    }
    variants = {k: v for k, v in variants.items() if k == "bare" or k in args.variants.split(",")}
    medians: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for rnd in range(args.rounds):
        for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
            code, env = variants[name]
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
            )
            epochs = json.loads(out.stdout.strip().splitlines()[-1])["epoch_s"]
            medians[name].append(statistics.median(epochs[1:]))
        print(f"round {rnd + 1}: " + "  ".join(f"{k} {v[-1]:.4f} s" for k, v in medians.items()), flush=True)
    print(f"\n{args.workload} {args.mode}, JAX on CPU, {args.rounds} rounds, fresh processes: variant ÷ bare")
    for name in names[1:]:
        ratio, low, high = paired_ratio_ci(medians[name], medians["bare"])
        print(f"  {name:8s} {ratio:.4f} (95% CI {low:.4f}–{high:.4f})")


if __name__ == "__main__":
    main()
