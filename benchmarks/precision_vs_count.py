"""A fixed repeat count against a precision target, on a quiet machine and with CPU hogs that come and go.

The same one-cell sweep (the seed's Fashion-MNIST MLP, synthetic data) runs through ``farm run`` — the console
script users start, with its embedded Redis and one local worker — three ways: ``repeats: 3``, ``repeats: 10``
and ``precision: {ci: 0.05, min_repeats: 5, max_repeats: 10, max_invalid: 10, budget_s: 600}``; first on the
machine as it is, then while a hog (one busy core) is started and stopped at random by this script. Per run it
prints: the valid repeats the cell's figure rests on, the invalid ones and why, the 95% CI's relative half-width
of the median throughput, whether the ±5% target was met, the wall time, and how jobs waited for a quiet host
(how many waited, the longest wait, the waits in all).

    python -m benchmarks.precision_vs_count [--only quiet|hogs] [--samples 4000] [--epochs 3]

``--example examples/quick.yaml`` instead runs a shipped example as it is (every CPU cell, at its own precision
target) under the same conditions and prints, per cell, what ``farm run`` said at its end and the figures behind
it: the quick start on a machine that others load, as the issue that asked for precision targets put it.

    python -m benchmarks.precision_vs_count --example examples/quick.yaml [--only hogs] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.common import REPO

WAYS: dict[str, dict] = {
    "fixed 3": {"repeats": 3},
    "fixed 10": {"repeats": 10},
    "precision ±5%": {
        "precision": {"ci": 0.05, "min_repeats": 5, "max_repeats": 10, "max_invalid": 10, "budget_s": 600}
    },
}
HOG = "while True: pass"


class Hogs:
    """One busy core that comes and goes: on for 3–10 s, off for 5–15 s, until stopped."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - a schedule to replay, not a secret
        self.stop = threading.Event()
        self.on_s = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            hog = subprocess.Popen([sys.executable, "-c", HOG])
            on = self.rng.uniform(3, 10)
            self.stop.wait(on)
            hog.kill()
            hog.wait()
            self.on_s += on
            self.stop.wait(self.rng.uniform(5, 15))

    def __enter__(self) -> Hogs:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def sweep(directory: Path, name: str, way: dict, args: argparse.Namespace) -> Path:
    spec = {
        "name": name,
        "defaults": {
            "backend": "tensorflow",
            "data": "synthetic",
            "train_samples": args.samples,
            "test_samples": 256,
            "device": "cpu",
        },
        "jobs": [{"workload": "fashion_mnist_mlp", "epochs": args.epochs, "params": {"hidden_layers": 5}}],
        **way,
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def farm_run(path: Path, out: Path, what: str) -> tuple[str, float]:
    """``farm run PATH -o OUT``, the console script users start: what it printed, and its wall seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "farm"), "run", str(path), "-o", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"farm run failed ({what}): {done.stderr[-2000:]}")
    return done.stdout, wall


def run(directory: Path, label: str, way: dict, condition: str, args: argparse.Namespace) -> dict:
    name = f"{condition}-{label.split()[0]}-{label.split()[-1].strip('±%')}"
    out = directory / name
    stdout, wall = farm_run(sweep(directory, name, way, args), out, f"{label}, {condition}")
    rows = pd.read_csv(out / "results.csv")
    report = pd.read_csv(out / "report.csv").iloc[0]
    waits = rows["quiet_wait_s"].dropna() if "quiet_wait_s" in rows else pd.Series(dtype=float)
    waited = waits[waits > 1.0]  # more than the first half-second look
    return {
        "condition": condition,
        "way": label,
        "valid": int(report["n"]),
        "invalid": int(report.get("n_invalid", 0) or 0),
        "why": report.get("invalid_kinds") if isinstance(report.get("invalid_kinds"), str) else "",
        "ci_half_width": float(report["ci_half_width_rel"]),
        "met ±5%": bool(report["ci_half_width_rel"] <= 0.05 and report["n"] >= 4),
        "wall_s": wall,
        "jobs waited": f"{len(waited)}/{len(waits)}",
        "longest wait s": float(waited.max()) if len(waited) else 0.0,
        "waits s": float(waited.sum()),
        "line": next(
            (line for line in stdout.splitlines() if line.startswith("fashion_mnist_mlp cpu tensorflow batch")), ""
        ),
    }


def example(directory: Path, path: Path, condition: str) -> pd.DataFrame:
    """``farm run`` of a shipped example as it is; one row per cell with its closing line's verdict."""
    out = directory / f"{condition}-{path.stem}"
    stdout, wall = farm_run(path, out, f"{path}, {condition}")
    print(f"--- {condition}: farm run {path} took {wall:.0f} s; its closing lines:")
    print("\n".join(line for line in stdout.splitlines() if "samples/s" in line or "target" in line), flush=True)
    rows = pd.read_csv(out / "results.csv")
    report = pd.read_csv(out / "report.csv")
    waits = rows.groupby("workload")["quiet_wait_s"].agg(
        waited=lambda w: int((w > 1.0).sum()), longest_wait_s="max", waits_s="sum"
    )
    disturbed = rows.groupby("workload")["epochs_disturbed"].sum().rename("epochs_disturbed")
    table = report[["workload", "n", "n_invalid", "invalid_kinds", "ci_half_width_rel"]].set_index("workload")
    table = table.join(waits).join(disturbed).reset_index()
    table.insert(0, "condition", condition)
    table["wall_s"] = round(wall)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["quiet", "hogs"])
    ap.add_argument("--samples", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--example", type=Path, help="a shipped example to run as it is, instead of the three ways")
    args = ap.parse_args()
    if args.example:
        tables = []
        with tempfile.TemporaryDirectory(prefix="farm-precision-") as d:
            for condition in ("quiet", "hogs"):
                if args.only and condition != args.only:
                    continue
                if condition == "hogs":
                    with Hogs(args.seed) as hogs:
                        tables.append(example(Path(d), args.example.resolve(), condition))
                    tables[-1]["hog on s"] = round(hogs.on_s)
                else:
                    tables.append(example(Path(d), args.example.resolve(), condition))
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(pd.concat(tables).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="farm-precision-") as d:
        for condition in ("quiet", "hogs"):
            if args.only and condition != args.only:
                continue
            for label, way in WAYS.items():
                if condition == "hogs":
                    with Hogs(args.seed) as hogs:
                        rows.append(run(Path(d), label, way, condition, args))
                    rows[-1]["hog on s"] = round(hogs.on_s)
                else:
                    rows.append(run(Path(d), label, way, condition, args))
                print(rows[-1]["line"] or rows[-1], flush=True)
    table = pd.DataFrame(rows).drop(columns=["line"])
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
