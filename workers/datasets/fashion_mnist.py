"""Reader of the four gzip'd IDX files of Fashion-MNIST, validating them so a truncated download fails loudly.

IDX: a big-endian uint32 magic (0x00000803 = uint8 data with 3 dims, 0x00000801 = uint8 with 1 dim), one
big-endian uint32 per dim, then the uint8 data, row-major.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


def _read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """Decode one file, refusing a wrong magic, wrong item dims, or a size that does not match the header."""
    ndim = magic & 0xFF
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt gzip ({e})") from e
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: corrupt IDX file: {len(raw)} bytes, shorter than its {header}-byte header")
    got_magic, *dims = struct.unpack(f">{1 + ndim}I", raw[:header])
    if got_magic != magic:
        raise ValueError(f"{path}: corrupt IDX file: magic 0x{got_magic:08x}, expected 0x{magic:08x}")
    if tuple(dims[1:]) != item_shape:
        raise ValueError(f"{path}: corrupt IDX file: item shape {tuple(dims[1:])}, expected {item_shape}")
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(f"{path}: corrupt IDX file: {len(raw)} bytes, header says {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x = _read_idx(images, IMAGES_MAGIC, (28, 28))
    y = _read_idx(labels, LABELS_MAGIC, ())
    if len(x) != len(y):
        raise ValueError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    if len(y) and y.max() > 9:
        raise ValueError(f"{labels}: label {int(y.max())} outside 0..9")
    return x, y


def read(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` from the four files, given in the order of :data:`FILES`."""
    train_x, train_y, test_x, test_y = paths
    return (*_pair(train_x, train_y), *_pair(test_x, test_y))
