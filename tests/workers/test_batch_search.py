"""``batch_size: max`` (workers.batch_search): doubling, then bisection, each try its own process; out of memory
recognised as such and any other failure ending the search as the job's; bounded in tries and time; the
measured run at the batch found, with every try recorded; end to end through a real worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from farm.job import JobEnvelope, JobSpec
from tests.helpers import farm_env, run_farm, submit_and_wait
from workers.batch_search import measure_at_max_batch, ran_out_of_memory
from workers.memory import OOM_PREFIX
from workers.supervisor import ChildOutcome

BASE = {"sweep": "s", "workload": "fashion_mnist_mlp", "data": "synthetic", "epochs": 3, "train_samples": 4096}


def envelope(**search: object) -> JobEnvelope:
    return JobEnvelope.for_job(
        JobSpec.model_validate({**BASE, "batch_size": "max", "batch_search": search or None}), "s-1"
    )


class Device:
    """A stand-in device that holds batches up to ``holds``; launches are recorded."""

    def __init__(self, holds: int, other_failure_at: int | None = None) -> None:
        self.holds = holds
        self.other_failure_at = other_failure_at
        self.launched: list[JobEnvelope] = []

    def __call__(self, one: JobEnvelope) -> ChildOutcome:
        self.launched.append(one)
        batch = one.job.batch_size
        if batch == self.other_failure_at:
            return ChildOutcome(status="failed", stage="build", error="ValueError: the model does not build")
        if batch > self.holds:
            return ChildOutcome(status="failed", stage="fit", error=f"{OOM_PREFIX}: RESOURCE_EXHAUSTED at {batch}")
        return ChildOutcome(status="succeeded", stage="done", result={"figures": 1})


def test_batch_size_max_is_a_search_from_the_default_batch() -> None:
    job = JobSpec.model_validate({**BASE, "batch_size": "max"})
    assert job.batch_size == 32 and job.batch_search is not None and job.batch_max is True
    plain = JobSpec.model_validate(BASE)
    assert plain.batch_max is None and "batch_search" not in plain.canonical_json() and plain.job_id != job.job_id
    with pytest.raises(ValueError):
        JobSpec.model_validate({**BASE, "batch_size": "most"})


def test_doubling_then_bisection_finds_the_largest_batch_that_fits() -> None:
    device = Device(holds=700)
    outcome = measure_at_max_batch(envelope(), device)
    tried = [e.job.batch_size for e in device.launched[:-1]]
    assert tried[:6] == [32, 64, 128, 256, 512, 1024]  # doubling until one does not fit
    found = outcome.result["batch_size_used"]
    assert found <= 700 and 700 - found <= found // 16 + 1  # then bisection, to within 1/16
    measured = device.launched[-1]
    assert measured.job.batch_size == found and measured.job.epochs == 3 and measured.job.batch_search is None
    assert all(e.job.epochs == 1 and e.job.train_samples == 2 * e.job.batch_size for e in device.launched[:-1])
    tries = json.loads(outcome.result["batch_tries"])
    assert [t["batch"] for t in tries] == tried and all(t["fit"] == (t["batch"] <= 700) for t in tries)
    assert outcome.status == "succeeded"


def test_a_start_that_does_not_fit_halves_down_and_nothing_fitting_fails_as_memory() -> None:
    device = Device(holds=10)
    outcome = measure_at_max_batch(envelope(), device)
    assert [e.job.batch_size for e in device.launched] == [32, 16, 8, 12, 10, 11, 10][: len(device.launched)]
    assert outcome.result["batch_size_used"] == 10
    none = measure_at_max_batch(envelope(), Device(holds=0))
    assert none.status == "failed" and none.stage == "memory" and "no batch size fits" in str(none.error)
    assert ran_out_of_memory(none)


def test_another_failure_ends_the_search_as_the_jobs_own() -> None:
    device = Device(holds=10_000, other_failure_at=128)
    outcome = measure_at_max_batch(envelope(), device)
    assert outcome.status == "failed" and outcome.stage == "build" and not ran_out_of_memory(outcome)
    assert [e.job.batch_size for e in device.launched] == [32, 64, 128]  # no measured run after it
    assert json.loads(outcome.result["batch_tries"])[-1]["error"].startswith("ValueError")


def test_the_search_is_bounded_by_its_tries_and_its_limit() -> None:
    device = Device(holds=10**6)
    outcome = measure_at_max_batch(envelope(tries=3), device)
    assert len(device.launched) == 4 and outcome.result["batch_size_used"] == 128  # 3 tries, then the run
    device = Device(holds=10**6)
    outcome = measure_at_max_batch(envelope(limit=100), device)
    assert [e.job.batch_size for e in device.launched] == [32, 64, 100, 100]
    assert outcome.result["batch_size_used"] == 100


@pytest.mark.slow  # a real worker: each try is a fresh process of its fork server, then the measured run
def test_a_real_worker_searches_then_measures_at_the_batch_found(redis_url: str, start_worker, tmp_path: Path) -> None:
    start_worker("w1")
    job = {"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 16}, "batch_size": "max"}
    spec = {"backend": "jax", "data": "synthetic", "train_samples": 1024, "test_samples": 64, "epochs": 2}
    spec["batch_search"] = {"limit": 128, "tries": 4}
    sweep = tmp_path / "max.yaml"
    sweep.write_text(yaml.safe_dump({"name": "max", "defaults": spec, "jobs": [job]}))
    env = farm_env(redis_url, tmp_path / "cache")
    [result] = submit_and_wait(redis_url, sweep, env)
    sweep_id = result.sweep_id
    assert result.status == "succeeded", result.error
    assert result.job.batch_size == 32 and result.job_id == result.job.job_id  # the job that was asked for
    assert [t["batch"] for t in json.loads(result.batch_tries)] == [32, 64, 128]
    assert result.batch_size_used == 128 and len(result.epochs) == 2
    report = run_farm(["report", sweep_id, "--include-invalid"], env)
    assert report.returncode == 0 and "batch used" in report.stdout, report.stdout
