"""Fashion-MNIST MLP of the seed experiment: Flatten → hidden_layers × Dense 500 relu → Dense 10 sigmoid, Adam,
sparse categorical cross-entropy on integer labels."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictInt, model_validator

from farm import defaults
from farm.workloads import Workload, register
from farm.workloads._mlp import (
    MLPParams,
    Optimizer,
    build_mlp,
    check_trainable,
    make_optimizer,
    mlp_memory_bytes,
    scale_images,
)

INPUT_SIZE = 28 * 28
"""Values of one flattened fashion_mnist image (``workers.datasets.fetch.DATASETS``; that package imports numpy, and
this module is imported on the submit side)."""
NUM_CLASSES = 10


class FashionMNISTMLPParams(MLPParams):
    hidden_layers: StrictInt = Field(default=5, ge=1, le=defaults.MAX_HIDDEN_LAYERS)
    units: StrictInt = Field(default=500, ge=1, le=defaults.MAX_UNITS)
    optimizer: Optimizer = "adam"

    @model_validator(mode="after")
    def _trainable(self) -> FashionMNISTMLPParams:
        check_trainable(layer_sizes(self))
        return self


def layer_sizes(params: FashionMNISTMLPParams) -> list[int]:
    """Input, each hidden layer, output: what the parameter count and the memory estimate are made of."""
    return [INPUT_SIZE, *[params.units] * params.hidden_layers, NUM_CLASSES]


def memory_estimate(params: FashionMNISTMLPParams, batch_size: int) -> int:
    """Bytes that training this model at ``batch_size`` needs at the least (no framework imported)."""
    return mlp_memory_bytes(layer_sizes(params), params.optimizer, batch_size)


def build(params: FashionMNISTMLPParams, input_shape: tuple[int, ...], num_classes: int) -> tuple[Any, Any, str]:
    hidden = [params.units] * params.hidden_layers
    model = build_mlp(
        input_shape, hidden, params.activation, num_classes, params.output_activation, "fashion_mnist_mlp"
    )
    return model, make_optimizer(params.optimizer, params.learning_rate), "sparse_categorical_crossentropy"


def prepare(x: Any, y: Any) -> tuple[Any, Any]:
    """Images scaled by 1/255; integer labels kept as they are."""
    import numpy as np

    return scale_images(x), np.asarray(y, dtype=np.int32).reshape(-1)


WORKLOAD = register(
    Workload(
        name="fashion_mnist_mlp",
        dataset="fashion_mnist",
        params_model=FashionMNISTMLPParams,
        build_model=build,
        prepare=prepare,
        description=" ".join(__doc__.split("\n\n")[0].split()),
        memory_estimate=memory_estimate,
    )
)
