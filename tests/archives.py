"""Writers of the real dataset archive formats, tiny, for tests: CIFAR-10's pickled batches in a tar.gz and
Fashion-MNIST's gzip'd IDX files."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from workers.datasets import fetch

CIFAR = "cifar-10-python.tar.gz"
FASHION = fetch.DATASETS["fashion_mnist"].files


class _Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the real batches: str as BINSTRING, numpy.core globals."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)
    _NAMES: ClassVar[dict[int, str]] = {
        id(np.ndarray): "numpy\nndarray",
        id(np.dtype): "numpy\ndtype",
        id(np.zeros(1).__reduce__()[0]): "numpy.core.multiarray\n_reconstruct",
    }

    def save_bytes(self, obj: bytes) -> None:
        head = (
            pickle.SHORT_BINSTRING + bytes([len(obj)])
            if len(obj) < 256
            else pickle.BINSTRING + struct.pack("<i", len(obj))
        )
        self.write(head + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin1"))

    def save_global(self, obj, name=None) -> None:
        self.write(pickle.GLOBAL + self._NAMES[id(obj)].encode() + b"\n")
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def _batch_bytes(x_hwc: np.ndarray, labels: list[int], protocol: int | str, as_bytes: bool) -> bytes:
    """A CIFAR batch dict as the archive holds it: b"data" rows are channels-first R, G, B planes."""
    data = np.ascontiguousarray(x_hwc.transpose(0, 3, 1, 2)).reshape(len(x_hwc), 3072)
    d = {
        b"batch_label": b"training batch",
        b"labels": list(labels),
        b"data": data.tobytes() if as_bytes else data,
        b"filenames": [b"img.png"] * len(labels),
    }
    if protocol == "py2":
        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump(d)
        return buf.getvalue()
    return pickle.dumps(d, protocol=protocol)


def write_cifar(
    path: Path,
    train: list[tuple[np.ndarray, list[int]]],
    test: tuple[np.ndarray, list[int]],
    protocol: int | str = 4,
    as_bytes: bool = False,
    order: list[int] | None = None,
) -> Path:
    members = [(f"data_batch_{i + 1}", _batch_bytes(x, y, protocol, as_bytes)) for i, (x, y) in enumerate(train)]
    if order is not None:
        members = [members[i] for i in order]
    members.append(("test_batch", _batch_bytes(*test, protocol, as_bytes)))
    members.append(("batches.meta", pickle.dumps({b"label_names": [b"airplane"] * 10})))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _idx(magic: int, arr: np.ndarray) -> bytes:
    return struct.pack(f">{1 + arr.ndim}I", magic, *arr.shape) + arr.astype(np.uint8).tobytes()


def write_fashion(
    folder: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    payloads = [_idx(0x803, x_train), _idx(0x801, y_train), _idx(0x803, x_test), _idx(0x801, y_test)]
    for fname, raw in zip(FASHION, payloads, strict=True):
        with gzip.open(folder / fname, "wb") as f:
            f.write(raw)
    return folder
