"""ResNet-50 (Keras Applications, random initial weights) on images of any size, sparse categorical
cross-entropy on integer labels.

At ``image_size: 32`` and ``classes: 10`` its samples are CIFAR-10's and it trains on the real archive; at any
other shape (224×224 and 1,000 classes, ImageNet's, by default) it trains on synthetic images only.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from farm.workloads import DataSpec, Workload, register
from farm.workloads._mlp import FLOAT32, OPTIMIZER_SLOTS, Optimizer, make_optimizer, scale_images

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


def memory_estimate(params: ResNet50Params, batch_size: int) -> int:
    """Bytes training needs at the least: float32 weights, gradients and optimizer state of every trainable
    parameter, and the frozen statistics. Activations are left out (a lower bound: they come on top)."""
    trainable, frozen = parameter_count(params)
    return (trainable * (2 + OPTIMIZER_SLOTS.get(params.optimizer, 2)) + frozen) * FLOAT32


def data(params: ResNet50Params) -> DataSpec:
    """Square RGB images; CIFAR-10 itself when the shapes are CIFAR-10's, so ``data: real`` can train on it."""
    if (params.image_size, params.classes) == (32, 10):
        return DataSpec.of_real("cifar10")
    shape = (params.image_size, params.image_size, 3)
    return DataSpec(sample_shape=shape, num_classes=params.classes, train_size=50_000, test_size=10_000)


def build(params: ResNet50Params, input_shape: tuple[int, ...], num_classes: int) -> tuple[Any, Any, str]:
    """Keras' ResNet50 with its classifier's softmax moved to a float32 layer of its own, so that under mixed
    precision the probabilities and the loss stay float32 (the same weights and FLOPs as the stock model)."""
    import keras

    base = keras.applications.ResNet50(
        weights=None, input_shape=input_shape, classes=num_classes, classifier_activation=None
    )
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(base.output)
    model = keras.Model(base.input, outputs, name="resnet50")
    return model, make_optimizer(params.optimizer, params.learning_rate), "sparse_categorical_crossentropy"


def prepare(x: Any, y: Any) -> tuple[Any, Any]:
    """Pixels scaled by 1/255 to float32 (with ``weights=None`` the model has no preprocessing of its own);
    integer labels as int32."""
    import numpy as np

    return scale_images(x), np.asarray(y, dtype=np.int32).reshape(-1)


WORKLOAD = register(
    Workload(
        name="resnet50",
        dataset=None,
        params_model=ResNet50Params,
        build_model=build,
        prepare=prepare,
        description="ResNet-50 (Keras Applications, untrained) on square RGB images",
        memory_estimate=memory_estimate,
        unit="images",
        data=data,
    )
)
