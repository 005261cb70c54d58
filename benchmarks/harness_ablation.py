"""What the farm's in-process extras cost a training step, measured inside one process so the machine's drift
and the process' own state (thread placement, memory layout) cancel.

Comparing whole runs (``farm_vs_bare.py``) on a shared 2-core VM leaves a round-to-round spread of 6–20%,
because each run lands in its own state and the host's load moves between runs. Here one process builds the
seed's CIFAR-10 MLP once and calls ``fit`` in blocks of a few epochs, alternating blocks with and without the
farm's extras (ABBA order, so a trend cancels too):

- **bare**: ``fit`` with ``bare_fit.py``'s epoch clock, on its data and model;
- **farm**: the same, plus what the training child adds while it trains: its timing callback
  (``workers.timing.epoch_callback``, with an event sink like the child's pipe), the idle sampler
  (``IdleSampler``) and the contention sampler (``ContentionSampler``) running, and a keep-alive checker
  thread as ``workers.child.watch_worker`` runs.

The input is the farm's own pipeline for the job (``workers.training.tf_dataset`` under TensorFlow's
``input_pipeline: farm``; numpy arrays into ``fit`` otherwise), on both sides. Prints the median epoch of each
block pair and farm ÷ bare as the geometric mean over pairs with a 95% bootstrap CI.

    KERAS_BACKEND=tensorflow python -m benchmarks.harness_ablation [--pipeline farm] [--pairs 40] [--epochs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import keras  # after the environment above (ruff does not flag it: E402 is off here)

from benchmarks.bare_keras import Clock, data, mlp
from benchmarks.common import Extras, paired_ratio_ci
from workers.timing import epoch_callback
from workers.training import tf_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default="keras", help="the farm's input_pipeline: keras or farm (TensorFlow)")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per block")
    ap.add_argument("--pairs", type=int, default=40, help="block pairs (each: one bare, one farm block)")
    args = ap.parse_args()
    backend = keras.backend.backend()
    x, y = data(args.samples)
    model = mlp()
    tf_pipeline = backend == "tensorflow" and args.pipeline == "farm"
    batches = tf_dataset(x, y, args.batch, 0) if tf_pipeline else None

    def block(farm: bool) -> float:
        clock, extras = Clock(), Extras() if farm else None
        callbacks = [clock, *([epoch_callback(extras.emit, args.epochs)] if extras else [])]
        with extras or contextlib.nullcontext():
            if tf_pipeline:
                model.fit(batches, epochs=args.epochs, verbose=0, shuffle=False, callbacks=callbacks)
            else:
                model.fit(x, y, batch_size=args.batch, epochs=args.epochs, verbose=0, shuffle=True, callbacks=callbacks)
        return statistics.median(clock.times)

    block(False)  # traces and compiles; not counted
    farm_s: list[float] = []
    bare_s: list[float] = []
    for i in range(args.pairs):
        order = (False, True) if i % 2 == 0 else (True, False)  # ABBA: a trend within a pair cancels
        got = {side: block(side) for side in order}
        bare_s.append(got[False])
        farm_s.append(got[True])
        print(f"pair {i + 1}: bare {got[False]:.4f} s  farm {got[True]:.4f} s  ratio {got[True] / got[False]:.3f}")
    ratio, low, high = paired_ratio_ci(farm_s, bare_s)
    print(
        f"\n{backend}, pipeline {args.pipeline}, {args.pairs} pairs of {args.epochs}-epoch blocks, one process: "
        f"farm extras ÷ bare = {ratio:.4f} (95% CI {low:.4f}–{high:.4f}); median epoch bare "
        f"{statistics.median(bare_s):.4f} s, farm {statistics.median(farm_s):.4f} s"
    )


if __name__ == "__main__":
    main()
