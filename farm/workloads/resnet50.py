"""ResNet-50 (Keras Applications, random initial weights) on images of any size, sparse categorical
cross-entropy on integer labels.

At ``image_size: 32`` and ``classes: 10`` its samples are CIFAR-10's and it trains on the real archive; at any
other shape (224×224 and 1,000 classes, ImageNet's, by default) it trains on synthetic images only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from farm.workloads import DataSpec, Workload, register
from farm.workloads._images import prepare_images, square_images, with_float32_softmax
from farm.workloads._mlp import ACTIVATION_MARGIN, Optimizer, make_optimizer, training_state_bytes
from farm.workloads._tokens import ACTIVATION_BYTES

BASE_TRAINABLE = 23_534_592
"""Trainable parameters of ResNet-50 below its classifier: they do not depend on the image size (the
convolutions' kernels do not, and the top pools globally). Checked against Keras in
``tests/workers/test_shipped_models.py``."""
BASE_NON_TRAINABLE = 53_120
"""Batch normalization's moving means and variances: held in memory, never trained."""
FEATURES = 2048
"""Width of the pooled features the classifier reads."""


class ResNet50Params(BaseModel):
    """ImageNet's shapes by default; ``learning_rate`` None means the optimizer's Keras default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: StrictInt = Field(default=224, ge=32, le=512, description="Height and width of the square images.")
    classes: StrictInt = Field(default=1000, ge=2, le=100_000, description="Classes the model tells apart.")
    optimizer: Optimizer = Field(default="sgd", description="The optimizer, at Keras' defaults.")
    learning_rate: StrictFloat | None = Field(
        default=None, gt=0, le=10, description="The optimizer's learning rate; None keeps Keras' default."
    )


def parameter_count(params: ResNet50Params) -> tuple[int, int]:
    """(trainable, non-trainable) parameters: the base plus a Dense classifier on the pooled features."""
    return BASE_TRAINABLE + (FEATURES + 1) * params.classes, BASE_NON_TRAINABLE


ACTIVATIONS_224 = 37_119_232
"""Values every layer of the model outputs for one 224×224 image (Keras' layer output shapes, summed): what the
backward pass keeps. Every feature map scales with the image's area. Checked against Keras in
``tests/workers/test_memory_estimates.py``."""


def activations_per_sample(image_size: int) -> int:
    """Layer outputs of one image: the 224-pixel count scaled by area, 2% under it (the convolutions' padding and
    rounding make small sizes a little larger), so it stays a lower bound."""
    return int(ACTIVATIONS_224 * image_size**2 / 224**2 * ACTIVATION_MARGIN)


def memory_estimate(params: ResNet50Params, batch_size: int) -> int:
    """Weights, gradients and optimizer state, plus the activations the backward pass keeps for one batch (at
    2 bytes each, as under mixed precision: a lower bound). At 512 pixels and batch 4,096 that is terabytes."""
    trainable, frozen = parameter_count(params)
    kept = activations_per_sample(params.image_size) * batch_size * ACTIVATION_BYTES
    return training_state_bytes(trainable, params.optimizer, frozen) + kept


def data(params: ResNet50Params) -> DataSpec:
    return square_images(params.image_size, params.classes)


def build(params: ResNet50Params, input_shape: tuple[int, ...], num_classes: int) -> tuple[Any, Any, str]:
    """Keras' ResNet50, its softmax a float32 layer of its own (``with_float32_softmax``)."""
    import keras

    base = keras.applications.ResNet50(
        weights=None, input_shape=input_shape, classes=num_classes, classifier_activation=None
    )
    model = with_float32_softmax(base, "resnet50")
    return model, make_optimizer(params.optimizer, params.learning_rate), "sparse_categorical_crossentropy"


WORKLOAD = register(
    Workload(
        name="resnet50",
        dataset=None,
        params_model=ResNet50Params,
        build_model=build,
        prepare=prepare_images,
        description="ResNet-50 (Keras Applications, untrained) on square RGB images",
        memory_estimate=memory_estimate,
        unit="images",
        data=data,
    )
)
