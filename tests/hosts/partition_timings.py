"""How fast the farm recovers from a worker host cut off mid-job, in a lab of network namespaces (needs root).

    sudo .venv/bin/python -m tests.hosts.partition_timings [--runs 5] [--regime defaults-scaled|fast|both]
                                                           [-o timings.json]

It lives with the lab it measures (test infrastructure: the benchmarks import nothing from tests/); run it
from the repository root.

Each run builds nothing new: one lab (tests/hosts/lab.py: a Redis host over TLS, two CPU worker hosts, a
submitter) serves every run, reset in between. A run submits one long tiny job; once it trains, the host
running it has its link set down, past the lease, then up again (tests/hosts/partition.py). Printed per
regime of lease settings, median, min and max over the runs of:

- cut → running elsewhere: from the link going down to the job's run starting on the other host (the lease's
  length plus the reaper's interval, plus a message's way to the other worker);
- heal → stale run stopped: from the link coming back to the cut-off run being over (its worker's renewal
  refused, its training process gone, its end in the job's run log);

and in how many runs the cut-off run's training process still trained when the job started elsewhere (the
window in which one job has two training processes; only one can be recorded). Every run also checks the
fencing (a result written with the cut-off run's generation after the takeover is refused) and the ledger
(one result, recorded by the other host, no overlapping recorded runs), and stops on a violation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from tests.hosts.lab import HostSpec, Lab, sweep_leftovers, unsupported
from tests.hosts.partition import HOSTS, REGIMES, PartitionRun, run_partition

CLEAN = {"jobs": 1, "recorded": 1, "lost": 0, "recorded_twice": 0, "concurrent_runs": 0}


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):6.2f} s   min {min(values):6.2f} s   max {max(values):6.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per regime")
    ap.add_argument("--regime", choices=[*sorted(REGIMES), "both"], default="both")
    ap.add_argument("--epochs", type=int, default=300, help="epochs of the job (it must outlast the cut)")
    ap.add_argument("-o", "--output", type=Path, help="write every run's figures here (JSON)")
    args = ap.parse_args()
    why = unsupported()
    if why:
        print(f"cannot build the lab here: {why}", file=sys.stderr)
        return 2
    sweep_leftovers()
    regimes = sorted(REGIMES) if args.regime == "both" else [args.regime]
    results: dict[str, list[PartitionRun]] = {r: [] for r in regimes}
    with (
        tempfile.TemporaryDirectory(prefix="partition-timings-") as d,
        Lab(Path(d) / "lab", [HostSpec(h) for h in HOSTS]) as lab,
    ):
        for regime in regimes:
            for i in range(args.runs):
                work = Path(d) / f"{regime}-{i}"
                work.mkdir()
                run = run_partition(lab, work, regime=regime, epochs=args.epochs)
                print(f"{regime} run {i + 1}/{args.runs}: {json.dumps(run.timings())}", flush=True)
                if (
                    run.ledger != CLEAN
                    or run.result.get("worker") != f"cpu@{run.rightful}"
                    or not run.late_result_refused
                ):
                    print(
                        f"fencing violated: ledger {run.ledger}, result by {run.result.get('worker')}, "
                        f"late result refused: {run.late_result_refused}",
                        file=sys.stderr,
                    )
                    return 1
                results[regime].append(run)
    print()
    for regime, runs in results.items():
        settings = ", ".join(f"{k.removeprefix('FARM_').lower()}={v}" for k, v in REGIMES[regime].items())
        print(f"{regime} ({settings}), {len(runs)} runs:")
        print(f"  cut → running elsewhere     {summary([r.cut_to_elsewhere_s for r in runs])}")
        print(f"  heal → stale run stopped    {summary([r.heal_to_stopped_s for r in runs])}")
        alive = sum(r.stale_alive_at_takeover for r in runs)
        print(f"  stale run still training when the job started elsewhere: {alive} of {len(runs)}")
    if args.output:
        args.output.write_text(json.dumps({k: [r.timings() for r in v] for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
