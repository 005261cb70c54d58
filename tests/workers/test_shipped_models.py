"""The shipped workloads' models, built for real with Keras 3 on JAX, tiny: each builds, holds exactly the
parameters its module counts without a framework (what the memory estimate and the size limit rest on),
has a forward FLOP count with no layer left out, and trains for two epochs on one batch of synthetic data
through its own ``prepare`` (here, or in the mixed sweep of tests/cli/test_plugin_end_to_end.py). Under mixed
precision the classifier's output stays float32. Minutes on a busy 2-core machine, most of it XLA compiling the
training steps: one child process builds them all.

Keras runs in a child process: the test process must stay free of frameworks (other tests check that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tests.helpers import FAST_XLA_FLAGS, REPO

TINY: dict[str, dict[str, Any]] = {
    "resnet50": {"image_size": 32, "classes": 10},
    "mobilenet_v2": {"image_size": 32, "classes": 10, "alpha": 0.35},
    "text_transformer": {"seq_len": 16, "vocab_size": 100, "width": 16, "depth": 2, "heads": 2, "classes": 2},
    "sequence_rnn": {"seq_len": 10, "vocab_size": 100, "embed_dim": 8, "units": 8, "layers": 2, "classes": 3},
    "sequence_rnn_gru": {"seq_len": 10, "vocab_size": 100, "embed_dim": 8, "units": 8, "cell": "gru", "classes": 3},
}

TRAINED_ELSEWHERE = {"resnet50", "text_transformer"}
"""Built and counted here, trained by the mixed sweep through ``farm run`` (tests/cli/test_plugin_end_to_end.py,
the same tiny sizes, both modes): compiling ResNet-50's training step twice would only cost the suite time."""

CHILD = textwrap.dedent(
    """
    import importlib, json, math, sys, time
    import keras, numpy as np
    from farm import workloads
    from workers.flops import count_flops

    tiny = json.loads(sys.argv[1])
    rng = np.random.default_rng(0)

    def split(model):
        trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
        return [int(trainable), int(model.count_params() - trainable)]

    def batch(spec, n=8):
        if spec.kind == "tokens":
            x = rng.integers(1, spec.vocab_size, size=(n, *spec.sample_shape), dtype=np.int32)
        else:
            x = rng.integers(0, 256, size=(n, *spec.sample_shape), dtype=np.uint8)
        return x, rng.integers(0, spec.num_classes, size=n)

    trained_elsewhere = set(json.loads(sys.argv[2]))

    def run(key, params, fit=True):
        started = time.perf_counter()
        name = key.removesuffix("_gru")
        wl = workloads.get(name)
        p = wl.validate_params(params)
        spec = wl.data_spec(p)
        model, optimizer, loss = wl.build_model(p, spec.sample_shape, spec.num_classes)
        counted = importlib.import_module(f"farm.workloads.{name}").parameter_count(p)
        row = {
            "keras": split(model),
            "counted": list(counted) if isinstance(counted, tuple) else [counted, 0],
            "flops": count_flops(model).__dict__,
            "output_dtype": str(model.outputs[0].dtype),
        }
        row["output_shape"] = list(model.outputs[0].shape)
        if fit and key not in trained_elsewhere:
            model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
            x, y = wl.prepare(*batch(spec))
            history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
            row["loss"] = [float(v) for v in history.history["loss"]]
        print(key, fit, round(time.perf_counter() - started, 1), file=sys.stderr)
        return row

    out = {"float32": {key: run(key, params) for key, params in tiny.items()}}
    out["alphas"] = {
        str(alpha): run("mobilenet_v2", {"image_size": 32, "classes": 7, "alpha": alpha}, fit=False)
        for alpha in (0.5, 0.75, 1.0, 1.3, 1.4)
    }
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    MIXED = ("mobilenet_v2", "text_transformer", "sequence_rnn")
    # Building is enough to see the output's dtype; one model trains too (compiling is slow on a CPU).
    out["mixed"] = {key: run(key, tiny[key], fit=key == "sequence_rnn") for key in MIXED}
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    # XLA's cheapest CPU compile: the test checks what the models hold and that they train, not their speed
    # (measured: 72 CPU-s with the default optimisation, 54 with these flags); and the run's compilation cache
    # (both from tests/conftest.py).
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": FAST_XLA_FLAGS}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(TINY), json.dumps(sorted(TRAINED_ELSEWHERE))],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
@pytest.mark.parametrize("key", list(TINY))
def test_builds_counts_and_trains(built: dict[str, Any], key: str) -> None:
    row = built["float32"][key]
    assert row["keras"] == row["counted"], "the framework-free parameter count must be Keras' exactly"
    assert row["flops"]["uncounted"] == [] and row["flops"]["forward_per_sample"] > 0
    assert row["flops"]["params"] == sum(row["keras"])
    if key not in TRAINED_ELSEWHERE:
        assert len(row["loss"]) == 2 and all(0 < v < 100 for v in row["loss"])
    classes = TINY[key]["classes"]
    assert row["output_shape"] == [None, classes] and row["output_dtype"] == "float32"


@pytest.mark.slow
def test_every_mobilenet_width_matches_its_table(built: dict[str, Any]) -> None:
    for alpha, row in built["alphas"].items():
        assert row["keras"] == row["counted"], alpha
        assert row["flops"]["uncounted"] == [], alpha


@pytest.mark.slow
def test_flops_of_the_tiny_models_by_hand(built: dict[str, Any]) -> None:
    # The Transformer: per block 8·T·d² + 4·T²·d (attention) + 2·T·2·d·ff (feed-forward), then the classifier.
    t, d, ff = 16, 16, 64
    block = 8 * t * d * d + 4 * t * t * d + 2 * t * 2 * d * ff
    assert built["float32"]["text_transformer"]["flops"]["forward_per_sample"] == 2 * block + 2 * d * 2
    # Two LSTMs of 8 units over 10 steps (inputs 8 then 8), then Dense 8 → 3.
    assert built["float32"]["sequence_rnn"]["flops"]["forward_per_sample"] == 2 * 10 * 4 * 2 * 16 * 8 + 2 * 8 * 3
    # ResNet-50 at 32×32 sees every feature map 7× smaller per side than at 224 (Keras' 3.9 GMACs there).
    resnet = built["float32"]["resnet50"]["flops"]["forward_per_sample"]
    assert 7.6e9 / 49 < resnet < 8.2e9 / 49


@pytest.mark.slow
@pytest.mark.parametrize("key", ["mobilenet_v2", "text_transformer", "sequence_rnn"])
def test_mixed_precision_keeps_the_output_float32(built: dict[str, Any], key: str) -> None:
    row = built["mixed"][key]
    assert row["output_dtype"] == "float32" and row["keras"] == row["counted"]
    assert all(0 < v < 100 for v in row.get("loss", [1.0]))
