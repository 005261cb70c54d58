"""Flattening jobs and results into tidy rows: one row per job, column names with units."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from farm.job import JobSpec
    from farm.result import JobResult

# The columns that identify a sweep cell (everything the job varies except the repeat index); reports group
# by these plus the device name that actually ran the job.
CELL_COLUMNS = [
    "workload", "params", "device", "backend", "epochs", "batch_size", "data", "train_samples",
    "test_samples", "steps_per_execution", "jit_compile", "mixed_precision", "input_pipeline",
]

RESULT_COLUMNS = [
    "job_id", "sweep_id", *CELL_COLUMNS, "repeat", "seed", "status", "error", "attempt", "worker", "host",
    "device_name", "hardware_key", "software_key", "keras_version", "backend_version", "python_version",
    "train_samples_used", "first_epoch_s", "steady_epoch_s", "steady_samples_per_s", "step_p50_s", "step_p90_s",
    "step_p99_s", "train_s", "import_s", "data_s", "build_s", "eval_s", "total_s", "train_cpu_s", "stalls",
    "stall_s", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "epochs_to_target",
    "time_to_target_s", "dataset_digest", "started_at", "finished_at", "contended", "contention_cpu",
    "contended_reason", "throttled", "benchfarm_version", "workload_version",
]


ROW_FORMAT = "r" + hashlib.sha256(",".join(RESULT_COLUMNS).encode()).hexdigest()[:8]
"""Identifies the first stored row layout (:func:`packed_row`, every column in each row); still read."""

#: Columns that many rows share: the sweep cell, how the job ended, and the worker, hardware and software that
#: ran it. A compact row stores them once per distinct combination (a "row part", content-addressed) and refers
#: to it; what each run measured (and its error text, often unique) stays in the row.
SHARED_COLUMNS = [
    *CELL_COLUMNS, "status", "attempt", "worker", "host", "device_name", "hardware_key", "software_key",
    "keras_version", "backend_version", "python_version", "train_samples_used", "stalls", "epochs_to_target",
    "dataset_digest", "benchfarm_version", "workload_version",
]
#: The columns a compact row carries itself (``sweep_id`` is left out: the reader knows the sweep it reads).
OWN_COLUMNS = [c for c in RESULT_COLUMNS if c not in SHARED_COLUMNS and c != "sweep_id"]

COMPACT_FORMAT = "c" + hashlib.sha256(
    (",".join(SHARED_COLUMNS) + "|" + ",".join(OWN_COLUMNS)).encode()).hexdigest()[:8]
"""Identifies the compact row layout (:func:`compact_row`); a stored row of an unknown layout is rebuilt from
its full result."""


def _dumps(values: list[Any]) -> str:
    return json.dumps(values, separators=(",", ":"), default=str)


def packed_row(row: dict[str, Any]) -> list[Any]:
    """A row in the first stored layout: its values in ``RESULT_COLUMNS`` order after the format tag (no keys:
    a third of the size, and 100,000 of them parse in one ``json.loads``). Still read; new rows are compact."""
    return [ROW_FORMAT, *(row.get(c) for c in RESULT_COLUMNS)]


def row_part(row: dict[str, Any]) -> tuple[str, str]:
    """The row's shared values as stored (JSON, ``SHARED_COLUMNS`` order) and their reference: a hash of that
    text, so equal parts are stored once and writing one again changes nothing."""
    part = _dumps([row.get(c) for c in SHARED_COLUMNS])
    return hashlib.sha256(part.encode()).hexdigest()[:16], part


def compact_row(row: dict[str, Any]) -> tuple[str, str, str]:
    """A row as stored now: ``(row JSON, part reference, part JSON)``. The row is
    ``[COMPACT_FORMAT, part reference, *OWN_COLUMNS values]`` — about 40 % of a packed row, and half as many
    values to parse; the part holds the ``SHARED_COLUMNS`` values (see :func:`row_part`)."""
    ref, part = row_part(row)
    return _dumps([COMPACT_FORMAT, ref, *(row.get(c) for c in OWN_COLUMNS)]), ref, part


def spec_row(job: "JobSpec", job_id: str, sweep_id: str) -> dict[str, Any]:
    """The columns every row has, known from the spec alone (a job that has not run yet)."""
    row: dict[str, Any] = {"job_id": job_id, "sweep_id": sweep_id}
    for col in CELL_COLUMNS:
        value = getattr(job, col)
        row[col] = json.dumps(value, sort_keys=True, separators=(",", ":")) if col == "params" else value
    row["repeat"] = job.repeat
    row["seed"] = job.seed_effective
    return row


def result_row(result: "JobResult") -> dict[str, Any]:
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
