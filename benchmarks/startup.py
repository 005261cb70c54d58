"""What each of the CLI's start-up measures buys: ``farm --help``, ``farm status`` and ``farm submit --dry-run``
timed as shipped, without the garbage-collector and quick-exit measures (the plain Typer app, still lazy), and
the import cost that loading every subcommand eagerly would add. Interleaved, median of ``--runs``.

    .venv/bin/python -m benchmarks.startup [--runs 15]

The measures live in ``cli/main.py`` (its docstring says why each exists); a measure stays only while this
benchmark shows it is needed for the start-up target (well under a second for the short commands).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from farm.embedded import EmbeddedRedis

REPO = Path(__file__).resolve().parent.parent
PLAIN = "import sys; from cli.main import app; sys.argv[0] = 'farm'; app()"
EAGER = (
    "import cli.main, cli.devices, cli.worker, cli.submit, cli.status, cli.results, cli.compare, "
    "cli.lifecycle, cli.run, cli.config"
)


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="farm-") as d, EmbeddedRedis(Path(d) / "redis") as server:
        env = {**os.environ, "FARM_BROKER_URL": server.url, "FARM_CONFIG": str(Path(d) / "none.toml")}
        sweep = str(REPO / "examples" / "seed.yaml")
        commands = {"--help": ["--help"], "status": ["status"], "submit --dry-run": ["submit", sweep, "--dry-run"]}
        cases: dict[str, list[str]] = {}
        for name, argv in commands.items():
            cases[f"{name} (as shipped)"] = [sys.executable, "-m", "cli.main", *argv]
            cases[f"{name} (plain: no gc/quick-exit measures)"] = [sys.executable, "-c", PLAIN, *argv]
        cases["import every subcommand (what eager loading adds)"] = [sys.executable, "-c", EAGER]
        cases["import the command group only"] = [sys.executable, "-c", "import cli.main"]
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, cmd in cases.items():
                times[name].append(timed(cmd, env))
    print(f"median of {args.runs} runs, interleaved (s):")
    for name, values in times.items():
        print(f"  {name:55s} {statistics.median(values):6.3f}")


if __name__ == "__main__":
    main()
