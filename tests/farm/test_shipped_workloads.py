"""The standard workloads shipped with benchfarm, on the submit side: their names, parameters, data specs,
parameter counts and memory estimates, without any framework (the models themselves are built and trained in
``tests/workers/test_shipped_models.py``)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from farm import workloads
from farm.job import JobSpec
from farm.workloads import MAX_PARAMETERS, mobilenet_v2, resnet50, sequence_rnn, text_transformer
from tests.helpers import REPO

SHIPPED = {
    "resnet50": "images",
    "mobilenet_v2": "images",
    "text_transformer": "sequences",
    "sequence_rnn": "sequences",
}


def test_shipped_workloads_are_registered_with_their_units() -> None:
    for name, unit in SHIPPED.items():
        wl = workloads.get(name)
        assert wl.unit == unit and not wl.is_plugin and wl.memory_estimate is not None
        assert wl.definition_hash().startswith(f"{name}@")
    assert set(SHIPPED) | {"cifar10_mlp", "fashion_mnist_mlp"} <= set(workloads.names())


def test_importing_the_registry_pulls_in_no_framework() -> None:
    """The submit side imports every shipped workload; none of them may drag a framework (or numpy) along."""
    code = (
        "import farm.workloads, sys; "
        "bad = [m for m in ('keras', 'tensorflow', 'jax', 'torch', 'numpy') if m in sys.modules]; "
        "assert not bad, bad; "
        f"assert {sorted(SHIPPED)!r} == sorted(set(farm.workloads.names()) & {set(SHIPPED)!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_defaults() -> None:
    r = resnet50.ResNet50Params()
    assert (r.image_size, r.classes, r.optimizer, r.learning_rate) == (224, 1000, "sgd", None)
    m = mobilenet_v2.MobileNetV2Params()
    assert (m.image_size, m.classes, m.alpha, m.optimizer) == (224, 1000, 1.0, "adam")
    assert mobilenet_v2.MobileNetV2Params(alpha=1).alpha == 1.0  # YAML's ``alpha: 1``
    assert mobilenet_v2.MobileNetV2Params.model_json_schema()["properties"]["alpha"]["enum"] == list(
        mobilenet_v2.ALPHAS
    )
    t = text_transformer.TextTransformerParams()
    assert (t.seq_len, t.vocab_size, t.width, t.depth, t.heads, t.classes) == (128, 20_000, 128, 2, 4, 2)
    assert t.ff_width is None and t.ff == 512 and t.optimizer == "adam"
    assert text_transformer.TextTransformerParams(ff_width=64).ff == 64
    s = sequence_rnn.SequenceRNNParams()
    assert (s.seq_len, s.vocab_size, s.embed_dim, s.units, s.layers, s.cell, s.classes) == (
        100,
        20_000,
        128,
        128,
        1,
        "lstm",
        2,
    )


@pytest.mark.parametrize(
    ("workload", "params", "message"),
    [
        ("resnet50", {"image_size": 31}, "greater than or equal to 32"),
        ("resnet50", {"image_size": 513}, "less than or equal to 512"),
        ("resnet50", {"classes": 1}, "greater than or equal to 2"),
        ("resnet50", {"classes": 100_001}, "less than or equal to 100000"),
        ("resnet50", {"image_size": "224"}, "valid integer"),
        ("resnet50", {"optimizer": "lion"}, "'sgd', 'adam', 'adamw' or 'rmsprop'"),
        ("resnet50", {"learning_rate": 0}, "greater than 0"),
        ("resnet50", {"weights": "imagenet"}, "Extra inputs are not permitted"),
        ("mobilenet_v2", {"alpha": 0.6}, "alpha must be one of 0.35, 0.5, 0.75, 1.0, 1.3, 1.4, not 0.6"),
        ("mobilenet_v2", {"alpha": True}, "not True"),
        ("mobilenet_v2", {"alpha": "1.0"}, "not '1.0'"),
        ("mobilenet_v2", {"image_size": 16}, "greater than or equal to 32"),
        ("text_transformer", {"width": 130, "heads": 4}, "width 130 is not a multiple of heads 4"),
        ("text_transformer", {"seq_len": 1}, "greater than or equal to 2"),
        ("text_transformer", {"seq_len": 4097}, "less than or equal to 4096"),
        ("text_transformer", {"depth": 0}, "greater than or equal to 1"),
        ("text_transformer", {"depth": 49}, "less than or equal to 48"),
        ("text_transformer", {"vocab_size": 1}, "greater than or equal to 2"),
        ("text_transformer", {"ff_width": 0}, "greater than or equal to 1"),
        ("text_transformer", {"dropout": 0.1}, "Extra inputs are not permitted"),
        ("text_transformer", {"width": 65_536, "heads": 1, "depth": 48}, "more than the 20,000,000,000"),
        ("sequence_rnn", {"cell": "rnn"}, "'lstm' or 'gru'"),
        ("sequence_rnn", {"layers": 9}, "less than or equal to 8"),
        ("sequence_rnn", {"units": 0}, "greater than or equal to 1"),
        ("sequence_rnn", {"units": 65_536, "embed_dim": 65_536, "layers": 8}, "more than the 20,000,000,000"),
    ],
)
def test_parameters_are_refused_with_a_reason(workload: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        workloads.get(workload).validate_params(params)


def test_params_models_are_strict_frozen_and_described() -> None:
    for name in SHIPPED:
        model = workloads.get(name).params_model
        assert model.model_config.get("extra") == "forbid" and model.model_config.get("frozen")
        schema = model.model_json_schema()
        assert all(prop.get("description") for prop in schema["properties"].values()), name


@pytest.mark.parametrize("workload", ["resnet50", "mobilenet_v2"])
def test_image_models_train_on_cifar10_only_at_its_shapes(workload: str) -> None:
    wl = workloads.get(workload)
    cifar = wl.data_spec(wl.validate_params({"image_size": 32, "classes": 10}))
    assert cifar.real == "cifar10" and cifar.sample_shape == (32, 32, 3) and cifar.num_classes == 10
    imagenet = wl.data_spec(wl.validate_params({}))
    assert imagenet.real is None and imagenet.kind == "image"
    assert (imagenet.sample_shape, imagenet.num_classes) == ((224, 224, 3), 1000)
    assert (imagenet.train_size, imagenet.test_size) == (50_000, 10_000)
    assert imagenet.name == "images_224x224x3_c1000"
    # Either shape alone is not CIFAR-10's.
    assert wl.data_spec(wl.validate_params({"image_size": 32, "classes": 100})).real is None
    assert wl.data_spec(wl.validate_params({"image_size": 64, "classes": 10})).real is None
    # The job model applies the rule: real data only where it fits.
    JobSpec(sweep="s", workload=workload, params={"image_size": 32, "classes": 10}, data="real")
    with pytest.raises(ValidationError, match="real"):
        JobSpec(sweep="s", workload=workload, params={}, data="real")


@pytest.mark.parametrize(
    ("workload", "params", "shape"),
    [
        ("text_transformer", {"seq_len": 64, "vocab_size": 500, "classes": 3}, (64,)),
        ("sequence_rnn", {"seq_len": 10, "vocab_size": 500, "classes": 3}, (10,)),
    ],
)
def test_token_models_train_on_synthetic_sequences(
    workload: str, params: dict[str, Any], shape: tuple[int, ...]
) -> None:
    wl = workloads.get(workload)
    spec = wl.data_spec(wl.validate_params(params))
    assert spec.kind == "tokens" and spec.sample_shape == shape and spec.vocab_size == 500
    assert spec.num_classes == 3 and spec.real is None and spec.tokens_per_sample == shape[0]
    assert (spec.train_size, spec.test_size) == (25_000, 25_000)
    with pytest.raises(ValidationError, match="real"):
        JobSpec(sweep="s", workload=workload, params=params, data="real")


def test_parameter_counts_of_the_image_models() -> None:
    """Keras' published figures at ImageNet's shapes (the tiny shapes are checked against Keras itself)."""
    assert sum(resnet50.parameter_count(resnet50.ResNet50Params())) == 25_636_712
    assert sum(mobilenet_v2.parameter_count(mobilenet_v2.MobileNetV2Params())) == 3_538_984
    assert sum(mobilenet_v2.parameter_count(mobilenet_v2.MobileNetV2Params(alpha=1.4))) == 6_156_712
    # The image size changes no weight.
    assert resnet50.parameter_count(resnet50.ResNet50Params(image_size=512)) == resnet50.parameter_count(
        resnet50.ResNet50Params()
    )


def test_parameter_count_of_the_transformer_by_hand() -> None:
    p = text_transformer.TextTransformerParams(seq_len=16, vocab_size=100, width=16, depth=2, heads=2, classes=2)
    embeddings = (100 + 16) * 16
    attention = 4 * (16 * 16 + 16)
    norms = 2 * 2 * 16
    feed_forward = (16 * 64 + 64) + (64 * 16 + 16)
    assert text_transformer.parameter_count(p) == embeddings + 2 * (attention + norms + feed_forward) + 17 * 2


def test_parameter_count_of_the_rnn_by_hand() -> None:
    lstm = sequence_rnn.SequenceRNNParams(seq_len=10, vocab_size=100, embed_dim=8, units=4, layers=2, classes=3)
    first, second = 4 * ((8 + 4) * 4 + 4), 4 * ((4 + 4) * 4 + 4)
    assert sequence_rnn.parameter_count(lstm) == 100 * 8 + first + second + 5 * 3
    gru = lstm.model_copy(update={"cell": "gru", "layers": 1})
    assert sequence_rnn.parameter_count(gru) == 100 * 8 + 3 * (8 + 4) * 4 + 2 * 3 * 4 + 5 * 3


def test_memory_estimates_are_lower_bounds_that_grow_with_the_job() -> None:
    for name in SHIPPED:
        wl = workloads.get(name)
        assert wl.memory_estimate is not None
        params = wl.validate_params({})
        small, large = wl.memory_estimate(params, 1), wl.memory_estimate(params, 256)
        assert 0 < small <= large
    # ResNet-50 with SGD: weights and gradients of 25.6M float32 parameters, the frozen statistics, and the
    # activations of a batch of 32 at 2 bytes.
    r = resnet50.ResNet50Params()
    state = ((25_636_712 - 53_120) * 2 + 53_120) * 4
    assert resnet50.memory_estimate(r, 32) == state + resnet50.activations_per_sample(224) * 32 * 2
    adam = r.model_copy(update={"optimizer": "adam"})
    assert resnet50.memory_estimate(adam, 32) > resnet50.memory_estimate(r, 32)
    # Longer sequences keep more activations.
    t = text_transformer.TextTransformerParams()
    longer = text_transformer.TextTransformerParams(seq_len=4096)
    assert text_transformer.memory_estimate(longer, 64) > text_transformer.memory_estimate(t, 64)
    assert text_transformer.parameter_count(text_transformer.TextTransformerParams(width=4096)) < MAX_PARAMETERS
