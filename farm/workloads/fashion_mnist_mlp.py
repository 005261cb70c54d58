"""Fashion-MNIST MLP of the seed experiment: Flatten → hidden_layers × Dense 500 relu → Dense 10 sigmoid, Adam,
sparse categorical cross-entropy on integer labels."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from farm import defaults
from farm.workloads import Workload, register
from farm.workloads._mlp import MLPParams, Optimizer, build_mlp, make_optimizer, scale_images


class FashionMNISTMLPParams(MLPParams):
    hidden_layers: int = Field(default=5, ge=1, le=defaults.MAX_HIDDEN_LAYERS)
    units: int = Field(default=500, ge=1, le=defaults.MAX_UNITS)
    optimizer: Optimizer = "adam"


def build(params: FashionMNISTMLPParams, input_shape: tuple[int, ...], num_classes: int) -> tuple[Any, Any, str]:
    hidden = [params.units] * params.hidden_layers
    model = build_mlp(input_shape, hidden, params.activation, num_classes, params.output_activation,
                      "fashion_mnist_mlp")
    return model, make_optimizer(params.optimizer, params.learning_rate), "sparse_categorical_crossentropy"


def prepare(x: Any, y: Any) -> tuple[Any, Any]:
    """Images scaled by 1/255; integer labels kept as they are."""
    import numpy as np

    return scale_images(x), np.asarray(y, dtype=np.int32).reshape(-1)


WORKLOAD = register(Workload(
    name="fashion_mnist_mlp",
    dataset="fashion_mnist",
    params_model=FashionMNISTMLPParams,
    build_model=build,
    prepare=prepare,
    description=__doc__.strip().splitlines()[0],
))
