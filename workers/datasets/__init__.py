"""Datasets for the workloads: real CIFAR-10 / Fashion-MNIST from their standard archives, or seeded synthetic
data of any workload's shapes (:class:`farm.workloads.DataSpec`: images or token sequences).

Real data is decoded once per machine into a memory-mapped cache (see :mod:`workers.datasets.cache`), so every
job after the first starts without touching the archives. Nothing here imports Keras, TensorFlow, JAX or
torch; Keras is imported only inside :func:`workers.datasets.fetch._download`, when a download actually runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from farm.workloads.data import DataSpec
from workers.datasets import cache, cifar10, fashion_mnist, synthetic
from workers.datasets.fetch import DATASETS, DatasetInfo, DataUnavailable, locate

__all__ = ["DATASETS", "KINDS", "DataUnavailable", "Dataset", "DatasetInfo", "load_dataset"]

KINDS = ("real", "synthetic")


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy arrays with == is elementwise, not a bool
class Dataset:
    """A loaded dataset: samples (uint8 images or int32 tokens) and uint8/int32 labels, plus a digest that
    names its content."""

    spec: DataSpec
    kind: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    digest: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, {self.kind!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"digest={self.digest!r})"
        )


def _cap(n: int | None, available: int) -> int:
    """A cap larger than what exists means "all of it"."""
    return available if n is None else min(n, available)


def _decode(info: DatasetInfo, paths: list[Path]) -> cache.Arrays:
    """Read the archives (looked up at call time so tests can replace a reader) and check the result."""
    arrays = cifar10.read(paths[0]) if info.name == "cifar10" else fashion_mnist.read(paths)
    x_train, y_train, x_test, y_test = arrays
    for x, y in ((x_train, y_train), (x_test, y_test)):
        if x.dtype != np.uint8 or x.shape[1:] != info.image_shape or y.shape != (len(x),):
            raise ValueError(f"{info.name}: decoded arrays have unexpected shapes {x.shape} / {y.shape}")
    return arrays


def _load_real(
    info: DatasetInfo, data_dir: Path | None, cache_dir: Path, allow_download: bool
) -> tuple[cache.Arrays, str]:
    paths = locate(info, data_dir, allow_download)
    digest = cache.source_digest(info.name, paths, cache_dir)
    arrays = cache.load(cache_dir, info.name, digest)
    if arrays is None:
        cache.store(cache_dir, info.name, digest, _decode(info, paths))
        arrays = cache.load(cache_dir, info.name, digest)
        assert arrays is not None
    return arrays, digest


def load_dataset(
    data: str | DataSpec,
    kind: str,
    *,
    data_dir: Path | None,
    cache_dir: Path,
    seed: int = 0,
    train_samples: int | None = None,
    test_samples: int | None = None,
    allow_download: bool = True,
) -> Dataset:
    """Load ``data`` (a real dataset's name, or a workload's data spec) as ``kind`` ("real" or "synthetic"),
    keeping the first ``train_samples``/``test_samples``.

    ``seed`` only affects synthetic data. Raises :class:`DataUnavailable` when real archives cannot be found
    or downloaded, ValueError for an unknown name/kind, a spec with no real dataset asked for real data, or a
    corrupt archive.
    """
    if isinstance(data, str):
        if data not in DATASETS:
            raise ValueError(f"unknown dataset {data!r}; known: {', '.join(sorted(DATASETS))}")
        data = DataSpec.of_real(data)
    spec = data
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; known: {', '.join(KINDS)}")
    for n, what in ((train_samples, "train_samples"), (test_samples, "test_samples")):
        if n is not None and n < 0:
            raise ValueError(f"{what} must be >= 0, got {n}")
    if kind == "synthetic":
        n_train = _cap(train_samples, spec.train_size)
        n_test = _cap(test_samples, spec.test_size)
        arrays = synthetic.generate(spec, seed, n_train, n_test)
        digest = synthetic.digest(spec.name, seed, n_train, n_test)
    else:
        if spec.real is None:
            raise ValueError(f"there is no real dataset of {spec.name} samples: use data: synthetic")
        arrays, digest = _load_real(DATASETS[spec.real], data_dir, Path(cache_dir), allow_download)
    x_train, y_train, x_test, y_test = arrays
    n_train = _cap(train_samples, len(x_train))
    n_test = _cap(test_samples, len(x_test))
    return Dataset(
        spec=spec,
        kind=kind,
        x_train=x_train[:n_train],
        y_train=y_train[:n_train],
        x_test=x_test[:n_test],
        y_test=y_test[:n_test],
        digest=digest,
    )
