"""Data-parallel jobs: one job training on several devices with Keras 3's own distribution — ``DataParallel`` on
JAX, ``tf.distribute.MirroredStrategy`` on TensorFlow — the global batch (``batch_size``) split evenly over them.

On a CPU the devices are virtual (JAX's ``jax_num_cpu_devices``, TensorFlow's logical CPU devices): they share the
machine's cores, which is what the tests need and what makes their scaling efficiency well under 1 by design. Both
must be set before the backend starts, which in a training process is the first thing :func:`prepare_devices`
does; the fork server it came from imported the frameworks without starting a device.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from farm.job import JobSpec


class DevicesUnavailable(RuntimeError):
    """The job asks for more devices than its process sees."""


def prepare_devices(job: JobSpec) -> None:
    """Before the backend starts: a CPU job spanning N devices gets N virtual CPU devices. On JAX, no more than
    the cores the process may use: XLA's CPU runtime runs the devices' parts of a step on a pool of that many
    threads, and a step whose all-reduces block more threads than the pool has never ends (XLA aborts the
    process after 40 s): such a job fails at once, as the job's own failure, saying so."""
    if job.devices <= 1 or job.device != "cpu":
        return
    if job.backend == "jax":
        import jax

        cores = len(os.sched_getaffinity(0))
        if job.devices > cores:
            raise DevicesUnavailable(
                f"the job spans {job.devices} virtual CPU devices but its process may use {cores} core(s): XLA's "
                "CPU all-reduce can deadlock when devices outnumber the cores; ask for at most "
                f"{cores} here (a GPU box, or a CPU with more cores, runs more)"
            )

        jax.config.update("jax_num_cpu_devices", job.devices)
    elif job.backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(cpu[0], [tf.config.LogicalDeviceConfiguration()] * job.devices)


def distributed(job: JobSpec) -> AbstractContextManager[Any]:
    """The scope to build and compile the model in: on JAX the distribution is set for the process (the scope is
    empty), on TensorFlow it is the strategy's scope; nothing for a one-device job."""
    if job.devices <= 1:
        return nullcontext()
    if job.backend == "jax":
        import jax
        import keras

        devices = jax.devices()[: job.devices]
        _enough(job, len(devices))
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return nullcontext()
    import tensorflow as tf

    names = [d.name for d in tf.config.list_logical_devices("GPU" if job.device == "gpu" else "CPU")][: job.devices]
    _enough(job, len(names))
    return tf.distribute.MirroredStrategy(names).scope()


def _enough(job: JobSpec, seen: int) -> None:
    if seen < job.devices:
        raise DevicesUnavailable(f"the job spans {job.devices} {job.device.upper()} devices; its process sees {seen}")
