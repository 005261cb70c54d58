"""CIFAR-10 MLP of the seed experiment: Flatten → Dense 3000 relu → Dense 1000 relu → Dense 10 sigmoid, SGD,
categorical cross-entropy on one-hot labels."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from farm import defaults
from farm.workloads import Workload, register
from farm.workloads._mlp import MLPParams, Optimizer, build_mlp, make_optimizer, scale_images


class Cifar10MLPParams(MLPParams):
    hidden_units: list[Annotated[int, Field(ge=1, le=defaults.MAX_UNITS)]] = Field(
        default=[3000, 1000], min_length=1, max_length=defaults.MAX_HIDDEN_LAYERS,
        description="Width of each hidden Dense layer, in order.",
    )
    optimizer: Optimizer = "sgd"


def build(params: Cifar10MLPParams, input_shape: tuple[int, ...], num_classes: int) -> tuple[Any, Any, str]:
    model = build_mlp(input_shape, list(params.hidden_units), params.activation, num_classes,
                      params.output_activation, "cifar10_mlp")
    return model, make_optimizer(params.optimizer, params.learning_rate), "categorical_crossentropy"


def prepare(x: Any, y: Any) -> tuple[Any, Any]:
    """Images scaled by 1/255; labels one-hot float32, as the seed did with ``to_categorical``."""
    import numpy as np

    labels = np.asarray(y, dtype=np.int64).reshape(-1)
    onehot = np.zeros((labels.shape[0], 10), dtype=np.float32)
    onehot[np.arange(labels.shape[0]), labels] = 1.0
    return scale_images(x), onehot


WORKLOAD = register(Workload(
    name="cifar10_mlp",
    dataset="cifar10",
    params_model=Cifar10MLPParams,
    build_model=build,
    prepare=prepare,
    description=__doc__.strip().splitlines()[0],
))
