"""Real data is checked before a job fails for want of it: each worker says which real datasets it holds, may
download or lacks, and ``farm submit`` refuses (or ``--skip-unserved`` leaves out) the jobs whose dataset no
worker serving them has; ``--dry-run`` says so too. A job that fails anyway for its data never stops its worker
(tests/workers/test_blame.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from farm.feasibility import DOWNLOAD, HELD, MISSING, data_shortfalls, needed_dataset
from farm.sweep import load_sweep
from tests.helpers import farm_env, run_farm
from workers.datasets.fetch import DATASETS, availability

CPU_QUEUE = "farm.cpu.be-jax"


def sweep_file(tmp_path: Path, jobs: list[dict[str, Any]]) -> Path:
    path = tmp_path / "data.yaml"
    spec = {"name": "data", "defaults": {"backend": "jax", "epochs": 1, "train_samples": 64, "test_samples": 16}}
    path.write_text(yaml.safe_dump({**spec, "jobs": jobs}))
    return path


REAL_AND_SYNTHETIC = [
    {"workload": "fashion_mnist_mlp", "data": "real", "params": {"hidden_layers": 1, "units": 8}},
    {"workload": "cifar10_mlp", "data": "real", "params": {"hidden_units": [8]}},
    {"workload": "fashion_mnist_mlp", "data": "synthetic", "params": {"hidden_layers": 1, "units": 8}},
]


# -- what a worker says it holds -----------------------------------------------------------------------------
def test_a_worker_holds_a_dataset_whose_every_archive_is_where_a_job_would_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # no Keras cache to find
    data_dir = tmp_path / "data"
    (data_dir / "fashion_mnist").mkdir(parents=True)
    for name in DATASETS["fashion_mnist"].files:
        (data_dir / "fashion_mnist" / name).write_bytes(b"")
    (data_dir / DATASETS["cifar10"].files[0]).write_bytes(b"")
    assert availability(data_dir, allow_download=False) == {"cifar10": HELD, "fashion_mnist": HELD}
    (data_dir / "fashion_mnist" / DATASETS["fashion_mnist"].files[-1]).unlink()  # one archive of four gone
    assert availability(data_dir, allow_download=False)["fashion_mnist"] == MISSING
    assert availability(data_dir, allow_download=True)["fashion_mnist"] == DOWNLOAD
    assert availability(None, allow_download=False) == {"cifar10": MISSING, "fashion_mnist": MISSING}


# -- what submit makes of it ---------------------------------------------------------------------------------
def worker(datasets: Any, queues: tuple[str, ...] = (CPU_QUEUE,), **extra: Any) -> dict[str, Any]:
    return {"name": "w", "queues": list(queues), "datasets": datasets, **extra}


def test_only_jobs_whose_data_no_serving_worker_has_fall_short(tmp_path: Path) -> None:
    sweep = load_sweep(sweep_file(tmp_path, REAL_AND_SYNTHETIC))
    assert [needed_dataset(j) for j in sweep.jobs] == ["fashion_mnist", "cifar10", None]
    everything = {"cifar10": HELD, "fashion_mnist": HELD}
    assert data_shortfalls(sweep, [worker(everything)], "farm") == []
    assert data_shortfalls(sweep, [worker(None)], "farm") == []  # a worker that does not say: trusted as before
    assert data_shortfalls(sweep, [worker(everything, queues=("farm.gpu.be-jax",))], "farm") == []  # unserved
    lacking = worker({"cifar10": HELD, "fashion_mnist": MISSING})
    [short] = data_shortfalls(sweep, [lacking], "farm")
    assert (short.dataset, short.queue, short.download, len(short.job_ids)) == ("fashion_mnist", CPU_QUEUE, False, 1)
    assert "no live worker serving them holds or may download" in str(short) and "FARM_DATA_DIR" in str(short)
    assert data_shortfalls(sweep, [lacking, worker(everything)], "farm") == []  # another worker holds it
    assert data_shortfalls(sweep, [lacking, worker(everything, quarantined="broken")], "farm") == [short]
    [fetch] = data_shortfalls(sweep, [worker({"cifar10": HELD, "fashion_mnist": DOWNLOAD})], "farm")
    assert fetch.download and "will try to download it" in str(fetch)
    strange = worker({"cifar10": HELD, "fashion_mnist": "<b>yes</b>"})  # a registry entry is not trusted
    assert [s.download for s in data_shortfalls(sweep, [strange], "farm")] == [False]


# -- a real worker without the archives ----------------------------------------------------------------------
@pytest.mark.slow  # a real worker process
def test_submit_refuses_skips_or_sends_the_jobs_whose_data_is_nowhere(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    w1 = start_worker("w1", KERAS_HOME=str(tmp_path / "keras"))  # no archives anywhere, downloads off (farm_env)
    assert "SecurityWarning" not in w1.text()  # Celery's eight lines about root: said once, in the farm's words
    env = farm_env(redis_url, tmp_path / "cache", KERAS_HOME=str(tmp_path / "keras"))
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    entry = json.loads(r.get("farm:worker:w1") or "{}")
    assert entry["datasets"] == {"cifar10": MISSING, "fashion_mnist": MISSING}
    workers = run_farm(["workers"], env)
    assert "fashion_mnist (missing)" in workers.stdout, workers.stdout

    path = sweep_file(tmp_path, REAL_AND_SYNTHETIC)
    refused = run_farm(["submit", str(path)], env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "need the fashion_mnist dataset" in refused.stderr and "need the cifar10 dataset" in refused.stderr
    assert str(path) in refused.stderr and "Traceback" not in refused.stderr
    assert not r.keys("farm:sweep:*")  # nothing half-done

    dry = run_farm(["submit", str(path), "--dry-run"], env)
    assert dry.returncode == 0 and "no data: 1 job(s) on farm.cpu.be-jax need the cifar10 dataset" in dry.stdout
    dry_json = json.loads(run_farm(["submit", str(path), "--dry-run", "--json"], env).stdout)
    assert len(dry_json["data_missing"]) == 2 and dry_json["data_download"] == []

    both = run_farm(["submit", str(path), "--allow-unserved", "--skip-unserved"], env)
    assert both.returncode == 2 and "give one" in both.stderr

    skipped = run_farm(["submit", str(path), "--skip-unserved"], env)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "1 jobs enqueued" in skipped.stdout and "2 left out" in skipped.stdout, skipped.stdout
    assert "left out: 1 job(s) on farm.cpu.be-jax: they need the cifar10 dataset" in skipped.stdout
    sweep_id = skipped.stdout.strip().splitlines()[-1]
    status = json.loads(run_farm(["status", sweep_id, "--json"], env).stdout)
    assert status["counts"].get("not_enqueued") == 2 and status["runnable"] == 1, status
