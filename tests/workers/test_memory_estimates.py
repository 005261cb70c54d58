"""The worker's side of a job's memory (issue 24, items 7-8): the estimate of any Keras model from its layers'
output shapes, the submit side's figures checked against it, the limit and the words of an out-of-memory
failure, and the bounded reading of a child's output."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import pytest

from farm.workloads import mobilenet_v2, resnet50
from workers import memory
from workers.bounded import BoundedTail, bounded_lines

os.environ.setdefault("KERAS_BACKEND", "jax")


def test_the_estimate_of_a_small_model_by_hand() -> None:
    import keras

    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(20), keras.layers.Dense(3)])
    params = 10 * 20 + 20 + 20 * 3 + 3
    outputs = (20 + 3) * 4  # bytes per sample of the two layers' outputs
    kept = 8 * (outputs + outputs)  # every output, plus the gradients of the largest two (here: both)
    assert memory.estimate_training_bytes(model, 8, keras.optimizers.SGD()) == params * 2 * 4 + kept
    assert memory.estimate_training_bytes(model, 8, keras.optimizers.Adam()) == params * 4 * 4 + kept
    assert memory.estimate_training_bytes(model, 8, keras.optimizers.SGD(momentum=0.9)) == params * 3 * 4 + kept


@pytest.mark.slow
@pytest.mark.parametrize("size", [96, 224])
def test_the_image_models_submit_figures_are_lower_bounds_close_to_keras(size: int) -> None:
    params = resnet50.ResNet50Params(image_size=size, classes=10)
    model, _, _ = resnet50.build(params, (size, size, 3), 10)
    keras_values = sum(memory.layer_output_bytes(model)) // 4
    assert 0.9 * keras_values <= resnet50.activations_per_sample(size) <= keras_values

    mobile = mobilenet_v2.MobileNetV2Params(image_size=size, classes=10, alpha=1.0)
    model, _, _ = mobilenet_v2.build(mobile, (size, size, 3), 10)
    keras_values = sum(memory.layer_output_bytes(model)) // 4
    assert 0.9 * keras_values <= mobilenet_v2.activations_per_sample(mobile) <= keras_values


def test_a_model_over_the_limit_is_refused_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    model = keras.Sequential([keras.Input((1000,)), keras.layers.Dense(1000)])
    events: list[dict] = []
    monkeypatch.setenv(memory.LIMIT_ENV, str(2**20))
    with pytest.raises(memory.OutOfMemory) as refused:
        memory.check_fits(model, 512, keras.optimizers.SGD(), True, "cpu", events.append)
    assert str(refused.value).startswith("out of memory: the model needs about 12 MB at batch size 512")
    assert "RLIMIT_DATA of 1 MB" in str(refused.value)
    assert events and events[0]["event"] == "memory" and events[0]["estimate_bytes"] > 2**20
    monkeypatch.setenv(memory.LIMIT_ENV, "0")  # no limit: measured and told, never refused
    memory.check_fits(model, 512, keras.optimizers.SGD(), True, "cpu", events.append)


def test_a_process_under_the_limit_gets_a_memory_error_it_can_name() -> None:
    code = (
        "import numpy as np; from workers import memory\n"
        "print(memory.apply_limit(512 * 2**20))\n"
        "try:\n    np.ones(2**30 // 8)\nexcept MemoryError as e:\n    print(memory.describe_exception(e))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.splitlines()[0] == "RLIMIT_DATA of 512 MB on the training process"
    assert out.splitlines()[1].startswith("out of memory: MemoryError: Unable to allocate")


def test_out_of_memory_is_recognised_however_it_shows() -> None:
    assert memory.describe_exception(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"))
    assert memory.describe_exception(ValueError("bad shape")) is None
    assert memory.describe_exit(-signal.SIGKILL, "", oom_killed=True) == (
        "out of memory: the training process was killed by the kernel's OOM killer"
    )
    assert memory.describe_exit(-signal.SIGKILL, "", oom_killed=False) is None  # a SIGKILL of someone else's
    aborted = memory.describe_exit(-signal.SIGABRT, "terminate called after throwing 'std::bad_alloc'", False)
    assert aborted is not None and aborted.startswith("out of memory: ")
    said = {"estimate_bytes": 3 * 2**30, "batch_size": 64, "limit_bytes": 2**30}
    assert memory.with_estimate("out of memory: MemoryError: x\nmore", said) == (
        "out of memory: MemoryError: x (estimated 3.0 GB at batch size 64; limit: RLIMIT_DATA of 1.0 GB)\nmore"
    )
    assert memory.with_estimate("ValueError: x", said) == "ValueError: x"


def test_an_over_long_event_line_is_dropped_in_pieces_with_a_note() -> None:
    notes: list[str] = []
    stream = io.StringIO('{"a": 1}\n' + "x" * 10_000 + "\n" + '{"b": 2}\n' + "y" * 50)
    assert list(bounded_lines(stream, 100, notes.append)) == ['{"a": 1}\n', '{"b": 2}\n', "y" * 50]
    assert notes == ["[an event line of 10001 characters was dropped: the limit is 100]"]


def test_the_stderr_tail_keeps_the_last_bytes_only() -> None:
    tail = BoundedTail(1000)
    for i in range(1000):
        tail.add(f"{i:04d}".encode() * 100)
    text = tail.text()
    assert text.startswith("[399000 earlier bytes not kept]\n") and text.endswith("0999")
    assert len(text) < 1100


def test_the_limit_comes_from_the_settings_or_the_memory_available(isolated_env) -> None:
    import psutil

    from farm.settings import FarmSettings
    from workers.supervisor import job_memory_limit

    assert job_memory_limit(FarmSettings(job_memory_limit_mb=0)) is None
    assert job_memory_limit(FarmSettings(job_memory_limit_mb=100)) == 100 * 2**20
    default = job_memory_limit(FarmSettings())
    assert default is not None and 0 < default < psutil.virtual_memory().total
