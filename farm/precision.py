"""Measuring to a precision instead of a count: what a sweep asks for (:class:`Precision`) and, given a cell's
repeats so far, whether it is met and how many more valid repeats it needs (:func:`judge`).

A cell with a precision target starts with ``min_repeats`` jobs; each time one of its repeats is recorded, the
worker that ran it judges the cell and adds the repeats still needed (:mod:`workers.cell_extension`), until the
95% CI of the cell's median throughput is within ``ci`` of the median (relative half-width), or a cap is
reached: ``max_repeats`` valid repeats, ``max_invalid`` invalid ones replaced, or ``budget_s`` seconds spent.
The decision runs in the farm, not in the submitting process, so a laptop may be closed after ``farm submit``.

Light: numpy and pydantic only (the submit side validates the sweep's ``precision``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

from farm import defaults

#: Fewer valid repeats a side can never reach p < 0.05 in ``farm compare`` (Mann-Whitney, two-sided: the smallest
#: p of 3 against 3 is 0.1, of 4 against 4 it is 0.029).
MIN_COMPARABLE = 4


class Precision(BaseModel):
    """A cell's precision target (a sweep's ``precision:``, or an entry's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ci: StrictFloat = Field(
        gt=0,
        le=0.5,
        description="The largest relative half-width of the 95% CI of the cell's median throughput "
        "(0.02: the median is known to within ±2%).",
    )
    min_repeats: StrictInt = Field(
        default=5,
        ge=MIN_COMPARABLE,
        le=defaults.MAX_REPEATS // 2,
        description=f"Valid repeats before the target is judged (at least {MIN_COMPARABLE}, so that `farm compare` "
        "can reach p < 0.05 against a cell of the same size).",
    )
    max_repeats: StrictInt = Field(
        default=20, ge=MIN_COMPARABLE, le=defaults.MAX_REPEATS // 2, description="Valid repeats at the most."
    )
    max_invalid: StrictInt = Field(
        default=10,
        ge=0,
        le=defaults.MAX_REPEATS // 2,
        description="Invalid repeats (contended, throttled) replaced at the most.",
    )
    budget_s: StrictFloat | None = Field(
        default=None, gt=0, description="Seconds the cell's repeats may spend in all (their jobs' total time)."
    )

    @model_validator(mode="after")
    def _min_within_max(self) -> Precision:
        if self.min_repeats > self.max_repeats:
            raise ValueError(f"min_repeats ({self.min_repeats}) is more than max_repeats ({self.max_repeats})")
        return self

    @property
    def most_jobs(self) -> int:
        """The most jobs a cell may run: every valid repeat and every replaced invalid one."""
        return self.max_repeats + self.max_invalid


@dataclass(frozen=True)
class Verdict:
    """Where a cell stands: whether its target is met, how many more valid repeats it needs (0: none, the cell
    is done), the CI's relative half-width it reached, and why it stops or goes on (one line)."""

    met: bool
    more: int
    half_width: float | None
    n_valid: int
    n_invalid: int
    reason: str


def relative_half_width(values: list[float], confidence: float = 0.95) -> float | None:
    """Half the width of the bootstrap CI of the median, over the median; None with fewer than two values."""
    from farm.reports.stats import summarize_groups  # numpy: imported when a cell is judged

    if len(values) < 2:
        return None
    s = summarize_groups(values, None, 1, confidence=confidence)
    median = float(s.median[0])
    if not median > 0:
        return None
    return float((s.ci_high[0] - s.ci_low[0]) / 2 / median)


def judge(valid: list[float], n_invalid: int, precision: Precision, spent_s: float = 0.0) -> Verdict:
    """The cell's verdict from its valid repeats' throughputs, its invalid repeats and the seconds spent.

    More repeats are asked for while the target is not met and no cap is reached: up to ``min_repeats`` first,
    then as many as the current spread says are needed (the CI's width shrinks as 1/√n: n × (width /
    target)², at least one), never past ``max_repeats``."""
    n = len(valid)
    width = relative_half_width(valid)
    if n >= precision.min_repeats and width is not None and width <= precision.ci:
        reason = f"±{width:.1%} with {n} valid repeats (target ±{precision.ci:.1%})"
        return Verdict(True, 0, width, n, n_invalid, reason)
    stop = _cap(n, n_invalid, precision, spent_s)
    if stop:
        return Verdict(False, 0, width, n, n_invalid, stop)
    if n < precision.min_repeats or width is None:
        more = max(precision.min_repeats - n, 1)
    else:
        more = max(math.ceil(n * (width / precision.ci) ** 2) - n, 1)
    more = min(more, precision.max_repeats - n)
    shown = "no CI yet" if width is None else f"±{width:.1%}"
    return Verdict(False, more, width, n, n_invalid, f"{shown} with {n} valid repeats: {more} more")


def _cap(n: int, n_invalid: int, precision: Precision, spent_s: float) -> str | None:
    """Why the cell stops short of its target, or None while it may go on."""
    if n >= precision.max_repeats:
        return f"cap reached: {n} valid repeats (max_repeats {precision.max_repeats})"
    if n_invalid > precision.max_invalid:
        return f"{n_invalid} invalid repeats, more than max_invalid ({precision.max_invalid}): never quiet enough"
    if precision.budget_s is not None and spent_s >= precision.budget_s:
        return f"time budget spent: {spent_s:.0f} s of {precision.budget_s:.0f} s"
    return None


def contention_threshold(precision: Precision | None, base: float, explicit: bool = False) -> float:
    """The share of a job's cores others may use in its steady window before the repeat is contended: the
    farm's setting (``base``) for a cell measured a fixed number of times, or for every cell where a lab set it
    (``explicit``: its own choice rules); otherwise, for a cell with a precision target,
    at most what keeps the slowdown it lets through inside the target: the target over the measured slowdown per
    unit of others' CPU (``defaults.CONTENTION_SLOWDOWN``; ``benchmarks/contention_sensitivity.py`` measures
    it), never under ``defaults.CONTENTION_FLOOR`` (what the sampler can resolve)."""
    if precision is None or explicit:
        return base
    return max(min(base, precision.ci / defaults.CONTENTION_SLOWDOWN), defaults.CONTENTION_FLOOR)
