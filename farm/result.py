"""What a job leaves behind: its state while it lives and one result record when it ends.

A result is written once per job id into the farm's own store (never Celery's result backend, which
expires). Every field a report uses is here, with units in the name.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from farm import defaults
from farm.columns import CHILD_FIELDS
from farm.job import JobSpec

RESULT_SCHEMA_VERSION = 1

# The models below are built (pydantic's validators and serializers) on first use, not on import: most commands
# import this module for JobStatus and never touch a result record (``farm status``, ``farm submit``).


class JobStatus(str, Enum):
    """The states a job can be in. ``lost`` means its worker died and the job was put back on the queue."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    cancelled = "cancelled"
    lost = "lost"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.timed_out, JobStatus.cancelled})


def utcnow() -> datetime:
    return datetime.now(UTC)


def cap_error(error: str | None, limit: int = defaults.ERROR_MAX_CHARS) -> str | None:
    """An error message of at most about ``limit`` characters: its head, then how many were left out. A job may
    raise an exception of any size (20 MB seen); the result, its row and every CSV hold this bounded form."""
    if error is None or len(error) <= limit + _CAP_SLACK:  # the slack: a capped error is left as it is
        return error
    return f"{error[:limit]}… ({len(error) - limit} more characters)"


_CAP_SLACK = 40
"""Room for :func:`cap_error`'s own note, so a result read back and validated again keeps its error as it was."""


class EpochRecord(BaseModel):
    """One epoch as the timing callback saw it: wall and process-CPU seconds and Keras' logged metrics."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    epoch: int
    wall_s: float
    cpu_s: float | None = None
    val_s: float | None = Field(default=None, description="Validation time, excluded from wall_s.")
    disturbed: bool | None = Field(
        default=None,
        description="Another process disturbed this steady epoch beyond the contention threshold "
        "(workers.contention): the steady figure leaves it out. None: the first epoch, or recorded before epochs "
        "were judged.",
    )
    cpu_others: float | None = Field(
        default=None, description="Others' share of the job's cores during this steady epoch (workers.contention)."
    )
    energy_j: float | None = Field(
        default=None,
        description="Joules the job's devices used during this epoch by their own counters (workers.energy: RAPL "
        "for a CPU job's packages, NVML for its GPU); None where no counter was readable.",
    )
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


class Phases(BaseModel):
    """Wall seconds of each phase of the child's life (cpu seconds beside them where measured)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    spawn_s: float | None = Field(default=None, description="Supervisor's spawn → child's first line of Python.")
    import_s: float | None = Field(default=None, description="Importing Keras and its backend.")
    wait_s: float | None = Field(default=None, description="A pre-started child waiting for its job.")
    data_s: float | None = Field(default=None, description="Loading (from cache) and preparing the data.")
    build_s: float | None = Field(default=None, description="Building and compiling the model.")
    train_s: float | None = Field(default=None, description="The whole fit(), first epoch included.")
    eval_s: float | None = Field(default=None, description="Evaluating on the test set.")
    other_s: float | None = Field(default=None, description="What the phases above do not account for.")
    total_s: float | None = Field(default=None, description="Spawn → result, on the child's clock.")
    exit_s: float | None = Field(default=None, description="Result → the child's exit, as the supervisor saw it.")
    import_cpu_s: float | None = None
    data_cpu_s: float | None = None
    build_cpu_s: float | None = None
    train_cpu_s: float | None = None
    eval_cpu_s: float | None = None


class JobResultCore(BaseModel):
    """The record of one finished job (succeeded or not): what the worker knows about the run. The figures the
    training process measured are fields too, declared in :data:`farm.columns.COLUMNS` (``child=True``) and added
    to :class:`JobResult` from there."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    schema_version: int = RESULT_SCHEMA_VERSION
    job_id: str
    sweep_id: str
    job: JobSpec
    status: JobStatus
    error: str | None = None
    attempt: int = 1
    worker: str | None = None
    host: str | None = None
    started_at: datetime | None = None
    finished_at: datetime = Field(default_factory=utcnow)
    versions: dict[str, str] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    epochs: list[EpochRecord] = Field(default_factory=list)
    phases: Phases = Field(default_factory=Phases)
    stalls: list[dict[str, Any]] = Field(
        default_factory=list, description="Idle windows (CPU under 10% of a core for 2 s or more)."
    )
    timeline: dict[str, float | None] = Field(
        default_factory=dict,
        description="Wall-clock moments (epoch seconds) of the job's life: received_at, "
        "spawned_at, job_started_at, first_step_at, train_end_at, exited_at, recorded_at.",
    )
    contention: dict[str, Any] = Field(
        default_factory=dict,
        description="What else used the machine during the steady window (see "
        "workers.contention): cpu_others, cpu_others_peak, cpu_steal, cpu_own (fractions of the job's cores), "
        "cpu_pressure (PSI share of the window), cpu_freq_ratio, window_s, cores, samples, sampler_cpu_s, and "
        "gpu (NVML: other_processes, other_memory_mb, utilization, sm_clock_ratio, throttle_reasons).",
    )
    contended: bool = Field(
        default=False,
        description="Another workload disturbed the steady window beyond "
        "the farm's threshold: reports leave this repeat out unless asked to keep it.",
    )
    contended_reasons: list[str] = Field(default_factory=list)
    throttled: bool = Field(default=False, description="The GPU's clocks were held down (heat, power) in the window.")
    valid: bool | None = Field(
        default=None,
        description="The worker's verdict on a succeeded repeat (farm.validity): its steady window was long enough "
        "to time and nothing disturbed it. None: recorded before verdicts existed (then ``contended`` decides).",
    )
    invalid_reasons: list[str] = Field(default_factory=list, description="Why the repeat is not valid, one per cause.")
    quiet_wait_s: float | None = Field(
        default=None,
        description="Seconds the job waited for a quiet host before it trained (workers.quiet); None: no wait "
        "was asked for.",
    )

    if TYPE_CHECKING:  # the measured fields, added from the schema below; typed loosely for the checker

        def __getattr__(self, name: str) -> Any: ...

    @field_validator("error")
    @classmethod
    def _bounded_error(cls, value: str | None) -> str | None:
        return cap_error(value)

    # Derived figures: computed from ``epochs`` so they can never disagree with it.
    @property
    def first_epoch_s(self) -> float | None:
        return self.epochs[0].wall_s if self.epochs else None

    @property
    def steady_epochs(self) -> list[EpochRecord]:
        """The epochs the steady figure rests on: those after the first (which holds tracing/compilation) that
        no other process disturbed; all of them when every one was disturbed (a contended repeat still has a
        figure, which reports leave out unless asked)."""
        rest = self.epochs[1:]
        return [e for e in rest if not e.disturbed] or rest

    @property
    def steady_epoch_s(self) -> float | None:
        """Median wall time of the steady epochs (:attr:`steady_epochs`)."""
        rest = [e.wall_s for e in self.steady_epochs]
        return statistics.median(rest) if rest else None

    @property
    def steady_samples_per_s(self) -> float | None:
        s = self.steady_epoch_s
        if not s or not self.train_samples_used:
            return None
        return float(self.train_samples_used / s)

    @property
    def steady_tokens_per_s(self) -> float | None:
        rate = self.steady_samples_per_s
        return rate * self.tokens_per_sample if rate is not None and self.tokens_per_sample else None

    @property
    def steady_tflops(self) -> float | None:
        """Achieved TFLOP/s in the steady window: forward FLOPs per sample × samples/s, × 3 in training (the
        backward pass costs about twice the forward: the usual convention, e.g. in MLPerf's and PaLM's MFU)."""
        rate = self.steady_samples_per_s
        if rate is None or not self.flops_per_sample:
            return None
        return float(self.flops_per_sample * (1 if self.job.mode == "inference" else 3) * rate / 1e12)

    @property
    def memory_used(self) -> float | None:
        """The peak memory's share of the capacity it is measured against (``memory_capacity_mb``): the GPU's for
        a GPU job, the host's (or the job's limit) for a CPU job."""
        peak = self.peak_device_mb if self.job.device == "gpu" else self.peak_host_mb
        capacity = self.memory_capacity_mb
        return float(peak / capacity) if peak and capacity else None

    @property
    def energy_j_per_sample(self) -> float | None:
        """Joules per training sample in the steady epochs (:attr:`steady_epochs`): the median epoch's energy over
        the samples an epoch trains on; None where an epoch's energy was not measured."""
        joules = [e.energy_j for e in self.steady_epochs]
        if not joules or any(j is None for j in joules) or not self.train_samples_used:
            return None
        return float(statistics.median(j for j in joules if j is not None) / self.train_samples_used)

    @property
    def mean_power_w(self) -> float | None:
        """Mean watts over the steady epochs: their energy over their wall time."""
        epochs = self.steady_epochs
        if not epochs or any(e.energy_j is None for e in epochs):
            return None
        seconds = sum(e.wall_s for e in epochs)
        return float(sum(e.energy_j or 0.0 for e in epochs) / seconds) if seconds > 0 else None

    @property
    def hardware_key(self) -> str | None:
        return self.environment.get("hardware_key")

    @property
    def software_key(self) -> str | None:
        return self.environment.get("software_key")


def _measured_fields() -> dict[str, Any]:
    """The fields the training process measures, as pydantic declares them: each optional, None when absent."""
    return {c.name: (c.kind | None, Field(default=None, description=c.doc)) for c in CHILD_FIELDS}


if TYPE_CHECKING:
    JobResult = JobResultCore
else:
    JobResult = create_model(
        "JobResult", __base__=JobResultCore, __module__=__name__, __doc__=JobResultCore.__doc__, **_measured_fields()
    )
