"""What the image classifiers from Keras Applications share (``resnet50``, ``mobilenet_v2``): square RGB images
(CIFAR-10 itself at its shapes), the seed's pixel scaling and a float32 softmax.

Keras is imported inside the functions: this module is imported on the submit side too.
"""

from __future__ import annotations

from typing import Any

from farm.workloads import DataSpec
from farm.workloads._mlp import scale_images


def square_images(image_size: int, classes: int) -> DataSpec:
    """Square RGB images; CIFAR-10 itself when the shapes are CIFAR-10's, so ``data: real`` can train on it,
    and ImageNet-sized sets of synthetic images otherwise."""
    if (image_size, classes) == (32, 10):
        return DataSpec.of_real("cifar10")
    shape = (image_size, image_size, 3)
    return DataSpec(sample_shape=shape, num_classes=classes, train_size=50_000, test_size=10_000)


def prepare_images(x: Any, y: Any) -> tuple[Any, Any]:
    """Pixels scaled by 1/255 to float32 (with ``weights=None`` the model has no preprocessing of its own);
    integer labels as int32."""
    import numpy as np

    return scale_images(x), np.asarray(y, dtype=np.int32).reshape(-1)


def with_float32_softmax(base: Any, name: str) -> Any:
    """``base`` (built with ``classifier_activation=None``) with its softmax as a float32 layer of its own, so
    that under mixed precision the probabilities and the loss stay float32: the same weights and FLOPs as the
    stock model."""
    import keras

    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(base.output)
    return keras.Model(base.input, outputs, name=name)
