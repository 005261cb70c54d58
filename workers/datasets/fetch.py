"""Where a dataset's source archives are: the catalogue of files and URLs, the search order, the download.

Search order per file: ``data_dir/<name>/``, ``data_dir/`` (an offline machine's own copy wins), then the
Keras cache (``$KERAS_HOME/datasets`` or ``~/.keras/datasets``, so archives Keras already fetched are reused),
then, if allowed, ``keras.utils.get_file``. Only this last step imports Keras, and only when it runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from farm.feasibility import DOWNLOAD, HELD, MISSING

KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"


@dataclass(frozen=True)
class DatasetInfo:
    """What a real dataset looks like and which files it is built from."""

    name: str
    image_shape: tuple[int, ...]
    train_size: int
    test_size: int
    files: tuple[str, ...]
    urls: tuple[str, ...]  # one per file, same order
    keras_subdir: str = ""  # where Keras' own loader puts the files under ``<keras home>/datasets``
    keras_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # other names Keras saved them under
    sha256: dict[str, str] = field(default_factory=dict)  # known digests, checked by get_file after a download
    num_classes: int = 10


_FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        name="cifar10",
        image_shape=(32, 32, 3),
        train_size=50_000,
        test_size=10_000,
        files=("cifar-10-python.tar.gz",),
        urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        # Keras 3 keeps the archive as ``…-target_archive``; Keras 2 kept ``cifar-10-batches-py.tar.gz``.
        keras_aliases={"cifar-10-python.tar.gz": ("cifar-10-batches-py-target_archive", "cifar-10-batches-py.tar.gz")},
        # The digest Keras itself pins for this archive.
        sha256={"cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        image_shape=(28, 28),
        train_size=60_000,
        test_size=10_000,
        files=_FASHION_FILES,
        urls=tuple(KERAS_BASE_URL + f for f in _FASHION_FILES),
        keras_subdir="fashion-mnist",
    ),
}


class DataUnavailable(Exception):
    """A real dataset's archives are neither on disk nor downloadable: says what to fetch and where to put it."""


def keras_datasets_dirs() -> list[Path]:
    """Keras' cache folders: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``, and the /tmp fallback Keras
    uses when the home one is not writable."""
    home = Path(os.environ["KERAS_HOME"]).expanduser() if os.environ.get("KERAS_HOME") else Path.home() / ".keras"
    dirs = [home / "datasets", Path("/tmp/.keras/datasets")]  # noqa: S108 - Keras' own fallback, only read here
    return list(dict.fromkeys(dirs))


def _user_dirs(info: DatasetInfo, data_dir: Path | None) -> list[Path]:
    if data_dir is None:
        return []
    data_dir = Path(data_dir).expanduser()
    return [data_dir / info.name, data_dir]


def _keras_dirs(info: DatasetInfo) -> list[Path]:
    dirs: list[Path] = []
    for base in keras_datasets_dirs():
        dirs += [base / info.keras_subdir, base] if info.keras_subdir else [base]
    return dirs


def search_dirs(info: DatasetInfo, data_dir: Path | None) -> list[Path]:
    """Folders searched, in order of preference."""
    return list(dict.fromkeys(_user_dirs(info, data_dir) + _keras_dirs(info)))


def _find(info: DatasetInfo, fname: str, data_dir: Path | None) -> Path | None:
    """First existing copy of ``fname``; in the Keras cache also under the names Keras saves it as."""
    candidates = [d / fname for d in _user_dirs(info, data_dir)]
    for d in _keras_dirs(info):
        candidates += [d / n for n in (fname, *info.keras_aliases.get(fname, ()))]
    return next((p for p in candidates if p.is_file()), None)


def _download(info: DatasetInfo, fname: str) -> Path:
    """Fetch one file into the Keras cache; Keras is imported here and nowhere else in this package."""
    import keras

    url = info.urls[info.files.index(fname)]
    subdir = os.path.join("datasets", info.keras_subdir) if info.keras_subdir else "datasets"
    return Path(keras.utils.get_file(fname=fname, origin=url, cache_subdir=subdir, file_hash=info.sha256.get(fname)))


def unavailable_message(info: DatasetInfo, missing: list[str], data_dir: Path | None, reason: str) -> str:
    """Everything a user needs to fix it: which files, where we looked, what to set, where to get them."""
    urls = [info.urls[info.files.index(f)] for f in missing]
    lines = [
        f"dataset {info.name!r}: missing source file(s): {', '.join(missing)}",
        "searched: " + ", ".join(str(d) for d in search_dirs(info, data_dir)),
        reason,
        f"Download them and put them in a folder (directly or in a '{info.name}/' subfolder), "
        "then set FARM_DATA_DIR to that folder (or data_dir in the farm config). Download from:",
        *(f"  {u}" for u in urls),
    ]
    return "\n".join(lines)


def locate(info: DatasetInfo, data_dir: Path | None, allow_download: bool) -> list[Path]:
    """Paths of ``info.files`` (same order), downloading the missing ones if allowed; else DataUnavailable."""
    found = {f: _find(info, f, data_dir) for f in info.files}
    missing = [f for f, p in found.items() if p is None]
    if missing and not allow_download:
        raise DataUnavailable(
            unavailable_message(
                info, missing, data_dir, "downloading is disabled (allow_download=False / FARM_ALLOW_DOWNLOAD=0)"
            )
        )
    located = {f: p for f, p in found.items() if p is not None}
    for f in missing:
        try:
            located[f] = _download(info, f)
        except Exception as e:  # no network, proxy, HTTP error, bad hash, Keras missing: all the same to the user
            raise DataUnavailable(
                unavailable_message(info, missing, data_dir, f"download failed: {type(e).__name__}: {e}")
            ) from e
    return [located[f] for f in info.files]


def availability(data_dir: Path | None, allow_download: bool) -> dict[str, str]:
    """Each real dataset's state on this machine (``farm.feasibility``'s HELD, DOWNLOAD or MISSING), found by
    the same search a job's load makes, so that submit can tell before a job fails for want of its data."""
    states = {}
    for name, info in DATASETS.items():
        if all(_find(info, f, data_dir) is not None for f in info.files):
            states[name] = HELD
        else:
            states[name] = DOWNLOAD if allow_download else MISSING
    return states
