"""What the farm adds to each training step, measured directly: a bound on the harness overhead that the
machine's noise cannot blur.

Inside ``model.fit`` the farm differs from a bare script by one Keras callback (a timestamp in the batch-begin
hook; no batch-end hook, so Keras keeps its asynchronous dispatch and syncs nothing) and an idle sampler
thread that wakes five times a second. This times Keras' own callback dispatch per step with and without the
farm's callback, and the sampler's work per second, then states them as a share of a step:

    python -m benchmarks.hook_cost [--step-ms 32 0.9]

Comparing whole epochs (``farm_vs_bare.py``) is the end-to-end check; on a 2-core machine its confidence
interval is about ±6%, too wide to show a 2% bound. This shows what the farm's code costs per step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras

from workers.timing import IdleSampler, epoch_callback


def per_call_us(callbacks: list, calls: int) -> float:
    """Median over 7 runs of Keras' CallbackList.on_train_batch_begin, per call, in microseconds."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    runs = []
    for _ in range(7):
        cbl = keras.callbacks.CallbackList(list(callbacks), add_history=True, model=model)
        cbl.on_epoch_begin(0)
        t0 = time.perf_counter()
        for i in range(calls):
            cbl.on_train_batch_begin(i)
        runs.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(runs)


def sampler_us_per_s(wakes: int = 200_000) -> float:
    """The sampler's work per second: one wake's body (two clock reads and an append) × its wakes per second."""
    s = IdleSampler()
    t0 = time.perf_counter()
    for _ in range(wakes):
        s.samples.append((time.perf_counter(), time.process_time()))
    per_wake = (time.perf_counter() - t0) / wakes
    return per_wake / s.period_s * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--step-ms",
        type=float,
        nargs="+",
        default=[32.0, 0.9],
        help="step times to state the cost against (default: cifar10_mlp batch 32 on this 2-core CPU, "
        "and on an H100 with JAX)",
    )
    ap.add_argument("--calls", type=int, default=200_000)
    args = ap.parse_args()
    bare = per_call_us([], args.calls)
    farm = per_call_us([epoch_callback(lambda e: None, 1)], args.calls)
    added = farm - bare
    sampler = sampler_us_per_s()
    print(
        f"Keras callback dispatch per step: bare {bare:.2f} µs, with the farm's timer {farm:.2f} µs "
        f"(+{added:.2f} µs per step)"
    )
    print(f"idle sampler: {sampler:.2f} µs of work per second of training")
    print(f"{'step time':>12s} {'added per step':>15s} {'share of the step':>18s}")
    for ms in args.step_ms:
        per_step = added + sampler * ms / 1000.0
        print(f"{ms:9.2f} ms {per_step:12.2f} µs {per_step / (ms * 1000) * 100:16.3f} %")


if __name__ == "__main__":
    main()
