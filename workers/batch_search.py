"""``batch_size: max``: the largest batch the job's device holds, found by trying, then the measured run at it.

Each try is a job of its own kind run like any other, in a fresh process (forked from the worker's fork server):
the job's spec at one batch size, one epoch of two steps, a few test samples. It fits when it succeeds and does
not when it fails for want of memory (the worker's estimate refused it, the framework said so, or the kernel's
OOM killer stopped it: ``workers.memory``); any other failure ends the search and is the job's failure, as it
would be at any batch. The search doubles from the job's ``batch_size`` until a try does not fit (or the
search's ``limit``), then bisects between the largest that fit and the smallest that did not, until they are
within 1/16 of each other; at most ``tries`` tries and ``budget_s`` seconds of them. If even the starting batch
does not fit, it halves down to 1. The measured run then trains the job as it is, at the batch found; the
result records that batch (``batch_size_used``) and every try (``batch_tries``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from farm.job import JobEnvelope
from workers.memory import OOM_PREFIX
from workers.supervisor import ChildOutcome

PROBE_STEPS = 2
"""Training steps a try runs: the first compiles and allocates, the second reuses what the first allocated."""

PROBE_TEST_SAMPLES = 16

CLOSE_ENOUGH = 16
"""Bisection stops when the gap between fit and no fit is under 1/16 of the batch that fit."""


def ran_out_of_memory(outcome: ChildOutcome) -> bool:
    """Whether a failed try failed for want of memory (anything else is the job's own failure)."""
    return outcome.status == "failed" and (outcome.stage == "memory" or (outcome.error or "").startswith(OOM_PREFIX))


def probe_envelope(envelope: JobEnvelope, batch: int, time_limit_s: float) -> JobEnvelope:
    """The try at ``batch``: the job's model and data at that batch size, two steps of one epoch, no search."""
    job = envelope.job.model_copy(
        update={
            "batch_size": batch,
            "epochs": 1,
            "train_samples": PROBE_STEPS * batch,
            "test_samples": PROBE_TEST_SAMPLES,
            "batch_search": None,
            "precision": None,
            "target_accuracy": None,
            "server": None,
        }
    )
    return JobEnvelope.for_job(job, envelope.sweep_id, time_limit_s)


def measured_envelope(envelope: JobEnvelope, batch: int) -> JobEnvelope:
    """The measured run at the batch found: the job as it is, at that batch size."""
    job = envelope.job.model_copy(update={"batch_size": batch, "batch_search": None})
    return JobEnvelope.for_job(job, envelope.sweep_id, envelope.time_limit_s)


@dataclass
class Search:
    """The tries so far and what they say."""

    fit: int | None = None
    no_fit: int | None = None
    tries: list[dict[str, Any]] = field(default_factory=list)

    def next_batch(self, start: int, limit: int) -> int | None:
        """The batch to try next, or None when the search is over."""
        if self.fit is None:
            if self.no_fit is None:
                return start
            return self.no_fit // 2 if self.no_fit > 1 else None  # even the start did not fit: halve down
        if self.no_fit is None:
            return min(self.fit * 2, limit) if self.fit < limit else None
        if self.no_fit - self.fit <= max(1, self.fit // CLOSE_ENOUGH):
            return None
        return (self.fit + self.no_fit) // 2

    def note(self, batch: int, outcome: ChildOutcome, seconds: float) -> bool:
        """Record a try; False when it failed for another reason than memory (the search must stop)."""
        fits = outcome.status == "succeeded"
        oom = ran_out_of_memory(outcome)
        error = None if fits else (outcome.error or outcome.status).splitlines()[0][:300]
        self.tries.append({"batch": batch, "fit": fits, "s": round(seconds, 3), "error": error})
        if fits:
            self.fit = max(batch, self.fit or 0)
        elif oom:
            self.no_fit = batch if self.no_fit is None else min(batch, self.no_fit)
        return fits or oom


def measure_at_max_batch(envelope: JobEnvelope, launch: Callable[[JobEnvelope], ChildOutcome]) -> ChildOutcome:
    """Search (``launch`` runs one envelope in a fresh process and returns how it ended), then run the job at
    the largest batch that fit. The outcome is the measured run's, with the batch used and every try in its
    figures; or the try that failed for another reason than memory; or a failure saying no batch fitted."""
    spec = envelope.job.batch_search
    assert spec is not None
    search = Search()
    deadline = time.monotonic() + float(spec.budget_s)
    while len(search.tries) < spec.tries and (batch := search.next_batch(envelope.job.batch_size, spec.limit)):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        started = time.monotonic()
        outcome = launch(probe_envelope(envelope, batch, min(left, envelope.time_limit_s)))
        if outcome.status == "cancelled" or not search.note(batch, outcome, time.monotonic() - started):
            outcome.result = {**outcome.result, "batch_tries": json.dumps(search.tries)}
            return outcome
    if search.fit is None:
        return ChildOutcome(
            status="failed",
            stage="memory",
            error=f"{OOM_PREFIX}: no batch size fits: the smallest tried, {search.no_fit}, ran out of memory "
            f"(tries: {json.dumps(search.tries)})",
            result={"batch_tries": json.dumps(search.tries)},
        )
    outcome = launch(measured_envelope(envelope, search.fit))
    outcome.result = {**outcome.result, "batch_size_used": search.fit, "batch_tries": json.dumps(search.tries)}
    return outcome
