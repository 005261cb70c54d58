"""Routing by hardware: a job's requirements become one tag; a worker pinned to a GPU serves every tag its GPU
satisfies; a machine's workers are planned one per GPU."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from farm.fingerprint import GPUInfo
from farm.job import JobSpec
from farm.queue import job_queue, tag_queue
from farm.routing import cpu_tags, gpu_tags, memory_step, required_tag
from workers.plans import PlanError, plan_workers

H100 = GPUInfo(index=0, name="NVIDIA H100 80GB HBM3", memory_gb=79.6)
A100_40 = GPUInfo(index=1, name="NVIDIA A100-SXM4-40GB", memory_gb=39.4)
RTX = GPUInfo(index=2, name="NVIDIA GeForce RTX 4090", memory_gb=24.0)


def job(device: str = "gpu", **requires: object) -> JobSpec:
    return JobSpec(sweep="s", workload="cifar10_mlp", device=device, requires=requires)


def served_by(j: JobSpec, gpu: GPUInfo | None, host: str = "lab1") -> bool:
    tags = gpu_tags(gpu, host) if gpu else cpu_tags(host)
    return job_queue(j) in {tag_queue(t) for t in tags}


@pytest.mark.parametrize(
    "spec, h100, a100, rtx",
    [
        ({}, True, True, True),
        ({"gpu_model": "H100"}, True, False, False),
        ({"gpu_model": "NVIDIA A100-SXM4-40GB"}, False, True, False),
        ({"min_gpu_memory_gb": 40}, True, True, False),
        ({"min_gpu_memory_gb": 41}, True, False, False),
        ({"min_gpu_memory_gb": 16}, True, True, True),
        ({"gpu_model": "h100", "min_gpu_memory_gb": 80}, True, False, False),
        ({"host": "lab1"}, True, True, True),
        ({"host": "lab2"}, False, False, False),
        ({"gpu_model": "rtx 4090", "host": "LAB1"}, False, False, True),
    ],
)
def test_gpu_jobs_land_only_where_the_hardware_fits(spec: dict, h100: bool, a100: bool, rtx: bool) -> None:
    j = job(**spec)
    assert (served_by(j, H100), served_by(j, A100_40), served_by(j, RTX)) == (h100, a100, rtx)
    assert not served_by(j, None)  # never a CPU worker


def test_cpu_jobs_and_host_pinning() -> None:
    assert served_by(job("cpu"), None) and not served_by(job("cpu"), H100)
    assert served_by(job("cpu", host="lab1"), None, host="lab1")
    assert not served_by(job("cpu", host="lab1"), None, host="lab9")


def test_canonical_tag_and_memory_steps() -> None:
    assert required_tag(job(gpu_model="H100", min_gpu_memory_gb=70, host="lab3")) == "gpu.model-h100.mem-80.host-lab3"
    assert required_tag(job()) == "gpu" and required_tag(job("cpu")) == "cpu"
    assert memory_step(12) == 12 and memory_step(12.5) == 16 and memory_step(1000) == 1000


def test_gpu_requirements_need_a_gpu_job() -> None:
    with pytest.raises(ValidationError, match="need device: gpu"):
        job("cpu", gpu_model="H100")


def test_one_pinned_worker_per_gpu() -> None:
    plans = plan_workers([H100, A100_40, RTX], host="box")
    assert [p.name for p in plans] == ["gpu0@box", "gpu1@box", "gpu2@box"]
    assert [p.gpu_ids for p in plans] == [["0"], ["1"], ["2"]]
    assert all("cpu" not in p.tags for p in plans)  # a GPU box takes no CPU jobs by default
    assert "gpu.model-a100" in plans[1].tags and "gpu.model-h100" not in plans[1].tags
    assert [g["index"] for g in plans[2].info["gpus"]] == [2]


def test_gpu_selection_cpu_jobs_and_cpu_only() -> None:
    plans = plan_workers([H100, A100_40, RTX], selection="0,2", allow_cpu_jobs=True, host="box", name="lab")
    assert [p.name for p in plans] == ["lab-gpu0", "lab-gpu2", "lab-cpu"]
    assert plans[-1].gpu_ids is None and plans[-1].tags == ["cpu", "cpu.host-box"]
    with pytest.raises(PlanError, match="no GPU with index '7'"):
        plan_workers([H100], selection="7")
    only = plan_workers([H100], cpu_only=True, host="box")
    assert [(p.name, p.tags) for p in only] == [("cpu@box", ["cpu", "cpu.host-box"])]
    assert plan_workers([], host="box", name="w")[0].name == "w"
