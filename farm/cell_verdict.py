"""Where a cell measured to a precision stands, from its recorded repeats: the worker that records a repeat asks
it whether to add more (``workers.cell_extension``), and ``farm run`` asks it for each cell's closing line.

``farm status --cells`` asks it the same of a sweep under way.

What counts: a succeeded repeat whose verdict says it is valid (farm.validity) gives its steady throughput; an
invalid one counts against ``max_invalid`` and is replaced; a failed repeat stops the cell (a job that fails would
fail again); a repeat too short to time stops it too (every repeat of the cell has the same window), with the
reason that says how many epochs or samples would suffice.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from farm.precision import Precision, Verdict, judge
from farm.result import JobResult, JobStatus
from farm.validity import is_valid, kind_of, recorded_reasons

if TYPE_CHECKING:
    from farm.store import Store


def valid_rate(result: JobResult) -> float | None:
    """A valid repeat's steady throughput (succeeded, valid by its verdict, a steady window measured); None
    otherwise."""
    if result.status != JobStatus.succeeded or not is_valid(result):
        return None
    return result.steady_samples_per_s


def too_short(result: JobResult) -> str | None:
    """The result's "steady window too short" reason, if it has one: no repeat of its cell can do better."""
    return next((r for r in result.invalid_reasons if kind_of(r) == "too short"), None)


def cell_verdict(results: list[JobResult], precision: Precision) -> Verdict:
    """The verdict on a cell from its repeats recorded so far (and the one about to be)."""
    valid = [rate for r in results if (rate := valid_rate(r)) is not None]
    invalid = sum(1 for r in results if r.status == JobStatus.succeeded and valid_rate(r) is None)
    spent = sum(r.phases.total_s or 0.0 for r in results)
    verdict = judge(valid, invalid, precision, spent)
    if any(r.status != JobStatus.succeeded for r in results):
        return Verdict(verdict.met, 0, verdict.half_width, len(valid), invalid, "a repeat failed: no more added")
    short = next((reason for r in results if (reason := too_short(r))), None)
    if short and not verdict.met:
        return Verdict(False, 0, verdict.half_width, len(valid), invalid, short)
    return verdict


def cell_line(results: list[JobResult], precision: Precision | None) -> str:
    """One line for a cell: its median throughput and where it stands (target met, still measuring, or which cap
    stopped it, or for a fixed count how many repeats were valid and why the others were not)."""
    job = results[0].job
    label = f"{job.workload} {job.device} {job.backend} batch {job.batch_size}"
    if job.devices > 1:
        label += f" on {job.devices} devices"
    rates = sorted(rate for r in results if (rate := valid_rate(r)) is not None)
    unit = next((r.unit for r in results if r.unit), None) or "samples"
    figure = f"{statistics.median(rates):,.1f} {unit}/s" if rates else "no valid repeat"
    if precision is not None:
        verdict = cell_verdict(results, precision)
        if verdict.more:  # a sweep under way (farm status --cells): more repeats are on their way
            return f"{label}: {figure} so far; measuring: {verdict.reason}"
        head = "met" if verdict.met else "not met"
        return f"{label}: {figure}; target {head}: {verdict.reason}"
    invalid = [r for r in results if r.status == JobStatus.succeeded and valid_rate(r) is None]
    kinds = sorted({kind_of(reason) for r in invalid for reason in recorded_reasons(r)})
    why = f" ({len(invalid)} invalid: {', '.join(kinds)})" if invalid else ""
    return f"{label}: {figure} from {len(rates)} valid of {len(results)}{why}"


def sweep_cell_lines(store: Store, sweep_id: str) -> list[str]:
    """One line per cell of the sweep with a recorded repeat (:func:`cell_line`), in the sweep's order."""
    ids = store.sweep_job_ids(sweep_id)
    cells: dict[str, tuple[Precision | None, list[JobResult]]] = {}
    for envelope, result in zip(store.envelopes(ids), store.results(ids), strict=True):
        if envelope is not None and result is not None:
            cells.setdefault(envelope.job.cell_key(), (envelope.job.precision, []))[1].append(result)
    return [cell_line(results, precision) for precision, results in cells.values()]
