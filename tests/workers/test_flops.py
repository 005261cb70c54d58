"""Forward FLOPs from a model's layers (:mod:`workers.flops`).

The formulas are checked on stand-in layers and graphs (plain objects with the attributes the counter reads,
no framework: fast), then on real Keras 3 models in a JAX child process (slow), where a Dense and a Conv2D
model are also set against XLA's own count of the compiled forward pass. The shipped workloads' models are
counted in ``test_shipped_models.py``, which builds them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any

import pytest

from tests.helpers import REPO
from workers.flops import FlopCount, count_flops

# -- stand-ins: what the counter reads of Keras' layers, nodes and functional graphs ---------------------------


def layer(cls: str, weights: bool = True, **attrs: Any) -> Any:
    """An object of a class named like the Keras layer, with weights or none."""
    kind = type(cls, (), {})
    obj = kind()
    obj.weights = [object()] if weights else []
    for key, value in attrs.items():
        setattr(obj, key, value)
    return obj


def tensor(*shape: int | None) -> Any:
    return SimpleNamespace(shape=shape)


def node(op: Any, inputs: list[Any], output: Any, *args: Any, **kwargs: Any) -> Any:
    return SimpleNamespace(
        operation=op,
        input_tensors=inputs,
        output_tensors=[output],
        arguments=SimpleNamespace(args=list(args) or inputs, kwargs=kwargs),
    )


def graph(*nodes: Any, params: int = 0) -> Any:
    """A functional model: its calls by depth (any order is fine for a sum)."""
    return SimpleNamespace(_nodes_by_depth={i: [n] for i, n in enumerate(nodes)}, count_params=lambda: params)


def kernel(*shape: int) -> Any:
    return SimpleNamespace(shape=shape)


def dense(n_in: int, n_out: int, positions: tuple[int, ...] = ()) -> Any:
    return node(
        layer("Dense", kernel=kernel(n_in, n_out)), [tensor(None, *positions, n_in)], tensor(None, *positions, n_out)
    )


def flops(*nodes: Any) -> FlopCount:
    return count_flops(graph(*nodes))


# -- the formulas -------------------------------------------------------------------------------------------------


def test_dense_mlp_is_twice_the_sum_of_its_weight_matrices() -> None:
    """Biases, activations and the input layer count 0."""
    count = flops(
        node(layer("InputLayer", weights=False), [], tensor(None, 784)),
        dense(784, 500),
        dense(500, 500),
        dense(500, 10),
    )
    assert count.forward_per_sample == 2 * (784 * 500 + 500 * 500 + 500 * 10) and count.uncounted == []


def test_dense_applies_at_every_position_of_a_sequence() -> None:
    assert flops(dense(16, 64, positions=(20,))).forward_per_sample == 2 * 16 * 64 * 20


def test_convolutions_by_hand() -> None:
    # 3×3, 3 → 8 channels, 30×30 outputs (32×32 "valid"); then 5×5 over channels_first 8 → 4, 30×30 "same".
    conv = layer("Conv2D", kernel=kernel(3, 3, 3, 8), data_format="channels_last")
    first = node(conv, [tensor(None, 32, 32, 3)], tensor(None, 30, 30, 8))
    cf = layer("Conv2D", kernel=kernel(5, 5, 8, 4), data_format="channels_first")
    second = node(cf, [tensor(None, 8, 30, 30)], tensor(None, 4, 30, 30))
    assert flops(first, second).forward_per_sample == 2 * (3 * 3 * 3 * 8 * 900 + 5 * 5 * 8 * 4 * 900)
    # Grouped: the kernel holds cin/groups input channels, which is all a group's output sees.
    grouped = layer("Conv1D", kernel=kernel(3, 2, 6), data_format="channels_last")
    assert flops(node(grouped, [tensor(None, 10, 4)], tensor(None, 8, 6))).forward_per_sample == 2 * 3 * 2 * 6 * 8


def test_depthwise_separable_and_transposed_convolutions() -> None:
    depthwise = layer("DepthwiseConv2D", kernel=kernel(3, 3, 16, 1), data_format="channels_last")
    assert flops(node(depthwise, [tensor(None, 8, 8, 16)], tensor(None, 8, 8, 16))).forward_per_sample == (
        2 * 9 * 16 * 64
    )
    separable = layer(
        "SeparableConv2D",
        depthwise_kernel=kernel(3, 3, 16, 2),
        pointwise_kernel=kernel(1, 1, 32, 24),
        data_format="channels_last",
    )
    assert flops(node(separable, [tensor(None, 8, 8, 16)], tensor(None, 4, 4, 24))).forward_per_sample == (
        2 * (9 * 16 * 2 + 32 * 24) * 16
    )
    # A transposed convolution's kernel meets every input position (kernel: kh, kw, cout, cin).
    transposed = layer("Conv2DTranspose", kernel=kernel(2, 2, 4, 8), data_format="channels_last")
    assert flops(node(transposed, [tensor(None, 5, 5, 8)], tensor(None, 10, 10, 4))).forward_per_sample == (
        2 * 2 * 2 * 4 * 8 * 25
    )


def test_einsum_dense_counts_every_index_but_the_batch() -> None:
    projection = layer("EinsumDense", equation="abc,cde->abde", kernel=kernel(16, 2, 8))
    assert flops(node(projection, [tensor(None, 10, 16)], tensor(None, 10, 2, 8))).forward_per_sample == (
        2 * 10 * 16 * 2 * 8
    )
    ellipsis = layer("EinsumDense", equation="...b,bc->...c", kernel=kernel(16, 4))
    assert flops(node(ellipsis, [tensor(None, 7, 16)], tensor(None, 7, 4))).forward_per_sample == 2 * 7 * 16 * 4


def attention(heads: int, key_dim: int, value_dim: int | None = None) -> Any:
    return layer("MultiHeadAttention", num_heads=heads, key_dim=key_dim, value_dim=value_dim)


def test_self_attention_is_8_t_d2_plus_4_t2_d() -> None:
    """T tokens of width d, heads × key_dim = d: four d×d projections at T positions, and the two T×T×d products
    (scores, and scores times values)."""
    t, d = 12, 32
    x = tensor(None, t, d)
    count = flops(node(attention(4, 8), [x, x], tensor(None, t, d), x, x))
    assert count.forward_per_sample == 8 * t * d * d + 4 * t * t * d


def test_cross_attention_with_its_own_widths() -> None:
    tq, dq, tk, dk, dv, heads, kd, vd = 5, 16, 9, 24, 20, 2, 6, 10
    q, k, v = tensor(None, tq, dq), tensor(None, tk, dk), tensor(None, tk, dv)
    count = flops(node(attention(heads, kd, vd), [q, v, k], tensor(None, tq, dq), q, v, key=k))
    expected = 2 * (
        tq * dq * heads * kd
        + tk * dk * heads * kd
        + tk * dv * heads * vd  # projections
        + heads * tq * tk * kd
        + heads * tq * tk * vd  # scores, mixing
        + tq * heads * vd * dq  # output projection back to the query's width
    )
    assert count.forward_per_sample == expected


def test_recurrent_layers_per_step_and_gate() -> None:
    x = tensor(None, 10, 8)
    assert flops(node(layer("LSTM", units=4), [x], tensor(None, 4))).forward_per_sample == 10 * 4 * 2 * 12 * 4
    assert flops(node(layer("GRU", units=4), [x], tensor(None, 4))).forward_per_sample == 10 * 3 * 2 * 12 * 4
    both = layer("Bidirectional", forward_layer=layer("LSTM", units=4), backward_layer=layer("LSTM", units=4))
    assert flops(node(both, [x], tensor(None, 8))).forward_per_sample == 2 * 10 * 4 * 2 * 12 * 4


def test_layers_without_products_count_zero() -> None:
    x = tensor(None, 10, 8)
    count = flops(
        node(layer("Embedding"), [tensor(None, 10)], x),
        node(layer("BatchNormalization"), [x], x),
        node(layer("LayerNormalization"), [x], x),
        node(layer("Add", weights=False), [x, x], x),
        node(layer("SomethingWithoutWeights", weights=False), [x], x),
        dense(8, 2, positions=(10,)),
    )
    assert count.forward_per_sample == 2 * 8 * 2 * 10 and count.uncounted == []


def test_a_weighted_layer_it_cannot_count_leaves_no_partial_figure() -> None:
    x = tensor(None, 8)
    count = flops(dense(8, 8), node(layer("MyFancyLayer"), [x], x), node(layer("TimeDistributed"), [x], x))
    assert count.forward_per_sample is None and sorted(count.uncounted) == ["MyFancyLayer", "TimeDistributed"]
    # A sequence of unknown length cannot be counted either.
    unknown = node(layer("LSTM", units=4), [tensor(None, None, 8)], tensor(None, 4))
    assert flops(unknown) == FlopCount(None, 0, ["LSTM"])
    # A layer named like a known one but without what its formula reads is named, not guessed.
    assert flops(node(layer("Dense"), [x], x)) == FlopCount(None, 0, ["Dense"])


def test_nested_models_are_walked_and_subclassed_ones_are_not_guessed() -> None:
    inner = graph(dense(8, 16), dense(16, 8))
    outer = graph(node(inner, [tensor(None, 8)], tensor(None, 8)), dense(8, 2), params=7)
    count = count_flops(outer)
    assert count.forward_per_sample == 2 * (8 * 16 + 16 * 8 + 8 * 2) and count.params == 7
    # A built Sequential holds its graph in ``_functional``.
    sequential = SimpleNamespace(_functional=inner, count_params=lambda: 0)
    assert count_flops(sequential).forward_per_sample == 2 * (8 * 16 + 16 * 8)
    subclassed = layer("MyModel", count_params=lambda: 3)
    assert count_flops(subclassed) == FlopCount(None, 3, ["MyModel"])


# -- real Keras models -------------------------------------------------------------------------------------------

REAL = textwrap.dedent(
    """
    import json
    import keras, numpy as np
    from keras import layers
    from workers.flops import count_flops

    out = {}
    mlp = keras.Sequential([keras.Input((20,)), layers.Dense(30, activation="relu"), layers.Dense(5)])
    out["mlp"] = count_flops(mlp).__dict__
    cnn = keras.Sequential([
        keras.Input((12, 12, 3)),
        layers.Conv2D(4, 3),  # 10x10x4
        layers.MaxPooling2D(),  # 5x5x4
        layers.DepthwiseConv2D(3, padding="same"),  # 5x5x4
        layers.SeparableConv2D(6, 3),  # 3x3x6
        layers.BatchNormalization(),
        layers.GlobalAveragePooling2D(),
        layers.Dense(2),
    ])
    out["cnn"] = count_flops(cnn).__dict__
    x = keras.Input((6, 16))
    out["attention"] = count_flops(keras.Model(x, layers.MultiHeadAttention(4, 4)(x, x))).__dict__
    inner = keras.Sequential([keras.Input((8,)), layers.Dense(16)])
    y = keras.Input((8,))
    out["nested"] = count_flops(keras.Model(y, layers.Dense(3)(inner(y)))).__dict__

    class Scale(layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],))
        def call(self, x):
            return x * self.w

    z = keras.Input((8,))
    out["custom"] = count_flops(keras.Model(z, layers.Dense(2)(Scale()(z)))).__dict__

    import jax
    xla = {}
    for name, model, shape in [
        ("dense", keras.Sequential([keras.Input((256,)), layers.Dense(512, activation="relu"), layers.Dense(128)]),
         (1, 256)),
        ("conv", keras.Sequential([keras.Input((16, 16, 8)), layers.Conv2D(32, 3, padding="same"),
                                   layers.Conv2D(16, 3)]), (1, 16, 16, 8)),
    ]:
        cost = jax.jit(lambda v, m=model: m(v)).lower(np.zeros(shape, "float32")).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        xla[name] = [count_flops(model).forward_per_sample, float(cost["flops"])]
    out["xla"] = xla
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", REAL], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_real_keras_models(real: dict[str, Any]) -> None:
    assert real["mlp"] == {"forward_per_sample": 2 * (20 * 30 + 30 * 5), "params": 21 * 30 + 31 * 5, "uncounted": []}
    conv = 3 * 3 * 3 * 4 * 100
    depthwise = 3 * 3 * 4 * 25
    separable = (3 * 3 * 4 + 4 * 6) * 9
    assert real["cnn"]["forward_per_sample"] == 2 * (conv + depthwise + separable + 6 * 2)
    assert real["cnn"]["uncounted"] == []
    t, d = 6, 16
    assert real["attention"]["forward_per_sample"] == 8 * t * d * d + 4 * t * t * d
    assert real["nested"]["forward_per_sample"] == 2 * (8 * 16 + 16 * 3)
    assert real["custom"] == {"forward_per_sample": None, "params": 8 + 9 * 2, "uncounted": ["Scale"]}


@pytest.mark.slow
def test_against_xla_cost_analysis(real: dict[str, Any]) -> None:
    """XLA counts the compiled forward pass (biases and activations too, and a padded convolution's borders
    less): the products must agree within 10%."""
    for name, (ours, xla) in real["xla"].items():
        assert ours is not None and abs(ours - xla) <= 0.1 * xla, (name, ours, xla)
