"""What the two seed MLPs share: the optimizer choice and a Keras Sequential builder.

Keras is imported inside the functions: this module is imported on the submit side too.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Activation = Literal["relu", "tanh", "sigmoid", "gelu", "elu", "selu"]
Optimizer = Literal["sgd", "adam", "adamw", "rmsprop"]


class MLPParams(BaseModel):
    """Parameters common to every MLP workload; ``None`` learning rate means Keras' default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    activation: Activation = "relu"
    output_activation: Literal["sigmoid", "softmax"] = "sigmoid"
    optimizer: Optimizer = "sgd"
    learning_rate: float | None = Field(default=None, gt=0, le=10)


def make_optimizer(name: str, learning_rate: float | None) -> Any:
    import keras

    cls = {
        "sgd": keras.optimizers.SGD,
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
    }[name]
    return cls() if learning_rate is None else cls(learning_rate=learning_rate)


def build_mlp(input_shape: tuple[int, ...], hidden: list[int], activation: str, num_classes: int,
              output_activation: str, name: str) -> Any:
    """Flatten → Dense(hidden[i], activation)… → Dense(num_classes, output_activation)."""
    import keras

    layers: list[Any] = [keras.Input(shape=input_shape), keras.layers.Flatten()]
    layers += [keras.layers.Dense(units, activation=activation) for units in hidden]
    # The output layer stays float32 under mixed precision so the loss is computed stably.
    layers.append(keras.layers.Dense(num_classes, activation=output_activation, dtype="float32"))
    return keras.Sequential(layers, name=name)


def scale_images(x: Any) -> Any:
    """The seed's preprocessing: uint8 pixels scaled by 1/255 to float32."""
    import numpy as np

    return np.asarray(x, dtype=np.float32) / np.float32(255.0)
