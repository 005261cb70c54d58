"""Steady-state throughput of the seed's CIFAR-10 MLP: a bare ``model.fit`` script against the farm, on the path
users run — a real ``farm worker`` (fork server and compile cache as configured, default on) fed through a
real Redis by ``farm submit``'s own code.

Both run the same model (Dense 3000 → 1000 → 10, SGD, batch 32) on synthetic data of CIFAR-10's shape, each in
a fresh process, interleaved round by round so drift of the machine hits both alike; the order within a round
turns every round so that no side always runs first. Each farm pipeline is paired with the bare script's
matching input: numpy arrays into ``fit``, or, for TensorFlow's ``input_pipeline: farm``, the bare script's own
tf.data pipeline. The worker is
started once, before the first round, and reused, as a lab's is. Steady state excludes the first epoch.

    python -m benchmarks.farm_vs_bare [--samples 2000] [--epochs 4] [--rounds 16]
        [--backends jax,tensorflow] [--pipelines keras,farm] [--device cpu] [--json runs.json]
    python -m benchmarks.farm_vs_bare --pool runs1.json runs2.json   # rounds of several runs, summarised together

On a shared VM one round's ratio moves 6-20% with the host's load, so a CI inside ±2% takes a hundred rounds or
more; ``--json`` keeps each run's rounds (with the settings and framework versions) so that runs on several
days can be pooled: each round pairs its own two sides, so rounds from different runs combine as they are.

Prints each run's epochs and the contention measured around it (another process on the machine would make
both sides slower at random; the farm's own sampler says whether that happened), then, per backend and input
pipeline, each side's typical steady epoch and farm ÷ bare paired by round: the geometric mean and the median
of the per-round ratios and the ratio of process CPU, each with a 95% CI by resampling rounds.
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
    FarmSide,
    add_raw_arguments,
    farm_env,
    paired_ratio_ci,
    pool,
    run_bare_fit,
    versions,
    yardstick,
)
from farm.settings import FarmSettings
from workers.contention import ContentionSampler

HERE = Path(__file__).resolve().parent


def bare(samples: int, epochs: int, batch: int, backend: str, device: str = "cpu", pipeline: str = "numpy") -> dict:
    """The bare script's epoch times, and what other processes did meanwhile (sampled from here: the script
    is this process's child, so its CPU counts as its own and everything else as others')."""
    watch = ContentionSampler().start()
    try:
        epochs_s, cpu_s = run_bare_fit(samples, epochs, batch, backend, device, pipeline)
    finally:
        watch.stop()
    verdict = watch.window(watch.samples[0].at, watch.samples[-1].at, FarmSettings().contention_cpu_threshold)
    return {"epochs": epochs_s, "cpu": cpu_s, "contention": verdict["figures"], "contended": verdict["contended"]}


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the worker and Redis on the way out
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--backends", default="jax,tensorflow")
    ap.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument(
        "--pipelines",
        default="keras,farm",
        help="the farm's input pipelines to measure (both are "
        "numpy into fit under JAX; under TensorFlow, 'farm' is its tf.data pipeline)",
    )
    add_raw_arguments(ap)
    ap.add_argument(
        "--per-run",
        choices=["median", "mean"],
        default="median",
        help="each run's figure: its median steady epoch (the report's steady_epoch_s) or their mean "
        "(steady throughput), which a run whose epochs split between two speeds does not flip between",
    )
    args = ap.parse_args()
    if args.pool:
        config, raw = pool(args.pool)
        summarise(config, raw, args.per_run)
        return
    config = {
        "samples": args.samples,
        "epochs": args.epochs,
        "batch": args.batch,
        "device": args.device,
        "versions": versions(args.backends.split(",")),
        **farm_env(),
    }
    raw: list[dict] = []
    backends, pipelines = args.backends.split(","), args.pipelines.split(",")
    with tempfile.TemporaryDirectory(prefix="farm-bench-") as d, FarmSide(Path(d), args.device) as farm:
        for rnd in range(args.rounds):
            for backend in backends:
                sides = [*dict.fromkeys(f"bare-{yardstick(backend, p)}" for p in pipelines), *pipelines]
                # The order turns every round, so each side takes each place in a round equally often: none
                # always runs first (after the other backend's jobs) or right after the same neighbour.
                turn = rnd % len(sides)
                for side in sides[turn:] + sides[:turn]:
                    if side.startswith("bare-"):
                        out = bare(args.samples, args.epochs, args.batch, backend, args.device, side[5:])
                    else:
                        out = farm.run(args.samples, args.epochs, args.batch, backend, side)
                    raw.append({"round": rnd + 1, "backend": backend, "side": side, **out})
                    if args.json:
                        args.json.write_text(json.dumps({"config": config, "runs": raw}, default=str))
                    print(
                        f"round {rnd + 1}: {backend:10s} {side:11s} epochs (s): "
                        + " ".join(f"{t:.3f}" for t in out["epochs"])
                        + f"   others' CPU {out['contention'].get('cpu_others', 0.0):.1%}"
                        + ("  CONTENDED" if out["contended"] else ""),
                        flush=True,
                    )
    summarise(config, raw, args.per_run)


def summarise(config: dict, raw: list[dict], per_run: str = "median") -> None:
    """farm ÷ bare per backend and pipeline, paired by round, contended rounds left out."""
    figure = statistics.median if per_run == "median" else statistics.mean
    per_round: dict[tuple[str, str], dict[int, tuple[float, float, bool]]] = {}
    for run in raw:
        per_round.setdefault((run["backend"], run["side"]), {})[run["round"]] = (
            figure(run["epochs"][1:]),
            figure(run["cpu"][1:]),
            bool(run["contended"]),
        )
    rounds = max(run["round"] for run in raw)
    print(
        f"\ncifar10_mlp on {config['device']}, batch {config['batch']}, {config['samples']} synthetic samples, "
        f"{rounds} rounds x {config['epochs'] - 1} steady epochs, interleaved; the farm side through a real worker "
        "and Redis"
    )
    if config.get("farm_env"):
        print(f"farm settings changed for this run: {config['farm_env']}")
    print(
        f"paired = geometric mean over rounds of (farm's {per_run} steady epoch / bare's, same round), 95% CI by "
        "resampling rounds: the machine's drift between rounds cancels; rounds where either side was contended "
        "(another process used the machine: the farm's own sampler, and the same sampler around the bare run) "
        "are left out. median = the median of the same per-round ratios, 95% CI by resampling rounds: a burst "
        "on the host that slows one side of a few rounds does not move it. cpu = paired like 'paired', of the "
        "training process' CPU seconds per steady epoch (all its threads): work the harness adds shows there, "
        "waiting does not. 1.000 = no overhead; < 1: the farm was faster."
    )
    print(
        f"{'backend':10s} {'pipeline':9s} {'bare s':>8s} {'farm s':>8s} {'paired':>7s} {'95% CI':>17s} "
        f"{'rounds':>7s} {'median':>7s} {'95% CI':>17s} {'cpu':>7s} {'95% CI':>17s}"
    )
    for (backend, side), farm_runs in per_round.items():
        if side.startswith("bare-"):
            continue
        bare_runs = per_round[(backend, f"bare-{yardstick(backend, side)}")]
        clean = [r for r in farm_runs if r in bare_runs and not (farm_runs[r][2] or bare_runs[r][2])]
        wall = [farm_runs[r][0] for r in clean], [bare_runs[r][0] for r in clean]
        cpu = [farm_runs[r][1] for r in clean], [bare_runs[r][1] for r in clean]
        paired, p_low, p_high = paired_ratio_ci(*wall)
        mid, m_low, m_high = paired_ratio_ci(*wall, center="median")
        c_mid, c_low, c_high = paired_ratio_ci(*cpu)
        print(
            f"{backend:10s} {side:9s} {statistics.median(wall[1]):8.4f} {statistics.median(wall[0]):8.4f} "
            f"{paired:7.3f}   [{p_low:.3f}, {p_high:.3f}] {len(clean):3d}/{len(farm_runs):<3d} "
            f"{mid:7.3f}   [{m_low:.3f}, {m_high:.3f}] {c_mid:7.3f}   [{c_low:.3f}, {c_high:.3f}]"
        )


if __name__ == "__main__":
    main()
