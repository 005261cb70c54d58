"""MLPerf's Server scenario (workers.server): Poisson arrivals answered one at a time, latency from arrival to
answer (queueing included), and the search for the highest rate whose p99 stays under the bound; end to end
through a real worker, with the report's column and the HTML page's latency-against-load chart."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from farm.job import JobSpec
from tests.helpers import farm_env, run_farm, submit_and_wait
from workers.server import poisson_trial, server_search


class Model:
    """A stand-in model that answers each request in ``service_s``."""

    def __init__(self, service_s: float) -> None:
        self.service_s = service_s
        self.calls = 0

    def predict_on_batch(self, x: Any) -> Any:
        self.calls += 1
        time.sleep(self.service_s)
        return np.zeros((1, 10))


def test_a_trial_counts_the_queue_in_each_latency() -> None:
    """Requests arriving faster than they are answered queue up: their latencies grow past the service time."""
    x = np.zeros((8, 4))
    slow = poisson_trial(Model(0.004), x, rate=2000.0, requests=40, bound_s=0.004, seed=1)
    assert slow["p99_s"] > 4 * 0.004 and not slow["met"]  # 40 requests in ~20 ms, 160 ms of work
    assert slow["achieved_qps"] < 2000.0


def test_the_search_keeps_every_rate_and_answers_the_highest_that_held() -> None:
    model = Model(0.002)
    found = server_search(model, np.zeros((8, 4)), bound_s=0.05, requests=40, tries=6, service_s=0.002, seed=3)
    curve = json.loads(found["server_curve"])
    assert 2 <= len(curve) <= 6 and model.calls == 40 * len(curve)
    assert [p["rate_qps"] for p in curve] == sorted(p["rate_qps"] for p in curve)
    for point in curve:
        assert point["met"] == (point["p99_s"] <= 0.05)
    held = [p["rate_qps"] for p in curve if p["met"]]
    if held:
        assert found["server_qps"] == max(held)
        assert found["server_p99_s"] == next(p["p99_s"] for p in curve if p["rate_qps"] == max(held))
    else:
        assert found["server_qps"] is None and found["server_p99_s"] is None


def test_the_server_scenario_is_for_inference_and_leaves_other_ids_alone() -> None:
    base = {"sweep": "s", "workload": "fashion_mnist_mlp", "data": "synthetic"}
    with pytest.raises(ValueError, match="needs mode: inference"):
        JobSpec.model_validate({**base, "server": {"p99_bound_ms": 10}})
    with pytest.raises(ValueError):
        JobSpec.model_validate({**base, "mode": "inference", "server": {"p99_bound_ms": 0}})
    plain = JobSpec.model_validate({**base, "mode": "inference"})
    served = JobSpec.model_validate({**base, "mode": "inference", "server": {"p99_bound_ms": 10}})
    assert "server" not in plain.canonical_json() and plain.job_id != served.job_id
    assert served.server_p99_bound_ms == 10.0 and plain.server_p99_bound_ms is None


@pytest.mark.slow  # a real worker runs an inference job with the Server search
def test_a_real_inference_job_finds_its_server_rate(redis_url: str, start_worker, tmp_path: Path) -> None:
    start_worker("w1")
    job = {
        "workload": "fashion_mnist_mlp",
        "mode": "inference",
        "params": {"hidden_layers": 1, "units": 16},
        "server": {"p99_bound_ms": 50, "requests": 40, "tries": 4},
    }
    spec = {"backend": "jax", "data": "synthetic", "train_samples": 256, "test_samples": 40, "epochs": 2}
    sweep = tmp_path / "server.yaml"
    sweep.write_text(yaml.safe_dump({"name": "server", "defaults": spec, "jobs": [job]}))
    env = farm_env(redis_url, tmp_path / "cache")
    [result] = submit_and_wait(redis_url, sweep, env)
    sweep_id = result.sweep_id
    assert result.status == "succeeded", result.error
    curve = json.loads(result.server_curve)
    assert 2 <= len(curve) <= 4 and result.latency_p50_s
    if result.server_qps is not None:  # a machine busy enough can miss even the lowest rate: then it says so
        assert result.server_qps == max(p["rate_qps"] for p in curve if p["met"])
    html = tmp_path / "report.html"
    report = run_farm(["report", sweep_id, "--include-invalid", "--html", str(html)], env)
    assert report.returncode == 0, report.stdout + report.stderr
    assert "server QPS" in report.stdout
    page = html.read_text()
    assert '<section id="server"' in page and "p99 latency against load, bound 50 ms" in page
