"""Forward-pass FLOPs of one sample of a built Keras 3 model, counted from its layers' shapes.

Why count at all: a throughput in samples/s cannot be compared across models, an achieved FLOP/s can (and set
against the device's peak it says how well the device is used). The farm derives training FLOPs as three times
the forward pass; this module gives the forward pass only.

The convention is the one used for model FLOP utilisation: a multiply-add is 2 FLOPs, and only the matrix
products and convolutions are counted. Biases, activations, softmax, normalization, pooling and residual adds
count 0: they are a few FLOPs per element against hundreds or thousands per element for the products, and
counting them would make the figure depend on how a backend fuses them. Per layer, for one sample (``positions``
is the product of the output's dimensions other than the batch and the features or channels):

- ``Dense``: 2 × in × units × positions (a Dense on a sequence applies at every position).
- ``EinsumDense``: 2 × the product of the sizes of every index in its equation, the batch's excepted.
- ``Conv1D/2D/3D``: 2 × kh×kw×(cin/groups) × cout × output positions, i.e. 2 × kernel size × output positions.
- ``Conv1D/2D/3DTranspose``: 2 × kernel size × input positions (each input value meets the whole kernel).
- ``DepthwiseConv1D/2D``: 2 × kh×kw × cin × multiplier × output positions.
- ``SeparableConv1D/2D``: the depthwise part plus the pointwise (1×1) part, both at the output positions.
- ``MultiHeadAttention`` with query length Tq (width dq), key/value length Tk (widths dk, dv), H heads of key
  width K and value width V, output width O (dq by default):
  2 × (Tq·dq·H·K + Tk·dk·H·K + Tk·dv·H·V)  (query, key and value projections)
  + 2 × H·Tq·Tk·K  (the scores Q·Kᵀ) + 2 × H·Tq·Tk·V  (the scores times V) + 2 × Tq·H·V·O  (output projection).
  For self-attention over T tokens of width d with H·K = H·V = d: 8·T·d² + 4·T²·d.
- ``LSTM`` / ``GRU`` / ``SimpleRNN``: per step, gates × 2 × (in + units) × units (4 gates, 3, 1), times the
  steps; ``Bidirectional`` counts both directions.
- the ``matmul`` op on symbolic tensors: 2 × the output's size × the contracted dimension.
- ``Embedding`` (a lookup), ``BatchNormalization``, ``LayerNormalization``, ``GroupNormalization``,
  ``Normalization``, ``PReLU``: 0, as above. Layers without weights that are not listed count 0.

A layer with weights that is none of these (a custom layer, a subclassed model, a ``TimeDistributed``) is named
in ``uncounted`` and the whole figure is None: a partial figure would pass for the model's. Nested functional
and Sequential models are walked through.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FlopCount:
    """What :func:`count_flops` found."""

    forward_per_sample: int | None
    """FLOPs of one sample's forward pass; None when any layer with weights could not be counted."""
    params: int
    """The model's parameters (``count_params``: trainable and not)."""
    uncounted: list[str] = field(default_factory=list)
    """Class names of the layers with weights that could not be counted, each once, inputs side first."""


ZERO_WITH_WEIGHTS = frozenset(
    {
        "Embedding",
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "RMSNormalization",
        "Normalization",
        "PReLU",
    }
)
"""Layers that hold weights but do no matrix product: counted as 0 FLOPs by convention (see the module)."""

RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


class Uncountable(Exception):
    """A layer whose FLOPs cannot be known from what the model says of it."""


def count_flops(model: Any) -> FlopCount:
    """Walk a built functional or Sequential model's graph and add up each call's FLOPs (see the module)."""
    uncounted: list[str] = []
    total = _graph_flops(model, uncounted)
    return FlopCount(
        forward_per_sample=None if uncounted else total,
        params=int(model.count_params()),
        uncounted=list(dict.fromkeys(uncounted)),
    )


def _graph(model: Any) -> Any | None:
    """The functional graph a model runs: itself for a functional model, the one a built Sequential holds."""
    if hasattr(model, "_nodes_by_depth"):
        return model
    inner = getattr(model, "_functional", None)
    return inner if inner is not None and hasattr(inner, "_nodes_by_depth") else None


def _graph_flops(model: Any, uncounted: list[str]) -> int:
    graph = _graph(model)
    if graph is None:
        # A subclassed model (or an unbuilt Sequential): its calls are Python code, not a graph with shapes.
        uncounted.append(type(model).__name__)
        return 0
    total = 0
    for depth in sorted(graph._nodes_by_depth, reverse=True):  # inputs first, for a readable walk
        for node in graph._nodes_by_depth[depth]:
            total += _node_flops(node, uncounted)
    return total


def _node_flops(node: Any, uncounted: list[str]) -> int:
    op = node.operation
    name = type(op).__name__
    if _graph(op) is not None:  # a nested functional or Sequential model: its own graph, once per call
        return _graph_flops(op, uncounted)
    try:
        return _op_flops(op, name, node)
    except (Uncountable, AttributeError, TypeError, ValueError):
        # Also a known layer that lacks what its formula reads (another Keras version, a look-alike class):
        # named, not guessed.
        uncounted.append(name)
        return 0


def _shape(tensor: Any) -> tuple[int | None, ...]:
    return tuple(tensor.shape)


def _known(dims: tuple[int | None, ...], what: str) -> int:
    """The product of dimensions that must all be known (the batch dimension is never among them)."""
    if any(d is None for d in dims):
        raise Uncountable(f"{what} has an unknown dimension: {dims}")
    return math.prod(d for d in dims if d is not None)


def _positions(shape: tuple[int | None, ...], data_format: str | None = None) -> int:
    """Output positions of one sample: every dimension but the batch and the features or channels."""
    inner = shape[2:] if data_format == "channels_first" else shape[1:-1]
    return _known(inner, "the output")


def _op_flops(op: Any, name: str, node: Any) -> int:
    weights = getattr(op, "weights", None) or []
    inputs = list(node.input_tensors)
    outputs = list(node.output_tensors)
    if name == "Dense":
        (units,) = op.kernel.shape[1:]
        return 2 * int(op.kernel.shape[0]) * int(units) * _positions(_shape(outputs[0]))
    if name == "EinsumDense":
        return _einsum_flops(op.equation, _shape(inputs[0]), tuple(op.kernel.shape))
    if name in ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D"):
        return 2 * _kernel_size(op) * _positions(_shape(outputs[0]), op.data_format)
    if name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        return 2 * _kernel_size(op) * _positions(_shape(inputs[0]), op.data_format)
    if name in ("SeparableConv1D", "SeparableConv2D"):
        size = math.prod(op.depthwise_kernel.shape) + math.prod(op.pointwise_kernel.shape)
        return 2 * int(size) * _positions(_shape(outputs[0]), op.data_format)
    if name == "MultiHeadAttention":
        return _attention_flops(op, node)
    if name in RECURRENT_GATES:
        return _recurrent_flops(name, op.units, _shape(inputs[0]))
    if name == "Bidirectional":
        shape = _shape(inputs[0])
        return sum(
            _recurrent_flops(type(layer).__name__, getattr(layer, "units", 0), shape)
            for layer in (op.forward_layer, op.backward_layer)
        )
    if name == "Matmul" and len(inputs) == 2:
        contracted = _known(_shape(inputs[0])[-1:], "a matmul's operand")
        return 2 * contracted * _known(_shape(outputs[0])[1:], "a matmul's output")
    if name in ZERO_WITH_WEIGHTS or not weights:
        return 0
    raise Uncountable(name)


def _kernel_size(op: Any) -> int:
    return int(math.prod(op.kernel.shape))


def _einsum_flops(equation: str, input_shape: tuple[int | None, ...], kernel_shape: tuple[int, ...]) -> int:
    """2 × the product of every index's size: each combination of the indices is one multiply-add. The batch
    (an unknown size, in the input or under its ``...``) is left out."""
    match = re.fullmatch(r"\s*([a-zA-Z.]+)\s*,\s*([a-zA-Z]+)\s*->\s*([a-zA-Z.]+)\s*", equation)
    if match is None:
        raise Uncountable(f"equation {equation!r}")
    lhs, rhs, _ = match.groups()
    sizes: dict[str, int] = {}
    ellipsis = 1
    if "..." in lhs:
        explicit = lhs.replace("...", "")
        covered = input_shape[: len(input_shape) - len(explicit)]
        ellipsis = math.prod(d for d in covered[1:] if d is not None) if covered else 1
        if any(d is None for d in covered[1:]):
            raise Uncountable(f"equation {equation!r} over {input_shape}")
        lhs_dims = dict(zip(explicit, input_shape[len(covered) :], strict=True))
    else:
        lhs_dims = dict(zip(lhs, input_shape, strict=True))
    for letter, dim in lhs_dims.items():
        if dim is not None:
            sizes[letter] = int(dim)
    for letter, dim in zip(rhs, kernel_shape, strict=True):
        sizes[letter] = int(dim)
    batch = [letter for letter, dim in lhs_dims.items() if dim is None]
    if len(batch) > 1 or ("..." in lhs and batch):
        raise Uncountable(f"equation {equation!r} over {input_shape}")
    return 2 * ellipsis * math.prod(sizes.values())


def _attention_flops(op: Any, node: Any) -> int:
    """See the module's formula. The query and value are the call's first two arguments; the key is the value
    unless given."""
    args, kwargs = list(node.arguments.args), dict(node.arguments.kwargs)
    query = args[0] if args else kwargs["query"]
    value = args[1] if len(args) > 1 else kwargs.get("value")
    key = args[2] if len(args) > 2 else kwargs.get("key")
    key = value if key is None else key
    q_shape, k_shape, v_shape = _shape(query), _shape(key), _shape(value)
    if len(q_shape) != 3 or len(k_shape) != 3 or len(v_shape) != 3:
        # Attention over several axes (``attention_axes``): its einsums follow other shapes than these.
        raise Uncountable("MultiHeadAttention over more than one sequence axis")
    t_q, d_q = _known(q_shape[1:2], "the query"), _known(q_shape[2:], "the query")
    t_k, d_k = _known(k_shape[1:2], "the key"), _known(k_shape[2:], "the key")
    d_v = _known(v_shape[2:], "the value")
    heads, key_dim = int(op.num_heads), int(op.key_dim)
    value_dim = int(op.value_dim) if op.value_dim else key_dim
    out = _known(_shape(node.output_tensors[0])[2:], "the attention's output")
    projections = t_q * d_q * heads * key_dim + t_k * d_k * heads * key_dim + t_k * d_v * heads * value_dim
    scores = heads * t_q * t_k * key_dim
    mixed = heads * t_q * t_k * value_dim
    output = t_q * heads * value_dim * out
    return 2 * (projections + scores + mixed + output)


def _recurrent_flops(name: str, units: int, input_shape: tuple[int | None, ...]) -> int:
    """Per step each gate is a product of the step's input and of the previous state with their kernels."""
    if name not in RECURRENT_GATES:
        raise Uncountable(name)
    steps = _known(input_shape[1:2], "the sequence")
    features = _known(input_shape[2:], "the step's input")
    return steps * RECURRENT_GATES[name] * 2 * (features + int(units)) * int(units)


__all__ = ["FlopCount", "count_flops"]
