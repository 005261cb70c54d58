"""Energy per sample from the hardware's own counters (workers.energy): RAPL package domains through a stand-in
powercap tree, NVML's total-energy counter through a stand-in NVML; wraps unwound; absent, with the reason,
where nothing is readable; and a real worker's job measured end to end against a stand-in package drawing a
known power."""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from farm.result import EpochRecord, JobResult
from tests.helpers import farm_env, run_farm, wait_for
from workers.energy import EnergySampler, NvmlEnergy, counters_for, energy_figures, rapl_domains, record_energy


def powercap_tree(root: Path, packages: int = 1, wrap_uj: int = 262_143_328_850) -> list[Path]:
    """A powercap tree as the kernel lays it out: a package zone per socket, each with a core subzone."""
    zones = []
    for i in range(packages):
        zone = root / f"intel-rapl:{i}"
        (zone / f"intel-rapl:{i}:0").mkdir(parents=True)
        (zone / "name").write_text(f"package-{i}\n")
        (zone / "energy_uj").write_text("1000\n")
        (zone / "max_energy_range_uj").write_text(f"{wrap_uj}\n")
        (zone / f"intel-rapl:{i}:0" / "name").write_text("core\n")
        (zone / f"intel-rapl:{i}:0" / "energy_uj").write_text("5\n")
        zones.append(zone)
    return zones


def test_the_package_domains_are_read_and_their_subzones_are_not(tmp_path: Path) -> None:
    powercap_tree(tmp_path, packages=2)
    domains, why = rapl_domains(tmp_path)
    assert why is None and [d.name for d in domains] == ["package-0", "package-1"]
    assert domains[0].read_j() == pytest.approx(0.001) and domains[0].wrap_j == pytest.approx(262_143.32885)


def test_no_tree_or_no_readable_counter_is_a_reason_never_a_zero(tmp_path: Path) -> None:
    domains, why = rapl_domains(tmp_path / "absent")
    assert domains == [] and "no RAPL package domain" in str(why)
    [zone] = powercap_tree(tmp_path / "locked")
    (zone / "energy_uj").unlink()
    (zone / "energy_uj").mkdir()  # unreadable as a number, as a root-only file is to a user
    domains, why = rapl_domains(tmp_path / "locked")
    assert domains == [] and "not readable" in str(why) and "intel-rapl:0" in str(why)
    assert energy_figures([], why) == {"energy_source": None, "energy_missing": why}
    counters, why = counters_for("gpu", gpu_probe=None)
    assert counters == [] and "NVML is not available" in str(why)


class Wrapping:
    """A counter drawing ``watts`` that wraps at ``wrap_j``, as RAPL's does every few minutes at full load."""

    name = "package-0"

    def __init__(self, watts: float, wrap_j: float) -> None:
        self.watts, self.wrap_j, self.t0 = watts, wrap_j, time.perf_counter()

    def read_j(self) -> float:
        return (self.watts * (time.perf_counter() - self.t0) + 0.5) % self.wrap_j


def test_each_epochs_energy_is_the_counters_rise_across_wraps() -> None:
    # Wraps every 250 ms, read every 10 ms: as with RAPL (a wrap a minute or more, read ten times a second), a
    # reading falls between any two wraps even when a busy machine holds the sampler back for a while (a 60-ms
    # wrap once lost a whole wrap that way: 3 J of 15).
    sampler = EnergySampler([Wrapping(watts=4.0, wrap_j=1.0)], period_s=0.01).start()
    start = time.perf_counter()
    time.sleep(0.6)
    middle = time.perf_counter()
    time.sleep(0.6)
    end = time.perf_counter()
    time.sleep(0.05)
    sampler.stop()
    first, second = sampler.epoch_joules([(start, middle), (middle, end)])
    assert first == pytest.approx(4.0 * (middle - start), rel=0.15)
    assert second == pytest.approx(4.0 * (end - middle), rel=0.15)
    assert sampler.epoch_joules([(start - 10, start)]) == [None]  # before the first reading: unknown, not 0


class Stumbling:
    """A counter whose reads fail in runs (a file caught mid-rewrite), once each time ``fail`` is set."""

    name, wrap_j = "stumbling", None

    def __init__(self) -> None:
        self.reads, self.fail = 0, False

    def read_j(self) -> float:
        self.reads += 1
        if self.fail:
            self.fail = False
            raise ValueError("invalid literal for int() with base 10: ''")
        return float(self.reads)


def test_the_readings_around_training_survive_a_failed_read() -> None:
    counter = Stumbling()
    counter.fail = True  # the very first read fails
    sampler = EnergySampler([counter], period_s=60.0).start()  # no reading in between: only the first and last
    start = time.perf_counter()
    counter.fail = True  # and so does the first try of the last
    end = time.perf_counter()
    sampler.stop()
    assert len(sampler.times) == 2 and sampler.epoch_joules([(start, end)])[0] is not None


def test_nvml_energy_is_millijoules() -> None:
    class Nvml:
        def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
            return 123_456

    assert NvmlEnergy(Nvml(), handle=None).read_j() == pytest.approx(123.456)

    class Probe:
        nvml, handle = Nvml(), None

    counters, why = counters_for("gpu", Probe())
    assert why is None and [c.name for c in counters] == ["nvml gpu"]


def test_a_job_on_several_gpus_counts_the_energy_of_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """A data-parallel job's energy is all of its GPUs', not its first one's: one counter per GPU it holds,
    summed by the sampler."""
    from tests.workers.test_contention_figures import FakeNVML
    from workers.gpu_contention import gpu_probe

    class Metered(FakeNVML):
        def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
            return {"GPU-a": 1_000, "GPU-b": 2_000, "GPU-c": 50_000}[handle]  # millijoules

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-a,GPU-b,GPU-c")
    probe = gpu_probe("gpu", nvml=Metered(), count=2)
    counters, why = counters_for("gpu", probe)
    assert why is None and [c.name for c in counters] == ["nvml gpu 0", "nvml gpu 1"]
    assert energy_figures(counters, why)["energy_source"] == "nvml gpu 0+nvml gpu 1"
    sampler = EnergySampler(counters, period_s=60.0).start()
    sampler.stop()
    assert sampler.joules[-1] == pytest.approx(3.0)  # GPU-c is not the job's


def test_the_result_derives_joules_per_sample_and_watts_from_its_steady_epochs() -> None:
    records = [
        {"epoch": 1, "wall_s": 5.0, "energy_j": 99.0},
        {"epoch": 2, "wall_s": 2.0, "energy_j": 20.0},
        {"epoch": 3, "wall_s": 2.0, "energy_j": 22.0, "disturbed": True},  # left out as the steady figure is
        {"epoch": 4, "wall_s": 2.0, "energy_j": 24.0},
    ]

    def result(epochs: list[dict[str, Any]]) -> JobResult:
        return JobResult.model_validate(
            {
                "job_id": "j",
                "sweep_id": "s",
                "job": {"sweep": "s", "workload": "fashion_mnist_mlp", "device": "cpu"},
                "status": "succeeded",
                "epochs": [EpochRecord.model_validate(e) for e in epochs],
                "train_samples_used": 1000,
            }
        )

    r = result(records)
    assert r.energy_j_per_sample == pytest.approx(22.0 / 1000)  # the median steady epoch's
    assert r.mean_power_w == pytest.approx(44.0 / 4.0)
    unmeasured = result([{**e, "energy_j": None} for e in records])
    assert unmeasured.energy_j_per_sample is None and unmeasured.mean_power_w is None
    timed = [{"epoch": 1}, {"epoch": 2}]
    record_energy(EnergySampler([]), timed, [(0.0, 1.0), (1.0, 2.0)])
    assert [t["energy_j"] for t in timed] == [None, None]


@pytest.mark.slow  # a real worker trains a tiny model against the stand-in package
def test_a_real_job_measures_a_stand_in_package_drawing_known_power(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    [zone] = powercap_tree(tmp_path / "powercap", wrap_uj=50_000_000)  # wraps every 2.5 s at 20 W
    watts, stop = 20.0, threading.Event()

    def draw() -> None:
        t0 = time.perf_counter()
        while not stop.wait(0.01):  # written whole, as the kernel's file reads: never a half-written number
            (zone / "energy_uj.new").write_text(f"{int(watts * (time.perf_counter() - t0) * 1e6) % 50_000_000}\n")
            (zone / "energy_uj.new").replace(zone / "energy_uj")

    drawing = threading.Thread(target=draw, daemon=True)
    drawing.start()
    try:
        env = {"BENCHFARM_POWERCAP_ROOT": str(tmp_path / "powercap")}
        start_worker("w1", **env)
        sweep = tmp_path / "energy.yaml"
        job = {"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 32}}
        # Epochs of several counter readings each (the sampler reads 10 times a second): a busy machine delays
        # the stand-in's writes by tens of milliseconds, which a 50-ms epoch would not survive.
        spec = {"backend": "jax", "data": "synthetic", "train_samples": 16384, "test_samples": 64, "epochs": 4}
        sweep.write_text(yaml.safe_dump({"name": "energy", "defaults": spec, "jobs": [job]}))
        farm = farm_env(redis_url, tmp_path / "cache", **env)
        out = run_farm(["submit", str(sweep), "--json"], farm)
        assert out.returncode == 0, out.stderr
        sweep_id = json.loads(out.stdout)["sweep_id"]
        r = redis.Redis.from_url(redis_url, decode_responses=True)
        [job_id] = r.lrange(f"farm:sweep:{sweep_id}:jobs", 0, -1)
        wait_for(lambda: r.exists(f"farm:result:{job_id}"), 300, "the job's result")
    finally:
        stop.set()
        drawing.join()
    result = JobResult.model_validate_json(r.get(f"farm:result:{job_id}") or "{}")
    assert result.status == "succeeded", result.error
    assert result.energy_source == "package-0" and result.energy_missing is None
    # The stand-in's 20 W, read through its wraps (a unit or wrap error would be off by far more than this).
    assert result.mean_power_w == pytest.approx(watts, rel=0.35)
    steady = result.steady_epochs
    assert result.energy_j_per_sample == pytest.approx(
        statistics.median(e.energy_j or 0 for e in steady) / 16384, rel=0.01
    )
    # The memory figures of the same job: a CPU job's peak is the host's, against the host's RAM (or its limit).
    assert result.peak_device_mb is None and result.memory_capacity_mb and result.peak_host_mb
    assert result.memory_used == pytest.approx(result.peak_host_mb / result.memory_capacity_mb)
    assert 0 < result.memory_used < 1
    report = run_farm(["report", sweep_id, "--include-invalid"], farm)  # a busy machine may contend the repeat
    assert report.returncode == 0 and "J/sample" in report.stdout and "memory used" in report.stdout, report.stdout
