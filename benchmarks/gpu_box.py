"""What a GPU box is bought for, measured through ``farm run`` (the console script users start, its embedded
Redis and one local worker) on ``examples/gpu-box.yaml``: the scaling table of the seed MLPs and ResNet-50 over
1, 2 and 4 devices, the largest batch that fits, the Server scenario's curve, energy per sample and cost.

On a machine without readable RAPL counters (most VMs, and any non-root user on a recent kernel) the energy
figures come from a stand-in powercap tree this script writes, drawing a constant ``--watts`` while the sweep
runs, so the whole path (counters, wraps, per-epoch energy, the report) is exercised; the script says which it
used. Prices come from ``FARM_PRICES`` (``--price-per-hour``, for the CPU).

    python -m benchmarks.gpu_box [--example examples/gpu-box.yaml] [--watts 35] [--price-per-hour 0.10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import REPO

FARM = REPO / ".venv" / "bin" / "farm"


def stand_in_powercap(root: Path, watts: float, stop: threading.Event) -> threading.Thread:
    """A one-package powercap tree whose counter rises at ``watts`` and wraps every 60 s, as RAPL's do."""
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    wrap = int(watts * 60 * 1e6)
    (zone / "max_energy_range_uj").write_text(f"{wrap}\n")
    (zone / "energy_uj").write_text("0\n")

    def draw() -> None:
        t0 = time.perf_counter()
        while not stop.wait(0.005):  # written whole, as the kernel's file reads
            (zone / "energy_uj.new").write_text(f"{int(watts * (time.perf_counter() - t0) * 1e6) % wrap}\n")
            (zone / "energy_uj.new").replace(zone / "energy_uj")

    thread = threading.Thread(target=draw, daemon=True)
    thread.start()
    return thread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--example", default="examples/gpu-box.yaml")
    ap.add_argument("--watts", type=float, default=35.0, help="the stand-in package's constant draw")
    ap.add_argument("--price-per-hour", type=float, default=0.10, help="US dollars an hour of this CPU costs")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env["FARM_PRICES"] = json.dumps({"cpu": args.price_per_hour})
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="gpubox-") as d:
        real = Path("/sys/class/powercap")
        if not any(real.glob("*-rapl:*")):
            env["BENCHFARM_POWERCAP_ROOT"] = str(Path(d) / "powercap")
            stand_in_powercap(Path(d) / "powercap", args.watts, stop)
            print(f"energy: a stand-in RAPL package drawing {args.watts:g} W (this machine has no readable RAPL)")
        out = Path(d) / "out"
        started = time.monotonic()
        run = subprocess.run(
            [str(FARM), "run", str(REPO / args.example), "-o", str(out)], env=env, capture_output=True, text=True
        )
        stop.set()
        print(f"--- farm run {args.example} took {time.monotonic() - started:.0f} s (exit {run.returncode}); its end:")
        print("\n".join(run.stdout.splitlines()[-40:]))
        if run.returncode:
            print(run.stderr[-3000:])
            raise SystemExit(1)
        scaling = out / "scaling.csv"
        if scaling.exists():
            table = pd.read_csv(scaling)
            cols = ["workload", "devices", "samples_per_s", "samples_per_s_1", "speedup", "speedup_ci_low"]
            cols += ["speedup_ci_high", "efficiency"]
            print("--- scaling.csv\n" + table[cols].round(3).to_string(index=False))
        rows = pd.read_csv(out / "results.csv")
        for tries in rows["batch_tries"].dropna().unique() if "batch_tries" in rows else []:
            print(
                "--- batch search: "
                + ", ".join(f"{t['batch']} {'fits' if t['fit'] else 'no'} ({t['s']:.1f} s)" for t in json.loads(tries))
            )
        for curve in rows["server_curve"].dropna() if "server_curve" in rows else []:
            points = json.loads(curve)
            print(
                "--- server: "
                + ", ".join(
                    f"{p['rate_qps']:.0f}/s p99 {1000 * p['p99_s']:.1f} ms{'' if p['met'] else ' (missed)'}"
                    for p in points
                )
            )
        figures = ["energy_j_per_sample", "mean_power_w", "memory_used", "peak_host_mb"]
        have = [c for c in figures if c in rows]
        print("--- per cell (medians over succeeded repeats)")
        ok = rows[rows["status"] == "succeeded"].assign(
            devices=rows["devices_per_job"].fillna(1).astype(int),
            kind=rows["mode"]
            .where(rows["server_p99_bound_ms"].isna(), "server")
            .where(rows["batch_max"].isna(), "batch max"),
        )
        print(ok.groupby(["workload", "kind", "devices"])[have].median().round(4).to_string())


if __name__ == "__main__":
    main()
