"""Flattening jobs and results into tidy rows: one row per job, column names with units.

What a row *is* (its columns, and how a spec or a result fills them); how rows are stored for fast reports is
:mod:`farm.rowstore`'s business.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from farm.job import JobSpec
    from farm.result import JobResult

# The columns that identify a sweep cell (everything the job varies except the repeat index); reports group
# by these plus the device name that actually ran the job.
CELL_COLUMNS = [
    "workload",
    "params",
    "device",
    "backend",
    "epochs",
    "batch_size",
    "data",
    "train_samples",
    "test_samples",
    "steps_per_execution",
    "jit_compile",
    "mixed_precision",
    "input_pipeline",
    "mode",
]

RESULT_COLUMNS = [
    "job_id",
    "sweep_id",
    *CELL_COLUMNS,
    "repeat",
    "seed",
    "status",
    "error",
    "attempt",
    "worker",
    "host",
    "device_name",
    "hardware_key",
    "software_key",
    "keras_version",
    "backend_version",
    "python_version",
    "train_samples_used",
    "first_epoch_s",
    "steady_epoch_s",
    "steady_samples_per_s",
    "unit",
    "steady_tokens_per_s",
    "param_count",
    "flops_per_sample",
    "steady_tflops",
    "latency_p50_s",
    "latency_p90_s",
    "latency_p99_s",
    "step_p50_s",
    "step_p90_s",
    "step_p99_s",
    "train_s",
    "import_s",
    "data_s",
    "build_s",
    "eval_s",
    "total_s",
    "train_cpu_s",
    "stalls",
    "stall_s",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "epochs_to_target",
    "time_to_target_s",
    "dataset_digest",
    "started_at",
    "finished_at",
    "contended",
    "contention_cpu",
    "contended_reason",
    "throttled",
    "benchfarm_version",
    "workload_version",
]

NOT_ENQUEUED = "not_enqueued"
"""The ``status`` of a job of the sweep that is not on any queue (``farm run`` skipped it: no such device on
this machine): it has a spec row and no state."""


def spec_row(job: JobSpec, job_id: str, sweep_id: str) -> dict[str, Any]:
    """The columns every row has, known from the spec alone (a job that has not run yet)."""
    row: dict[str, Any] = {"job_id": job_id, "sweep_id": sweep_id}
    for col in CELL_COLUMNS:
        value = getattr(job, col)
        row[col] = json.dumps(value, sort_keys=True, separators=(",", ":")) if col == "params" else value
    row["repeat"] = job.repeat
    row["seed"] = job.seed_effective
    return row


def result_row(result: JobResult) -> dict[str, Any]:
    """One tidy row of a finished job (what ``farm results`` prints and the store keeps beside the full
    record): the spec's columns, then what was measured. A function here, not a method of the result, so the
    result model does not depend on the report's columns."""
    row = spec_row(result.job, result.job_id, result.sweep_id)
    phases = result.phases
    row.update(
        status=result.status.value,
        error=result.error,
        attempt=result.attempt,
        worker=result.worker,
        host=result.host,
        device_name=result.device_name,
        hardware_key=result.hardware_key,
        software_key=result.software_key,
        keras_version=result.versions.get("keras"),
        backend_version=result.versions.get(result.job.backend),
        python_version=result.versions.get("python"),
        train_samples_used=result.train_samples_used,
        first_epoch_s=result.first_epoch_s,
        steady_epoch_s=result.steady_epoch_s,
        steady_samples_per_s=result.steady_samples_per_s,
        unit=result.unit,
        steady_tokens_per_s=result.steady_tokens_per_s,
        param_count=result.param_count,
        flops_per_sample=result.flops_per_sample,
        steady_tflops=result.steady_tflops,
        latency_p50_s=result.latency_p50_s,
        latency_p90_s=result.latency_p90_s,
        latency_p99_s=result.latency_p99_s,
        step_p50_s=result.step_p50_s,
        step_p90_s=result.step_p90_s,
        step_p99_s=result.step_p99_s,
        train_s=phases.train_s,
        import_s=phases.import_s,
        data_s=phases.data_s,
        build_s=phases.build_s,
        eval_s=phases.eval_s,
        total_s=phases.total_s,
        train_cpu_s=phases.train_cpu_s,
        train_loss=result.train_loss,
        train_accuracy=result.train_accuracy,
        test_loss=result.test_loss,
        test_accuracy=result.test_accuracy,
        stalls=len(result.stalls),
        stall_s=sum(s.get("duration_s", 0.0) for s in result.stalls),
        epochs_to_target=result.epochs_to_target,
        time_to_target_s=result.time_to_target_s,
        dataset_digest=result.dataset_digest,
        started_at=result.started_at.isoformat() if result.started_at else None,
        finished_at=result.finished_at.isoformat() if result.finished_at else None,
        contended=result.contended,
        contention_cpu=result.contention.get("cpu_others"),
        contended_reason="; ".join(result.contended_reasons) or None,
        throttled=result.throttled,
        benchfarm_version=benchfarm_version(result.environment),
        workload_version=result.environment.get("workload_version"),
    )
    return row


def benchfarm_version(environment: dict[str, Any]) -> str | None:
    """``0.1.0`` or, run from a checkout, ``0.1.0+abc1234`` (``+abc1234.dirty`` with uncommitted changes)."""
    version = environment.get("benchfarm")
    commit = environment.get("git_commit")
    if version and commit:
        return f"{version}+{commit[:12]}"
    return version
