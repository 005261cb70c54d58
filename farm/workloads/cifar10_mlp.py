"""CIFAR-10 MLP of the seed experiment: Flatten → Dense 3000 relu → Dense 1000 relu → Dense 10 sigmoid, SGD,
categorical cross-entropy on one-hot labels."""

from __future__ import annotations

from typing import Annotated, Any

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

INPUT_SIZE = 32 * 32 * 3
"""Values of one flattened cifar10 image (``workers.datasets.fetch.DATASETS``; that package imports numpy, and
this module is imported on the submit side)."""
NUM_CLASSES = 10


class Cifar10MLPParams(MLPParams):
    hidden_units: list[Annotated[StrictInt, Field(ge=1, le=defaults.MAX_UNITS)]] = Field(
        default=[3000, 1000],
        min_length=1,
        max_length=defaults.MAX_HIDDEN_LAYERS,
        description="Width of each hidden Dense layer, in order.",
    )
    optimizer: Optimizer = "sgd"

    @model_validator(mode="after")
    def _trainable(self) -> Cifar10MLPParams:
        check_trainable(layer_sizes(self))
        return self


def layer_sizes(params: Cifar10MLPParams) -> list[int]:
    """Input, each hidden layer, output: what the parameter count and the memory estimate are made of."""
    return [INPUT_SIZE, *params.hidden_units, NUM_CLASSES]


def memory_estimate(params: Cifar10MLPParams, batch_size: int) -> int:
    """Bytes that training this model at ``batch_size`` needs at the least (no framework imported)."""
    return mlp_memory_bytes(layer_sizes(params), params.optimizer, batch_size)


def build(params: Cifar10MLPParams, input_shape: tuple[int, ...], num_classes: int) -> tuple[Any, Any, str]:
    model = build_mlp(
        input_shape, list(params.hidden_units), params.activation, num_classes, params.output_activation, "cifar10_mlp"
    )
    return model, make_optimizer(params.optimizer, params.learning_rate), "categorical_crossentropy"


def prepare(x: Any, y: Any) -> tuple[Any, Any]:
    """Images scaled by 1/255; labels one-hot float32, as the seed did with ``to_categorical``."""
    import numpy as np

    labels = np.asarray(y, dtype=np.int64).reshape(-1)
    onehot = np.zeros((labels.shape[0], 10), dtype=np.float32)
    onehot[np.arange(labels.shape[0]), labels] = 1.0
    return scale_images(x), onehot


WORKLOAD = register(
    Workload(
        name="cifar10_mlp",
        dataset="cifar10",
        params_model=Cifar10MLPParams,
        build_model=build,
        prepare=prepare,
        description=" ".join(__doc__.split("\n\n")[0].split()),
        memory_estimate=memory_estimate,
    )
)
