"""On-disk cache of decoded arrays, keyed by a digest of the source archives, safe for concurrent workers.

Layout: ``cache_dir/<name>/<digest>/{x_train,y_train,x_test,y_test}.npy`` plus a ``complete`` marker written
last. Every file is written under a unique temporary name in the same folder and moved into place with
``os.replace`` (atomic), so a reader never sees a partial file, and a folder without ``complete`` is ignored.
Two workers decoding at once write identical bytes; whichever rename lands last wins, harmlessly.

Hashing a 170 MB archive on every job would cost more than loading it, so ``digests.json`` in ``cache_dir``
remembers each archive's sha256 under its (path, size, mtime_ns), like make and rsync do: an archive rewritten
in place with the same size and modification time would be missed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
MARKER = "complete"
INDEX = "digests.json"

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write via ``write(fileobj)`` to a temp file beside ``path``, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Full hex sha256 of a file, read in chunks so big archives never sit in memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _load_index(cache_dir: Path) -> dict[str, dict]:
    try:
        data = json.loads((cache_dir / INDEX).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # missing or damaged: it is only a shortcut, rebuild it


def file_sha256(path: Path, cache_dir: Path) -> str:
    """sha256 of ``path``, from the index when its (path, size, mtime_ns) are unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    index = _load_index(cache_dir)
    entry = index.get(str(path))
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return str(entry["sha256"])
    digest = sha256_file(path)
    index = _load_index(cache_dir)  # re-read: another worker may have added entries while we hashed
    index[str(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    cache_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(cache_dir / INDEX, lambda f: f.write(json.dumps(index, indent=1).encode()))
    return digest


def source_digest(name: str, paths: Sequence[Path], cache_dir: Path) -> str:
    """16 hex chars identifying a real dataset's content: the sha256 of its archives, in catalogue order."""
    h = hashlib.sha256(f"real|{name}".encode())
    for p in paths:
        h.update(f"|{file_sha256(p, cache_dir)}".encode())
    return h.hexdigest()[:16]


def entry_dir(cache_dir: Path, name: str, digest: str) -> Path:
    return Path(cache_dir) / name / digest


def load(cache_dir: Path, name: str, digest: str) -> Arrays | None:
    """The cached arrays, memory-mapped read-only, or None if this entry was never completed."""
    d = entry_dir(cache_dir, name, digest)
    if not (d / MARKER).is_file():
        return None
    try:
        x_train, y_train, x_test, y_test = (np.load(d / f"{a}.npy", mmap_mode="r", allow_pickle=False) for a in ARRAYS)
    except (OSError, ValueError):
        return None  # damaged by hand (a file deleted or truncated): decode again and overwrite
    return x_train, y_train, x_test, y_test


def store(cache_dir: Path, name: str, digest: str, arrays: Arrays) -> None:
    """Write the four arrays, each atomically, then the ``complete`` marker."""
    d = entry_dir(cache_dir, name, digest)
    d.mkdir(parents=True, exist_ok=True)
    for a, arr in zip(ARRAYS, arrays, strict=True):

        def save(f: BinaryIO, arr: np.ndarray = arr) -> None:
            np.save(f, np.ascontiguousarray(arr), allow_pickle=False)

        _atomic_write(d / f"{a}.npy", save)
    _atomic_write(d / MARKER, lambda f: f.write(b"ok\n"))
