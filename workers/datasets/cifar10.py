"""Reader of the standard ``cifar-10-python.tar.gz``, without trusting its pickles.

The archive's batches are Python pickles, and unpickling can run arbitrary code. The batches only hold a dict
of bytes, ints, lists and one uint8 numpy array, so :class:`RestrictedUnpickler` resolves nothing but the
three numpy names an ndarray pickle needs (each behind a wrapper that refuses object dtypes, the one way a
numpy pickle could smuggle in arbitrary objects); any other global is refused before it is looked up.
"""

from __future__ import annotations

import io
import pickle
import re
import tarfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

_PIXELS = 3 * 32 * 32
_TRAIN = re.compile(r"data_batch_(\d+)")


def _plain_dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    d = np.dtype(obj, align, copy)
    if d.hasobject:
        raise pickle.UnpicklingError("refusing a numpy object dtype in a CIFAR batch")
    return d


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("refusing an ndarray subclass in a CIFAR batch")
    return np.ndarray.__new__(np.ndarray, shape, _plain_dtype(dtype))


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Literal["C", "F", "A"]) -> np.ndarray:
    d = _plain_dtype(dtype)
    return np.frombuffer(buf, dtype=d).reshape(shape, order=order)


# numpy 1 pickles say ``numpy.core``, numpy 2 pickles ``numpy._core``; protocol 5 uses ``_frombuffer``.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can build plain containers and uint8 arrays and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name} in a CIFAR batch") from None


def restricted_loads(data: bytes) -> Any:
    """``pickle.loads`` for untrusted batches; ``encoding="bytes"`` because the batches come from Python 2."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def _decode_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch → images (N,32,32,3) uint8 channels-last, labels (N,) uint8."""
    try:
        d = restricted_loads(raw)
    except Exception as e:
        raise ValueError(f"{where}: not a readable CIFAR-10 batch ({e})") from e
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ValueError(f"{where}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data, labels = d[b"data"], d[b"labels"]
    if isinstance(data, (bytes, bytearray)):
        data = np.frombuffer(data, dtype=np.uint8)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.size % _PIXELS:
        raise ValueError(f"{where}: b'data' must be uint8 with {_PIXELS} values per image")
    n = data.size // _PIXELS
    y = np.asarray(labels)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and (y.min() < 0 or y.max() > 9)):
        raise ValueError(f"{where}: b'labels' must be {n} integers in 0..9")
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major: channels-first.
    x = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y.astype(np.uint8)


def read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` from the archive; train is data_batch_1.. in numeric order."""
    train: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    test: tuple[np.ndarray, np.ndarray] | None = None
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                base = member.name.rsplit("/", 1)[-1]
                m = _TRAIN.fullmatch(base)
                if not m and base != "test_batch":
                    continue
                f = tar.extractfile(member)
                assert f is not None
                batch = _decode_batch(f.read(), f"{path}:{member.name}")
                if m:
                    train[int(m.group(1))] = batch
                else:
                    test = batch
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable cifar-10-python.tar.gz ({e})") from e
    if not train or test is None:
        raise ValueError(
            f"{path}: expected cifar-10-batches-py/data_batch_1..5 and test_batch in the archive, "
            f"found {len(train)} data batch(es) and {'a' if test is not None else 'no'} test_batch"
        )
    ordered = [train[k] for k in sorted(train)]
    x_train = np.concatenate([b[0] for b in ordered])
    y_train = np.concatenate([b[1] for b in ordered])
    return x_train, y_train, test[0], test[1]
