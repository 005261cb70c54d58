"""What a workload trains on, said without any framework or numpy: a :class:`DataSpec`.

A workload's data is either one of the real datasets benchfarm can load (CIFAR-10, Fashion-MNIST, from their
standard archives) or synthetic data of any shape. The spec is a function of the workload's validated
parameters: ResNet-50 at ``image_size: 32`` and ``classes: 10`` is CIFAR-10-shaped and can train on the real
archive, at 224×224 with 1,000 classes it is ImageNet-shaped and synthetic only. The submit side reads the
spec to refuse ``data: real`` where no real dataset fits; the worker generates or loads exactly this.

This module imports nothing from :mod:`farm.workloads` (which imports it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

SampleKind = Literal["image", "tokens"]
"""``image``: uint8 pixels in 0..255 (a workload's ``prepare`` scales them); ``tokens``: int32 token ids in
1..vocab_size-1 (0 is left for padding), one sequence per sample."""


@dataclass(frozen=True)
class RealDataset:
    """A dataset benchfarm can load from its standard archives (see :mod:`workers.datasets.fetch`)."""

    name: str
    sample_shape: tuple[int, ...]
    num_classes: int
    train_size: int
    test_size: int


REAL_DATASETS: dict[str, RealDataset] = {
    "cifar10": RealDataset("cifar10", (32, 32, 3), 10, 50_000, 10_000),
    "fashion_mnist": RealDataset("fashion_mnist", (28, 28), 10, 60_000, 10_000),
}
"""The real datasets by name; ``workers.datasets.fetch.DATASETS`` holds their files (a test keeps the two in
step: that module imports numpy, this one is imported on the submit side)."""


@dataclass(frozen=True)
class DataSpec:
    """The shapes and dtypes of one sample and its label, and where real data of that shape comes from."""

    sample_shape: tuple[int, ...]
    num_classes: int
    kind: SampleKind = "image"
    vocab_size: int | None = None
    """Token ids are drawn from 1..vocab_size-1 (``tokens`` only)."""
    real: str | None = None
    """The name of a real dataset of exactly this shape and class count, when there is one."""
    train_size: int = 50_000
    """Samples in the synthetic training set when ``train_samples`` does not cap it (the real one's size when
    ``real`` is set)."""
    test_size: int = 10_000

    def __post_init__(self) -> None:
        if not self.sample_shape or any(d < 1 for d in self.sample_shape):
            raise ValueError(f"a sample's shape must be positive dimensions, got {self.sample_shape}")
        if self.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {self.num_classes}")
        if self.kind == "tokens" and (self.vocab_size is None or self.vocab_size < 2):
            raise ValueError("token data needs a vocab_size of at least 2")
        if self.real is not None:
            real = REAL_DATASETS.get(self.real)
            if real is None:
                raise ValueError(f"unknown real dataset {self.real!r}; known: {', '.join(sorted(REAL_DATASETS))}")
            if (real.sample_shape, real.num_classes) != (self.sample_shape, self.num_classes) or self.kind != "image":
                raise ValueError(
                    f"{self.real} holds {real.num_classes} classes of {real.sample_shape} images, not "
                    f"{self.num_classes} classes of {self.sample_shape} {self.kind}"
                )

    @classmethod
    def of_real(cls, name: str) -> DataSpec:
        """The spec of a real dataset (what the seed MLPs train on)."""
        real = REAL_DATASETS[name]
        return cls(
            sample_shape=real.sample_shape,
            num_classes=real.num_classes,
            real=name,
            train_size=real.train_size,
            test_size=real.test_size,
        )

    @property
    def name(self) -> str:
        """What the data is called in results and digests: the real dataset's name, else a name made of the
        shape (``images_224x224x3_c1000``, ``tokens_128_v20000_c2``)."""
        if self.real is not None:
            return self.real
        dims = "x".join(str(d) for d in self.sample_shape)
        vocab = f"_v{self.vocab_size}" if self.kind == "tokens" else ""
        return f"{'images' if self.kind == 'image' else 'tokens'}_{dims}{vocab}_c{self.num_classes}"

    @property
    def values_per_sample(self) -> int:
        return math.prod(self.sample_shape)

    @property
    def tokens_per_sample(self) -> int | None:
        """Tokens in one sample (the sequence length) for token data: a throughput in tokens/s is this times
        samples/s. None for images."""
        return self.values_per_sample if self.kind == "tokens" else None

    def sample_bytes(self) -> int:
        """Bytes of one raw sample as generated or loaded (uint8 pixels, int32 tokens)."""
        return self.values_per_sample * (1 if self.kind == "image" else 4)


__all__ = ["REAL_DATASETS", "DataSpec", "RealDataset", "SampleKind"]
