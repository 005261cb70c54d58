"""Flattening jobs and results into tidy rows: one row per job, column names with units.

How a spec or a result fills a row's columns (which columns there are, and what each holds, is declared in
:mod:`farm.columns`); how rows are stored for fast reports is :mod:`farm.rowstore`'s business.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from farm.columns import CELL_COLUMNS, COLUMNS
from farm.validity import is_valid, recorded_reasons

if TYPE_CHECKING:
    from farm.job import JobSpec
    from farm.result import JobResult

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
    record): the spec's columns, then what was measured, each filled as :data:`farm.columns.COLUMNS` says. A
    function here, not a method of the result, so the result model does not depend on the report's columns."""
    row = spec_row(result.job, result.job_id, result.sweep_id)
    for column in _FILLED:
        if column.source == "result":
            row[column.name] = getattr(result, column.name)
        elif column.source == "phases":
            row[column.name] = getattr(result.phases, column.name)
        else:
            row[column.name] = _COMPUTED[column.name](result)
    return row


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment else None


_COMPUTED: dict[str, Callable[[JobResult], Any]] = {
    "status": lambda r: r.status.value,
    "per_device_batch": lambda r: r.job.per_device_batch,
    "keras_version": lambda r: r.versions.get("keras"),
    "backend_version": lambda r: r.versions.get(r.job.backend),
    "python_version": lambda r: r.versions.get("python"),
    "precision_ci": lambda r: r.job.precision.ci if r.job.precision else None,
    "precision_min_repeats": lambda r: r.job.precision.min_repeats if r.job.precision else None,
    "stalls": lambda r: len(r.stalls),
    "stall_s": lambda r: sum(s.get("duration_s", 0.0) for s in r.stalls),
    "started_at": lambda r: _iso(r.started_at),
    "finished_at": lambda r: _iso(r.finished_at),
    "contention_cpu": lambda r: r.contention.get("cpu_others"),
    "epochs_disturbed": lambda r: (
        sum(1 for e in r.epochs[1:] if e.disturbed) if any(e.disturbed is not None for e in r.epochs[1:]) else None
    ),
    "contended_reason": lambda r: "; ".join(r.contended_reasons) or None,
    "valid": lambda r: is_valid(r) if r.status.value == "succeeded" else None,
    "invalid_reason": lambda r: "; ".join(recorded_reasons(r)) or None,
    "benchfarm_version": lambda r: benchfarm_version(r.environment),
    "workload_version": lambda r: r.environment.get("workload_version"),
}
"""How each ``row``-sourced column is computed from a result."""

_FILLED = [c for c in COLUMNS if c.row and c.source in ("result", "phases", "row")]


def benchfarm_version(environment: dict[str, Any]) -> str | None:
    """``0.1.0`` or, run from a checkout, ``0.1.0+abc1234`` (``+abc1234.dirty`` with uncommitted changes)."""
    version = environment.get("benchfarm")
    commit = environment.get("git_commit")
    if version and commit:
        return f"{version}+{commit[:12]}"
    return version
