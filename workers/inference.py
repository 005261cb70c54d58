"""Inference measurement, in the training child: the two scenarios MLPerf's inference rules name.

- **Offline** (throughput): ``epochs`` passes of ``predict`` over the samples at ``batch_size``. Each pass is
  timed as an epoch, its batches as steps, by the same callback that times training, so the first pass
  (tracing and compilation) and the steady passes split exactly as training's epochs do, and the report's
  statistics, stalls and contention windows apply unchanged.
- **Single stream** (latency): one request at a time at batch 1, each the compiled ``predict_on_batch`` of one
  sample, timed from the call to the numpy result in hand (what a caller waits for, device-to-host copy
  included). A few requests first warm the batch-1 trace up and are not counted.

Keras is imported by the caller; this module only drives the model it is given.
"""

from __future__ import annotations

import time
from typing import Any

LATENCY_WARMUP = 10
"""Batch-1 requests run before the timed ones: the first traces and compiles the batch-1 function."""

DEFAULT_LATENCY_REQUESTS = 200
"""Timed batch-1 requests when the job does not set ``test_samples`` (enough for a p99 that is more than the
single slowest request: 2 requests above it)."""


def offline_passes(model: Any, inputs: Any, passes: int, batch_size: int | None, timer: Any) -> None:
    """``passes`` timed passes of ``predict`` over ``inputs`` (numpy, batched here, or an already batched
    dataset when ``batch_size`` is None)."""
    for i in range(passes):
        timer.on_epoch_begin(i)
        if batch_size is None:
            model.predict(inputs, verbose=0, callbacks=[timer])
        else:
            model.predict(inputs, batch_size=batch_size, verbose=0, callbacks=[timer])
        timer.on_epoch_end(i, {})
    timer.on_train_end()


def single_stream(model: Any, x: Any, y: Any, requests: int) -> dict[str, Any]:
    """Latency of ``requests`` batch-1 requests cycling over ``x`` (after the warm-up), and the accuracy of
    their answers against ``y`` (integer labels or one-hot)."""
    import numpy as np

    n = len(x)
    if n == 0 or requests <= 0:
        return {"latency_requests": 0}
    for i in range(LATENCY_WARMUP):
        model.predict_on_batch(x[i % n : i % n + 1])
    times = np.empty(requests)
    hits = 0
    labels = np.asarray(y)
    labels = labels.argmax(axis=-1) if labels.ndim > 1 else labels.reshape(-1)
    for i in range(requests):
        j = i % n
        sample = x[j : j + 1]
        t0 = time.perf_counter()
        out = model.predict_on_batch(sample)
        times[i] = time.perf_counter() - t0
        hits += int(np.asarray(out).reshape(1, -1).argmax(axis=-1)[0] == labels[j])
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return {
        "latency_requests": requests,
        "latency_p50_s": float(p50),
        "latency_p90_s": float(p90),
        "latency_p99_s": float(p99),
        "latency_mean_s": float(times.mean()),
        "test_accuracy": hits / requests,
    }
