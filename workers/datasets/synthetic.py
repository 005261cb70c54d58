"""Seeded random data of a workload's shapes and dtypes: benchmarks compute, not accuracy, offline.

Images are uint8 pixels in 0..255 (what a real dataset's archive holds, so a workload's ``prepare`` treats both
alike); token sequences are int32 ids in 1..vocab_size-1 (0 is padding in Keras' conventions).

Each of the four arrays has its own random stream (spawned from the seed), so capping the train set does not
change the test set. Only the capped number of samples is generated.
"""

from __future__ import annotations

import hashlib

import numpy as np

from farm.workloads.data import DataSpec

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def digest(name: str, seed: int, n_train: int, n_test: int) -> str:
    """16 hex chars identifying the generated content: it is a function of these four values alone."""
    return hashlib.sha256(f"synthetic|{name}|{seed}|{n_train}|{n_test}".encode()).hexdigest()[:16]


def generate(spec: DataSpec, seed: int, n_train: int, n_test: int) -> Arrays:
    """``(x_train, y_train, x_test, y_test)``: samples as the spec says, labels in 0..num_classes-1 (uint8
    while they fit, as the real archives store them; int32 beyond 256 classes)."""
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    label_dtype = np.uint8 if spec.num_classes <= 256 else np.int32

    def images(rng: np.random.Generator, n: int) -> np.ndarray:
        if spec.kind == "tokens":
            assert spec.vocab_size is not None  # DataSpec checks it
            return rng.integers(1, spec.vocab_size, size=(n, *spec.sample_shape), dtype=np.int32)
        return rng.integers(0, 256, size=(n, *spec.sample_shape), dtype=np.uint8)

    def labels(rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, spec.num_classes, size=(n,), dtype=label_dtype)

    arrays = (
        images(streams[0], n_train),
        labels(streams[1], n_train),
        images(streams[2], n_test),
        labels(streams[3], n_test),
    )
    for a in arrays:
        a.setflags(write=False)  # read-only, like the memory-mapped real data
    return arrays
