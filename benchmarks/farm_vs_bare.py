"""Steady-state throughput of the seed's CIFAR-10 MLP: a bare ``model.fit`` script against the farm, on the path
users run — a real ``farm worker`` (fork server and compile cache as configured, default on) fed through a
real Redis by ``farm submit``'s own code.

Both run the same model (Dense 3000 → 1000 → 10, SGD, batch 32) on synthetic data of CIFAR-10's shape, each in
a fresh process, interleaved round by round so drift of the machine hits both alike; the order within a round
turns every round so that no side always runs first. Each farm pipeline is paired with the bare script's
matching input: numpy arrays into ``fit``, or, for TensorFlow's ``input_pipeline: farm``, the bare script's own
tf.data pipeline. The worker is
started once, before the first round, and reused, as a lab's is. Steady state excludes the first epoch.

    python benchmarks/farm_vs_bare.py [--samples 2000] [--epochs 4] [--rounds 16]
        [--backends jax,tensorflow] [--pipelines keras,farm] [--device cpu] [--json runs.json]
    python benchmarks/farm_vs_bare.py --pool runs1.json runs2.json   # rounds of several runs, summarised together

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
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from farm.local import LocalFarm
from farm.settings import FarmSettings
from farm.store import Store
from farm.submit import submit
from farm.sweep import load_sweep_data
from workers.contention import ContentionSampler

HERE = Path(__file__).resolve().parent


def bare(samples: int, epochs: int, batch: int, backend: str, device: str = "cpu", pipeline: str = "numpy") -> dict:
    """The bare script's epoch times, and what other processes did meanwhile (sampled from here: the script
    is this process's child, so its CPU counts as its own and everything else as others')."""
    watch = ContentionSampler().start()
    try:
        epochs_s, cpu_s = _bare(samples, epochs, batch, backend, device, pipeline)
    finally:
        watch.stop()
    verdict = watch.window(watch.samples[0].at, watch.samples[-1].at, FarmSettings().contention_cpu_threshold)
    return {"epochs": epochs_s, "cpu": cpu_s, "contention": verdict["figures"], "contended": verdict["contended"]}


def _bare(
    samples: int, epochs: int, batch: int, backend: str, device: str = "cpu", pipeline: str = "numpy"
) -> tuple[list[float], list[float]]:
    """Each epoch's wall and process CPU seconds of one run of the bare script."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    if device == "cpu":  # what the farm does for a CPU job: no GPU in sight
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    elif backend == "jax":
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    out = subprocess.run(
        [sys.executable, str(HERE / "bare_fit.py"), str(samples), str(epochs), str(batch), pipeline],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = json.loads(out.stdout.strip().splitlines()[-1])
    return line["epoch_s"], line["epoch_cpu_s"]


class FarmSide:
    """One embedded Redis and one real CPU worker, kept for the whole benchmark."""

    def __init__(self, directory: Path, device: str) -> None:
        self.device = device
        self.farm = LocalFarm(
            directory, FarmSettings(), embedded=True, cpu_workers=int(device == "cpu"), gpu_workers=int(device == "gpu")
        )
        self.rounds = 0

    def __enter__(self) -> FarmSide:
        self.farm.start()
        self.store = Store.from_settings(self.farm.settings)
        deadline = time.monotonic() + 120
        while not self.store.live_workers():
            if time.monotonic() > deadline or self.farm.check_workers():
                raise RuntimeError(f"the worker did not start: {self.farm.check_workers()}")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self.farm.stop()

    def run(
        self,
        samples: int,
        epochs: int,
        batch: int,
        backend: str,
        pipeline: str,
        workload: str = "cifar10_mlp",
        params: dict | None = None,
        mode: str = "train",
        test_samples: int = 256,
    ) -> dict:
        """Submit one job through the farm's own submit code and wait for its recorded result."""
        self.rounds += 1
        spec = {
            "name": f"bench-{self.rounds}-{backend}-{pipeline}-{mode}",
            "defaults": {
                "backend": backend,
                "device": self.device,
                "data": "synthetic",
                "epochs": epochs,
                "batch_size": batch,
                "train_samples": samples,
                "test_samples": test_samples,
                "input_pipeline": pipeline,
                "mode": mode,
            },
            "jobs": [{"workload": workload, "params": params or {}}],
        }
        sweep = load_sweep_data(spec, "benchmark")
        submit(sweep, self.farm.settings, store=self.store)
        job_id = sweep.envelopes()[0].job_id
        while (result := self.store.result(job_id)) is None:
            if self.farm.check_workers():
                raise RuntimeError(f"the worker died: {self.farm.check_workers()}")
            time.sleep(0.2)
        if result.status.value != "succeeded":
            raise RuntimeError(f"farm job {result.status.value}: {result.error}")
        return {
            "epochs": [e.wall_s for e in result.epochs],
            "cpu": [e.cpu_s or 0.0 for e in result.epochs],
            "contention": result.contention,
            "contended": result.contended,
            "param_count": result.param_count,
            "latency_p50_s": result.latency_p50_s,
        }


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


def add_raw_arguments(ap: argparse.ArgumentParser) -> None:
    """``--json`` and ``--pool``: keep a run's rounds, and summarise several runs' rounds together."""
    ap.add_argument("--json", type=Path, help="also write the settings and every run (epochs, contention) here")
    ap.add_argument(
        "--pool",
        type=Path,
        nargs="+",
        help="measure nothing: summarise the rounds of these --json files together (same settings only)",
    )


def versions(backends: list[str]) -> dict[str, str | None]:
    """What the figures depend on, read from package metadata (nothing imported): rounds pooled from several
    files must come from the same software."""
    from importlib.metadata import PackageNotFoundError, version

    from farm.fingerprint import git_commit

    out: dict[str, str | None] = {"benchfarm_commit": git_commit()}
    for name in ["benchfarm", "keras", *backends]:
        out[name] = None
        for dist in (name, f"{name}-cpu"):  # TensorFlow installs as tensorflow or tensorflow-cpu
            try:
                out[name] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return out


def farm_env() -> dict[str, dict[str, str]]:
    """The farm settings this run changed through the environment (``FARM_WARM_START=false``, ...), as
    ``{"farm_env": {...}}``, or nothing: a run that changes none pools with older files, which had no such key."""
    changed = {k: v for k, v in sorted(os.environ.items()) if k.startswith("FARM_")}
    return {"farm_env": changed} if changed else {}


def pool(paths: list[Path]) -> tuple[dict, list[dict]]:
    """The runs of several ``--json`` files as one set of rounds (renumbered so rounds of different files never
    pair); refuses files whose settings or framework versions differ."""
    config: dict | None = None
    raw: list[dict] = []
    offset = 0
    for path in paths:
        data = json.loads(path.read_text())
        mine = {k: v for k, v in data["config"].items() if k != "versions"}
        frameworks = {k: v for k, v in data["config"]["versions"].items() if k not in ("benchfarm", "benchfarm_commit")}
        if config is None:
            config = {**mine, "frameworks": frameworks, "files": []}
        elif any(config.get(k) != mine.get(k) for k in {*mine, *config} - {"frameworks", "files"}) or (
            config["frameworks"] != frameworks
        ):
            raise SystemExit(f"{path}: other settings or versions than {paths[0]}: {data['config']}")
        config["files"].append({"file": str(path), "versions": data["config"]["versions"]})
        raw += [{**run, "round": run["round"] + offset} for run in data["runs"]]
        offset = max(run["round"] for run in raw)
    assert config is not None
    return config, raw


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


def yardstick(backend: str, pipeline: str) -> str:
    """The bare script's input for a farm pipeline: the farm's tf.data pipeline under TensorFlow is measured
    against a bare script with its own tf.data pipeline; everything else feeds numpy arrays to ``fit``."""
    return "tfdata" if backend == "tensorflow" and pipeline == "farm" else "numpy"


def paired_ratio_ci(
    farm_rounds: list[float],
    bare_rounds: list[float],
    n_boot: int = 10_000,
    seed: int = 1,
    center: str = "mean",
) -> tuple[float, float, float]:
    """The per-round ratios' centre with a percentile bootstrap CI over rounds: their geometric mean
    (``center="mean"``), or their median, which a burst on the host that slows one side of a few rounds
    does not move (on a shared VM such bursts add 20-50% to a run now and then)."""
    import numpy as np

    if not farm_rounds:
        return float("nan"), float("nan"), float("nan")  # no round without contention
    logs = np.log(np.asarray(farm_rounds) / np.asarray(bare_rounds))
    rng = np.random.default_rng(seed)
    draws = logs[rng.integers(0, len(logs), size=(n_boot, len(logs)))]
    stat = np.median if center == "median" else np.mean
    boots = stat(draws, axis=1)
    low, high = np.quantile(boots, [0.025, 0.975])
    return float(np.exp(stat(logs))), float(np.exp(low)), float(np.exp(high))


if __name__ == "__main__":
    main()
