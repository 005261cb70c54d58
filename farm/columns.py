"""The result's columns, declared once: what each is, its unit, who fills it, how a report cell summarises it and
where it is shown.

Every list of columns in the farm is derived from :data:`COLUMNS`: the tidy row (:mod:`farm.rows`), the fields the
training process measures and the worker copies into :class:`farm.result.JobResult`
(:mod:`workers.result_build`), the columns a compact stored row shares (:mod:`farm.rowstore`), the float and count
columns of a frame, the report's summary columns (:mod:`farm.reports.aggregate`) and the figures the terminal,
``report.md`` and the HTML page show. A new measured figure is added where it is measured, here, and in a test.

A light module (no pandas, no pydantic): the submit side imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["given", "spec", "result", "phases", "row", "report"]
"""Where a row's value comes from: ``given`` (the job and sweep ids), ``spec`` (the job's spec: a sweep cell's
columns, repeat and seed), ``result`` (the result's attribute of that name: a measured field, or a property derived
from the measured fields), ``phases`` (the result's phase timings) or ``row`` (computed by :mod:`farm.rows`); a
``report`` figure is no row's: a report computes it per cell when it is made (a cost at today's prices)."""

Aggregate = Literal["none", "stats", "median", "first", "max"]
"""How a report cell summarises its repeats' values: ``stats`` (median, quartiles, mean, std, CV and the bootstrap
CI of the median: ``<name>_<stat>``), ``median`` (``<name>_median``), ``first`` (a figure every repeat of a cell
shares, e.g. the model's size: ``<name>``), ``max`` (``<name>_max``: the worst repeat, for headroom)."""

Place = Literal["terminal", "markdown", "html"]
"""Where a figure is shown besides the results CSV (which holds every column): ``farm report``'s table, the
sweep's ``report.md`` and its HTML page. A shown figure appears only where some cell has a value."""


@dataclass(frozen=True)
class Shown:
    """How a figure reads in a table: its title (with the unit as shown), the places, the factor from the stored
    unit to the shown one, significant digits, and whether it is a share shown as a percentage."""

    title: str
    where: frozenset[Place] = frozenset({"terminal", "markdown", "html"})
    short_title: str | None = None  # the terminal's (narrower) title
    scale: float = 1.0
    digits: int = 4
    percent: bool = False

    def title_in(self, place: Place) -> str:
        return self.short_title if place == "terminal" and self.short_title else self.title


@dataclass(frozen=True)
class Column:
    """One column of a result row. ``kind`` is the Python type of a value (every value may also be missing);
    ``unit`` what one unit of it is; ``child``: the training process measures it and the worker records it as it
    is (a field of ``JobResult``); ``row``: a column of the tidy row (a child's figure may live only in the full
    record); ``shared``: the same for many jobs (a compact stored row keeps it once per combination); ``cell``:
    part of a sweep cell's identity."""

    name: str
    kind: type
    doc: str
    source: Source = "result"
    unit: str | None = None
    child: bool = False
    row: bool = True
    shared: bool = False
    cell: bool = False
    aggregate: Aggregate = "none"
    shown: Shown | None = None

    @property
    def report_column(self) -> str:
        """The report column that holds this figure's per-cell summary (its median for ``stats``)."""
        return {"stats": f"{self.name}_median", "median": f"{self.name}_median", "max": f"{self.name}_max"}.get(
            self.aggregate, self.name
        )


def _cell(name: str, kind: type, doc: str) -> Column:
    return Column(name, kind, doc, source="spec", shared=True, cell=True)


COLUMNS: tuple[Column, ...] = (
    Column("job_id", str, "The job's id: a hash of its sweep and spec.", source="given"),
    Column("sweep_id", str, "The sweep's id.", source="given"),
    _cell("workload", str, "The workload's registered name."),
    _cell("params", str, "The workload's parameters, as canonical JSON."),
    _cell("device", str, "The device kind asked for: cpu or gpu."),
    _cell("backend", str, "Keras' backend: tensorflow, jax or torch."),
    _cell("epochs", int, "Epochs asked for."),
    _cell("batch_size", int, "Samples per training step."),
    _cell("data", str, "synthetic or real."),
    _cell("train_samples", int, "Training samples asked for (all when missing)."),
    _cell("test_samples", int, "Test samples asked for (all when missing)."),
    _cell("steps_per_execution", int, "Keras' steps_per_execution."),
    _cell("jit_compile", str, "Keras' jit_compile (true, false or auto)."),
    _cell("mixed_precision", bool, "Whether a mixed-precision policy was set."),
    _cell("input_pipeline", str, "How batches reach the model (arrays or tf.data)."),
    _cell("mode", str, "train or inference."),
    _cell("devices_per_job", int, "Devices one data-parallel job trained on (missing: one)."),
    _cell(
        "batch_scope",
        str,
        "How the job stated its batch: device (batch_per_device, the global batch growing with the devices); "
        "missing: the global batch_size.",
    ),
    _cell("batch_max", bool, "The job searched for the largest batch its device holds (batch_size: max)."),
    _cell("server_p99_bound_ms", float, "The Server scenario's bound on p99 latency, ms (inference jobs that ask)."),
    Column("repeat", int, "The repeat's index within its cell.", source="spec"),
    Column(
        "per_device_batch",
        int,
        "The batch each device took: batch_size (the global batch) over the devices the job spanned.",
        source="row",
        shared=True,
    ),
    Column("seed", int, "The seed the job ran with.", source="spec"),
    Column("status", str, "How the job ended (or where it is).", source="row", shared=True),
    Column("error", str, "A failed job's error, capped."),
    Column("attempt", int, "Which attempt this result is (a lost job runs again).", shared=True),
    Column("worker", str, "The worker that ran the job.", shared=True),
    Column("host", str, "The worker's host name.", shared=True),
    Column("device_name", str, "The device that ran the job, as its framework names it.", child=True, shared=True),
    Column("hardware_key", str, "Comparable hardware: device name and, for CPUs, usable cores.", shared=True),
    Column("software_key", str, "The software stack: framework versions, harness and workload.", shared=True),
    Column("keras_version", str, "Keras' version.", source="row", shared=True),
    Column("backend_version", str, "The backend framework's version.", source="row", shared=True),
    Column("python_version", str, "Python's version.", source="row", shared=True),
    Column("train_samples_used", int, "Training samples the job trained on.", unit="samples", child=True, shared=True),
    Column("test_samples_used", int, "Test samples evaluated (or requests sent).", child=True, row=False),
    Column(
        "first_epoch_s",
        float,
        "Wall seconds of the first epoch (tracing and compilation included).",
        unit="s",
        aggregate="median",
        shown=Shown("first epoch s", frozenset({"markdown", "html"}), digits=3),
    ),
    Column(
        "steady_epoch_s",
        float,
        "Median wall seconds of the epochs after the first.",
        unit="s",
        aggregate="stats",
    ),
    Column(
        "steady_samples_per_s",
        float,
        "Training samples per second over the steady epochs (the headline throughput).",
        unit="samples/s",
        aggregate="stats",
    ),
    Column("unit", str, "What one sample is (images, sequences, samples).", child=True, shared=True, aggregate="first"),
    Column(
        "steady_tokens_per_s",
        float,
        "Tokens per second in the steady window, for token workloads.",
        unit="tokens/s",
        aggregate="median",
        shown=Shown("tokens/s", frozenset({"markdown"})),
    ),
    Column("tokens_per_sample", int, "Tokens in one sample, for token workloads.", child=True, row=False),
    Column(
        "param_count",
        int,
        "The model's parameters.",
        child=True,
        shared=True,
        aggregate="first",
        shown=Shown("parameters", frozenset({"html"})),
    ),
    Column(
        "flops_per_sample",
        float,
        "Forward-pass FLOPs of one sample (workers.flops); missing where a layer with weights could not be counted.",
        unit="FLOP",
        child=True,
        shared=True,
        aggregate="first",
    ),
    Column(
        "steady_tflops",
        float,
        "Achieved TFLOP/s in the steady window (forward FLOPs × 3 when training).",
        unit="TFLOP/s",
        aggregate="median",
        shown=Shown("TFLOP/s", digits=3),
    ),
    Column("latency_requests", int, "Inference: timed batch-1 requests.", child=True, row=False),
    Column(
        "latency_p50_s",
        float,
        "Inference: median batch-1 latency.",
        unit="s",
        child=True,
        aggregate="median",
        shown=Shown("latency p50 ms", scale=1000, digits=3),
    ),
    Column("latency_p90_s", float, "Inference: 90th percentile latency.", unit="s", child=True, aggregate="median"),
    Column(
        "latency_p99_s",
        float,
        "Inference: 99th percentile latency.",
        unit="s",
        child=True,
        aggregate="median",
        shown=Shown("latency p99 ms", frozenset({"markdown"}), scale=1000, digits=3),
    ),
    Column("latency_mean_s", float, "Inference: mean latency.", unit="s", child=True, row=False),
    Column("steps_per_epoch", int, "Training steps in one epoch.", child=True, row=False),
    Column("step_p50_s", float, "Median steady-state step time.", unit="s", child=True),
    Column("step_p90_s", float, "90th percentile steady-state step time.", unit="s", child=True),
    Column("step_p99_s", float, "99th percentile steady-state step time.", unit="s", child=True),
    Column("train_s", float, "The whole fit(), first epoch included.", unit="s", source="phases"),
    Column("import_s", float, "Importing Keras and its backend.", unit="s", source="phases"),
    Column("data_s", float, "Loading and preparing the data.", unit="s", source="phases"),
    Column("build_s", float, "Building and compiling the model.", unit="s", source="phases"),
    Column("eval_s", float, "Evaluating on the test set.", unit="s", source="phases"),
    Column("total_s", float, "Spawn to result, on the training process's clock.", unit="s", source="phases"),
    Column("train_cpu_s", float, "CPU seconds of the whole fit().", unit="s", source="phases"),
    Column(
        "peak_host_mb",
        float,
        "Peak resident memory of the training process (the kernel's high-water mark, VmHWM).",
        unit="MiB",
        child=True,
        aggregate="max",
        shown=Shown("peak memory MiB", frozenset({"markdown", "html"}), digits=4),
    ),
    Column(
        "batch_size_used",
        int,
        "The batch size the steady figures were measured at: the largest that fit, for a batch_size: max job.",
        unit="samples",
        child=True,
        aggregate="median",
        shown=Shown("batch used"),
    ),
    Column(
        "batch_tries",
        str,
        "The batch search's tries, as JSON: a list of {batch, fit, s, error}.",
        child=True,
    ),
    Column(
        "server_qps",
        float,
        "The Server scenario's answer: the highest Poisson arrival rate whose p99 latency (queueing included) "
        "stayed under the bound (workers.server); missing when even the lowest rate tried missed it.",
        unit="requests/s",
        child=True,
        aggregate="median",
        shown=Shown("server QPS", digits=4),
    ),
    Column(
        "server_p99_s",
        float,
        "The p99 latency at that rate.",
        unit="s",
        child=True,
        aggregate="median",
        shown=Shown("server p99 ms", frozenset({"markdown", "html"}), scale=1000, digits=3),
    ),
    Column(
        "server_curve",
        str,
        "Every rate the Server search tried, as JSON: a list of {rate_qps, achieved_qps, p50_s, p90_s, p99_s, met} "
        "(the report's latency-against-load chart).",
        child=True,
    ),
    Column(
        "peak_device_mb",
        float,
        "Peak memory on the job's GPU by its framework's own counter (JAX, TensorFlow, torch); missing on a CPU "
        "job, whose device memory is the host's (peak_host_mb).",
        unit="MiB",
        child=True,
        aggregate="max",
        shown=Shown("peak GPU MiB", frozenset({"markdown", "html"}), digits=4),
    ),
    Column(
        "memory_capacity_mb",
        float,
        "What the job's memory is measured against: its GPU's memory, or for a CPU job its memory limit or the "
        "host's RAM, whichever is smaller.",
        unit="MiB",
        child=True,
        shared=True,
    ),
    Column(
        "memory_used",
        float,
        "The peak's share of the capacity: peak GPU memory over the GPU's, or for a CPU job the training "
        "process's peak over its limit or the host's RAM (the headroom a larger batch would have).",
        aggregate="max",
        shown=Shown("memory used", digits=3, percent=True),
    ),
    Column(
        "energy_j_per_sample",
        float,
        "Joules per sample in the steady epochs, by the devices' own counters (RAPL for a CPU job's packages, NVML "
        "for its GPU): measured in software, not at the wall and not MLPerf-compliant; missing where no counter "
        "was readable (energy_missing says why).",
        unit="J",
        aggregate="stats",
        shown=Shown("J/sample", digits=3),
    ),
    Column(
        "mean_power_w",
        float,
        "Mean watts of the counted devices over the steady epochs.",
        unit="W",
        aggregate="median",
        shown=Shown("watts", frozenset({"markdown", "html"}), digits=3),
    ),
    Column("energy_source", str, "The energy counters read (rapl package-0, nvml gpu).", child=True, shared=True),
    Column("energy_missing", str, "Why the job has no energy figure.", child=True, shared=True),
    Column(
        "precision_ci",
        float,
        "The cell's precision target: the largest relative half-width of its median throughput's 95% CI "
        "(farm.precision); missing for a cell measured a fixed number of times.",
        source="row",
        shared=True,
        aggregate="first",
    ),
    Column(
        "precision_min_repeats",
        int,
        "The valid repeats the cell's precision target needs at the least.",
        source="row",
        shared=True,
        aggregate="first",
    ),
    Column(
        "stalls", int, "Idle windows in the fit (CPU under 10% of a core for 2 s or more).", source="row", shared=True
    ),
    Column("stall_s", float, "Seconds of those idle windows.", unit="s", source="row"),
    Column("train_loss", float, "The last epoch's training loss.", child=True),
    Column("train_accuracy", float, "The last epoch's training accuracy.", child=True),
    Column("test_loss", float, "Loss on the test set.", child=True),
    Column(
        "test_accuracy",
        float,
        "Accuracy on the test set.",
        child=True,
        aggregate="median",
        shown=Shown("test accuracy", short_title="test acc", digits=3, percent=True),
    ),
    Column("epochs_to_target", int, "Epochs until the target accuracy was reached.", child=True, shared=True),
    Column(
        "time_to_target_s",
        float,
        "Training seconds until the target accuracy.",
        unit="s",
        child=True,
        aggregate="median",
    ),
    # What a cell costs at the lab's prices (farm.reports.cost): computed when a report is made, never stored.
    Column(
        "usd_per_million_samples",
        float,
        "US dollars a million samples cost at the cell's steady throughput and its hardware's price per hour.",
        source="report",
        row=False,
        unit="USD",
        shown=Shown("$/M samples", digits=3),
    ),
    Column(
        "usd_to_target",
        float,
        "US dollars of training until the target accuracy, at the hardware's price per hour.",
        source="report",
        row=False,
        unit="USD",
        shown=Shown("$ to target", frozenset({"markdown", "html"}), digits=3),
    ),
    Column("dataset_digest", str, "A digest of the data the job trained on.", child=True, shared=True),
    Column("started_at", str, "When the job's process started (ISO 8601, UTC).", source="row"),
    Column("finished_at", str, "When the result was built (ISO 8601, UTC).", source="row"),
    Column("contended", bool, "Another workload disturbed the steady window (left out of statistics)."),
    Column("contention_cpu", float, "Others' share of the job's cores in the steady window.", source="row"),
    Column("contended_reason", str, "Why the repeat is contended.", source="row"),
    Column(
        "epochs_disturbed",
        int,
        "Steady epochs another process disturbed, left out of the steady figure (the rest carry it).",
        source="row",
    ),
    Column("throttled", bool, "The GPU's clocks were held down in the steady window."),
    Column(
        "valid",
        bool,
        "The repeat's figures may be counted: a steady window long enough to time, nothing disturbed it "
        "(farm.validity). Reports leave invalid repeats out unless asked to keep them.",
        source="row",
    ),
    Column("invalid_reason", str, "Why the repeat is not valid (contended, throttled, too short, …).", source="row"),
    Column("quiet_wait_s", float, "Seconds the job waited for a quiet host before it trained.", unit="s"),
    Column("benchfarm_version", str, "The harness's version (and commit).", source="row", shared=True),
    Column("workload_version", str, "A hash of the workload's definition.", source="row", shared=True),
)

BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}

#: The tidy row's columns, in order.
RESULT_COLUMNS: list[str] = [c.name for c in COLUMNS if c.row]
#: The columns that identify a sweep cell (everything the job varies except the repeat index); reports group by
#: these plus the hardware that actually ran the job.
CELL_COLUMNS: list[str] = [c.name for c in COLUMNS if c.cell]
#: Fields the training process measures and the worker records as they are.
CHILD_FIELDS: tuple[Column, ...] = tuple(c for c in COLUMNS if c.child)
#: Row columns that many rows share (a compact stored row keeps them once per combination).
SHARED_COLUMNS: list[str] = [c.name for c in COLUMNS if c.shared and c.row]
#: Row columns that hold measurements (floats; missing → NaN) and counts (integers where present).
FLOAT_COLUMNS: list[str] = [c.name for c in COLUMNS if c.row and c.kind is float]
INT_COLUMNS: list[str] = [c.name for c in COLUMNS if c.row and c.kind is int]
#: Row columns that count things (written as integers even where some rows have none).
COUNT_COLUMNS: frozenset[str] = frozenset(c.name for c in COLUMNS if c.kind is int)


def aggregated(how: Aggregate) -> list[str]:
    """The row columns a report summarises ``how``, in schema order."""
    return [c.name for c in COLUMNS if c.row and c.aggregate == how]


def shown_in(place: Place) -> list[Column]:
    """The figures ``place`` shows (beside its fixed columns), in schema order."""
    return [c for c in COLUMNS if c.shown is not None and place in c.shown.where]


def format_figure(column: Column, value: object) -> str:
    """A figure as every table shows it: scaled to the shown unit, integers whole, others to the column's
    significant digits with thousands separated, a share as a percentage; empty when missing."""
    if isinstance(value, bool):
        return ""
    try:
        x = float(value)  # type: ignore[arg-type]  # numbers of any kind (numpy's too); anything else is missing
    except (TypeError, ValueError):
        return ""
    if x != x:
        return ""
    shown = column.shown or Shown(column.name)
    if shown.percent:
        return f"{100 * x:.1f}%"
    x *= shown.scale
    if x.is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.0f}" if abs(x) >= 10 ** (shown.digits - 1) else f"{x:,.{shown.digits}g}"
