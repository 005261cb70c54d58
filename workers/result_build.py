"""A run's result, built from what the job's process measured and the worker's own facts about its machine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from farm import workloads
from farm.columns import CHILD_FIELDS
from farm.fingerprint import GPUInfo, hardware_key, software_key
from farm.job import JobEnvelope
from farm.result import EpochRecord, JobResult, JobStatus, Phases
from farm.rows import benchfarm_version
from farm.validity import Limits, invalid_reasons
from workers.supervisor import ChildOutcome


def fingerprint(
    envelope: JobEnvelope, facts: dict[str, Any], gpus: list[GPUInfo], ready: dict[str, Any], res: dict[str, Any]
) -> dict[str, Any]:
    """What makes a result comparable: the host, the device, the software, the data; and the keys derived
    from them (equal hardware keys ran on comparable hardware, equal software keys on the same stack)."""
    job = envelope.job
    versions = ready.get("versions", {})
    harness = benchfarm_version(facts)
    workload_version = workloads.get(job.workload).definition_hash()
    job_gpus = gpus if job.device == "gpu" else []
    if job.device == "gpu" and not job_gpus and res.get("device_name"):
        hw = f"gpu:{res['device_name']}"
    else:
        hw = hardware_key(facts, job_gpus, job.device)
    return {
        **facts,
        "gpus": [g.model_dump() for g in job_gpus],
        "versions": versions,
        "framework_build": ready.get("build", {}),
        "framework_sees_gpu": res.get("framework_sees_gpu"),
        "cuda_visible_devices": ready.get("cuda_visible_devices"),
        "keras_backend": ready.get("keras_backend"),
        "dtype_policy": res.get("dtype_policy"),
        "pid": ready.get("pid"),
        "forked": ready.get("forked"),
        "compile_cache": res.get("compile_cache"),
        "data": job.data,
        "dataset_digest": res.get("dataset_digest"),
        "data_name": res.get("data_name"),
        "flops_uncounted": res.get("flops_uncounted"),
        "hardware_key": hw,
        "software_key": software_key(versions, harness=harness, workload=workload_version) if versions else None,
        "workload_version": workload_version,
    }


QUIET_FIGURES = ("quiet_reached", "quiet_others_cpu")
"""What the wait for a quiet host found (workers.quiet), kept with the contention figures."""

COPIED_FROM_CHILD = tuple(c.name for c in CHILD_FIELDS)
"""Result fields the training process measures and the worker records as they are (each None when absent;
declared in farm.columns); the rest are built here from the child's figures and the worker's own facts.
``JobResult`` validates them all."""


def build_result(
    envelope: JobEnvelope,
    outcome: ChildOutcome,
    attempt: int,
    worker: str,
    facts: dict[str, Any],
    gpus: list[GPUInfo] | None = None,
    limits: Limits | None = None,
) -> JobResult:
    """The run's ``JobResult``: the child's measured fields as they are, its phases completed with the worker's
    view of spawn and exit, a failed run's error with the tail of its stderr (what a user needs to see why), and
    for a succeeded run the validity verdict (farm.validity) under this worker's ``limits``."""
    ready, res = outcome.ready, outcome.result
    contention = res.get("contention") or {}
    phases = dict(res.get("phases", {}))
    phases.update(spawn_s=ready.get("spawn_s"), import_s=ready.get("import_s"), import_cpu_s=ready.get("import_cpu_s"))
    if res.get("total_s") is not None:
        phases["total_s"] = res["total_s"]
        phases["exit_s"] = max(0.0, outcome.total_s - res["total_s"])
        known = ("spawn_s", "import_s", "wait_s", "data_s", "build_s", "train_s", "eval_s")
        phases["other_s"] = res["total_s"] - sum(phases.get(k) or 0.0 for k in known)
    else:
        phases["total_s"] = outcome.total_s or None
    error = outcome.error
    if error and outcome.stderr_tail and outcome.status == "failed":
        error = f"{error}\n--- stderr (tail) ---\n{outcome.stderr_tail[-3000:]}"
    environment = fingerprint(envelope, facts, gpus or [], ready, res)
    result = JobResult(
        job_id=envelope.job_id,
        sweep_id=envelope.sweep_id,
        job=envelope.job,
        status=JobStatus(outcome.status),
        error=error,
        attempt=attempt,
        worker=worker,
        host=facts.get("host"),
        started_at=datetime.fromtimestamp(outcome.started_at, UTC) if outcome.started_at else None,
        versions=ready.get("versions", {}),
        environment=environment,
        epochs=[
            EpochRecord(**{k: v for k, v in e.items() if k in EpochRecord.model_fields}) for e in res.get("epochs", [])
        ],
        phases=Phases(**{k: v for k, v in phases.items() if k in Phases.model_fields}),
        stalls=res.get("stalls", []),
        timeline={
            **res.get("timeline", {}),
            "spawned_at": outcome.started_at or None,
            "job_started_at": outcome.job_started_at or None,
            "exited_at": (outcome.started_at + outcome.total_s) if outcome.started_at else None,
        },
        contention={**contention.get("figures", {}), **{k: res[k] for k in QUIET_FIGURES if k in res}},
        contended=bool(contention.get("contended")),
        contended_reasons=contention.get("reasons", []),
        throttled=bool(contention.get("throttled")),
        quiet_wait_s=res.get("quiet_wait_s"),
        **{name: res.get(name) for name in COPIED_FROM_CHILD},
    )
    if result.status == JobStatus.succeeded:
        result.invalid_reasons = invalid_reasons(result, limits or Limits())
        result.valid = not result.invalid_reasons
    return result
