"""Inference mode through the real training child: offline passes timed as epochs, batch-1 latency, and the
model-size figures every job now records."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from farm.rows import result_row
from tests.workers.test_measurements import run as measure


def run(tmp_path: Path, **kw: object):
    """test_measurements' tiny Fashion-MLP job, under JAX with 40 test samples unless told otherwise."""
    return measure(tmp_path, **{"backend": "jax", "test_samples": 40, **kw})


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_inference_passes_and_latency(tmp_path: Path, backend: str) -> None:
    r = run(tmp_path, mode="inference", backend=backend)
    # Each pass of predict is an epoch record: the first holds compilation, the rest are the steady figure.
    assert [e.epoch for e in r.epochs] == [1, 2, 3]
    assert all(e.loss is None and e.accuracy is None for e in r.epochs)
    assert r.train_samples_used == 200 and r.steady_samples_per_s and r.steady_samples_per_s > 0
    assert r.steps_per_epoch == math.ceil(200 / 32)
    assert 0 < r.step_p50_s <= r.step_p90_s <= r.step_p99_s
    # Single stream: one timed request per test sample.
    assert r.latency_requests == 40 == r.test_samples_used
    assert 0 < r.latency_p50_s <= r.latency_p90_s <= r.latency_p99_s
    assert r.latency_mean_s and r.latency_mean_s > 0
    assert r.test_accuracy is not None and 0 <= r.test_accuracy <= 1
    assert r.test_loss is None  # nothing was evaluated with a loss
    # Inference FLOPs are the forward pass alone.
    if r.flops_per_sample:
        assert r.steady_tflops == pytest.approx(r.flops_per_sample * r.steady_samples_per_s / 1e12)
    row = result_row(r)
    assert row["mode"] == "inference" and row["latency_p99_s"] == r.latency_p99_s


@pytest.mark.slow
def test_training_records_model_size(tmp_path: Path) -> None:
    r = run(tmp_path, epochs=2)
    # Flatten 784 -> Dense 16 -> Dense 10: weights and biases.
    assert r.param_count == 785 * 16 + 17 * 10
    assert r.unit == "samples" and r.tokens_per_sample is None
    assert r.latency_requests is None
    if r.flops_per_sample is not None:
        assert r.flops_per_sample >= 2 * (784 * 16 + 16 * 10)
        assert r.steady_tflops == pytest.approx(3 * r.flops_per_sample * r.steady_samples_per_s / 1e12)


@pytest.mark.slow
def test_default_latency_requests_are_capped(tmp_path: Path) -> None:
    """Without test_samples, inference times a bounded number of batch-1 requests, not the whole test set."""
    from workers.inference import DEFAULT_LATENCY_REQUESTS

    r = run(tmp_path, mode="inference", test_samples=None, epochs=2)
    assert r.latency_requests == DEFAULT_LATENCY_REQUESTS
