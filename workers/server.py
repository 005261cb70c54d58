"""MLPerf's Server scenario, in the training child: requests arrive at random times (a Poisson process at a
target rate) and are answered one at a time at batch 1, first come first served; a request's latency runs from
its arrival to its answer in hand, so the time it queued behind others counts. The job searches for the
highest rate whose 99th-percentile latency stays under the bound, as LoadGen's Server mode does with its
target QPS.

The search starts at half the rate one request at a time could sustain (from the single-stream median), doubles
while the bound holds, then bisects between the last rate that held and the first that did not, within
``tries`` rates. Every rate tried is kept (the curve the report draws); the answer is the highest that held.
Keras is imported by the caller; this module only drives the model it is given.
"""

from __future__ import annotations

import json
import time
from typing import Any

CLOSE_ENOUGH = 1.05
"""The bisection stops when the rate that failed is within 5% of the one that held."""


def poisson_trial(model: Any, x: Any, rate: float, requests: int, bound_s: float, seed: int) -> dict[str, Any]:
    """Send ``requests`` batch-1 requests with exponential gaps at ``rate`` per second; their latencies
    (arrival to answer) and the rate actually served."""
    import numpy as np

    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, requests))
    latencies = np.empty(requests)
    n = len(x)
    start = time.perf_counter()
    done = start
    for i in range(requests):
        due = start + arrivals[i]
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        model.predict_on_batch(x[i % n : i % n + 1])
        done = time.perf_counter()
        latencies[i] = done - due
    p50, p90, p99 = (float(v) for v in np.percentile(latencies, [50, 90, 99]))
    return {
        "rate_qps": rate,
        "achieved_qps": requests / max(done - start, 1e-9),
        "p50_s": p50,
        "p90_s": p90,
        "p99_s": p99,
        "met": p99 <= bound_s,
    }


def server_search(
    model: Any, x: Any, *, bound_s: float, requests: int, tries: int, service_s: float | None, seed: int
) -> dict[str, Any]:
    """The highest Poisson rate whose p99 latency is within ``bound_s`` (doubling, then bisection), with every
    rate tried; ``service_s`` is one request's time alone (the single-stream median), where the search starts."""
    if len(x) == 0:
        return {"server_curve": "[]"}
    rate = 0.5 / service_s if service_s and service_s > 0 else 10.0
    held: dict[str, Any] | None = None
    failed: dict[str, Any] | None = None
    curve = []
    for k in range(tries):
        trial = poisson_trial(model, x, rate, requests, bound_s, seed + k)
        curve.append(trial)
        if trial["met"]:
            held = trial if held is None or trial["rate_qps"] > held["rate_qps"] else held
        elif failed is None or trial["rate_qps"] < failed["rate_qps"]:
            failed = trial
        if held is not None and failed is not None:
            if failed["rate_qps"] <= held["rate_qps"] * CLOSE_ENOUGH:
                break
            rate = (held["rate_qps"] * failed["rate_qps"]) ** 0.5  # bisect on a log scale
        elif held is not None:
            rate = held["rate_qps"] * 2
        else:
            rate = failed["rate_qps"] / 4 if failed is not None else rate / 4
    curve.sort(key=lambda t: t["rate_qps"])
    return {
        "server_qps": held["rate_qps"] if held else None,
        "server_p99_s": held["p99_s"] if held else None,
        "server_curve": json.dumps(curve),
    }
