"""How much work the farm's training path does per epoch against a bare Keras script, counted rather than
timed: counts do not drift with the host's load, so they answer at a glance what a 1% timing CI cannot.

Each side runs in a fresh process (the farm side: ``workload_ablation.FarmBlock``, the farm's model, data and
child code path; the bare side: ``bare_workload.py``'s). After a first block of epochs that traces and
compiles, a second block is counted:

- **Python calls**: every Python and C function call the interpreter dispatches (``sys.setprofile``), on the
  main thread (where Keras' step loop runs) and on all other threads apart (the farm's samplers, Keras' async
  callback pool); the main thread's count is exact and repeatable, the others' grow with the block's length;
- **page faults and context switches** (``getrusage``): JAX's CPU steps allocate their temporaries afresh, so
  minor faults measure the memory work of a step;
- **the XLA program** of the model's forward pass (in inference mode): its number of operations and a digest
  of how many of each kind, which match when the two models compute the same thing;
- **CPU and wall seconds** of a second, unprofiled block, for scale.

Figures are per epoch. A farm side that adds no work shows the bare side's counts plus its timing callback's
few calls a step.

    python -m benchmarks.work_per_epoch [--workload text_transformer] [--mode train] [--epochs 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

from benchmarks.common import CONFIGS, bare_env

HERE = pathlib.Path(__file__).resolve().parent


class CallCounter:
    """A profile function that counts call events by thread: main or other."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.main = threading.get_ident()

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            self.counts["main" if threading.get_ident() == self.main else "other"] += 1

    def __enter__(self) -> CallCounter:
        threading.setprofile(self)
        sys.setprofile(self)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


def usage() -> tuple[int, int, int, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt, r.ru_majflt, r.ru_nvcsw, r.ru_nivcsw


def xla_ops(model: Any, x: Any, batch: int) -> dict[str, Any]:
    """The model's forward pass (inference mode: a jitted training-mode call would update batch statistics in
    place, which JAX refuses) as XLA sees it: how many StableHLO operations, and a digest of
    how many of each kind (layer names and constants aside), so two models that compute the same thing match."""
    import hashlib
    import re

    import jax

    text = jax.jit(lambda v: model(v, training=False)).lower(x[:batch]).as_text()
    kinds = Counter(re.findall(r"stablehlo\.(\w+)", text))
    digest = hashlib.sha256(json.dumps(sorted(kinds.items())).encode()).hexdigest()[:12]
    return {"ops": sum(kinds.values()), "digest": digest}


def side_process(side: str, workload: str, mode: str, epochs: int) -> dict[str, Any]:
    """Runs in the fresh process: build one side, warm it, count a block, time a block."""
    cfg = CONFIGS[workload]
    if side == "bare":
        from benchmarks.bare_keras import build_workload, run_workload, workload_data

        x, y = workload_data(workload, cfg["samples"], cfg["params"])
        model = build_workload(workload, cfg["params"])

        def block() -> None:
            run_workload(model, x, y, mode, epochs, cfg["batch"])

        built = (model, x)
    else:
        from benchmarks.farm_keras import FarmBlock

        block = FarmBlock(  # type: ignore[assignment]
            workload, cfg["params"], cfg["samples"], cfg["batch"], epochs, mode, pathlib.Path(tempfile.mkdtemp())
        )
        built = (block.model, block.x)
    program = xla_ops(*built, cfg["batch"])
    block()  # trace and compile
    before = usage()
    with CallCounter() as calls:
        block()
    after = usage()
    w0, c0 = time.perf_counter(), time.process_time()
    block()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    faults = [b - a for a, b in zip(before, after, strict=True)]
    return {
        "xla_ops": program["ops"],
        "xla_program": program["digest"],
        "calls_main": calls.counts["main"] / epochs,
        "calls_other": calls.counts["other"] / epochs,
        "minor_faults": faults[0] / epochs,
        "major_faults": faults[1] / epochs,
        "voluntary_cs": faults[2] / epochs,
        "involuntary_cs": faults[3] / epochs,
        "cpu_s": cpu / epochs,
        "wall_s": wall / epochs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="text_transformer", choices=sorted(CONFIGS))
    ap.add_argument("--mode", default="train", choices=["train", "inference"])
    ap.add_argument("--epochs", type=int, default=3, help="epochs (inference: predict passes) per block")
    ap.add_argument("--rounds", type=int, default=2, help="fresh processes per side")
    ap.add_argument("--side", help=argparse.SUPPRESS)  # set in the fresh process
    args = ap.parse_args()
    if args.side:
        print(json.dumps(side_process(args.side, args.workload, args.mode, args.epochs)))
        return
    env = bare_env("jax")
    rows: dict[str, list[dict[str, float]]] = {"bare": [], "farm": []}
    for _ in range(args.rounds):
        for side in rows:
            cmd = [sys.executable, "-m", "benchmarks.work_per_epoch", "--side", side, "--workload", args.workload]
            cmd += ["--mode", args.mode]
            out = subprocess.run(
                [*cmd, "--epochs", str(args.epochs)],
                env=env,
                cwd=HERE.parent,
                capture_output=True,
                text=True,
            )
            if out.returncode:
                raise SystemExit(f"the {side} side failed:\n{out.stderr[-3000:]}")
            rows[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.workload} {args.mode}, JAX on CPU, per epoch, {args.rounds} fresh process(es) a side:")
    print(f"  {'':16s}" + "".join(f"{side:>26s}" for side in rows) + f"{'farm - bare':>14s}{'farm ÷ bare':>13s}")
    programs = {side: sorted({r["xla_program"] for r in rs}) for side, rs in rows.items()}
    same = "the same" if programs["bare"] == programs["farm"] and len(programs["bare"]) == 1 else "DIFFERENT"
    print(
        f"  forward pass in XLA: {same} program (digest of op kinds: bare {programs['bare']}, farm {programs['farm']})"
    )
    for key in rows["bare"][0]:
        if key == "xla_program":
            continue
        cells = {side: [r[key] for r in rs] for side, rs in rows.items()}
        fmt = "{:.4f}" if key.endswith("_s") else "{:.0f}"
        shown = {side: " / ".join(fmt.format(v) for v in vs) for side, vs in cells.items()}
        farm, bare = statistics.mean(cells["farm"]), statistics.mean(cells["bare"])
        ratio = f"{farm / bare:.4f}" if bare else ""
        line = f"  {key:16s}" + "".join(f"{shown[side]:>26s}" for side in rows)
        print(line + f"{fmt.format(farm - bare):>14s}{ratio:>13s}")
    print("  (each side's figures are its fresh processes in order; the last two columns compare their means)")


if __name__ == "__main__":
    main()
