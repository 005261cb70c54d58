"""The example plugin (examples/plugin) installed with pip into a directory of its own, then run end to end: a
worker that has it advertises it and trains its jobs; a worker without it never receives them; the submit side
refuses a sweep no live worker can serve; the result's software key names the plugin's package and version."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import redis
import yaml

from tests.helpers import REPO, farm_env, run_farm, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip installs the example plugin, as a lab would, into a site directory used through PYTHONPATH."""
    site = tmp_path_factory.mktemp("plugin-site")
    # Built from a copy: setuptools writes build/ and egg-info beside the sources, never into the checkout.
    source = tmp_path_factory.mktemp("plugin-source") / "plugin"
    shutil.copytree(REPO / "examples" / "plugin", source)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return site


def sweep(tmp_path: Path) -> Path:
    spec = {
        "name": "plugin-e2e",
        "defaults": {
            "backend": "jax",
            "data": "synthetic",
            "epochs": 2,
            "train_samples": 64,
            "test_samples": 32,
            "batch_size": 16,
        },
        "jobs": [
            {"workload": "tiny_cnn", "params": {"filters": 4, "dense_units": 8}},
            {"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 16}},
        ],
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_example_plugin_runs_end_to_end_only_where_it_is_installed(
    redis_url: str, start_worker, tmp_path: Path, plugin_site: Path
) -> None:
    plain = farm_env(redis_url, tmp_path / "cache")
    with_plugin = farm_env(redis_url, tmp_path / "cache", PYTHONPATH=str(plugin_site))
    path = sweep(tmp_path)

    # Without the plugin on the submit side the workload is unknown: a one-line error naming the field.
    out = run_farm(["submit", str(path)], plain)
    assert out.returncode == 2 and "tiny_cnn" in out.stderr and "Traceback" not in out.stderr

    # A worker without the plugin: the plugin's jobs have no worker, and submit says so (as for hardware).
    start_worker("plain")
    out = run_farm(["submit", str(path)], with_plugin)
    assert out.returncode == 2 and "farm.cpu.be-jax.wl-tiny_cnn" in out.stderr, out.stderr

    sub = run_farm(["submit", str(path), "--json", "--allow-unserved"], with_plugin)
    assert sub.returncode == 0, sub.stderr
    sid = json.loads(sub.stdout)["sweep_id"]
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    jobs = r.lrange(f"farm:sweep:{sid}:jobs", 0, -1)

    def results() -> dict[str, dict]:
        return {j: json.loads(v) for j in jobs if (v := r.get(f"farm:result:{j}"))}

    wait_for(lambda: len(results()) == 1, 300, "the shipped workload's job on the plain worker")
    assert r.llen("farm.cpu.be-jax.wl-tiny_cnn") == 1  # still waiting: the plain worker never took it

    # A worker with the plugin advertises it, takes the job and records it with the plugin's provenance.
    start_worker("with-plugin", PYTHONPATH=str(plugin_site))
    listed = json.loads(run_farm(["workers", "--json"], with_plugin).stdout)
    mine = next(w for w in listed if w["name"] == "with-plugin")
    assert mine["workloads"]["tiny_cnn"] == {"package": "benchfarm-example-workloads", "version": "0.1.0"}
    assert "cpu.wl-tiny_cnn" in mine["tags"]
    plain_worker = next(w for w in listed if w["name"] == "plain")
    assert "tiny_cnn" not in plain_worker["workloads"]
    assert "tiny_cnn" in run_farm(["workers"], with_plugin).stdout

    wait_for(lambda: len(results()) == 2, 300, "the plugin's job")
    done = {res["job"]["workload"]: res for res in results().values()}
    cnn = done["tiny_cnn"]
    assert cnn["status"] == "succeeded", cnn.get("error")
    assert cnn["worker"] == "with-plugin"
    assert "/benchfarm-example-workloads==0.1.0" in cnn["environment"]["software_key"]
    assert done["fashion_mnist_mlp"]["worker"] == "plain"

    out_csv = tmp_path / "report.csv"
    report = run_farm(["report", sid, "-o", str(out_csv)], with_plugin)
    assert report.returncode == 0, report.stderr
    cells = pd.read_csv(out_csv)
    assert sorted(cells.workload) == ["fashion_mnist_mlp", "tiny_cnn"]
    assert (cells.n + cells.n_invalid == 1).all()  # each repeat counted once: kept, or left out as invalid


def test_a_mixed_sweep_trains_and_serves_every_kind_of_workload(tmp_path: Path, plugin_site: Path) -> None:
    """The issue's finish line: the seed MLPs, ResNet-50, the Transformer and the example plugin, each in train
    and inference mode, through ``farm run``'s real workers; the report has every cell, with its unit."""
    spec = {
        "name": "mixed-e2e",
        "defaults": {
            "backend": "jax",
            "data": "synthetic",
            "epochs": 2,
            "train_samples": 32,
            "test_samples": 12,
            "batch_size": 16,
        },
        "matrix": {"mode": ["train", "inference"]},
        "jobs": [
            {"workload": "cifar10_mlp", "params": {"hidden_units": [16]}},
            {"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 16}},
            {"workload": "resnet50", "params": {"image_size": 32, "classes": 10}},
            {
                "workload": "text_transformer",
                "params": {"seq_len": 16, "vocab_size": 100, "width": 16, "depth": 2, "heads": 2, "classes": 2},
            },
            {"workload": "tiny_cnn", "params": {"filters": 4, "dense_units": 8}},
        ],
    }
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = farm_env("", tmp_path / "cache", PYTHONPATH=str(plugin_site))
    env.pop("FARM_BROKER_URL", None)  # farm run's embedded Redis
    out = run_farm(["run", str(path), "-o", str(tmp_path / "out")], env, timeout=1500)
    assert out.returncode == 0, out.stdout + out.stderr

    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(results) == 10 and (results.status == "succeeded").all(), results[["workload", "mode", "error"]]
    cells = pd.read_csv(tmp_path / "out" / "report.csv")
    assert sorted(zip(cells.workload, cells["mode"], strict=True)) == sorted(
        (w, m)
        for w in ("cifar10_mlp", "fashion_mnist_mlp", "resnet50", "text_transformer", "tiny_cnn")
        for m in ("train", "inference")
    )
    units = dict(zip(cells.workload, cells.unit, strict=False))
    assert units == {
        "cifar10_mlp": "samples",
        "fashion_mnist_mlp": "samples",
        "resnet50": "images",
        "text_transformer": "sequences",
        "tiny_cnn": "images",
    }
    inference = cells[cells["mode"] == "inference"]
    training = cells[cells["mode"] == "train"]
    # Latency only where requests were served; every cell knows its model's size.
    measured = inference.n > 0
    assert (inference.latency_p50_s_median[measured] > 0).all()
    assert training.latency_p50_s_median.isna().all()
    assert (cells.param_count > 0).all()
    # Tokens/s for the token workload, and achieved FLOP/s wherever the layers could be counted.
    transformer = results[results.workload == "text_transformer"]
    assert (transformer.steady_tokens_per_s == transformer.steady_samples_per_s * 16).all()
    assert results.loc[results.workload == "resnet50", "flops_per_sample"].gt(0).all()
    assert results.loc[results.workload == "resnet50", "steady_tflops"].gt(0).all()
