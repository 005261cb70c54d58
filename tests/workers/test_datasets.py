"""workers.datasets: readers of the real archive formats (written here, tiny), the decoded-array cache,
synthetic data, the "where are the files" message, and the pickle safety of the CIFAR reader."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import workers.datasets as ds
from tests.archives import CIFAR, FASHION, _batch_bytes, _idx, _images, write_cifar, write_fashion  # noqa: F401
from tests.helpers import REPO
from workers.datasets import DATASETS, DataUnavailable, cache, cifar10, fetch, load_dataset, synthetic

_REAL_KERAS_DIRS = fetch.keras_datasets_dirs  # before the autouse fixture replaces it


@pytest.fixture(autouse=True)
def _no_real_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never find (or download into) the machine's real ~/.keras: the Keras cache is an empty tmp folder."""
    keras_ds = tmp_path / "keras_home" / "datasets"
    monkeypatch.setattr(fetch, "keras_datasets_dirs", lambda: [keras_ds])

    def no_download(info, fname):
        raise AssertionError("tests must not download")

    monkeypatch.setattr(fetch, "_download", no_download)
    return keras_ds


def _load(name: str, data_dir: Path, cache_dir: Path, **kw) -> ds.Dataset:
    return load_dataset(name, "real", data_dir=data_dir, cache_dir=cache_dir, allow_download=False, **kw)


# ---------------------------------------------------------------- CIFAR-10


# "py2": byte-for-byte the pickle flavour of the real archive; 4 and 5: what Python 3 + numpy 2 write.
@pytest.mark.parametrize("protocol,as_bytes", [("py2", False), (4, False), (5, False), (4, True)])
def test_cifar10_pixels_labels_and_batch_order(tmp_path: Path, protocol: int | str, as_bytes: bool) -> None:
    rng = np.random.default_rng(1)
    b1, b2, t = _images(rng, 3), _images(rng, 2), _images(rng, 4)
    # Distinct constant channels in the first image: a wrong transpose would mix them.
    b1[0, :, :, 0], b1[0, :, :, 1], b1[0, :, :, 2] = 10, 20, 30
    b1[0, 5, 7] = (201, 202, 203)
    # data_batch_2 is stored before data_batch_1: train must still come out in batch order.
    write_cifar(
        tmp_path / "data" / CIFAR,
        [(b1, [1, 2, 3]), (b2, [4, 5])],
        (t, [9, 0, 8, 7]),
        protocol=protocol,
        as_bytes=as_bytes,
        order=[1, 0],
    )

    d = _load("cifar10", tmp_path / "data", tmp_path / "cache")

    assert (d.name, d.kind, d.num_classes, d.input_shape) == ("cifar10", "real", 10, (32, 32, 3))
    assert d.x_train.shape == (5, 32, 32, 3) and d.x_test.shape == (4, 32, 32, 3)
    assert d.x_train.dtype == d.y_train.dtype == d.x_test.dtype == d.y_test.dtype == np.uint8
    assert d.y_train.shape == (5,) and d.y_train.tolist() == [1, 2, 3, 4, 5]
    assert d.y_test.tolist() == [9, 0, 8, 7]
    np.testing.assert_array_equal(d.x_train, np.concatenate([b1, b2]))
    np.testing.assert_array_equal(d.x_test, t)
    assert d.x_train[0, 0, 0].tolist() == [10, 20, 30]
    assert d.x_train[0, 5, 7].tolist() == [201, 202, 203]
    assert len(d.digest) == 16 and int(d.digest, 16) >= 0


def test_cifar10_caps_and_subfolder(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x, t = _images(rng, 6), _images(rng, 3)
    write_cifar(tmp_path / "data" / "cifar10" / CIFAR, [(x, [0, 1, 2, 3, 4, 5])], (t, [7, 8, 9]))

    d = _load("cifar10", tmp_path / "data", tmp_path / "cache", train_samples=4, test_samples=100)

    assert d.x_train.shape == (4, 32, 32, 3) and d.y_train.tolist() == [0, 1, 2, 3]
    assert d.x_test.shape == (3, 32, 32, 3) and d.y_test.tolist() == [7, 8, 9]  # cap above size: all
    np.testing.assert_array_equal(d.x_train, x[:4])
    with pytest.raises(ValueError, match="train_samples"):
        _load("cifar10", tmp_path / "data", tmp_path / "cache", train_samples=-1)


def test_second_load_uses_cache_without_opening_archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    x, t = _images(rng, 4), _images(rng, 2)
    write_cifar(tmp_path / "data" / CIFAR, [(x, [1, 2, 3, 4])], (t, [5, 6]))
    first = _load("cifar10", tmp_path / "data", tmp_path / "cache")
    entry = tmp_path / "cache" / "cifar10" / first.digest
    assert sorted(p.name for p in entry.iterdir()) == [
        "complete",
        "x_test.npy",
        "x_train.npy",
        "y_test.npy",
        "y_train.npy",
    ]  # no temp files left

    def boom(*a, **k):
        raise AssertionError("archive opened on a cached load")

    monkeypatch.setattr(cifar10, "read", boom)
    monkeypatch.setattr(cache, "sha256_file", boom)
    monkeypatch.setattr(tarfile, "open", boom)
    second = _load("cifar10", tmp_path / "data", tmp_path / "cache", train_samples=2)

    assert second.digest == first.digest
    assert isinstance(second.x_train, np.memmap)  # served from the memory-mapped cache
    assert not second.x_train.flags.writeable
    np.testing.assert_array_equal(second.x_train, x[:2])
    assert second.y_test.tolist() == [5, 6]


def test_digest_follows_archive_content(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    x, t = _images(rng, 2), _images(rng, 2)
    archive = write_cifar(tmp_path / "data" / CIFAR, [(x, [1, 2])], (t, [3, 4]))
    a = _load("cifar10", tmp_path / "data", tmp_path / "cache")
    # Same bytes elsewhere, other cache: same digest (it names the content, not the path).
    other = tmp_path / "copy" / CIFAR
    other.parent.mkdir()
    other.write_bytes(archive.read_bytes())
    assert _load("cifar10", tmp_path / "copy", tmp_path / "cache2").digest == a.digest

    st = archive.stat()
    write_cifar(archive, [(x, [2, 1])], (t, [3, 4]))
    # Linux timestamps are coarse (a few ms): make sure the rewrite is seen as a change, as it would be in life.
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    b = _load("cifar10", tmp_path / "data", tmp_path / "cache")

    assert b.digest != a.digest
    assert b.y_train.tolist() == [2, 1] and a.y_train.tolist() == [1, 2]


def test_concurrent_loads_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    write_cifar(tmp_path / "data" / CIFAR, [(_images(rng, 8), list(range(8)))], (_images(rng, 2), [0, 1]))
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: _load("cifar10", tmp_path / "data", tmp_path / "cache"), range(4)))
    assert len({d.digest for d in loaded}) == 1
    for d in loaded[1:]:
        np.testing.assert_array_equal(d.x_train, loaded[0].x_train)
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_cifar10_wrong_archive_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / CIFAR).write_bytes(b"this is not gzip")
    with pytest.raises(ValueError, match=CIFAR.replace(".", r"\.")):
        _load("cifar10", tmp_path / "data", tmp_path / "cache")


# ---------------------------------------------------------------- restricted unpickler


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_globals(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Evil(marker), b"labels": [1]}, protocol=2)
    assert b"system" in payload  # the payload really references os.system / posix.system
    with pytest.raises(pickle.UnpicklingError, match="refusing global"):
        cifar10.restricted_loads(payload)
    assert not marker.exists()
    # The plain stuff of a batch still loads.
    assert cifar10.restricted_loads(pickle.dumps({b"labels": [1, 2], b"x": b"ab"})) == {b"labels": [1, 2], b"x": b"ab"}


def test_restricted_unpickler_refuses_object_arrays() -> None:
    with pytest.raises(pickle.UnpicklingError, match="object dtype"):
        cifar10.restricted_loads(pickle.dumps(np.array([1, "a"], dtype=object), protocol=4))


def test_archive_with_malicious_batch_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    raw = pickle.dumps({b"data": _Evil(marker), b"labels": [1]})
    archive = tmp_path / "data" / CIFAR
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("data_batch_1", "test_batch"):
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    with pytest.raises(ValueError, match="refusing global"):
        _load("cifar10", tmp_path / "data", tmp_path / "cache")
    assert not marker.exists()


# ---------------------------------------------------------------- Fashion-MNIST


def _fashion_arrays(seed: int = 6, n_train: int = 5, n_test: int = 3):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )


def test_fashion_mnist_reads_idx(tmp_path: Path) -> None:
    arrays = _fashion_arrays()
    write_fashion(tmp_path / "data" / "fashion_mnist", *arrays)

    d = _load("fashion_mnist", tmp_path / "data", tmp_path / "cache", test_samples=2)

    assert d.input_shape == (28, 28) and d.num_classes == 10
    assert d.x_train.shape == (5, 28, 28) and d.y_train.shape == (5,) and d.x_test.shape == (2, 28, 28)
    assert d.x_train.dtype == d.y_train.dtype == np.uint8
    np.testing.assert_array_equal(d.x_train, arrays[0])
    np.testing.assert_array_equal(d.y_train, arrays[1])
    np.testing.assert_array_equal(d.x_test, arrays[2][:2])
    np.testing.assert_array_equal(d.y_test, arrays[3][:2])


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda raw: struct.pack(">I", 0x0802) + raw[4:], "magic 0x00000802, expected 0x00000803"),
        (lambda raw: raw[:-10], "bytes, header says"),
        (lambda raw: raw[:6], "shorter than its"),
    ],
)
def test_corrupt_idx_names_the_file(tmp_path: Path, damage, message: str) -> None:
    folder = write_fashion(tmp_path / "data", *_fashion_arrays())
    bad = folder / "t10k-images-idx3-ubyte.gz"
    with gzip.open(bad, "rb") as f:
        raw = f.read()
    with gzip.open(bad, "wb") as f:
        f.write(damage(raw))
    with pytest.raises(ValueError, match=message) as err:
        _load("fashion_mnist", tmp_path / "data", tmp_path / "cache")
    assert str(bad) in str(err.value)


def test_not_gzip_idx_names_the_file(tmp_path: Path) -> None:
    folder = write_fashion(tmp_path / "data", *_fashion_arrays())
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: corrupt gzip"):
        _load("fashion_mnist", tmp_path / "data", tmp_path / "cache")


# ---------------------------------------------------------------- finding the files


def test_missing_files_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(DataUnavailable) as err:
        _load("cifar10", data, tmp_path / "cache")
    msg = str(err.value)
    assert CIFAR in msg and str(data) in msg and "FARM_DATA_DIR" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg


def test_missing_message_lists_only_missing_files(tmp_path: Path) -> None:
    folder = write_fashion(tmp_path / "data", *_fashion_arrays())
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataUnavailable) as err:
        _load("fashion_mnist", folder, tmp_path / "cache")
    first_line = str(err.value).splitlines()[0]
    assert "t10k-labels-idx1-ubyte.gz" in first_line and "train-images" not in first_line
    assert fetch.KERAS_BASE_URL + "t10k-labels-idx1-ubyte.gz" in str(err.value)


def test_failed_download_is_data_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(info, fname):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(fetch, "_download", offline)
    with pytest.raises(DataUnavailable, match="download failed: OSError: Temporary failure") as err:
        load_dataset("cifar10", "real", data_dir=None, cache_dir=tmp_path / "cache")
    assert "FARM_DATA_DIR" in str(err.value) and CIFAR in str(err.value)


def test_keras_cache_is_searched_under_keras_names(tmp_path: Path, _no_real_keras_cache: Path) -> None:
    rng = np.random.default_rng(7)
    write_cifar(
        _no_real_keras_cache / "cifar-10-batches-py-target_archive", [(_images(rng, 2), [1, 2])], (_images(rng, 1), [3])
    )
    d = load_dataset("cifar10", "real", data_dir=None, cache_dir=tmp_path / "cache", allow_download=False)
    assert d.y_train.tolist() == [1, 2]
    write_fashion(_no_real_keras_cache / "fashion-mnist", *_fashion_arrays())
    assert _load("fashion_mnist", tmp_path / "nowhere", tmp_path / "cache").x_train.shape == (5, 28, 28)


def test_keras_home_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert _REAL_KERAS_DIRS()[0] == tmp_path / "kh" / "datasets"
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _REAL_KERAS_DIRS()[0] == tmp_path / "home" / ".keras" / "datasets"


# ---------------------------------------------------------------- synthetic


def test_synthetic_shapes_determinism_and_caps(tmp_path: Path) -> None:
    def syn(name: str, seed: int, **kw) -> ds.Dataset:
        return load_dataset(name, "synthetic", data_dir=None, cache_dir=tmp_path / "cache", seed=seed, **kw)

    a = syn("cifar10", 0, train_samples=300, test_samples=20)
    assert a.kind == "synthetic" and a.x_train.shape == (300, 32, 32, 3) and a.x_test.shape == (20, 32, 32, 3)
    assert a.x_train.dtype == a.y_train.dtype == np.uint8 and a.y_train.shape == (300,)
    assert a.y_train.max() <= 9 and a.x_train.max() > 200  # spans the pixel range
    b = syn("cifar10", 0, train_samples=300, test_samples=20)
    c = syn("cifar10", 1, train_samples=300, test_samples=20)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert a.digest == b.digest != c.digest
    assert not np.array_equal(a.x_train, c.x_train)

    f = syn("fashion_mnist", 0, train_samples=10, test_samples=10**9)
    assert f.x_train.shape == (10, 28, 28) and f.x_test.shape == (10_000, 28, 28)
    assert not (tmp_path / "cache").exists()  # nothing to cache for synthetic data


def test_synthetic_generates_only_the_cap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sizes = []
    real = synthetic.generate

    def spy(info, seed, n_train, n_test):
        sizes.append((n_train, n_test))
        return real(info, seed, n_train, n_test)

    monkeypatch.setattr(synthetic, "generate", spy)
    d = load_dataset("cifar10", "synthetic", data_dir=None, cache_dir=tmp_path, train_samples=30, test_samples=5)
    assert sizes == [(30, 5)] and len(d.x_train) == 30


def test_full_sizes_catalogue() -> None:
    assert (DATASETS["cifar10"].train_size, DATASETS["cifar10"].test_size) == (50_000, 10_000)
    assert (DATASETS["fashion_mnist"].train_size, DATASETS["fashion_mnist"].test_size) == (60_000, 10_000)


def test_unknown_name_or_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist", "real", data_dir=None, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown dataset kind"):
        load_dataset("cifar10", "fake", data_dir=None, cache_dir=tmp_path)


# ---------------------------------------------------------------- import hygiene


def test_import_does_not_pull_in_frameworks() -> None:
    code = (
        "import workers.datasets, workers.datasets.fetch, workers.datasets.cache, workers.datasets.cifar10, "
        "workers.datasets.fashion_mnist, workers.datasets.synthetic, sys; "
        "bad = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_synthetic_data_of_any_spec(tmp_path: Path) -> None:
    """A workload's own shapes: token sequences are int32 ids in 1..vocab-1; many classes need wider labels."""
    from farm.workloads import DataSpec

    tokens = DataSpec(sample_shape=(12,), num_classes=3, kind="tokens", vocab_size=50)
    d = load_dataset(tokens, "synthetic", data_dir=None, cache_dir=tmp_path, seed=1, train_samples=40, test_samples=8)
    assert d.x_train.shape == (40, 12) and d.x_train.dtype == np.int32
    assert d.x_train.min() >= 1 and d.x_train.max() < 50
    assert d.y_train.max() < 3 and d.num_classes == 3 and d.name == "tokens_12_v50_c3"
    wide = DataSpec(sample_shape=(4, 4, 3), num_classes=1000)
    w = load_dataset(wide, "synthetic", data_dir=None, cache_dir=tmp_path, train_samples=500, test_samples=1)
    assert w.y_train.dtype == np.int32 and w.y_train.max() >= 256
    # Different shapes are different data: their digests differ; a real dataset's shapes keep its old digest.
    assert d.digest != w.digest
    cifar = load_dataset(DataSpec.of_real("cifar10"), "synthetic", data_dir=None, cache_dir=tmp_path, train_samples=3)
    assert cifar.digest == synthetic.digest("cifar10", 0, 3, 10_000)
    with pytest.raises(ValueError, match="no real dataset of tokens_12_v50_c3"):
        load_dataset(tokens, "real", data_dir=None, cache_dir=tmp_path)
