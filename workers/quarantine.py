"""The failure policy: whom a failed run counts against, when a worker stops taking jobs, when it takes them again,
and whether a failed job goes round again or is recorded.

A worker stops taking jobs (quarantine) after ``quarantine_after`` distinct jobs in a row failed here for reasons
blamed on this machine (:mod:`workers.blame`): one broken job retried here is not a broken machine, nor is a job
that fails the same way on other workers. The quarantine lifts after its cool-down (0: only a restart lifts it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from workers.blame import Blame, blame, where
from workers.supervisor import ChildOutcome

log = logging.getLogger("farm.worker")


class Quarantine:
    """One worker's count of machine-blamed failures and its quarantine, held in attributes."""

    def __init__(self, worker: str, after: int, cooldown_s: float, *, clock: Callable[[], float] = time.time) -> None:
        self.worker = worker
        self.after = after
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.failed_jobs: dict[str, str] = {}  # job id -> failure signature, of the failures blamed on this machine
        self.consecutive_failures = 0
        self.quarantined_at = 0.0
        self.reason: str | None = None  # why this worker stopped taking jobs; None while it takes them

    def succeeded(self) -> None:
        """A run went through: the machine works, the count starts afresh."""
        self.consecutive_failures = 0
        self.failed_jobs.clear()

    def count(
        self, job_id: str, sig: str, outcome: ChildOutcome, failed_elsewhere: Callable[[dict[str, str]], list[str]]
    ) -> None:
        """Count a failure blamed on this machine; stop taking jobs after ``after`` distinct jobs in a row. Before
        stopping, the failures whose job has since failed the same way on another worker (``failed_elsewhere``
        names them) are forgiven: those jobs were broken, not this machine."""
        self.failed_jobs.setdefault(job_id, sig)
        if len(self.failed_jobs) >= self.after:
            for other in failed_elsewhere(self.failed_jobs):
                del self.failed_jobs[other]
        self.consecutive_failures = len(self.failed_jobs)
        if self.consecutive_failures < self.after:
            return
        self.quarantined_at = self.clock()
        lift = (
            f"lifted at {datetime.fromtimestamp(self.quarantined_at + self.cooldown_s, UTC):%H:%M:%S} UTC or by "
            "restarting the worker"
            if self.cooldown_s
            else "restart the worker to lift it"
        )
        self.reason = (
            f"{self.consecutive_failures} jobs in a row failed here ({where(outcome)}); the last: "
            f"{(outcome.error or 'failed').splitlines()[0][:300]}; {lift}"
        )
        log.error("worker %s stops taking jobs: %s", self.worker, self.reason)

    def lift(self, now: float | None = None) -> bool:
        """Take jobs again once the cool-down has passed (a machine's trouble is often passing: a full disk
        cleaned, a driver reloaded); the count starts afresh, so a still-broken machine stops again after
        ``after`` more failures. Returns whether it was lifted now."""
        if not self.reason or not self.cooldown_s or (now or self.clock()) < self.quarantined_at + self.cooldown_s:
            return False
        log.warning(
            "worker %s takes jobs again after a cool-down of %g s (%s)", self.worker, self.cooldown_s, self.reason
        )
        self.reason = None
        self.succeeded()
        return True


def counts_against_machine(outcome: ChildOutcome, others: list[str]) -> bool:
    """Whether a failed run counts towards this machine's quarantine: not when the job failed the same way on
    ``others`` (workers), nor when it failed where a failure is the job's own (:func:`workers.blame.blame`)."""
    return not others and blame(outcome) is not Blame.job


def requeue(attempt: int, max_attempts: int) -> bool:
    """Whether a failed run that is not known to be the job's own goes round again (on any worker): while
    attempts remain; the last attempt's failure is recorded."""
    return attempt < max_attempts


def failed_the_same_way(outcome: ChildOutcome, others: list[str], worker: str) -> str:
    """The error to record for a job that failed the same way on ``others`` and on ``worker``: it names them."""
    first = (outcome.error or "failed").splitlines()[0]
    rest = "\n".join((outcome.error or "").splitlines()[1:])
    return f"failed the same way on {' and '.join([*others, worker])}: {first}" + (f"\n{rest}" if rest else "")
