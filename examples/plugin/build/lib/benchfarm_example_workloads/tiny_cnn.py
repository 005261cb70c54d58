"""A small CNN on CIFAR-10-shaped images: Conv2D → MaxPool → Conv2D → GlobalAveragePooling → Dense → Dense.

A complete benchfarm workload plugin. The module stays light: Keras is imported inside ``build`` only, which
runs in the job's own process on a worker; the parameter model is plain Pydantic, validated when a sweep is
submitted and again on the worker.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from farm.workloads import Workload


class TinyCNNParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    filters: StrictInt = Field(default=32, ge=1, le=512, description="Filters of the first convolution.")
    dense_units: StrictInt = Field(default=64, ge=1, le=4096, description="Width of the hidden Dense layer.")
    learning_rate: float = Field(default=1e-3, gt=0, le=1)


def build(params: TinyCNNParams, input_shape: tuple[int, ...], num_classes: int) -> tuple[Any, Any, str]:
    """The compiled model's parts: the model, its optimizer and its loss (benchfarm compiles them)."""
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Conv2D(params.filters, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(params.filters * 2, 3, activation="relu", padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(params.dense_units, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="tiny_cnn",
    )
    return model, keras.optimizers.Adam(params.learning_rate), "sparse_categorical_crossentropy"


def prepare(x: Any, y: Any) -> tuple[Any, Any]:
    """uint8 images to float32 in [0, 1]; integer labels as they are."""
    import numpy as np

    return np.asarray(x, dtype=np.float32) / np.float32(255.0), np.asarray(y, dtype=np.int32).reshape(-1)


WORKLOAD = Workload(
    name="tiny_cnn",
    dataset="cifar10",
    params_model=TinyCNNParams,
    build_model=build,
    prepare=prepare,
    description="A small CNN on CIFAR-10-shaped images (an example plugin)",
    unit="images",
)
