"""Sweeps: a file names workloads, a matrix of settings and a repeat count; expansion yields the jobs.

Each entry of ``jobs`` is crossed with every combination of ``matrix`` and with ``repeats``. Precedence for a
field: the job entry, then the matrix, then ``defaults``; ``params`` merge key by key in the same order, and a
matrix axis may name one parameter as ``params.NAME``. Repeats are interleaved (all cells once, then all cells
again, …) so drift of a machine over time does not masquerade as a difference between cells.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, field_validator

from farm import defaults as limits
from farm.errors import Problem, SpecError, did_you_mean, problems_from_validation
from farm.job import JobEnvelope, JobSpec, check_slug
from farm.precision import Precision
from farm.sweep_file import read_sweep_file

JOB_FIELDS = frozenset(JobSpec.model_fields) - {"sweep", "repeat"}
ENTRY_ONLY_FIELDS = frozenset({"time_limit_s"})
MAX_PROBLEMS_SHOWN = 20


class SweepSpec(BaseModel):
    """The sweep file's top level, validated before anything is expanded."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str | None = Field(default=None, max_length=2000)
    repeats: StrictInt = Field(default=1, ge=1, le=limits.MAX_REPEATS)  # `repeats: true` is a mistake, not 1
    precision: Precision | None = Field(
        default=None,
        description="Measure every cell to this precision (farm.precision); an entry's own `precision` wins.",
    )
    defaults: dict[str, Any] = Field(default_factory=dict)
    matrix: dict[str, list[Any]] = Field(default_factory=dict, max_length=limits.MAX_MATRIX_AXES)
    jobs: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)
    time_limit_s: StrictFloat | None = Field(
        default=None, gt=0, le=limits.MAX_TIME_LIMIT_S, description="Per-job time limit; default grows with the epochs."
    )

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        return check_slug(v)


@dataclass
class Sweep:
    """An expanded sweep: its id, the spec it came from and its jobs in queue order."""

    spec: SweepSpec
    sweep_id: str
    jobs: list[JobSpec]
    time_limits: dict[str, float] = field(default_factory=dict)
    source: str = ""
    origins: dict[str, str] = field(default_factory=dict)
    """Cell (repeat 0) job id -> the entry and matrix values it came from, for errors found after expansion."""

    def envelopes(self) -> list[JobEnvelope]:
        return [JobEnvelope.for_job(j, self.sweep_id, self.time_limits.get(j.job_id)) for j in self.jobs]

    @property
    def cells(self) -> int:
        return len({j.job_id for j in self.jobs if j.repeat == 0})


def _check_keys(spec: SweepSpec) -> list[Problem]:
    problems = []
    entry_fields = JOB_FIELDS | ENTRY_ONLY_FIELDS
    for key in spec.defaults:
        if key not in entry_fields:
            problems.append(Problem(f"defaults.{key}", "unknown field" + did_you_mean(key, entry_fields)))
    for i, entry in enumerate(spec.jobs):
        for key in entry:
            if key not in entry_fields:
                problems.append(Problem(f"jobs[{i}].{key}", "unknown field" + did_you_mean(key, entry_fields)))
        if "workload" not in entry and "workload" not in spec.defaults and "workload" not in spec.matrix:
            problems.append(Problem(f"jobs[{i}].workload", "field required"))
    for key, values in spec.matrix.items():
        if not _known_axis(key):
            problems.append(
                Problem(
                    f"matrix.{key}",
                    "unknown job field (use a job field or params.NAME)" + did_you_mean(key, JOB_FIELDS),
                )
            )
        if not values:
            problems.append(Problem(f"matrix.{key}", "empty axis: give at least one value"))
        elif len(values) > limits.MAX_AXIS_VALUES:
            problems.append(Problem(f"matrix.{key}", f"more than {limits.MAX_AXIS_VALUES} values"))
    return problems


def _known_axis(key: str) -> bool:
    return key in JOB_FIELDS or (key.startswith("params.") and len(key) > len("params."))


def _without_bad_keys(spec: SweepSpec) -> SweepSpec:
    """The spec less its unknown fields and unusable axes, so that its cells can still be validated and every
    problem of a file reported in one pass (the removed keys are reported by :func:`_check_keys`)."""
    entry_fields = JOB_FIELDS | ENTRY_ONLY_FIELDS
    return spec.model_copy(
        update={
            "defaults": {k: v for k, v in spec.defaults.items() if k in entry_fields},
            "jobs": [{k: v for k, v in entry.items() if k in entry_fields} for entry in spec.jobs],
            "matrix": {k: v for k, v in spec.matrix.items() if _known_axis(k) and 0 < len(v) <= limits.MAX_AXIS_VALUES},
        }
    )


_UNKNOWN_WORKLOAD = re.compile(r"^unknown workload '((?:[^'\\]|\\.)*)'")


def _suggest(problem: Problem, workload: Any) -> Problem:
    """``problem`` with a "did you mean" for a misspelt workload, or for a misspelt parameter of ``workload``."""
    from farm import workloads

    match = _UNKNOWN_WORKLOAD.match(problem.msg)
    if match:
        hint = did_you_mean(match.group(1), workloads.names())
        return Problem(problem.loc, problem.msg + hint) if hint else problem
    if problem.msg.endswith("unknown field") and ".params." in f".{problem.loc}" and isinstance(workload, str):
        try:
            names = workloads.get(workload).params_model.model_fields
        except (KeyError, AttributeError):
            return problem
        name = problem.msg.split(":", 1)[0] if ": " in problem.msg else problem.loc.rsplit(".", 1)[-1]
        hint = did_you_mean(name.split("[", 1)[0], names)
        return Problem(problem.loc, problem.msg + hint) if hint else problem
    return problem


_IMMUTABLE = (str, int, float, bool, type(None))


def _copy(value: Any) -> Any:
    """A copy that no other cell shares (scalars, most of a sweep's values, need none)."""
    return value if type(value) in _IMMUTABLE else copy.deepcopy(value)


BATCH_STATEMENTS = {"batch_size": "batch_per_device", "batch_per_device": "batch_size"}
"""Two ways to state a job's batch: one given nearer the job (an entry over the matrix over ``defaults``) replaces
the other; both in one place is an error the job's validation reports."""


def _layer(where: str) -> str:
    """Which layer of the file a value came from: ``defaults``, ``matrix`` or ``jobs[i]``."""
    return where.split(".", 1)[0] if not where.startswith("matrix.") else "matrix"


def _merge(
    spec: SweepSpec, index: int, entry: dict[str, Any], combo: tuple[tuple[str, int, Any], ...]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The fields of one cell and, for each field (and each parameter, as ``params.NAME``), where its value
    came from, so an error can point at the line of the file that supplied it."""
    fields: dict[str, Any] = {}
    origin: dict[str, str] = {}
    params: dict[str, Any] = {}

    def put(key: str, value: Any, where: str) -> None:
        if key == "params":
            origin["params"] = where
            if not isinstance(value, dict):
                fields["params"] = value  # let validation say what is wrong with it
                return
            params.update(_copy(value))
            origin.update({f"params.{name}": f"{where}.{name}" for name in value})
        elif key.startswith("params."):
            params[key.split(".", 1)[1]] = _copy(value)
            origin[key] = where
        else:
            other = BATCH_STATEMENTS.get(key)
            if other in fields and _layer(origin[other]) != _layer(where):
                del fields[other], origin[other]  # the batch stated nearer the job wins, either way it is stated
            fields[key] = _copy(value)
            origin[key] = where

    if spec.precision is not None:  # the sweep's own precision: below defaults, entries and the matrix
        put("precision", spec.precision, "precision")
    for key, value in spec.defaults.items():
        put(key, value, f"defaults.{key}")
    for key, k, value in combo:
        put(key, value, f"matrix.{key}[{k}]")
    for key, value in entry.items():
        put(key, value, f"jobs[{index}].{key}")
    fields.setdefault("params", params)
    origin.setdefault("params", f"jobs[{index}].params")
    return fields, origin


def _relocate(problems: list[Problem], origin: dict[str, str]) -> list[Problem]:
    """Point each validation problem at the place in the file that supplied the bad value."""
    out = []
    for p in problems:
        head_field = p.loc.split(".", 1)[0].split("[", 1)[0]
        if head_field == "params" and p.loc == "params":
            # The workload's parameter model reports "name[i]: message; other: message" under ``params``.
            for part in p.msg.split("; "):
                sub_loc, sep, msg = part.partition(": ")
                if not sep:  # about the parameters as a whole (say, the model they make is too large)
                    axes = [w for k, w in origin.items() if k.startswith("params.") and w.startswith("matrix.")]
                    out.append(
                        Problem(f"{origin['params']} with {', '.join(axes)}" if axes else origin["params"], part)
                    )
                    continue
                name = sub_loc.split(".", 1)[0].split("[", 1)[0]
                where = origin.get(f"params.{name}")
                if where is None:
                    out.append(Problem(f"{origin['params']}.{sub_loc}", msg))
                elif where.startswith("matrix."):
                    out.append(Problem(where, part))
                else:
                    out.append(Problem(where + sub_loc[len(name) :], msg))
        elif head_field in origin:
            out.append(Problem(origin[head_field] + p.loc[len(head_field) :], p.msg))
        else:
            out.append(p)
    return out


def expand(spec: SweepSpec, source: str = "") -> Sweep:
    """Validate every cell and lay out the jobs; raise SpecError listing every problem found."""
    problems = _check_keys(spec)
    axes = list(spec.matrix.items())
    n_combos = math.prod(len(v) for _, v in axes) if axes else 1
    total = len(spec.jobs) * n_combos * spec.repeats
    if total > limits.MAX_JOBS_PER_SWEEP:
        problems.append(Problem("matrix", f"the sweep expands to {total} jobs, more than {limits.MAX_JOBS_PER_SWEEP}"))
        raise SpecError(problems, source)
    if problems:  # go on without the unknown fields: the cells' own problems are reported in the same pass
        spec = _without_bad_keys(spec)
        axes = list(spec.matrix.items())

    cells: dict[str, JobSpec] = {}
    origins: dict[str, str] = {}
    time_limits: dict[str, float] = {}
    seen: set[Problem] = set()
    for index, entry in enumerate(spec.jobs):
        for choice in itertools.product(*[list(enumerate(values)) for _, values in axes]):
            combo = tuple((axes[a][0], k, v) for a, (k, v) in enumerate(choice))
            fields, origin = _merge(spec, index, entry, combo)
            limit = fields.pop("time_limit_s", spec.time_limit_s)
            try:
                job = JobSpec(sweep=spec.name, repeat=0, **fields)
            except ValidationError as e:
                for p in _relocate(problems_from_validation(e), origin):
                    if not p.loc:  # about the job as a whole (fields that do not fit together): which job
                        via = ", ".join(f"matrix.{key}[{k}]" for key, k, _ in combo)
                        p = Problem(f"jobs[{index}] with {via}" if via else f"jobs[{index}]", p.msg)
                    p = _suggest(p, fields.get("workload"))
                    if p not in seen:
                        seen.add(p)
                        problems.append(p)
                continue
            cells.setdefault(job.job_id, job)
            via = ", ".join(f"matrix.{key}[{k}]" for key, k, _ in combo)
            origins.setdefault(job.job_id, f"jobs[{index}] with {via}" if via else f"jobs[{index}]")
            if limit is not None:
                if (
                    isinstance(limit, bool)
                    or not isinstance(limit, (int, float))
                    or not 0 < limit <= limits.MAX_TIME_LIMIT_S
                ):
                    problems.append(
                        Problem(
                            origin.get("time_limit_s", "time_limit_s"),
                            f"must be a number of seconds in (0, {limits.MAX_TIME_LIMIT_S:.0f}]",
                        )
                    )
                else:
                    time_limits[job.job_id] = float(limit)
        if len(problems) >= MAX_PROBLEMS_SHOWN:
            break
    if problems:
        raise SpecError(problems[:MAX_PROBLEMS_SHOWN], source)

    jobs: list[JobSpec] = []
    job_limits: dict[str, float] = {}
    for repeat in range(max(initial_repeats(spec.repeats, cell) for cell in cells.values())):
        for cell_id, cell in cells.items():
            if repeat >= initial_repeats(spec.repeats, cell):
                continue
            job = cell if repeat == 0 else JobSpec.model_validate({**cell.model_dump(), "repeat": repeat})
            jobs.append(job)
            if cell_id in time_limits:
                job_limits[job.job_id] = time_limits[cell_id]
    digest = hashlib.sha256("\n".join(sorted(j.job_id for j in jobs)).encode()).hexdigest()[:8]
    return Sweep(
        spec=spec, sweep_id=f"{spec.name}-{digest}", jobs=jobs, time_limits=job_limits, source=source, origins=origins
    )


def initial_repeats(repeats: int, cell: JobSpec) -> int:
    """The repeats a cell starts with: the sweep's ``repeats``, or at least its precision target's
    ``min_repeats`` (the farm adds the rest as the cell's repeats come in: farm.precision)."""
    return max(repeats, cell.precision.min_repeats) if cell.precision is not None else repeats


def load_sweep_data(data: dict[str, Any], source: str = "", name: str | None = None) -> Sweep:
    """Validate and expand a parsed sweep file. Every problem is reported in one pass: the top level's, then
    (validated without the top-level fields in error, when that leaves a sweep) each entry's and cell's."""
    if name is not None:
        data = {**data, "name": name}
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        problems = problems_from_validation(e, fields=SweepSpec.model_fields)
        rest = _rest_of(data, e)
        if rest is not None:
            try:
                expand(rest, source)
            except SpecError as more:
                problems += [p for p in more.problems if p not in problems]
        raise SpecError(problems[:MAX_PROBLEMS_SHOWN], source) from None
    return expand(spec, source)


def _rest_of(data: dict[str, Any], error: ValidationError) -> SweepSpec | None:
    """The sweep without the top-level fields ``error`` is about (a bad ``name`` replaced by a placeholder), if
    that still validates: what can be checked further in the same pass. None when ``jobs`` itself is wrong."""
    bad = {str(e["loc"][0]) for e in error.errors() if e["loc"]}
    if "jobs" in bad or not bad:
        return None
    rest = {k: v for k, v in data.items() if k not in bad}
    if "name" in bad or "name" not in rest:
        rest["name"] = "sweep"
    try:
        return SweepSpec.model_validate(rest)
    except ValidationError:
        return None


def load_sweep(path: Path | str, name: str | None = None) -> Sweep:
    """Read, validate and expand a sweep file. ``name`` overrides the file's name (to run it again afresh)."""
    path = Path(path)
    return load_sweep_data(read_sweep_file(path), str(path), name)
