"""Whose fault a failed run is: the job's (its parameters, its data, its model, its size) or the machine's.

A worker stops taking jobs when its machine looks broken (``quarantine_after`` failures in a row), so that a bad
machine does not burn a sweep. But a user's broken sweep fails on every machine: counting its failures would take
every worker that touches it offline. So each failure is blamed from where it happened in the job's process
(:func:`workers.child.next_stage`) and, where that cannot tell, from the job's record across workers
(:meth:`farm.ledger.Ledger.note_failure`): a job that failed the same way on two workers is the job's fault.
"""

from __future__ import annotations

import enum
import re

from workers.supervisor import ChildOutcome


class Blame(str, enum.Enum):
    """Who a failure is counted against."""

    job = "job"  # the job would fail anywhere: never counts towards the machine's quarantine
    machine = "machine"  # the framework does not import, the process dies before it is ready
    unknown = "unknown"  # a crash while training: the machine's, unless the job fails the same way elsewhere


JOB_STAGES = {"job": "its parameters", "data": "its dataset", "build": "its model", "memory": "its size"}
"""Stages where a failure is the job's: reading and validating it, loading its data (a dataset this machine lacks
is the job's problem, not the machine's), building its model (user code), running out of memory."""

MACHINE_STAGES = {"import": "the framework's import"}
"""Stages where a failure is the machine's: before the process could announce it is ready for a job."""


COLLECTIVE_STUCK = "threads to join the rendezvous"
"""XLA's words when it aborts a step whose all-reduce waited too long for a device: a data-parallel job on
virtual CPU devices that share too few cores (workers.distribution): the job's size for this machine, not a
broken machine."""


def blame(outcome: ChildOutcome) -> Blame:
    """Whose fault a failed run is, from where the job's process was when it failed."""
    if outcome.stage in JOB_STAGES or COLLECTIVE_STUCK in (outcome.stderr_tail or ""):
        return Blame.job
    if outcome.stage in MACHINE_STAGES:
        return Blame.machine
    return Blame.unknown


_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|\b\d+(\.\d+)?\b|/tmp/\S+|pid \d+")


def signature(outcome: ChildOutcome) -> str:
    """The failure's identity across machines: where it failed and its first line without the numbers, addresses
    and temporary paths that differ from one run to the next."""
    first = (outcome.error or "failed").splitlines()[0] if (outcome.error or "").strip() else "failed"
    return f"{outcome.stage}: {_VOLATILE.sub('#', first)[:300]}"


def where(outcome: ChildOutcome) -> str:
    """The stage in words, for a log line or a recorded reason."""
    return JOB_STAGES.get(outcome.stage) or MACHINE_STAGES.get(outcome.stage) or f"the {outcome.stage} stage"
