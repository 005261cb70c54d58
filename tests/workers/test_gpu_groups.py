"""A GPU box serving data-parallel jobs (workers.plans, workers.gpu_locks): a worker per GPU and, where asked, per
group of GPUs, each group worker serving the ``gpus-N`` queues its GPUs all qualify for; one job per GPU at a
time whichever worker runs it, so an 8-GPU box runs one 4-GPU job beside four 1-GPU jobs and never two jobs on
one GPU. Checked with stand-in GPUs (the machine has none) and real processes holding the locks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from farm.fingerprint import GPUInfo
from farm.job import JobSpec
from farm.queue import job_queue
from tests.helpers import REPO
from workers.gpu_locks import GpuWaitStopped, gpus_held
from workers.launch import LaunchError, group_sizes
from workers.plans import PlanError, plan_workers

EIGHT = [GPUInfo(index=i, name="NVIDIA H100 80GB HBM3", memory_gb=80.0, uuid=f"GPU-{i:04d}") for i in range(8)]


def test_an_eight_gpu_box_with_groups_of_four_has_eight_single_and_two_group_workers() -> None:
    plans = plan_workers(EIGHT, host="box", gpu_groups=[4], backends=("jax",))
    singles = [p for p in plans if len(p.gpu_ids or []) == 1]
    groups = [p for p in plans if len(p.gpu_ids or []) == 4]
    assert len(singles) == 8 and [g.gpu_ids for g in groups] == [["0", "1", "2", "3"], ["4", "5", "6", "7"]]
    assert [g.name for g in groups] == ["gpu0-3@box", "gpu4-7@box"]
    four = JobSpec(sweep="s", workload="fashion_mnist_mlp", device="gpu", backend="jax", devices=4, batch_size=128)
    one = JobSpec(sweep="s", workload="fashion_mnist_mlp", device="gpu", backend="jax")
    assert job_queue(four) in groups[0].queues and job_queue(four) not in singles[0].queues
    assert job_queue(one) in singles[0].queues and job_queue(one) not in groups[0].queues
    h100 = JobSpec.model_validate({**four.model_dump(), "requires": {"gpu_model": "H100", "min_gpu_memory_gb": 40}})
    assert job_queue(h100) in groups[1].queues  # requirements all four of its GPUs meet
    eight = JobSpec(sweep="s", workload="fashion_mnist_mlp", device="gpu", backend="jax", devices=8, batch_size=128)
    assert all(job_queue(eight) not in p.queues for p in plans)  # no group of 8 asked for: unserved


def test_groups_that_do_not_fit_are_refused_in_one_line() -> None:
    with pytest.raises(PlanError, match="a group spans 2 to 8 GPUs"):
        plan_workers(EIGHT, host="box", gpu_groups=[16])
    with pytest.raises(PlanError, match="a group spans 2 to"):
        plan_workers(EIGHT, host="box", gpu_groups=[1])
    with pytest.raises(LaunchError, match="expected GPU counts"):
        group_sizes("4,four")
    assert group_sizes(" 2, 4 ") == [2, 4] and group_sizes("") == []


HOLDER = """
import sys, time
from pathlib import Path
from workers.gpu_locks import gpus_held
with gpus_held(sys.argv[2].split(","), directory=Path(sys.argv[1])):
    print("holding", flush=True)
    while not Path(sys.argv[3]).exists():
        time.sleep(0.05)
"""


def test_a_gpu_runs_one_job_at_a_time_whichever_worker_holds_it(tmp_path: Path) -> None:
    """A process holding GPUs 0-3 (a group worker's job) keeps a worker of GPU 2 waiting, not one of GPU 5; the
    wait ends when the holder's job ends, or when the waiting job is cancelled."""
    release = tmp_path / "release"
    group = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), "GPU-0000,GPU-0001,GPU-0002,GPU-0003", str(release)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert group.stdout is not None and group.stdout.readline().strip() == "holding"
        with gpus_held(["GPU-0005"], directory=tmp_path):
            pass  # another GPU: free at once
        calls = []

        def cancelled_after_a_few_looks() -> str | None:
            calls.append(1)
            return "cancelled" if len(calls) >= 3 else None

        with (
            pytest.raises(GpuWaitStopped, match="cancelled"),
            gpus_held(["GPU-0002"], cancelled_after_a_few_looks, directory=tmp_path),
        ):
            pytest.fail("GPU 2 is held by the group's job")
        release.touch()
        with gpus_held(["GPU-0002"], directory=tmp_path) as waited:  # free once the group's job has ended
            assert waited >= 0
    finally:
        release.touch()
        group.communicate(timeout=30)
    assert group.returncode == 0


def test_a_dead_holder_frees_its_gpus(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), "GPU-0001", str(tmp_path / "never")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    holder.kill()
    holder.communicate()
    deadline = time.monotonic() + 30
    with gpus_held(["GPU-0001"], lambda: "timed out" if time.monotonic() > deadline else None, directory=tmp_path):
        pass
