"""Routing by hardware: a job's requirements become one tag; a worker pinned to a GPU serves every tag its GPU
satisfies; a machine's workers are planned one per GPU."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from farm.fingerprint import GPUInfo
from farm.job import JobSpec
from farm.queue import is_farm_queue, job_queue, tag_queue
from farm.routing import cpu_tags, gpu_tags, memory_step, required_tag
from farm.settings import KERAS_BACKENDS
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


BACKEND_SETS = [("tensorflow",), ("jax",), ("torch",), ("tensorflow", "jax"), ("jax", "torch"), KERAS_BACKENDS]


@pytest.mark.parametrize("offered", BACKEND_SETS)
@pytest.mark.parametrize("gpu", [None, H100])
def test_a_job_reaches_only_workers_that_offer_its_backend(offered: tuple[str, ...], gpu: GPUInfo | None) -> None:
    """Every combination of backend, device, host pin and plugin workload: a worker's queues include a job's queue
    exactly when its hardware fits and it offers the job's backend; every queue it consumes is a farm queue."""
    (plan,) = plan_workers([gpu] if gpu else [], host="lab1", backends=offered, cpu_only=gpu is None)
    assert all(is_farm_queue(q) for q in plan.queues) and len(set(plan.queues)) == len(plan.queues)
    for backend in KERAS_BACKENDS:
        for device in ("cpu", "gpu"):
            for host in (None, "lab1", "lab2"):
                j = JobSpec(sweep="s", workload="cifar10_mlp", device=device, backend=backend, requires={"host": host})
                fits = device == ("gpu" if gpu else "cpu") and host != "lab2"
                assert (job_queue(j) in plan.queues) == (fits and backend in offered), (j, plan.queues)


def test_the_default_backend_keeps_its_queue_names() -> None:
    tf = JobSpec(sweep="s", workload="cifar10_mlp", device="gpu", requires={"gpu_model": "H100", "host": "lab3"})
    assert job_queue(tf) == "farm.gpu.model-h100.host-lab3"
    assert job_queue(tf.model_copy(update={"backend": "jax"})) == "farm.gpu.model-h100.host-lab3.be-jax"
    assert plan_workers([], host="lab3")[0].queues == ["farm.cpu", "farm.cpu.host-lab3"]
    tagged = plan_workers([], host="lab3", backends=["jax"], plugins=["tiny"])[0].queues
    assert tagged == [
        "farm.cpu.be-jax",
        "farm.cpu.host-lab3.be-jax",
        "farm.cpu.be-jax.wl-tiny",
        "farm.cpu.host-lab3.be-jax.wl-tiny",
    ]


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
