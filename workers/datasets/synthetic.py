"""Seeded random data with a real dataset's shapes and dtypes: benchmarks compute, not accuracy, offline.

Each of the four arrays has its own random stream (spawned from the seed), so capping the train set does not
change the test set. Only the capped number of samples is generated.
"""

from __future__ import annotations

import hashlib

import numpy as np

from workers.datasets.fetch import DatasetInfo

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def digest(name: str, seed: int, n_train: int, n_test: int) -> str:
    """16 hex chars identifying the generated content: it is a function of these four values alone."""
    return hashlib.sha256(f"synthetic|{name}|{seed}|{n_train}|{n_test}".encode()).hexdigest()[:16]


def generate(info: DatasetInfo, seed: int, n_train: int, n_test: int) -> Arrays:
    """``(x_train, y_train, x_test, y_test)``: uint8 pixels in 0..255, uint8 labels in 0..num_classes-1."""
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]

    def images(rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, 256, size=(n, *info.image_shape), dtype=np.uint8)

    def labels(rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, info.num_classes, size=(n,), dtype=np.uint8)

    arrays = (
        images(streams[0], n_train),
        labels(streams[1], n_train),
        images(streams[2], n_test),
        labels(streams[3], n_test),
    )
    for a in arrays:
        a.setflags(write=False)  # read-only, like the memory-mapped real data
    return arrays
