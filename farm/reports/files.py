"""Output files written whole or not at all: ``-o`` of results, report and compare, and ``farm run``'s files.

A file is written to a temporary file beside its target, flushed to disk (fsync), then renamed over the target
(``os.replace``, atomic within one file system): a full disk, a kill or a crash leaves the old file or none,
never half a CSV that a later script would read as a whole one. A target that is not a regular file (a device
such as ``/dev/stdout``, a pipe) cannot be replaced and is written in place. Every failure is an
:class:`OutputError` with one line saying why. Light: pandas is imported only to render a frame.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from farm import columns

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SUFFIXES", "OutputError", "check_output", "write_atomic", "write_frame"]

SUFFIXES = (".csv", ".json", ".md", ".parquet")
"""What a frame can be written as, by the path's suffix (no suffix: CSV)."""


class OutputError(Exception):
    """An output file could not be written (missing directory, read-only place, full disk): exit 1."""


def check_suffix(path: Path) -> None:
    """Refuse a suffix no writer knows, before any work: ValueError naming the supported ones (a usage error)."""
    suffix = Path(path).suffix.lower()
    if suffix and suffix not in SUFFIXES:
        raise ValueError(f"cannot write {path}: unknown suffix {suffix!r}; use {', '.join(SUFFIXES)} (no suffix: .csv)")


def check_output(path: Path) -> None:
    """Everything about ``path`` that can be known before the work that fills it: a bad suffix is a ValueError
    (usage), a target that is a directory, a missing parent or .parquet without pyarrow an OutputError."""
    path = Path(path)
    check_suffix(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    parent = path.parent
    if not parent.exists():
        raise OutputError(f"cannot write {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is not a directory")
    if path.suffix.lower() == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise OutputError(
            f"cannot write {path}: .parquet needs pyarrow (pip install pyarrow); or write .csv, .json or .md instead"
        )


def _why(path: Path, e: OSError) -> OutputError:
    """One line for a failed write; the common causes in words a user acts on."""
    reasons: dict[int | None, str] = {  # errno is None for an OSError raised without one
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EISDIR: "it is a directory",
        errno.ENOTDIR: f"{path.parent} is not a directory",
        errno.ENOENT: f"directory {path.parent} does not exist"
        if not path.parent.is_dir()
        else f"files cannot be created in {path.parent}",
    }
    return OutputError(f"cannot write {path}: {reasons.get(e.errno, e.strerror or str(e))}")


def write_atomic(path: Path, fill: Callable[[Path], None]) -> Path:
    """Have ``fill(tmp)`` write a temporary file beside ``path`` (same suffix), fsync it, rename it over ``path``.

    A symlink's target is replaced, not the link. On any failure the temporary file is removed, ``path`` is
    untouched and an OutputError (one line) is raised; an exception of ``fill`` that is not an OSError passes.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise _why(path, e) from None
    if mode is not None and not stat.S_ISREG(mode):  # /dev/stdout, /dev/full, a FIFO: nothing to rename over
        try:
            fill(path)
        except OSError as e:
            raise _why(path, e) from None
        return path
    target = Path(os.path.realpath(path))
    # Beside the target (a rename works within one file system), hidden, with the target's suffix: fill may
    # choose the format by it. Created like any new file (0666 less the umask), then given the old file's mode.
    tmp = target.with_name(f".{target.stem}-{os.getpid()}-{secrets.token_hex(4)}-tmp{target.suffix}")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        raise _why(path, e) from None
    try:
        fill(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))
        os.replace(tmp, target)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _why(path, e) from None
        raise
    _fsync_dir(target.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable; best effort (some file systems refuse to fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


COUNT_COLUMNS = columns.COUNT_COLUMNS | {
    "n",
    "n_failed",
    "n_contended",
    "n_baseline",
    "n_contended_baseline",
    "n_invalid",
    "n_invalid_baseline",
    "n_a",
    "n_b",
    "n_contended_a",
    "n_contended_b",
    "n_invalid_a",
    "n_invalid_b",
    "outliers",
    "software_keys",
}
"""Columns that count things: written as integers (``1``, not ``1.0``) even where some rows have no value."""


def integer_counts(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with each count column (``COUNT_COLUMNS``) that pandas holds as floats only because some rows lack
    a value (a job not run has no ``attempt``) made a nullable integer column, so files say ``1`` and not
    ``1.0``; a column with a fractional value is left as it is. The frame given is not changed."""
    import numpy as np
    import pandas as pd

    out = None
    for col in df.columns:
        if col not in COUNT_COLUMNS or not pd.api.types.is_float_dtype(df[col]):
            continue
        values = df[col].to_numpy(dtype=float)
        present = values[~np.isnan(values)]
        if not np.all(np.mod(present, 1) == 0) or np.any(np.abs(present) >= 2**53):
            continue
        if out is None:
            out = df.copy()
        out[col] = df[col].astype("Int64")
    return df if out is None else out


def write_frame(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` atomically, in the format its suffix names (farm.reports.tables.write_frame renders it);
    counts as integers (:func:`integer_counts`)."""
    check_output(path)
    from farm.reports.tables import write_frame as render  # pandas: only when a frame is written

    df = integer_counts(df)

    def fill(tmp: Path) -> None:
        try:
            render(df, tmp)
        except RuntimeError as e:  # e.g. .parquet without pyarrow
            raise OutputError(str(e)) from None

    return write_atomic(path, fill)
