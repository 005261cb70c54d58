"""What a job measures: phases that add up, step-time percentiles, stalls, time-to-accuracy, and the
environment fingerprint that makes results comparable."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from farm.fingerprint import host_facts
from farm.rows import result_row
from farm.settings import FarmSettings
from tests.helpers import HOST_FACT_KEYS, assert_has_keys, small_job_envelope
from workers.execute import build_result
from workers.supervisor import run_child
from workers.timing import IdleSampler


def test_idle_sampler_finds_idle_windows() -> None:
    s = IdleSampler(min_gap_s=2.0)
    # (wall, cpu): busy 0-1 s, idle 1-4 s, busy 4-5 s, idle 5-6 s (too short), busy after.
    s.samples = [(0.0, 0.0), (1.0, 1.0), (2.0, 1.01), (3.0, 1.02), (4.0, 1.03), (5.0, 2.0), (6.0, 2.01), (7.0, 3.0)]
    assert s.stalls() == [(1.0, 3.0)]


def test_idle_sampler_trailing_stall() -> None:
    s = IdleSampler(min_gap_s=2.0)
    s.samples = [(0.0, 0.0), (1.0, 1.0), (2.0, 1.0), (3.0, 1.0), (4.0, 1.0)]
    assert s.stalls() == [(1.0, 3.0)]


SPEC = dict(units=16, train_samples=200, test_samples=50, batch_size=32, epochs=3)


def run(tmp_path: Path, **kw: object):
    env = small_job_envelope("m", **{**SPEC, **kw})
    outcome = run_child(env, FarmSettings(cache_dir=tmp_path), lambda e: None)
    assert outcome.status == "succeeded", (outcome.error, outcome.stderr_tail)
    return build_result(env, outcome, 1, "test-worker", host_facts())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_phases_add_up_and_steps_are_timed(tmp_path: Path, backend: str) -> None:
    r = run(tmp_path, backend=backend)
    p = r.phases
    parts = [p.spawn_s, p.import_s, p.wait_s, p.data_s, p.build_s, p.train_s, p.eval_s]
    assert all(x is not None and x >= 0 for x in parts), p
    # The phases account for the child's whole life: what they leave over is small.
    assert math.isclose(sum(parts) + p.other_s, p.total_s, rel_tol=1e-9)
    assert abs(p.other_s) < max(0.5, 0.05 * p.total_s), p
    # Epochs sum to (almost all of) fit(); the first is reported apart from the steady ones.
    assert sum(e.wall_s for e in r.epochs) <= p.train_s
    assert r.first_epoch_s > 0 and r.steady_epoch_s > 0
    assert r.steps_per_epoch == math.ceil(200 / 32)
    assert 0 < r.step_p50_s <= r.step_p90_s <= r.step_p99_s
    # The steady steps of an epoch add up to its time.
    assert r.step_p50_s * r.steps_per_epoch < 3 * r.steady_epoch_s
    assert all(e.cpu_s is not None for e in r.epochs) and p.train_cpu_s > 0
    # The training process's peak memory: at least the framework it imported.
    assert r.peak_host_mb is not None and r.peak_host_mb > 50, r.peak_host_mb
    assert result_row(r)["peak_host_mb"] == r.peak_host_mb


def test_peak_host_memory_follows_what_the_process_touched() -> None:
    """A process that touches 200 MiB more has a peak at least that much higher (VmHWM, not current RSS: freed
    memory still counts); getrusage's fallback is never below it (it also keeps the peak of the process image
    before exec: here the forked pytest process)."""
    code = (
        "from workers.memory import peak_host_mb\n"
        "import resource, json\n"
        "before = peak_host_mb()\n"
        "block = bytearray(200 * 2**20)\n"
        "block[::4096] = b'x' * len(block[::4096])\n"
        "del block\n"
        "after = peak_host_mb()\n"
        "print(json.dumps([before, after, peak_host_mb('/nonexistent')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    before, after, fallback = json.loads(out.stdout)
    assert after - before >= 190, (before, after)
    assert fallback >= 0.95 * after, (fallback, after)


@pytest.mark.slow
def test_fingerprint_fields(tmp_path: Path) -> None:
    r = run(tmp_path, backend="jax", epochs=2)
    env = r.environment
    assert_has_keys(
        env, (*HOST_FACT_KEYS, "versions", "data", "dataset_digest", "hardware_key", "software_key", "framework_build")
    )
    assert env["hardware_key"].startswith("cpu:") and env["cpu_model"] in env["hardware_key"]
    assert "keras3." in env["software_key"] and "jax" in env["software_key"]
    assert env["versions"]["jax"] and env["data"] == "synthetic" and env["dataset_digest"] == r.dataset_digest
    row = result_row(r)
    assert row["hardware_key"] == env["hardware_key"] and row["software_key"] == env["software_key"]


@pytest.mark.slow
def test_time_to_accuracy_and_validation_kept_out_of_epoch_times(tmp_path: Path) -> None:
    r = run(tmp_path, backend="jax", target_accuracy=0.01)
    assert r.epochs_to_target == 1 and r.time_to_target_s == pytest.approx(r.epochs[0].wall_s)
    assert all(e.val_s and e.val_s > 0 for e in r.epochs)
    never = run(tmp_path, backend="jax", target_accuracy=1.0, epochs=2, repeat=1)
    assert never.epochs_to_target is None and never.time_to_target_s is None
