"""The job: one training run as a validated, hashable value.

A job's id is a hash of its canonical JSON, so re-submitting a sweep enqueues nothing new and a result can be
joined back to its spec forever. Operational settings that do not change what is measured (the time limit,
the attempt number) travel beside the spec in the envelope and are not part of the id.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from farm import defaults, workloads
from farm.errors import problems_from_validation
from farm.precision import Precision

SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
JOB_ID_RE = re.compile(r"^[0-9a-f]{20}$")

Device = Literal["cpu", "gpu"]
Backend = Literal["tensorflow", "jax", "torch"]
DataKind = Literal["real", "synthetic"]
InputPipeline = Literal["farm", "keras"]
Mode = Literal["train", "inference"]


def check_slug(value: str) -> str:
    if not SLUG_RE.match(value):
        raise ValueError(
            "must be a slug: letters, digits, '-', '_' and '.', starting with a letter or digit, at most 100 characters"
        )
    return value


class ServerScenario(BaseModel):
    """MLPerf's Server scenario for an inference job: requests arrive at random (Poisson) at a target rate and
    are answered one at a time; the job finds the highest rate whose 99th-percentile latency (queueing included)
    stays under ``p99_bound_ms`` (workers.server)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p99_bound_ms: StrictFloat | StrictInt = Field(gt=0, le=60_000, description="The latency bound on p99, ms.")
    requests: StrictInt = Field(default=200, ge=20, le=100_000, description="Requests sent at each rate tried.")
    tries: StrictInt = Field(default=8, ge=2, le=30, description="Rates tried at most in the search.")


class BatchSearch(BaseModel):
    """``batch_size: max``: find the largest batch the device holds, then measure at it (workers.batch_search).
    The search starts at the job's ``batch_size``, doubles it until a try runs out of memory (or ``limit``), then
    bisects between the largest that fit and the smallest that did not; each try trains two steps in a process
    of its own. At most ``tries`` tries and ``budget_s`` seconds of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: StrictInt = Field(default=defaults.MAX_BATCH_SIZE, ge=1, le=defaults.MAX_BATCH_SIZE)
    tries: StrictInt = Field(default=12, ge=1, le=40)
    budget_s: StrictFloat | StrictInt = Field(default=900, gt=0, le=defaults.MAX_TIME_LIMIT_S)


class Requirements(BaseModel):
    """Hardware a job insists on beyond its device kind; routed by derived queue tags."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu_model: str | None = Field(
        default=None, max_length=defaults.MAX_STRING_LENGTH, description="Substring of the GPU's name, e.g. 'H100'."
    )
    min_gpu_memory_gb: StrictFloat | None = Field(default=None, gt=0, le=100_000)
    host: str | None = Field(default=None, max_length=defaults.MAX_STRING_LENGTH)


ID_NEUTRAL_DEFAULTS: dict[str, Any] = {
    "mode": "train",
    "precision": None,
    "server": None,
    "batch_search": None,
    "devices": 1,
    "batch_per_device": None,
}
"""Spec fields that are part of a job's id only when they differ from this default (see canonical_json)."""


class JobSpec(BaseModel):
    """Everything that determines what a job measures. Validated on submit and again on the worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sweep: str = Field(description="Name of the sweep the job belongs to (part of its identity).")
    workload: str
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    device: Device = "cpu"
    backend: Backend = "tensorflow"
    # Counts and flags are strict: YAML's `true` or a quoted "3" is a mistake to report, not a 1 or a 3 to run.
    epochs: StrictInt = Field(default=1, ge=1, le=defaults.MAX_EPOCHS)
    batch_size: StrictInt = Field(default=defaults.BATCH_SIZE, ge=1, le=defaults.MAX_BATCH_SIZE)
    data: DataKind = "real"
    train_samples: StrictInt | None = Field(default=None, ge=1, le=defaults.MAX_SAMPLES)
    test_samples: StrictInt | None = Field(default=None, ge=1, le=defaults.MAX_SAMPLES)
    seed: StrictInt = Field(default=defaults.SEED, ge=0, le=2**31 - 1)
    repeat: StrictInt = Field(default=0, ge=0, lt=defaults.MAX_REPEATS)
    steps_per_execution: StrictInt = Field(default=defaults.STEPS_PER_EXECUTION, ge=1, le=100_000)
    jit_compile: StrictBool | Literal["auto"] = "auto"
    mixed_precision: StrictBool = False
    input_pipeline: InputPipeline = Field(
        default="farm",
        description="'farm': the farm's stall-free input pipeline; 'keras': numpy straight "
        "into fit(), as users run it.",
    )
    target_accuracy: StrictFloat | None = Field(default=None, gt=0, le=1)
    requires: Requirements = Field(default_factory=Requirements)
    precision: Precision | None = Field(
        default=None,
        description="Measure the cell to this precision instead of a fixed count of repeats (farm.precision): "
        "the farm adds repeats until the CI of its median throughput is narrow enough or a cap is reached.",
    )
    mode: Mode = Field(
        default="train",
        description="'train': fit() for `epochs` epochs; 'inference': `epochs` passes of predict() over the "
        "train samples at `batch_size` (throughput), then `test_samples` single requests at batch 1 (latency).",
    )

    devices: StrictInt = Field(
        default=1,
        ge=1,
        le=defaults.MAX_DEVICES_PER_JOB,
        description="Devices the job trains on, data-parallel (Keras' DataParallel on JAX, MirroredStrategy on "
        "TensorFlow): `batch_size` is the global batch, split evenly (each device takes batch_size / devices). "
        "On a CPU they are virtual devices sharing its cores (for testing); on GPUs, that many GPUs of one host.",
    )
    batch_per_device: StrictInt | None = Field(
        default=None,
        ge=1,
        le=defaults.MAX_BATCH_SIZE,
        description="The batch each device takes, stated instead of `batch_size` (the global batch, which becomes "
        "batch_per_device × devices): a sweep over `devices` then grows the global batch with the devices (weak "
        "scaling, as GPU vendors' tables do) instead of splitting one global batch (strong scaling).",
    )
    batch_search: BatchSearch | None = Field(
        default=None,
        description="Search for the largest batch the device holds and measure at it (`batch_size: max` sets "
        "this, starting at the default batch size); `batch_size` is where the search starts.",
    )
    server: ServerScenario | None = Field(
        default=None,
        description="With mode: inference, also MLPerf's Server scenario: Poisson arrivals, and the highest rate "
        "whose p99 latency stays under the bound (workers.server).",
    )

    @model_validator(mode="before")
    @classmethod
    def _batch_size_max(cls, data: Any) -> Any:
        """``batch_size: max`` is a search from the default batch size (with ``batch_search``'s defaults unless
        the job gives its own)."""
        if isinstance(data, dict) and data.get("batch_size") == "max":
            data = {**data, "batch_size": defaults.BATCH_SIZE}
            if data.get("batch_search") is None:
                data["batch_search"] = {}
        return data

    @model_validator(mode="before")
    @classmethod
    def _batch_per_device(cls, data: Any) -> Any:
        """``batch_per_device`` states the batch per device: the global ``batch_size`` is that times the devices.
        Both given must agree (a spec read back from the queue has both)."""
        if not isinstance(data, dict) or data.get("batch_per_device") is None:
            return data
        per, devices = data["batch_per_device"], data.get("devices", 1)
        if not isinstance(per, int) or isinstance(per, bool) or not isinstance(devices, int) or per < 1:
            return data  # the fields' own checks say what is wrong
        given = data.get("batch_size")
        if given == "max" or data.get("batch_search") is not None:
            raise ValueError("batch_size: max searches for the global batch: leave batch_per_device out")
        if given is not None and given != per * devices:
            raise ValueError(
                f"batch_size ({given}, the global batch) and batch_per_device ({per} × {devices} devices = "
                f"{per * devices}) disagree: give one of them"
            )
        return {**data, "batch_size": per * devices}

    @field_validator("sweep")
    @classmethod
    def _sweep_is_slug(cls, v: str) -> str:
        return check_slug(v)

    @field_validator("jit_compile", mode="before")
    @classmethod
    def _jit_flag(cls, v: Any) -> Any:
        # One clear message instead of pydantic's one per member of the union.
        if v is True or v is False or v == "auto":
            return v
        raise ValueError("must be true, false or 'auto'")

    @field_validator("workload")
    @classmethod
    def _known_workload(cls, v: str) -> str:
        try:
            workloads.get(v)
        except workloads.UnknownWorkload as e:
            raise ValueError(e.args[0]) from None
        return v

    @field_validator("params")
    @classmethod
    def _normalise_params(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # Validated by the workload's own model and stored with its defaults filled in, so two spellings of the
        # same configuration hash to the same id.
        name = info.data.get("workload")
        if name is None:  # the workload itself was invalid: that error is reported instead
            return v
        try:
            params: BaseModel = workloads.get(name).validate_params(v)
        except ValidationError as e:
            raise ValueError("; ".join(str(p) for p in problems_from_validation(e))) from None
        return params.model_dump(mode="json")

    @model_validator(mode="after")
    def _gpu_requirements_need_a_gpu(self) -> JobSpec:
        if self.device != "gpu" and (self.requires.gpu_model or self.requires.min_gpu_memory_gb):
            raise ValueError("requires.gpu_model and requires.min_gpu_memory_gb need device: gpu")
        return self

    @model_validator(mode="after")
    def _mode_and_data_fit_the_workload(self) -> JobSpec:
        if self.mode == "inference" and self.target_accuracy is not None:
            raise ValueError("target_accuracy needs mode: train (inference does not train)")
        if self.server is not None and self.mode != "inference":
            raise ValueError("server (the Server scenario) needs mode: inference")
        if self.devices > 1:
            if self.backend == "torch":
                raise ValueError("devices > 1 (data-parallel) needs backend jax or tensorflow; torch is not supported")
            if self.batch_size % self.devices and self.batch_search is None:
                raise ValueError(
                    f"batch_size {self.batch_size} is the global batch: it must split evenly over {self.devices} "
                    "devices"
                )
        if self.data == "real":
            spec = self.data_spec()
            if spec.real is None:
                raise ValueError(
                    f"data: real, but {self.workload} with these params trains on {spec.name} samples, which no "
                    "real dataset here holds; use data: synthetic"
                )
        return self

    def data_spec(self) -> workloads.DataSpec:
        """What this job's samples look like (its workload's data for its params)."""
        workload = workloads.get(self.workload)
        return workload.data_spec(workload.validate_params(self.params))

    @property
    def devices_per_job(self) -> int | None:
        """The devices a data-parallel job spans (a cell column); None for one device, as rows from before jobs
        could span several have it (reports read a missing value as 1)."""
        return self.devices if self.devices > 1 else None

    @property
    def batch_scope(self) -> str | None:
        """How the job stated its batch (a cell column): "device" for ``batch_per_device``; None for the global
        ``batch_size``, as rows from before the choice existed have it."""
        return "device" if self.batch_per_device is not None else None

    @property
    def per_device_batch(self) -> int:
        """The batch each device takes: the global ``batch_size`` split evenly over ``devices``."""
        return self.batch_size // self.devices

    @property
    def batch_max(self) -> bool | None:
        """True for a job that searches for its largest batch (a cell column: such a cell is not the cell of its
        starting batch size); None otherwise, as rows from before the search existed have it."""
        return True if self.batch_search is not None else None

    @property
    def server_p99_bound_ms(self) -> float | None:
        """The Server scenario's latency bound (a cell column: cells with other bounds are other cells)."""
        return float(self.server.p99_bound_ms) if self.server is not None else None

    @property
    def seed_effective(self) -> int:
        return self.seed + self.repeat

    def canonical_json(self) -> str:
        # Fields added after results were recorded are left out at their default, so a job that does not use
        # them keeps the id (and the recorded result) it always had.
        exclude = {name for name, default in ID_NEUTRAL_DEFAULTS.items() if getattr(self, name) == default}
        return json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True, separators=(",", ":"))

    @functools.cached_property
    def job_id(self) -> str:
        # Computed once per spec (it is frozen): a sweep of N jobs needs each id several times.
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:20]

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "job_id":  # derived, never set (pydantic lets a cached property be assigned)
            raise AttributeError("job_id is the hash of the spec and cannot be set")
        super().__setattr__(name, value)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> JobSpec:
        copied = super().model_copy(update=update, deep=deep)
        if update:
            copied.__dict__.pop("job_id", None)  # another spec: its own id
        return copied

    def cell(self) -> dict[str, Any]:
        """The sweep cell this job is a repeat of: everything but the repeat index."""
        d = self.model_dump(mode="json")
        d.pop("repeat")
        return d

    def cell_key(self) -> str:
        """:meth:`cell` as one comparable string: equal for every repeat of a cell."""
        return json.dumps(self.cell(), sort_keys=True, default=str)

    def default_time_limit_s(self) -> float:
        return min(
            defaults.MAX_TIME_LIMIT_S,
            max(defaults.JOB_TIME_LIMIT_FLOOR_S, defaults.JOB_TIME_LIMIT_PER_EPOCH_S * self.epochs),
        )


class JobEnvelope(BaseModel):
    """What travels on the queue: the spec, its claimed id, and operational settings outside the id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(pattern=JOB_ID_RE.pattern)
    sweep_id: str = Field(max_length=200)
    job: JobSpec
    time_limit_s: float = Field(gt=0, le=defaults.MAX_TIME_LIMIT_S)

    @model_validator(mode="after")
    def _id_matches_spec(self) -> JobEnvelope:
        if self.job.job_id != self.job_id:
            raise ValueError(f"job_id {self.job_id} does not match the spec's content hash {self.job.job_id}")
        return self

    @classmethod
    def for_job(cls, job: JobSpec, sweep_id: str, time_limit_s: float | None = None) -> JobEnvelope:
        return cls(
            job_id=job.job_id, sweep_id=sweep_id, job=job, time_limit_s=time_limit_s or job.default_time_limit_s()
        )


def sweep_name(sweep_id: str) -> str:
    """The name part of a sweep id (``NAME-DIGEST``, made by :func:`farm.sweep.load_sweep_data`): sweeps of one
    name may share jobs, since a job's id includes its sweep's name."""
    return sweep_id.rsplit("-", 1)[0]
