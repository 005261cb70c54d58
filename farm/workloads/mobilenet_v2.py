"""MobileNetV2 (Keras Applications, random initial weights) at any of its width multipliers, on images of any
size, sparse categorical cross-entropy on integer labels.

Like ``resnet50``: CIFAR-10 itself at ``image_size: 32`` and ``classes: 10``, synthetic images otherwise.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator

from farm.workloads import DataSpec, Workload, register
from farm.workloads._images import prepare_images, square_images, with_float32_softmax
from farm.workloads._mlp import ACTIVATION_MARGIN, Optimizer, make_optimizer, training_state_bytes
from farm.workloads._tokens import ACTIVATION_BYTES

ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
"""The width multipliers MobileNetV2 was published (and Keras ships weights) for: the table below holds the
parameter counts of these only."""

BASE: dict[float, tuple[int, int, int]] = {
    0.35: (396_128, 14_080, 1280),
    0.5: (687_680, 18_544, 1280),
    0.75: (1_355_424, 26_640, 1280),
    1.0: (2_223_872, 34_112, 1280),
    1.3: (3_721_792, 44_256, 1664),
    1.4: (4_315_776, 47_936, 1792),
}
"""Per ``alpha``: trainable parameters below the classifier, batch normalization's frozen statistics, and the
width of the pooled features the classifier reads (1280, widened above alpha 1). None depends on the image
size. Checked against Keras in ``tests/workers/test_shipped_models.py``."""


class MobileNetV2Params(BaseModel):
    """ImageNet's shapes by default; ``learning_rate`` None means the optimizer's Keras default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: StrictInt = Field(default=224, ge=32, le=512, description="Height and width of the square images.")
    classes: StrictInt = Field(default=1000, ge=2, le=100_000, description="Classes the model tells apart.")
    alpha: float = Field(
        default=1.0,
        description="Width multiplier of every layer's filters: 0.35, 0.5, 0.75, 1.0, 1.3 or 1.4.",
        json_schema_extra={"enum": list(ALPHAS)},
    )
    optimizer: Optimizer = Field(default="adam", description="The optimizer, at Keras' defaults.")
    learning_rate: StrictFloat | None = Field(
        default=None, gt=0, le=10, description="The optimizer's learning rate; None keeps Keras' default."
    )

    @field_validator("alpha", mode="before")
    @classmethod
    def _one_of_the_published(cls, value: Any) -> Any:
        # Numbers only, not True (== 1.0 in Python) nor "1.0": a flag or a string given for a width is a mistake.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in ALPHAS:
            raise ValueError(f"alpha must be one of {', '.join(map(str, ALPHAS))}, not {value!r}")
        return float(value)


def parameter_count(params: MobileNetV2Params) -> tuple[int, int]:
    """(trainable, non-trainable) parameters: the base plus a Dense classifier on the pooled features."""
    trainable, frozen, features = BASE[params.alpha]
    return trainable + (features + 1) * params.classes, frozen


ACTIVATIONS_224: dict[float, int] = {
    0.35: 9_475_764,
    0.5: 11_952_004,
    0.75: 19_293_780,
    1.0: 21_814_980,
    1.3: 29_432_148,
    1.4: 31_245_092,
}
"""Per ``alpha``: values every layer outputs for one 224×224 image (Keras' layer output shapes, summed), what
the backward pass keeps; they scale with the image's area. Checked against Keras in
``tests/workers/test_memory_estimates.py``."""


def activations_per_sample(params: MobileNetV2Params) -> int:
    """Layer outputs of one image, scaled by area from 224 pixels, 2% under it so it stays a lower bound."""
    return int(ACTIVATIONS_224[params.alpha] * params.image_size**2 / 224**2 * ACTIVATION_MARGIN)


def memory_estimate(params: MobileNetV2Params, batch_size: int) -> int:
    """Weights, gradients and optimizer state, plus the activations the backward pass keeps for one batch (at
    2 bytes each, as under mixed precision: a lower bound)."""
    trainable, frozen = parameter_count(params)
    kept = activations_per_sample(params) * batch_size * ACTIVATION_BYTES
    return training_state_bytes(trainable, params.optimizer, frozen) + kept


def data(params: MobileNetV2Params) -> DataSpec:
    return square_images(params.image_size, params.classes)


def build(params: MobileNetV2Params, input_shape: tuple[int, ...], num_classes: int) -> tuple[Any, Any, str]:
    """Keras' MobileNetV2, its softmax a float32 layer of its own (``with_float32_softmax``)."""
    import keras

    base = keras.applications.MobileNetV2(
        weights=None, input_shape=input_shape, classes=num_classes, alpha=params.alpha, classifier_activation=None
    )
    model = with_float32_softmax(base, "mobilenet_v2")
    return model, make_optimizer(params.optimizer, params.learning_rate), "sparse_categorical_crossentropy"


WORKLOAD = register(
    Workload(
        name="mobilenet_v2",
        dataset=None,
        params_model=MobileNetV2Params,
        build_model=build,
        prepare=prepare_images,
        description="MobileNetV2 (Keras Applications, untrained) on square RGB images",
        memory_estimate=memory_estimate,
        unit="images",
        data=data,
    )
)
