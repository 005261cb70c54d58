"""What the two seed MLPs share (the optimizer choice, a Keras Sequential builder, their size in memory), and
what every shipped workload takes from them: the optimizers and the bytes of a model's training state.

Keras is imported inside the functions: this module is imported on the submit side too, where the parameter
count and the memory estimate are plain arithmetic on the layer sizes.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from farm.workloads import MAX_PARAMETERS

Activation = Literal["relu", "tanh", "sigmoid", "gelu", "elu", "selu"]
Optimizer = Literal["sgd", "adam", "adamw", "rmsprop"]


class MLPParams(BaseModel):
    """Parameters common to every MLP workload; ``None`` learning rate means Keras' default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    activation: Activation = "relu"
    output_activation: Literal["sigmoid", "softmax"] = "sigmoid"
    optimizer: Optimizer = "sgd"
    learning_rate: StrictFloat | None = Field(default=None, gt=0, le=10)


OPTIMIZER_SLOTS: dict[str, int] = {"sgd": 0, "adam": 2, "adamw": 2, "rmsprop": 1}
"""Values of optimizer state per parameter at Keras' defaults: SGD has no momentum, RMSprop keeps a running
mean square, Adam and AdamW two moments."""

FLOAT32 = 4

ACTIVATION_MARGIN = 0.98
"""Activation counts measured at one image size and scaled by area to another are taken 2% low: padding and
rounding make the true count a little larger at some sizes, and an estimate must stay a lower bound."""


def training_state_bytes(trainable: int, optimizer: str, frozen: int = 0) -> int:
    """Bytes of a model's training state, in float32: weights, gradients and optimizer state of every trainable
    parameter, and ``frozen`` parameters held but never trained (batch normalization's statistics). Every
    shipped workload's memory estimate starts from this; activations come on top."""
    return (trainable * (2 + OPTIMIZER_SLOTS.get(optimizer, 2)) + frozen) * FLOAT32


def dense_parameters(sizes: list[int]) -> int:
    """Weights and biases of Dense layers chaining ``sizes`` (input size first, output size last)."""
    return sum((a + 1) * b for a, b in pairwise(sizes))


def check_trainable(sizes: list[int]) -> None:
    """Refuse a model no machine can train, whichever workers are up (its message names no field: the
    parameter count follows from several)."""
    count = dense_parameters(sizes)
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"the model would have {count:,} parameters, more than the {MAX_PARAMETERS:,} any machine can train"
        )


def mlp_memory_bytes(sizes: list[int], optimizer: str, batch_size: int) -> int:
    """Bytes an MLP's training holds at the least, in float32: weights, gradients and optimizer state per
    parameter, plus every layer's output for one batch, twice (kept for the backward pass, and its gradient).

    A lower bound (the framework, the data and its buffers come on top): a job above a machine's memory
    cannot run there, a job below it still might not.
    """
    activations = sum(sizes) * batch_size * 2
    return training_state_bytes(dense_parameters(sizes), optimizer) + activations * FLOAT32


def make_optimizer(name: str, learning_rate: float | None) -> Any:
    import keras

    cls = {
        "sgd": keras.optimizers.SGD,
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "rmsprop": keras.optimizers.RMSprop,
    }[name]
    return cls() if learning_rate is None else cls(learning_rate=learning_rate)


def build_mlp(
    input_shape: tuple[int, ...],
    hidden: list[int],
    activation: str,
    num_classes: int,
    output_activation: str,
    name: str,
) -> Any:
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
