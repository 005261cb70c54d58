"""What the benchmark scripts share: their sizes, the bare scripts' environment and runs, the farm side, the
paired statistics, the software versions and the pooling of saved runs. Scripts import this module, never each
other; run them from the repository root as ``python -m benchmarks.NAME`` (the bench extra installs what they
need: ``pip install -e '.[bench]'``). Nothing here imports Keras: the bare scripts' Keras parts are in
:mod:`benchmarks.bare_keras`."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from farm.local import LocalFarm
from farm.settings import FarmSettings
from farm.store import Store
from farm.submit import submit
from farm.sweep import load_sweep_data
from workers.contention import ContentionSampler
from workers.timing import IdleSampler

REPO = Path(__file__).resolve().parent.parent
"""The checkout: the bare scripts run from here as ``python -m benchmarks.NAME``."""


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


def bare_env(backend: str = "jax") -> dict[str, str]:
    """The bare script's environment: this one without the farm's settings, on the CPU, with ``backend``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    return env


def run_bare_workload(workload: str, mode: str, backend: str, cfg: dict) -> dict:
    """One run of the bare workload script in a fresh process: its epochs, and what other processes did meanwhile."""
    env = bare_env(backend)
    args = [workload, mode, str(cfg["samples"]), str(cfg["epochs"]), str(cfg["batch"]), json.dumps(cfg["params"])]
    watch = ContentionSampler().start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bare_workload", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        watch.stop()
    verdict = watch.window(watch.samples[0].at, watch.samples[-1].at, FarmSettings().contention_cpu_threshold)
    line = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "epochs": line["epoch_s"],
        "cpu": line.get("epoch_cpu_s", []),
        "param_count": line["param_count"],
        "contention": verdict["figures"],
        "contended": verdict["contended"],
    }


def run_bare_fit(
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
        [sys.executable, "-m", "benchmarks.bare_fit", str(samples), str(epochs), str(batch), pipeline],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    line = json.loads(out.stdout.strip().splitlines()[-1])
    return line["epoch_s"], line["epoch_cpu_s"]


def yardstick(backend: str, pipeline: str) -> str:
    """The bare script's input for a farm pipeline: the farm's tf.data pipeline under TensorFlow is measured
    against a bare script with its own tf.data pipeline; everything else feeds numpy arrays to ``fit``."""
    return "tfdata" if backend == "tensorflow" and pipeline == "farm" else "numpy"


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


class Extras:
    """The farm child's threads and sink while it trains, started and stopped around a block."""

    def __init__(self) -> None:
        self.sink = io.StringIO()

    def emit(self, event: dict) -> None:
        self.sink.write(json.dumps(event, default=str) + "\n")  # the child writes each event to a pipe

    def __enter__(self) -> Extras:
        self.idle = IdleSampler().start()
        self.watch = ContentionSampler().start()
        self.stop = threading.Event()

        def check() -> None:  # workers.child.watch_worker's checker
            last = time.monotonic()
            while not self.stop.wait(1.0):
                _ = time.monotonic() - last

        self.checker = threading.Thread(target=check, daemon=True)
        self.checker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.watch.stop()
        self.idle.stop()
        self.stop.set()
        self.checker.join()


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


def add_raw_arguments(ap: argparse.ArgumentParser) -> None:
    """``--json`` and ``--pool``: keep a run's rounds, and summarise several runs' rounds together."""
    ap.add_argument("--json", type=Path, help="also write the settings and every run (epochs, contention) here")
    ap.add_argument(
        "--pool",
        type=Path,
        nargs="+",
        help="measure nothing: summarise the rounds of these --json files together (same settings only)",
    )
