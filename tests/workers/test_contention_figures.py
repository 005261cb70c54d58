"""The contention figures from their raw readings: windows over /proc samples, the verdict, and the GPU
summary from NVML readings (a stand-in NVML module: the real one needs an NVIDIA driver)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from workers import contention
from workers.contention import CLOCK_TICKS, CpuSample, cpu_window, judge
from workers.gpu_contention import GpuProbe, gpu_probe, gpu_summary


def sample(at: float, busy: float, own: float, steal: float = 0.0) -> CpuSample:
    """A reading whose counters are given in core-seconds."""
    return CpuSample(at, int(busy * CLOCK_TICKS), int(steal * CLOCK_TICKS), int(own * CLOCK_TICKS), None, None)


def test_others_are_the_busy_time_the_job_did_not_use() -> None:
    # 2 cores for 4 s = 8 core-seconds; the job used 6, the cores were busy 7: others used 1 (12.5%).
    samples = [sample(0, 0, 0), sample(2, 3.5, 3), sample(4, 7, 6)]
    figures = cpu_window(samples, 0, 4, cores=2)
    assert figures is not None
    assert figures["cpu_others"] == pytest.approx(1 / 8)
    assert figures["cpu_own"] == pytest.approx(6 / 8)
    assert figures["cpu_others_peak"] == pytest.approx(0.5 / 4)
    assert judge(figures, 0.2) == []


def test_a_burst_shows_in_the_peak_and_a_hog_is_judged_contended() -> None:
    samples = [sample(0, 0, 0), sample(1, 1.0, 1.0), sample(2, 3.0, 1.0), sample(3, 4.0, 2.0)]
    figures = cpu_window(samples, 0, 3, cores=2)
    assert figures is not None
    assert figures["cpu_others_peak"] == pytest.approx(1.0)  # the second second: another process on both cores
    assert figures["cpu_others"] == pytest.approx(2 / 6)
    reasons = judge(figures, 0.2)
    assert reasons and "33% of the job's 2 core(s)" in reasons[0]


def test_the_window_is_bounded_by_the_samples_around_it() -> None:
    samples = [sample(0, 0, 0), sample(1, 2, 0), sample(2, 2, 0), sample(3, 3, 1), sample(4, 5, 1)]
    quiet = cpu_window(samples, 1.5, 2.5, cores=2)  # between samples 1 and 3: nobody else was busy 1→2
    assert quiet is not None and quiet["window_s"] == pytest.approx(2.0)
    assert quiet["cpu_others"] == pytest.approx(0.0)
    assert cpu_window(samples[:1], 0, 1, cores=2) is None


def test_a_neighbour_for_one_epoch_costs_that_epoch_not_the_repeat() -> None:
    # Three steady epochs of 2 s on 2 cores; another process took both cores through the second one only.
    sampler = contention.ContentionSampler()
    sampler.cores = [0, 1]
    own = [0.0, 2.0, 4.0, 4.5, 5.0, 7.0, 9.0]
    busy = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]  # 2 s of 2 busy cores each: the job's own, then a hog's
    sampler.samples = [sample(t, b, o) for t, b, o in zip((0, 1, 2, 3, 4, 5, 6), busy, own, strict=True)]
    per_epoch = sampler.epochs([(0, 2), (2, 4), (4, 6)], 0.2)
    assert [e["contended"] for e in per_epoch] == [False, True, False]
    steady = sampler.window(0, 6, 0.2)
    assert steady["contended"]  # a third of the window's cores: over the threshold as a whole
    settled = contention.settle(steady, per_epoch)
    assert not settled["contended"] and settled["reasons"] == []
    assert settled["figures"] == steady["figures"]  # the figures stay as measured


def test_a_neighbour_in_every_epoch_contends_the_repeat() -> None:
    sampler = contention.ContentionSampler()
    sampler.cores = [0, 1]
    sampler.samples = [sample(t, 2.0 * t, 1.0 * t) for t in range(5)]  # half the cores taken throughout
    per_epoch = sampler.epochs([(0, 2), (2, 4)], 0.2)
    settled = contention.settle(sampler.window(0, 4, 0.2), per_epoch)
    assert settled["contended"] and "50% of the job's 2 core(s)" in settled["reasons"][0]
    assert all(e["contended"] for e in per_epoch)
    whole = sampler.window(0, 4, 0.2)
    assert whole["contended"] and contention.settle(whole, []) is whole  # no epochs: the window's own verdict


def test_steal_and_gpu_reasons() -> None:
    figures = {
        "cpu_others": 0.0,
        "cpu_steal": 0.3,
        "cores": 4,
        "gpu": {"other_processes": 1, "throttle_reasons": ["hardware thermal"]},
    }
    reasons = judge(figures, 0.2)
    assert any("stole 30%" in r for r in reasons)
    assert any("1 other process(es) on the job's GPU" in r for r in reasons)
    assert any("hardware thermal" in r for r in reasons)


BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"


def running(pid: int) -> bool:
    """Alive and not a zombie (an init that never reaps, as in some containers, leaves one behind)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def test_the_machine_is_read_for_real() -> None:
    """A process outside the job's tree is another's; a subprocess the job started and reaped is the job's own."""
    cores = contention.job_cores()
    first = contention.take_sample(cores, os.getpid())
    # An orphan: the shell exits at once, so the hog is nobody's child here.
    pid = int(
        subprocess.run(
            ["/bin/sh", "-c", f"{sys.executable} -c '{BURN}' >/dev/null 2>&1 & echo $!"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    deadline = time.monotonic() + 30
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = contention.take_sample(cores, os.getpid())
    figures = cpu_window([first, second], first.at, second.at, len(cores))
    assert figures is not None and figures["cpu_others"] * figures["window_s"] * len(cores) >= 0.4

    child = subprocess.run([sys.executable, "-c", BURN], check=True)  # waited for: its ticks move to ours
    assert child.returncode == 0
    third = contention.take_sample(cores, os.getpid())
    assert (third.own - second.own) / CLOCK_TICKS >= 0.45


class FakeNVML:
    """The few NVML calls the probe makes, answering like a GPU shared with one other process and throttled."""

    NVML_CLOCK_SM = 1

    def __init__(self, reasons: int = 0x40, other_pid: int = 999_999) -> None:
        self.reasons, self.other_pid = reasons, other_pid
        self.inited = False

    def nvmlInit(self) -> None:
        self.inited = True

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        return uuid

    def nvmlDeviceGetMaxClockInfo(self, handle: str, clock: int) -> int:
        return 2000

    def nvmlDeviceGetClockInfo(self, handle: str, clock: int) -> int:
        return 1500

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(gpu=80)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: str) -> int:
        return self.reasons

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        return [
            SimpleNamespace(pid=os.getpid(), usedGpuMemory=2**30),
            SimpleNamespace(pid=self.other_pid, usedGpuMemory=512 * 2**20),
        ]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        raise RuntimeError("not supported")


def test_gpu_probe_counts_other_processes_and_throttling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1234")
    nvml = FakeNVML()
    probe = gpu_probe("gpu", nvml=nvml)
    assert isinstance(probe, GpuProbe) and probe.handle == "GPU-1234" and nvml.inited
    readings = [probe.sample(), probe.sample()]
    summary = gpu_summary(readings)
    assert summary["other_processes"] == 1 and summary["other_memory_mb"] == pytest.approx(512)
    assert summary["sm_clock_ratio"] == pytest.approx(0.75)
    assert summary["utilization"] == pytest.approx(0.8)
    assert summary["throttle_reasons"] == ["hardware thermal"]
    assert judge({"gpu": summary}, 0.2)


def test_a_probe_of_several_gpus_sees_others_and_its_own_memory_on_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """A data-parallel job's probe reads every GPU it holds: a stranger on its second GPU is contention, and the
    memory the driver sees its processes hold is the fallback for its peak device memory."""
    from workers.gpu_contention import sampled_peak_mb
    from workers.memory import peak_device_mb

    class Crowded(FakeNVML):
        def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
            mine = SimpleNamespace(pid=os.getpid(), usedGpuMemory={"gpu0": 2**30, "gpu1": 3 * 2**30}[handle])
            stranger = [SimpleNamespace(pid=self.other_pid, usedGpuMemory=2**20)] if handle == "gpu1" else []
            return [mine, *stranger]

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    probe = gpu_probe("gpu", nvml=Crowded(), count=2)
    assert probe is not None and probe.handles == ["gpu0", "gpu1"]
    readings = [probe.sample(), probe.sample()]
    assert gpu_summary(readings)["other_processes"] == 1
    assert sampled_peak_mb(readings) == pytest.approx(3 * 1024)  # the fullest GPU
    assert sampled_peak_mb([{"own_memory_mb": 0.0}]) is None and sampled_peak_mb([]) is None
    # A framework that keeps no counter of its own (JAX's CPU device here) leaves the sampled figure in place.
    assert peak_device_mb("jax", "gpu", 2, sampled_mb=3072.0) == pytest.approx(3072.0)
    assert peak_device_mb("jax", "cpu", 2, sampled_mb=3072.0) is None  # a CPU job's memory is the host's


def test_gpu_probe_is_absent_without_nvml_or_for_cpu_jobs() -> None:
    assert gpu_probe("cpu", nvml=FakeNVML()) is None

    class Broken(FakeNVML):
        def nvmlInit(self) -> None:
            raise OSError("NVML Shared Library Not Found")

    assert gpu_probe("gpu", nvml=Broken()) is None
    idle = gpu_summary([{"reasons": 0x1, "other_pids": [], "utilization": 0.0, "sm_clock_ratio": 0.3}])
    assert idle["throttle_reasons"] == [] and idle["other_processes"] == 0  # idle clocks are not throttling


def test_the_sampler_records_its_own_cost() -> None:
    sampler = contention.ContentionSampler(period_s=0.05).start()
    time.sleep(0.6)
    sampler.stop()
    out = sampler.window(sampler.samples[0].at, sampler.samples[-1].at, 0.2)
    assert len(sampler.samples) >= 5
    assert out["figures"]["sampler_cpu_s"] == sampler.cost_s > 0
