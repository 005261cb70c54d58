"""The training itself, run inside the child process after Keras is imported with its backend.

Everything framework-specific is here: seeding the active backend, the input pipeline, device naming,
building, fitting and evaluating. The returned dict becomes most of the job's result.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm import workloads
from farm.fingerprint import cpu_model
from farm.job import JobEnvelope, JobSpec
from farm.precision import contention_threshold
from farm.settings import FarmSettings
from workers.contention import ContentionSampler, settle
from workers.distribution import distributed, prepare_devices
from workers.energy import EnergySampler, counters_for, energy_figures, record_energy
from workers.gpu_contention import gpu_probe, gpu_summary, sampled_peak_mb
from workers.quiet import wait_for_quiet
from workers.timing import IdleSampler, PhaseClock, epoch_callback, steps_per_call

Emit = Callable[[dict[str, Any]], None]


def seed_everything(seed: int, backend: str) -> None:
    """What ``keras.utils.set_random_seed`` does, without importing TensorFlow under other backends."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        from keras.src.backend.common import global_state
        from keras.src.random import seed_generator

        global_state.set_global_attribute("global_random_seed", seed)
        global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    except ImportError:  # a Keras without these internals: the Python/NumPy seeds still hold
        pass
    if backend == "tensorflow":
        import tensorflow as tf

        tf.random.set_seed(seed)
    elif backend == "torch":
        import torch

        torch.manual_seed(seed)


def device_name(device: str, backend: str) -> str:
    """The name of the device the job actually ran on, as the framework reports it."""
    if device == "cpu":
        return cpu_model()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
        elif backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            if gpus:
                return gpus[0].device_kind
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0)
    except Exception as e:  # noqa: BLE001 - naming must never fail a job
        return f"gpu (unnamed: {e})"
    raise RuntimeError(f"the job asks for a GPU but the {backend} backend sees none in this process")


def tf_dataset(x: Any, y: Any, batch_size: int, seed: int) -> Any:
    """A tf.data pipeline that shuffles indices and gathers batches, with autotune off.

    Keras' own numpy path builds a tf.data iterator per epoch whose teardown waits for its autotune thread:
    measured here as 3–50 s of idle time at epoch boundaries. This pipeline has no autotune thread.
    """
    import tensorflow as tf

    n = x.shape[0]
    xs, ys = tf.constant(x), tf.constant(y)
    ds = (
        tf.data.Dataset.range(n)
        .shuffle(n, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(lambda idx: (tf.gather(xs, idx), tf.gather(ys, idx)), num_parallel_calls=1)
    )
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False
    return ds.with_options(options).prefetch(1)


def use_compile_cache(backend: str, cache_dir: Path) -> str | None:
    """Point the backend's persistent compilation cache into ``cache_dir``; the directory used, or None.

    JAX keys each entry by the computation, the compile options, its own version and the device, so a hit is
    the executable a compile would have produced. It saves the repeated compiles of short jobs (the model's
    initialisers, the train and eval steps) and only touches the first epoch: steady epochs run compiled
    code either way. Other backends have no such cache: None.
    """
    if backend != "jax":
        return None
    import jax

    path = cache_dir / "jax"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(path)


def train(envelope: JobEnvelope, settings: FarmSettings, emit: Emit) -> dict[str, Any]:
    """Run the job (training or inference, by its ``mode``) and return what it measured: load the data, build
    the model, run the measured passes, evaluate, collect the figures; ``clock`` times each phase."""
    # Imported before the clock starts, so that no phase's time holds these imports.
    import keras  # noqa: F401

    from workers import datasets, inference  # noqa: F401

    job = envelope.job
    prepare_devices(job)  # before anything starts the backend: a data-parallel CPU job's virtual devices
    workload = workloads.get(job.workload)
    params = workload.validate_params(job.params)
    spec = workload.data_spec(params)
    clock = PhaseClock()

    with clock.phase("data"):
        data = load_data(job, settings, workload, spec)
    emit({"event": "phase", "phase": "data", "s": clock.wall["data"]})

    with clock.phase("build"):
        built = build_and_compile(job, settings, workload, params, data, emit)
    emit({"event": "phase", "phase": "build", "s": clock.wall["build"]})

    explicit = "contention_cpu_threshold" in settings.model_fields_set  # the worker passes it on only when set
    threshold = contention_threshold(job.precision, settings.contention_cpu_threshold, explicit)
    probe = gpu_probe(job.device, count=job.devices)
    waited = wait_for_quiet(threshold, settings.quiet_wait_s, emit, gpu=probe)
    timer = epoch_callback(emit, job.epochs)
    sampler = IdleSampler().start()
    watch = ContentionSampler(gpu_probe=probe).start()
    counters, no_energy = counters_for(job.device, probe)
    meter = EnergySampler(counters).start()
    with clock.phase("train"):
        run_measured_passes(built.model, data, job, timer)
    meter.stop()
    watch.stop()
    record_energy(meter, timer.records, timer.epoch_bounds)
    emit({"event": "trained"})  # the measured part is over: the supervisor may start the next job's process
    with clock.phase("eval"):
        evaluated = evaluate(built.model, data, job)
    sampler.stop()

    from workers.memory import limit_from_env, memory_capacity_mb, peak_device_mb, peak_host_mb

    out: dict[str, Any] = {
        **describe_run(job, workload, spec, data, built),
        **measured_figures(clock, timer, sampler, watch, threshold),
        **(waited.figures() if waited is not None else {}),
        **final_figures(timer.records, evaluated),
        **energy_figures(counters, no_energy),
        "peak_device_mb": peak_device_mb(job.backend, job.device, job.devices, sampled_peak_mb(watch.gpu_readings())),
        "memory_capacity_mb": memory_capacity_mb(job.device, probe, limit_from_env()),
        "peak_host_mb": peak_host_mb(),  # last: the high-water mark over data, build, fit and evaluation
    }
    out.update(time_to_target(timer.records, job.target_accuracy))
    return out


@dataclass
class JobData:
    """The job's data set, with its arrays as the workload prepared them for the model."""

    ds: Any
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any


@dataclass
class BuiltModel:
    """The compiled model and what building it found out about the run."""

    model: Any
    device_name: str
    compile_cache: str | None
    size: dict[str, Any]


def load_data(job: JobSpec, settings: FarmSettings, workload: Any, spec: Any) -> JobData:
    """The data phase: load (or fetch) the data set and let the workload prepare its arrays."""
    from workers.datasets import load_dataset
    from workers.inference import DEFAULT_LATENCY_REQUESTS

    ds = load_dataset(
        spec,
        job.data,
        data_dir=settings.data_dir,
        cache_dir=settings.cache_dir,
        seed=job.seed_effective,
        train_samples=job.train_samples,
        # Inference sends the test samples one by one: a whole test set at batch 1 would take hours on a
        # large model, so it has its own default.
        test_samples=job.test_samples or (DEFAULT_LATENCY_REQUESTS if job.mode == "inference" else None),
        allow_download=settings.allow_download,
    )
    x_train, y_train = workload.prepare(ds.x_train, ds.y_train)
    x_test, y_test = workload.prepare(ds.x_test, ds.y_test)
    return JobData(ds, x_train, y_train, x_test, y_test)


def build_and_compile(
    job: JobSpec, settings: FarmSettings, workload: Any, params: Any, data: JobData, emit: Emit
) -> BuiltModel:
    """The build phase: set up the backend (compile cache, device, seeds, precision), then build and compile the
    model and check that it fits this job's memory."""
    import keras

    compiled = settings.compile_cache_dir or settings.cache_dir / "compiled"
    compile_cache = use_compile_cache(job.backend, compiled) if settings.compile_cache else None
    name = device_name(job.device, job.backend)
    seed_everything(job.seed_effective, job.backend)
    if job.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16" if job.device == "gpu" else "mixed_bfloat16")
    with distributed(job):  # a data-parallel job's model is built and compiled across its devices
        model, optimizer, loss = workload.build_model(params, tuple(data.ds.input_shape), data.ds.num_classes)
        model.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=["accuracy"],
            steps_per_execution=job.steps_per_execution,
            jit_compile=job.jit_compile,
        )
    size = model_size(model)
    from workers.memory import check_fits

    # Before fit allocates anything: a model too large for this job's memory fails here, with its estimate.
    check_fits(model, min(job.batch_size, len(data.x_train)), optimizer, job.mode != "inference", job.device, emit)
    return BuiltModel(model, name, compile_cache, size)


def run_measured_passes(model: Any, data: JobData, job: JobSpec, timer: Any) -> None:
    """The measured phase: inference's offline throughput passes, or the training epochs (validated each epoch
    only when the job has a target accuracy to reach)."""
    if job.mode == "inference":
        measure_offline(model, data.x_train, job, job.seed_effective, timer)
    else:
        validation = (data.x_test, data.y_test) if job.target_accuracy is not None else None
        fit(model, data.x_train, data.y_train, validation, job, timer)


def evaluate(model: Any, data: JobData, job: JobSpec) -> dict[str, Any]:
    """The eval phase: inference's single-stream latencies (and the Server scenario's search, when the job asks
    for it), or the trained model's test loss and accuracy."""
    if job.mode == "inference":
        from workers.inference import single_stream

        latency = single_stream(model, data.x_test, data.y_test, len(data.x_test))
        if job.server is None:
            return latency
        from workers.server import server_search

        found = server_search(
            model,
            data.x_test,
            bound_s=float(job.server.p99_bound_ms) / 1000,
            requests=job.server.requests,
            tries=job.server.tries,
            service_s=latency.get("latency_p50_s"),
            seed=job.seed_effective,
        )
        return {**latency, **found}
    test_loss, test_acc = model.evaluate(data.x_test, data.y_test, batch_size=job.batch_size, verbose=0)
    return {"test_loss": float(test_loss), "test_accuracy": float(test_acc)}


def describe_run(job: JobSpec, workload: Any, spec: Any, data: JobData, built: BuiltModel) -> dict[str, Any]:
    """What ran: the device and precision, the data and how much of it, and the model's size."""
    import keras

    return {
        "device_name": built.device_name,
        "dtype_policy": keras.config.dtype_policy().name,
        "compile_cache": built.compile_cache,
        "framework_sees_gpu": True if job.device == "gpu" else None,
        "dataset_digest": data.ds.digest,
        "data_name": spec.name,
        "unit": workload.unit,
        "tokens_per_sample": spec.tokens_per_sample,
        **built.size,
        "train_samples_used": int(data.x_train.shape[0]),
        "test_samples_used": int(data.x_test.shape[0]),
    }


def measured_figures(
    clock: PhaseClock, timer: Any, sampler: IdleSampler, watch: ContentionSampler, cpu_threshold: float
) -> dict[str, Any]:
    """The timings: per epoch, per phase, the steady steps, and the idle and contended windows within them."""
    return {
        "epochs": timer.records,
        "phases": phase_times(clock),
        "timeline": {"first_step_at": timer.first_step_at, "train_end_at": timer.train_end_at},
        "stalls": locate_stalls(sampler.stalls(), clock, timer.epoch_bounds),
        "contention": judge_epochs(timer, clock, watch, cpu_threshold),
        **step_percentiles(timer.step_times(first_epoch=1)),
        "steps_per_epoch": len(timer.step_starts[0]) * steps_per_call(timer.step_starts[0])
        if timer.step_starts
        else None,
    }


def judge_epochs(timer: Any, clock: PhaseClock, watch: ContentionSampler, cpu_threshold: float) -> dict[str, Any]:
    """The steady window's contention verdict, with each steady epoch judged on its own and marked ``disturbed``
    in its record (the result's steady figure leaves those out: ``farm.result.JobResult.steady_epoch_s``)."""
    steady = watch.window(*steady_window(timer.epoch_bounds, clock.bounds["train"]), cpu_threshold, gpu_summary)
    per_epoch = watch.epochs(timer.epoch_bounds[1:], cpu_threshold, gpu_summary)
    for record, verdict in zip(timer.records[1:], per_epoch, strict=False):
        record["disturbed"] = verdict["contended"]
        record["cpu_others"] = verdict["figures"].get("cpu_others")
    return settle(steady, per_epoch)


def phase_times(clock: PhaseClock) -> dict[str, float]:
    """Each phase's wall time, then each phase's CPU time."""
    return {
        "data_s": clock.wall["data"],
        "build_s": clock.wall["build"],
        "train_s": clock.wall["train"],
        "eval_s": clock.wall["eval"],
        "data_cpu_s": clock.cpu["data"],
        "build_cpu_s": clock.cpu["build"],
        "train_cpu_s": clock.cpu["train"],
        "eval_cpu_s": clock.cpu["eval"],
    }


def final_figures(epochs: list[dict[str, Any]], evaluated: dict[str, Any]) -> dict[str, Any]:
    """The last epoch's training loss and accuracy, then what evaluation measured."""
    last = epochs[-1] if epochs else {}
    return {"train_loss": last.get("loss"), "train_accuracy": last.get("accuracy"), **evaluated}


def time_to_target(epochs: list[dict[str, Any]], target_accuracy: float | None) -> dict[str, Any]:
    """The first epoch whose validation accuracy reached the job's target, and the training time up to its end;
    empty when the job has no target or never reached it."""
    if target_accuracy is None:
        return {}
    elapsed = 0.0
    for rec in epochs:
        elapsed += rec["wall_s"]
        if rec.get("val_accuracy") is not None and rec["val_accuracy"] >= target_accuracy:
            return {"epochs_to_target": rec["epoch"], "time_to_target_s": elapsed}
    return {}


def fit(model: Any, x: Any, y: Any, validation: tuple[Any, Any] | None, job: JobSpec, timer: Any) -> None:
    """Train for ``job.epochs`` epochs through the job's input pipeline, timed by ``timer``.

    Only how the batches come differs between the pipelines (the farm's tf.data dataset, batched and shuffled
    by itself, or numpy batched and shuffled by Keras); epochs, timing and validation are the same for both."""
    same_for_both = {
        "epochs": job.epochs,
        "verbose": 0,
        "callbacks": [timer],
        "validation_data": validation,
        "validation_batch_size": job.batch_size,
    }
    if job.backend == "tensorflow" and job.input_pipeline == "farm":
        model.fit(tf_dataset(x, y, job.batch_size, job.seed_effective), shuffle=False, **same_for_both)
    else:
        model.fit(x, y, batch_size=job.batch_size, shuffle=True, **same_for_both)


def measure_offline(model: Any, x: Any, job: JobSpec, seed: int, timer: Any) -> None:
    """Inference's throughput passes through the job's input pipeline (the farm's tf.data pipeline, in
    order, under TensorFlow; numpy straight into ``predict`` otherwise)."""
    from workers.inference import offline_passes

    if job.backend == "tensorflow" and job.input_pipeline == "farm":
        offline_passes(model, tf_batches(x, job.batch_size), job.epochs, None, timer)
    else:
        offline_passes(model, x, job.epochs, job.batch_size, timer)


def tf_batches(x: Any, batch_size: int) -> Any:
    """Inference's input as a tf.data pipeline: the samples in order, batched, autotune off (see
    :func:`tf_dataset`)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False
    return tf.data.Dataset.from_tensor_slices(x).batch(batch_size).with_options(options).prefetch(1)


def model_size(model: Any) -> dict[str, Any]:
    """The model's parameter count and forward FLOPs per sample where every layer with weights can be counted
    (:mod:`workers.flops`); a count that fails never fails the job."""
    out: dict[str, Any] = {"param_count": int(model.count_params()), "flops_per_sample": None}
    try:
        from workers.flops import count_flops

        flops = count_flops(model)
        out["flops_per_sample"] = flops.forward_per_sample
        if flops.uncounted:
            out["flops_uncounted"] = sorted(set(flops.uncounted))
    except Exception as e:  # noqa: BLE001 - an informative figure, never fatal
        out["flops_uncounted"] = [f"{type(e).__name__}: {e}"]
    return out


def steady_window(epoch_bounds: list[tuple[float, float]], train: tuple[float, float]) -> tuple[float, float]:
    """The measured window: from the second epoch's start to the last epoch's training end (the first epoch
    holds compilation and is not part of the steady figures); the whole fit when there is one epoch."""
    if len(epoch_bounds) >= 2:
        return epoch_bounds[1][0], epoch_bounds[-1][1]
    return epoch_bounds[0] if epoch_bounds else train


def step_percentiles(steps: list[float]) -> dict[str, float | None]:
    """p50/p90/p99 of the steady-state step times (the epochs after the first)."""
    if not steps:
        return {"step_p50_s": None, "step_p90_s": None, "step_p99_s": None}
    import numpy as np

    p50, p90, p99 = np.percentile(np.asarray(steps), [50, 90, 99])
    return {"step_p50_s": float(p50), "step_p90_s": float(p90), "step_p99_s": float(p99)}


def locate_stalls(
    stalls: list[tuple[float, float]], clock: PhaseClock, epoch_bounds: list[tuple[float, float]]
) -> list[dict[str, Any]]:
    """Say where each idle window fell: in which epoch, between epochs, after the last, or in evaluation."""
    train0 = clock.bounds["train"][0]
    out = []
    for start, duration in stalls:
        where = "eval" if start >= clock.bounds["eval"][0] else "fit"
        epoch = next((i + 1 for i, (b, e) in enumerate(epoch_bounds) if b <= start < e), None)
        if where == "fit" and epoch is None:
            where = "after last epoch" if epoch_bounds and start >= epoch_bounds[-1][1] else "between epochs"
        out.append({"at_s": start - train0, "duration_s": duration, "where": where, "epoch": epoch})
    return out


def framework_build(backend: str) -> dict[str, str]:
    """The CUDA/cuDNN versions the framework was built with, where it says (empty for CPU-only builds)."""
    info: dict[str, str] = {}
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            build = tf.sysconfig.get_build_info()
            for key in ("cuda_version", "cudnn_version"):
                if build.get(key):
                    info[key.split("_")[0]] = str(build[key])
        elif backend == "torch":
            import torch

            if torch.version.cuda:
                info["cuda"] = str(torch.version.cuda)
            # The cuDNN torch was built with, in cudnn.version()'s format. cudnn.version() itself would call
            # cuInit (seen on an H100), after which a child forked from the fork server cannot use CUDA.
            compiled = getattr(getattr(torch._C, "_cudnn", None), "getCompileVersion", None)
            if compiled is not None and torch.backends.cudnn.is_available():
                major, minor, patch = compiled()
                info["cudnn"] = str(major * 10000 + minor * 100 + patch)
        elif backend == "jax":
            import jax

            info["jaxlib"] = getattr(jax.lib, "__version__", "") or ""
            try:
                from jax._src.lib import cuda_versions  # present only in CUDA builds

                if cuda_versions is not None:
                    info["cuda"] = str(cuda_versions.cuda_runtime_get_version())
                    info["cudnn"] = str(cuda_versions.cudnn_get_version())
            except Exception:  # noqa: BLE001 - a CPU-only jaxlib
                pass
    except Exception:  # noqa: BLE001 - build details are informative, never fatal
        pass
    return {k: v for k, v in info.items() if v}


def framework_versions(backend: str) -> dict[str, str]:
    import platform
    from importlib import metadata

    import keras

    versions = {"python": platform.python_version(), "keras": keras.__version__}
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    try:
        versions[backend] = __import__(module).__version__
    except Exception:  # noqa: BLE001 - an import that fails in any way: ask the metadata
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[backend] = metadata.version(module)
    return versions
