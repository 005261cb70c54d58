"""Data-parallel jobs (workers.distribution) and the scaling table (farm.reports.scaling): a job spans N devices
with Keras 3's own distribution (virtual CPU devices here), the global batch split evenly; the report's
speedup over one device and efficiency with CIs, in the terminal, report.md, the HTML page and scaling.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from farm.errors import SpecError
from farm.job import JobSpec
from farm.reports.aggregate import results_frame
from farm.reports.markdown import scaling_lines, summary_markdown
from farm.reports.scaling import scaling
from farm.routing import required_tag
from farm.sweep import load_sweep
from tests.helpers import cell_row, farm_env, run_farm, submit_and_wait, tight

BASE = {"sweep": "s", "workload": "fashion_mnist_mlp", "data": "synthetic", "backend": "jax"}


def test_a_job_spans_devices_with_its_global_batch_split_evenly() -> None:
    job = JobSpec.model_validate({**BASE, "devices": 4, "batch_size": 128})
    assert job.per_device_batch == 32 and job.devices_per_job == 4
    one = JobSpec.model_validate(BASE)
    assert one.devices_per_job is None and "devices" not in one.canonical_json()  # old ids unchanged
    with pytest.raises(ValueError, match="split evenly over 3 devices"):
        JobSpec.model_validate({**BASE, "devices": 3, "batch_size": 128})
    with pytest.raises(ValueError, match="torch is not supported"):
        JobSpec.model_validate({**BASE, "backend": "torch", "devices": 2})


def test_a_job_may_state_its_batch_per_device_instead(tmp_path: Path) -> None:
    """``batch_per_device`` is the other way to state the batch: the global batch grows with the devices (weak
    scaling); the job says which it stated, both given must agree, and in a sweep the one nearer the job wins."""
    four = JobSpec.model_validate({**BASE, "devices": 4, "batch_per_device": 32})
    assert (four.batch_size, four.per_device_batch, four.batch_scope) == (128, 32, "device")
    assert JobSpec.model_validate_json(four.model_dump_json()) == four  # read back on the worker: both agree
    assert (
        JobSpec.model_validate(BASE).batch_scope is None
        and "batch_per_device" not in JobSpec.model_validate(BASE).canonical_json()
    )  # a job stating its global batch keeps the id it always had
    with pytest.raises(ValueError, match=r"batch_size \(64, the global batch\) and batch_per_device"):
        JobSpec.model_validate({**BASE, "devices": 4, "batch_per_device": 32, "batch_size": 64})
    with pytest.raises(ValueError, match="leave batch_per_device out"):
        JobSpec.model_validate({**BASE, "devices": 2, "batch_per_device": 32, "batch_size": "max"})
    sweep = tmp_path / "weak.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "weak",
                "defaults": {**{k: v for k, v in BASE.items() if k != "sweep"}, "batch_size": 64},
                "matrix": {"devices": [1, 2, 4]},
                "jobs": [{"batch_per_device": 16}, {"backend": "tensorflow"}],
            }
        )
    )

    jobs = load_sweep(sweep).jobs
    assert [(j.devices, j.batch_size, j.batch_scope) for j in jobs] == [
        (1, 16, "device"),
        (2, 32, "device"),
        (4, 64, "device"),
        (1, 64, None),
        (2, 64, None),
        (4, 64, None),
    ]
    both = tmp_path / "both.yaml"
    entry = {"workload": "fashion_mnist_mlp", "data": "synthetic", "devices": 2, "batch_size": 8, "batch_per_device": 8}
    both.write_text(yaml.safe_dump({"name": "both", "jobs": [entry]}))
    with pytest.raises(SpecError) as refused:
        load_sweep(both)
    assert [str(p) for p in refused.value.problems] == [
        "jobs[0]: batch_size (8, the global batch) and batch_per_device (8 × 2 devices = 16) disagree: give one of them"
    ]


def test_a_job_on_several_gpus_needs_a_worker_that_holds_that_many() -> None:
    gpus = JobSpec.model_validate({**BASE, "device": "gpu", "devices": 4, "batch_size": 128})
    assert required_tag(gpus).startswith("gpu.gpus-4")  # no one-GPU worker consumes it: refused at submit
    cpus = JobSpec.model_validate({**BASE, "devices": 4, "batch_size": 128})
    assert "gpus" not in required_tag(cpus)  # virtual CPU devices: any CPU worker


def frame(throughputs: dict[int, list[float]], per_device: int | None = None) -> pd.DataFrame:
    """Rows of one cell over devices: at a global batch of 128, or (``per_device``) that batch on each device."""
    rows = []
    for devices, values in throughputs.items():
        for i, v in enumerate(values):
            rows.append(
                cell_row(
                    i,
                    f"j-{devices}-{i}-{per_device}",
                    "s-1",
                    ("fashion_mnist_mlp", "cpu", "jax"),
                    batch_size=128 if per_device is None else per_device * devices,
                    batch_scope=None if per_device is None else "device",
                    per_device_batch=128 // devices if per_device is None else per_device,
                    devices_per_job=devices if devices > 1 else None,
                    device_name="cpu-x",
                    hardware_key="cpu:x",
                    steady_samples_per_s=v,
                    steady_epoch_s=4000 / v,
                    train_samples_used=4000,
                )
            )
    return results_frame(rows)


def test_the_scaling_table_is_the_speedup_over_one_device_and_its_efficiency() -> None:
    df = frame({1: tight(1000.0, 5, seed=1), 2: tight(1500.0, 5, seed=2), 4: tight(2000.0, 5, seed=3)})
    table = scaling(df, n_boot=500)
    assert list(table["devices"]) == [2, 4]
    two, four = table.to_dict("records")
    assert two["speedup"] == pytest.approx(1.5, rel=0.02) and two["efficiency"] == pytest.approx(0.75, rel=0.02)
    assert two["speedup_ci_low"] < two["speedup"] < two["speedup_ci_high"]
    assert four["efficiency"] == pytest.approx(0.5, rel=0.02)
    md = summary_markdown(pd.DataFrame({"workload": ["w"], "n": [5]}), df)
    assert "## Scaling over devices" in md and "| 2 |" in md and "| 4 |" in md
    assert scaling(frame({1: tight(1000.0, 5)})).empty  # one device only: no table
    assert scaling(frame({4: tight(1000.0, 5)})).empty  # no one-device cell to scale from: no table either


def test_cells_stated_per_device_scale_against_one_device_at_that_batch() -> None:
    """Weak scaling: a cell at 32 per device on 4 devices (a global batch of 128) is measured against the same
    cell on one device at 32, not against a one-device cell at 128 — and both kinds sit in one table."""
    strong = frame({1: tight(1000.0, 5, seed=1), 4: tight(2000.0, 5, seed=2)})
    weak = frame({1: tight(400.0, 5, seed=3), 4: tight(1200.0, 5, seed=4)}, per_device=32)
    table = scaling(pd.concat([strong, weak], ignore_index=True), n_boot=500)
    by_scope = {
        rec["batch_scope"] if isinstance(rec["batch_scope"], str) else "global": rec for rec in table.to_dict("records")
    }
    assert by_scope["global"]["speedup"] == pytest.approx(2.0, rel=0.02)
    assert by_scope["device"]["speedup"] == pytest.approx(3.0, rel=0.02) and by_scope["device"]["batch_size"] == 32
    lines = scaling_lines(table)
    assert sorted(line[3] for line in lines) == ["128", "32/device"]


@pytest.mark.slow  # a real worker trains on 1 and 2 virtual CPU devices (JAX) and on 1 and 4 (TensorFlow)
def test_a_sweep_over_devices_runs_and_reports_its_scaling(redis_url: str, start_worker, tmp_path: Path) -> None:
    start_worker("w1")
    tiny = {"workload": "fashion_mnist_mlp", "batch_size": 64, "params": {"hidden_layers": 1, "units": 16}}
    spec = {
        "name": "scaling",
        "repeats": 2,
        "defaults": {"data": "synthetic", "train_samples": 512, "test_samples": 32, "epochs": 2},
        "jobs": [
            *({**tiny, "backend": "jax", "devices": n} for n in (1, 2)),  # keras.distribution.DataParallel
            *({**tiny, "backend": "tensorflow", "devices": n} for n in (1, 4)),  # tf.distribute.MirroredStrategy
        ],
    }
    sweep = tmp_path / "scaling.yaml"
    sweep.write_text(yaml.safe_dump(spec))
    env = farm_env(redis_url, tmp_path / "cache")
    results = submit_and_wait(redis_url, sweep, env, timeout=600)
    assert [r.status for r in results] == ["succeeded"] * 8, [r.error for r in results]
    sweep_id = results[0].sweep_id
    html = tmp_path / "report.html"
    report = run_farm(["report", sweep_id, "--include-invalid", "--html", str(html)], env)
    assert report.returncode == 0, report.stdout + report.stderr
    assert "Scaling over devices" in report.stdout, report.stdout
    assert '<section id="scaling"' in html.read_text()
    scaling_lines = report.stdout[report.stdout.index("Scaling over devices") :].splitlines()
    assert any(" jax " in line and " 2 " in line for line in scaling_lines), report.stdout
    assert any(" tensorflow " in line and " 4 " in line for line in scaling_lines), report.stdout
    rows = run_farm(["results", sweep_id, "-o", str(tmp_path / "rows.csv")], env)
    assert rows.returncode == 0, rows.stderr
    table = pd.read_csv(tmp_path / "rows.csv")
    table["devices_per_job"] = table["devices_per_job"].fillna(1).astype(int)  # missing: one device
    split = table.groupby(["backend", "devices_per_job"])["per_device_batch"].agg(sorted)
    # The global batch of 64, split over 2 (JAX) and over 4 (TensorFlow); one device holds it whole.
    assert split.to_dict() == {
        ("jax", 1): [64, 64],
        ("jax", 2): [32, 32],
        ("tensorflow", 1): [64, 64],
        ("tensorflow", 4): [16, 16],
    }, split


def test_virtual_cpu_devices_are_kept_to_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """XLA's CPU all-reduces block the threads of a pool of one per core while they wait for the other devices:
    more devices than cores can deadlock a step (XLA aborts after 40 s: seen with the seed's CIFAR-10 MLP over 4
    devices on 2 cores). Such a JAX job fails at once, as its own failure, saying why."""
    import os

    from workers.distribution import DevicesUnavailable, prepare_devices

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    with pytest.raises(DevicesUnavailable, match="4 virtual CPU devices but its process may use 2 core"):
        prepare_devices(JobSpec.model_validate({**BASE, "devices": 4, "batch_size": 128}))


def test_virtual_cpu_devices_get_one_thread_each() -> None:
    """Eigen's parallelism inside each virtual device's work would compete with the devices for the pool's
    threads: a data-parallel JAX CPU job's process gets one thread per device, in its fork server's environment
    (JAX reads it at import)."""
    from farm.job import JobEnvelope
    from farm.settings import FarmSettings
    from workers.supervisor import child_env

    four = JobEnvelope.for_job(JobSpec.model_validate({**BASE, "devices": 4, "batch_size": 128}), "s-1")
    one = JobEnvelope.for_job(JobSpec.model_validate(BASE), "s-1")
    assert "--xla_cpu_multi_thread_eigen=false" in child_env(four, FarmSettings())["XLA_FLAGS"]
    assert "--xla_cpu_multi_thread_eigen=false" not in child_env(one, FarmSettings()).get("XLA_FLAGS", "")
