"""Makespan of one small sweep through benchfarm and through Ray Tune, on the same machine and worker count.

The sweep is ``benchmarks/peer_sweep.yaml``: 20 short Keras/JAX jobs — the Fashion-MNIST MLP (Flatten →
hidden_layers × Dense 500 relu → Dense 10 sigmoid, Adam, sparse categorical CE), hidden_layers 1–5 × seeds 0–3,
2 epochs on 2,000 synthetic samples (uint8 noise scaled by 1/255, labels 0–9), batch 32, ``KERAS_BACKEND=jax``,
evaluated on 500 test samples.

- **benchfarm**: ``farm run benchmarks/peer_sweep.yaml -o TMP --workers 2 --name peer-UNIQUE``, the embedded
  default as a user runs it (its own Redis, its own workers, one fresh training process per job), timed from
  the command's start to its exit. A fresh sweep name each run, so nothing is deduplicated.
- **Ray Tune**: a function trainable doing the same work (same data, same seeding, same model, ``fit`` then
  ``evaluate``), ``ray.init(num_cpus=2)``, a 5 × 4 grid search, 1 CPU per trial, 2 concurrent trials, with
  ``reuse_actors=True`` (trials share a Python process: no isolation between jobs) and ``reuse_actors=False``
  (a fresh actor process per trial). The makespan is ``tuner.fit()``'s wall time; ``ray.init`` is reported
  apart. Each Ray mode runs in its own driver process (this script, re-invoked).

    python -m benchmarks.peer_ray [--runs 1] [--skip-ray] [--skip-farm] [--ray-mode both] [--workers 2]
                                  [--samples 2000] [--test-samples 500] [--epochs 2]

Needs ``pip install 'ray[tune]'`` for the Ray side.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SWEEP = REPO / "benchmarks" / "peer_sweep.yaml"
HIDDEN_LAYERS = [1, 2, 3, 4, 5]
SEEDS = [0, 1, 2, 3]
N_JOBS = len(HIDDEN_LAYERS) * len(SEEDS)

ISOLATION = {
    "benchfarm": "yes: a fresh training process per job",
    "ray-reuse": "no: trials share the actor's process (state leaks between jobs)",
    "ray-fresh": "yes: a fresh actor process per trial",
}


# ---------------------------------------------------------------------------------------------------------
# benchfarm side


def farm_executable() -> list[str]:
    exe = Path(sys.executable).parent / "farm"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.main"]


def sweep_file(workdir: Path, samples: int, test_samples: int, epochs: int) -> Path:
    """The checked-in sweep, or a copy with other sizes (for development runs) as JSON."""
    import yaml

    spec = yaml.safe_load(SWEEP.read_text())
    d = spec["defaults"]
    if (d["train_samples"], d["test_samples"], d["epochs"]) == (samples, test_samples, epochs):
        return SWEEP
    spec["defaults"] = {**d, "train_samples": samples, "test_samples": test_samples, "epochs": epochs}
    path = workdir / "peer_sweep.json"
    path.write_text(json.dumps(spec))
    return path


def _ts(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def run_farm(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out = workdir / "farm-out"
    name = f"peer-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    sweep = sweep_file(workdir, args.samples, args.test_samples, args.epochs)
    cmd = [*farm_executable(), "run", str(sweep), "-o", str(out), "--workers", str(args.workers), "--name", name]
    log = workdir / "farm-run.log"
    print(f"  $ {' '.join(cmd)}", flush=True)
    wall0 = time.time()
    t0 = time.perf_counter()
    # A fresh cache directory: the JAX compilations the jobs share start empty, as on a new machine, so no
    # earlier run's compiles are reused (within the sweep they are: that is the farm's own doing).
    env = {**os.environ, "FARM_CACHE_DIR": str(workdir / "farm-cache")}
    with open(log, "wb") as fh:
        rc = subprocess.run(
            cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=args.timeout, env=env
        ).returncode
    makespan = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"farm run exited with {rc}; see {log}:\n{log.read_text()[-3000:]}")
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ok = [r for r in rows if r["status"] == "succeeded"]
    bad = [f"{r['status']}: {r.get('error', '')[:200]}" for r in rows if r["status"] != "succeeded"]
    starts = [_ts(r["started_at"]) for r in ok if r.get("started_at")]
    ends = [_ts(r["finished_at"]) for r in ok if r.get("finished_at")]
    return {
        "runner": "benchfarm",
        "makespan_s": makespan,
        "jobs": len(ok),
        "rows": len(rows),
        "problems": bad,
        "train_s": sum(float(r["train_s"]) for r in ok),
        "job_total_s": sum(float(r["total_s"]) for r in ok if r.get("total_s")),
        "span_s": (max(ends) - min(starts)) if starts and ends else float("nan"),
        "startup_s": (min(starts) - wall0) if starts else float("nan"),
        "name": name,
        "log": str(log),
        "results": str(out / "results.csv"),
    }


# ---------------------------------------------------------------------------------------------------------
# Ray Tune side (runs in a driver process of its own: ``--_ray-child MODE``)


def peer_trial(config: dict[str, Any]) -> None:
    """One job, as a Ray Tune function trainable: the same work as benchfarm's training child does for it."""
    import os
    import random
    import time

    t_start = time.time()
    c0 = time.perf_counter()
    os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported in this (actor) process
    import keras
    import numpy as np
    from ray import tune

    c_import = time.perf_counter()
    seed, n_train, n_test = int(config["seed"]), int(config["samples"]), int(config["test_samples"])

    # The same synthetic data as benchfarm's (workers/datasets/synthetic.py): one stream per array from the seed.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    x_train = streams[0].integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    y_train = streams[1].integers(0, 10, size=(n_train,), dtype=np.uint8)
    x_test = streams[2].integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    y_test = streams[3].integers(0, 10, size=(n_test,), dtype=np.uint8)
    x_train, x_test = (x.astype(np.float32) / np.float32(255.0) for x in (x_train, x_test))
    y_train, y_test = y_train.astype(np.int32), y_test.astype(np.int32)
    c_data = time.perf_counter()

    # Seeding as benchfarm does it (keras.utils.set_random_seed would import TensorFlow under JAX).
    keras.backend.clear_session()
    random.seed(seed)
    np.random.seed(seed)
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator

    global_state.set_global_attribute("global_random_seed", seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)

    layers: list[Any] = [keras.Input(shape=(28, 28)), keras.layers.Flatten()]
    layers += [keras.layers.Dense(500, activation="relu") for _ in range(int(config["hidden_layers"]))]
    layers.append(keras.layers.Dense(10, activation="sigmoid", dtype="float32"))
    model = keras.Sequential(layers, name="fashion_mnist_mlp")
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    c_build = time.perf_counter()

    history = model.fit(
        x_train, y_train, batch_size=int(config["batch_size"]), epochs=int(config["epochs"]), verbose=0, shuffle=True
    )
    c_train = time.perf_counter()
    _test_loss, test_acc = model.evaluate(x_test, y_test, batch_size=int(config["batch_size"]), verbose=0)
    c_eval = time.perf_counter()

    try:
        with open("/proc/self/status") as status:
            threads = int(next(line.split()[1] for line in status if line.startswith("Threads:")))
    except (OSError, StopIteration):
        threads = -1
    tune.report(
        {
            "import_s": c_import - c0,
            "data_s": c_data - c_import,
            "build_s": c_build - c_data,
            "train_s": c_train - c_build,
            "eval_s": c_eval - c_train,
            "trial_s": c_eval - c0,
            "t_start": t_start,
            "t_end": time.time(),
            "epochs_run": len(history.history.get("loss", [])),
            "train_loss": float(history.history["loss"][-1]),
            "test_accuracy": float(test_acc),
            "backend": keras.backend.backend(),
            "pid": os.getpid(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
            "cpus_visible": len(os.sched_getaffinity(0)),
            "threads": threads,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        }
    )


def ray_child(args: argparse.Namespace) -> None:
    """Driver for one Ray Tune run; writes its measurements as JSON to ``--_json-out``."""
    import ray
    from ray import tune

    reuse = args._ray_child == "reuse"
    storage = tempfile.mkdtemp(prefix="peer-ray-results-")
    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers)
    init_s = time.perf_counter() - t0
    resources = ray.cluster_resources()
    tuner = tune.Tuner(
        tune.with_resources(peer_trial, {"cpu": 1}),
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=args.workers, reuse_actors=reuse),
        param_space={
            "hidden_layers": tune.grid_search(HIDDEN_LAYERS),
            "seed": tune.grid_search(SEEDS),
            "samples": args.samples,
            "test_samples": args.test_samples,
            "epochs": args.epochs,
            "batch_size": 32,
        },
        run_config=tune.RunConfig(
            name=f"peer-{args._ray_child}-{uuid.uuid4().hex[:6]}", storage_path=storage, verbose=0
        ),
    )
    t1 = time.perf_counter()
    grid = tuner.fit()
    fit_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    ray.shutdown()
    shutdown_s = time.perf_counter() - t2

    trials = []
    for r in grid:
        m = dict(r.metrics or {})
        trials.append(
            {
                "error": repr(r.error) if r.error else None,
                "config": {k: r.config.get(k) for k in ("hidden_layers", "seed")},
                **{
                    k: m.get(k)
                    for k in (
                        "import_s",
                        "data_s",
                        "build_s",
                        "train_s",
                        "eval_s",
                        "trial_s",
                        "t_start",
                        "t_end",
                        "epochs_run",
                        "train_loss",
                        "test_accuracy",
                        "backend",
                        "pid",
                        "omp_num_threads",
                        "cpus_visible",
                        "threads",
                        "xla_flags",
                    )
                },
            }
        )
    Path(args._json_out).write_text(
        json.dumps(
            {
                "ray_version": ray.__version__,
                "mode": args._ray_child,
                "init_s": init_s,
                "fit_s": fit_s,
                "shutdown_s": shutdown_s,
                "num_errors": grid.num_errors,
                "cluster_resources": resources,
                "trials": trials,
            }
        )
    )


def run_ray(args: argparse.Namespace, mode: str, workdir: Path) -> dict[str, Any]:
    out = workdir / f"ray-{mode}.json"
    log = workdir / f"ray-{mode}.log"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_ray-child",
        mode,
        "--_json-out",
        str(out),
        "--workers",
        str(args.workers),
        "--samples",
        str(args.samples),
        "--test-samples",
        str(args.test_samples),
        "--epochs",
        str(args.epochs),
    ]
    print(f"  $ ray tune, reuse_actors={mode == 'reuse'} (driver log: {log})", flush=True)
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        rc = subprocess.run(
            cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=args.timeout
        ).returncode
    driver_s = time.perf_counter() - t0
    if rc != 0 or not out.exists():
        raise RuntimeError(f"ray driver ({mode}) exited with {rc}; see {log}:\n{log.read_text()[-3000:]}")
    data = json.loads(out.read_text())
    trials = data["trials"]
    ok = [
        t
        for t in trials
        if t["error"] is None and t.get("train_s") and t.get("epochs_run") == args.epochs and t.get("backend") == "jax"
    ]
    problems = [f"{t['config']}: {t['error'] or 'no/partial metrics'}" for t in trials if t not in ok]
    if len(trials) != N_JOBS:
        problems.append(f"{len(trials)} trials, expected {N_JOBS}")
    starts = [t["t_start"] for t in ok]
    ends = [t["t_end"] for t in ok]
    return {
        "runner": f"ray-{mode}",
        "makespan_s": data["fit_s"],
        "init_s": data["init_s"],
        "shutdown_s": data["shutdown_s"],
        "driver_s": driver_s,
        "jobs": len(ok),
        "rows": len(trials),
        "problems": problems,
        "train_s": sum(t["train_s"] for t in ok),
        "job_total_s": sum(t["trial_s"] for t in ok),
        "import_s": sum(t["import_s"] for t in ok),
        "span_s": (max(ends) - min(starts)) if ok else float("nan"),
        "pids": len({t["pid"] for t in ok}),
        "ray_version": data["ray_version"],
        "env": sorted({(t["omp_num_threads"], t["cpus_visible"], t["threads"], t["xla_flags"]) for t in ok}),
        "cluster_resources": data["cluster_resources"],
        "log": str(log),
    }


# ---------------------------------------------------------------------------------------------------------


def _fmt(values: list[float]) -> str:
    if not values:
        return "—"
    med = statistics.median(values)
    return f"{med:.1f}" if len(values) == 1 else f"{med:.1f} ({min(values):.1f}–{max(values):.1f})"


def print_table(results: dict[str, list[dict[str, Any]]]) -> None:
    farm = [r["makespan_s"] for r in results.get("benchfarm", [])]
    farm_med = statistics.median(farm) if farm else None
    header = [
        "runner",
        "makespan s",
        "startup s",
        "first start→last end s",
        "pure training s (sum)",
        "jobs",
        "ratio vs benchfarm",
        "isolation per job",
    ]
    rows = []
    for runner, runs in results.items():
        if not runs:
            continue
        mk = [r["makespan_s"] for r in runs]
        startup = [r["startup_s"] if runner == "benchfarm" else r["init_s"] for r in runs]
        ratio = f"{statistics.median(mk) / farm_med:.2f}×" if farm_med else "—"
        rows.append(
            [
                runner,
                _fmt(mk),
                _fmt(startup),
                _fmt([r["span_s"] for r in runs]),
                _fmt([r["train_s"] for r in runs]),
                "/".join(str(r["jobs"]) for r in runs),
                ratio,
                ISOLATION[runner],
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print(
        "\nmakespan: benchfarm = the whole `farm run` command (Redis, workers, submit, jobs, report, shutdown);"
        "\n          Ray = tuner.fit() alone; startup s = benchfarm: command start → first job start, "
        "Ray: ray.init()."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="rounds; the runners are interleaved within each round")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-farm", action="store_true")
    ap.add_argument("--ray-mode", choices=["reuse", "fresh", "both"], default="both")
    ap.add_argument("--workers", type=int, default=2, help="benchfarm workers = Ray CPUs = concurrent trials")
    ap.add_argument("--samples", type=int, default=2000, help="training samples per job (smaller for development)")
    ap.add_argument("--test-samples", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per runner invocation")
    ap.add_argument("--_ray-child", choices=["reuse", "fresh"], help=argparse.SUPPRESS)
    ap.add_argument("--_json-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._ray_child:
        ray_child(args)
        return

    modes = [] if args.skip_ray else (["reuse", "fresh"] if args.ray_mode == "both" else [args.ray_mode])
    runners = ([] if args.skip_farm else ["benchfarm"]) + [f"ray-{m}" for m in modes]
    results: dict[str, list[dict[str, Any]]] = {r: [] for r in runners}
    print(
        f"sweep: {N_JOBS} jobs (fashion_mnist_mlp, hidden_layers {HIDDEN_LAYERS} × seeds {SEEDS}), "
        f"{args.samples} samples, {args.epochs} epochs, batch 32, jax on CPU; {args.workers} workers; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    for rnd in range(args.runs):
        for runner in runners:
            workdir = Path(tempfile.mkdtemp(prefix=f"peer-{runner}-"))
            print(f"round {rnd + 1}/{args.runs}: {runner} (in {workdir})", flush=True)
            res = run_farm(args, workdir) if runner == "benchfarm" else run_ray(args, runner[4:], workdir)
            results[runner].append(res)
            extra = ""
            if runner == "benchfarm":
                extra = f", startup {res['startup_s']:.1f} s, sweep {res['name']}"
            else:
                extra = (
                    f", ray.init {res['init_s']:.1f} s, shutdown {res['shutdown_s']:.1f} s, driver process "
                    f"{res['driver_s']:.1f} s, {res['pids']} distinct trial pid(s), import {res['import_s']:.1f} s"
                    f" (sum), trial env (OMP_NUM_THREADS, cpus visible, threads, XLA_FLAGS): {res['env']}"
                )
            print(
                f"  makespan {res['makespan_s']:.1f} s, {res['jobs']}/{N_JOBS} jobs ok, training {res['train_s']:.1f} s"
                f" (sum), jobs' own time {res['job_total_s']:.1f} s (sum), first start→last end "
                f"{res['span_s']:.1f} s{extra}",
                flush=True,
            )
            for p in res["problems"]:
                print(f"  PROBLEM: {p}", flush=True)
    if any(r.get("ray_version") for runs in results.values() for r in runs):
        print(f"\nRay {next(r['ray_version'] for runs in results.values() for r in runs if r.get('ray_version'))}")
    print()
    print_table(results)
    if any(r["jobs"] != N_JOBS for runs in results.values() for r in runs):
        print(f"\nWARNING: some run did not complete all {N_JOBS} jobs")
        sys.exit(1)


if __name__ == "__main__":
    main()
