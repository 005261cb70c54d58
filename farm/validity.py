"""Is a repeat's figure fit to be counted? The validity verdict of one result, with its reasons.

A repeat is *valid* when its steady window (the epochs, or inference passes, after the first) was long enough to
time and nothing disturbed it. It is *invalid*, with one reason per cause, when:

* it was **contended**: other processes used the job's cores (or its GPU) beyond the farm's threshold, or the
  hypervisor stole CPU, in every steady epoch (``workers.contention``; the reasons are the ones recorded there),
  or in so many of them that the undisturbed ones are too short to time;
* the device was **throttled**: the GPU's clocks were held down by heat or power, or the CPU's clock changed by
  more than ``max_clock_change`` within the window (read where cpufreq is exposed: bare metal, not most VMs);
* its **steady window was too short** to time: no epoch after the first, or fewer than ``min_steady_s`` seconds
  or ``min_steady_steps`` steps in it. The reason says which, and how many epochs or training samples would
  suffice at the speed measured.

Invalid repeats are left out of every statistic by default (reports say how many, and why); a cell measured to a
precision replaces them (``farm.precision``). The verdict is made by the worker when it builds the result, with
its own limits (settings), and stored with it; results recorded before verdicts existed are judged by their
``contended`` flag alone.

Light: no numpy, no framework; called on the worker and read on the submit side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from farm import defaults

if TYPE_CHECKING:
    from farm.result import JobResult


@dataclass(frozen=True)
class Limits:
    """What a steady window must hold to be timed, and how far the CPU clock may move within it."""

    min_steady_s: float = defaults.MIN_STEADY_S
    min_steady_steps: int = defaults.MIN_STEADY_STEPS
    max_clock_change: float = defaults.MAX_CLOCK_CHANGE


def invalid_reasons(result: JobResult, limits: Limits) -> list[str]:
    """Why ``result`` (a succeeded repeat) must not be counted; empty when it is valid."""
    reasons = list(result.contended_reasons)
    if result.contended and not reasons:
        reasons.append("contended")
    reasons += clock_reasons(result.contention, limits.max_clock_change)
    too_short = window_reasons(result, limits)
    reasons += too_short or ([] if result.contended else disturbed_reasons(result, limits))
    return reasons


def disturbed_reasons(result: JobResult, limits: Limits) -> list[str]:
    """Steady epochs left out as disturbed, leaving undisturbed ones too short to time. A contention reason, not
    a too-short one: the job is long enough, and a repeat on a quieter host will do (farm.cell_verdict stops a
    cell on too-short repeats only)."""
    rest, kept = result.epochs[1:], result.steady_epochs  # all of them when none, or every one, was disturbed
    if len(kept) == len(rest) or not (limits.min_steady_s > 0 or limits.min_steady_steps > 0):
        return []
    seconds = sum(e.wall_s for e in kept)
    steps = (result.steps_per_epoch or 0) * len(kept)
    if seconds >= limits.min_steady_s and (not result.steps_per_epoch or steps >= limits.min_steady_steps):
        return []
    return [
        f"other processes disturbed {len(rest) - len(kept)} of {len(rest)} steady epochs: the undisturbed "
        f"{'one holds' if len(kept) == 1 else f'{len(kept)} hold'} {seconds:.2f} s and {steps} steps, too short to time"
    ]


def clock_reasons(contention: dict[str, Any], max_change: float) -> list[str]:
    """A CPU clock that moved within the window (a frequency drop under load: heat, power capping, a governor)."""
    low, high = contention.get("cpu_freq_low"), contention.get("cpu_freq_high")
    if low is None or high is None or not high > 0:
        return []
    change = (high - low) / high
    if change <= max_change:
        return []
    return [f"the CPU clock changed by {change:.0%} within the steady window (more than {max_change:.0%})"]


def window_reasons(result: JobResult, limits: Limits) -> list[str]:
    """A steady window too short to time, saying which limit it missed and what would suffice."""
    if limits.min_steady_s <= 0 and limits.min_steady_steps <= 0:
        return []  # told not to judge windows (a lab's own choice, or a test's tiny jobs)
    passes = "passes" if result.job.mode == "inference" else "epochs"
    steady = [e.wall_s for e in result.epochs[1:]]
    if not steady:
        return [f"no steady window: {len(result.epochs)} {passes} ran (the first holds compiling): run 2 or more"]
    seconds = sum(steady)
    steps = (result.steps_per_epoch or 0) * len(steady)
    short = []
    if seconds < limits.min_steady_s:
        short.append(f"{seconds:.2f} s, under {limits.min_steady_s:g} s")
    if result.steps_per_epoch and steps < limits.min_steady_steps:
        short.append(f"{steps} steps, under {limits.min_steady_steps}")
    if not short:
        return []
    scale = max(
        limits.min_steady_s / seconds if seconds > 0 else math.inf,
        limits.min_steady_steps / steps if steps else 1.0,
    )
    more_epochs = 1 + math.ceil(len(steady) * scale)
    # " and ", never "; ": a row joins a repeat's reasons with "; " (farm.rows), and reports split them there.
    line = f"steady window too short to time ({' and '.join(short)}): run {more_epochs} {passes}"
    samples = result.train_samples_used
    if samples and math.isfinite(scale):
        line += f", or {math.ceil(samples * scale):,} samples with {len(result.epochs)} {passes}"
    return [line]


def is_valid(result: JobResult) -> bool:
    """The recorded verdict, or for a result recorded before verdicts existed, its ``contended`` flag."""
    if result.valid is not None:
        return bool(result.valid)
    return not result.contended


def recorded_reasons(result: JobResult) -> list[str]:
    """Why the repeat is invalid, as recorded (older results: their contended reasons); empty when valid."""
    if is_valid(result):
        return []
    return list(result.invalid_reasons or result.contended_reasons or ["contended"])


def kind_of(reason: str) -> str:
    """The kind of one recorded reason, for counts in reports: contended, throttled, clock changed, too short."""
    if reason.startswith(("steady window too short", "no steady window")):
        return "too short"
    if reason.startswith("the CPU clock changed"):
        return "clock changed"
    if reason.startswith("the GPU was throttled"):
        return "throttled"
    return "contended"
