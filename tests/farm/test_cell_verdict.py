"""A cell's verdict from its recorded repeats (farm.cell_verdict), as the worker and `farm run`'s closing lines
read it: valid repeats counted, invalid ones replaced, a failed or too-short repeat stopping the cell."""

from __future__ import annotations

import json

import redis
from typer.testing import CliRunner

from cli.main import app
from farm.cell_verdict import cell_line, cell_verdict, sweep_cell_lines
from farm.job import JobEnvelope, JobSpec
from farm.precision import Precision
from farm.result import JobResult, JobStatus
from farm.store import Store
from tests.helpers import save_finished_sweep, succeeded_job, throwaway_redis

TARGET = Precision(ci=0.05, min_repeats=4, max_repeats=6, max_invalid=2)


def repeat(
    per_s: float,
    k: int = 0,
    precision: Precision | None = TARGET,
    workload: str = "fashion_mnist_mlp",
    **fields: object,
) -> JobResult:
    job = JobSpec(sweep="s", workload=workload, data="synthetic", repeat=k, precision=precision)
    return succeeded_job(job, "s-1", 100 / per_s, train_samples_used=100, unit="images", **fields)[1]


def test_a_cell_under_way_says_it_is_still_measuring() -> None:
    results = [repeat(100.0, 0), repeat(120.0, 1)]
    assert cell_verdict(results, TARGET).more == 2
    line = cell_line(results, TARGET)
    assert line.startswith("fashion_mnist_mlp cpu tensorflow batch 32: 110.0 images/s so far; measuring: ")
    assert line.endswith("with 2 valid repeats: 2 more")


def test_farm_status_cells_shows_one_line_per_cell(isolated_env: object) -> None:
    """``farm status SWEEP --cells``, from the store: a cell under way and a fixed-count cell beside it."""
    growing = [repeat(100.0, 0), repeat(100.0, 1)]
    fixed = [repeat(50.0, k, None, workload="cifar10_mlp") for k in range(2)]
    envelopes = [JobEnvelope.for_job(r.job, "s-1") for r in growing + fixed]
    with throwaway_redis() as server:
        store = Store(redis.Redis.from_url(server.url, decode_responses=True))
        save_finished_sweep(store, "s-1", "cells", envelopes, [])
        for r in growing + fixed:
            assert store.record_result(r.model_copy(update={"job_id": JobEnvelope.for_job(r.job, "s-1").job_id}))
        lines = sweep_cell_lines(store, "s-1")
        shown = CliRunner().invoke(app, ["status", "s-1", "--cells", "--broker", server.url])
        as_json = CliRunner().invoke(app, ["status", "s-1", "--cells", "--json", "--broker", server.url])
    assert len(lines) == 2 and "measuring" in lines[0] and lines[1].endswith("from 2 valid of 2")
    assert shown.exit_code == 0 and shown.stdout.splitlines() == lines, shown.stdout
    assert json.loads(as_json.stdout) == {"sweep_id": "s-1", "cells": lines}


def test_a_tight_cell_meets_its_target_and_says_so() -> None:
    results = [repeat(100.0 + k * 0.1, k) for k in range(4)]
    verdict = cell_verdict(results, TARGET)
    assert verdict.met and verdict.more == 0 and verdict.n_valid == 4
    line = cell_line(results, TARGET)
    assert line.startswith("fashion_mnist_mlp cpu tensorflow batch 32: 100.2 images/s; target met: ±")


def test_invalid_repeats_do_not_count_and_past_max_invalid_the_cell_stops() -> None:
    busy = {"valid": False, "invalid_reasons": ["other processes used 45% of the job's 2 core(s)"]}
    results = [repeat(100.0, k) for k in range(3)] + [repeat(100.0, 3 + k, **busy) for k in range(3)]
    verdict = cell_verdict(results, TARGET)
    assert (verdict.n_valid, verdict.n_invalid, verdict.more) == (3, 3, 0)
    assert "never quiet enough" in verdict.reason
    assert "target not met: 3 invalid repeats, more than max_invalid (2)" in cell_line(results, TARGET)


def test_a_failed_or_too_short_repeat_stops_the_cell() -> None:
    failed = repeat(100.0, 1).model_copy(update={"status": JobStatus.failed})
    assert cell_verdict([repeat(100.0), failed], TARGET).reason == "a repeat failed: no more added"
    short = "steady window too short to time (0.40 s, under 1 s): run 6 epochs, or 4,000 samples with 3 epochs"
    verdict = cell_verdict([repeat(100.0, 0, valid=False, invalid_reasons=[short])], TARGET)
    assert verdict.more == 0 and verdict.reason == short


def test_a_fixed_count_cell_says_how_many_were_valid_and_why_not() -> None:
    results = [repeat(100.0, 0, None), repeat(50.0, 1, None, contended=True, contended_reasons=["busy"])]
    assert cell_line(results, None) == (
        "fashion_mnist_mlp cpu tensorflow batch 32: 100.0 images/s from 1 valid of 2 (1 invalid: contended)"
    )
