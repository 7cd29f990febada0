"""torch_qinit.data.cifar10: every layout, the restricted unpickler, search order, cache, errors (generated files)."""
from __future__ import annotations

import io
import os
import pickle
import pickletools
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from torch_qinit.data import DatasetNotFoundError, dataset_info, load_dataset
from torch_qinit.data import cifar10 as c10
from torch_qinit.data._common import CACHE_DIR_ENV, default_cache_dir
from torch_qinit.data.cifar10 import cache as c10_cache
from torch_qinit.data.cifar10 import decode as c10_decode
from torch_qinit.data.cifar10 import sources as c10_sources

PIL = pytest.importorskip("PIL.Image", reason="the image-folder layout needs Pillow")

# Captured at import, before the autouse fixture redirects the cache: the real-data test reads the real one.
_REAL_CACHE_DIR = default_cache_dir()
_REAL_ENV = os.environ.get(c10.DATA_DIR_ENV)


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(c10.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("cache")))
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # so ./data is empty
    c10_cache.cached_arrays.cache_clear()
    yield
    c10_cache.cached_arrays.cache_clear()


def make_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random images (uint8 [n, 3, 32, 32]) whose labels cycle through all 10 classes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8), np.arange(n) % 10


TRAIN = make_arrays(20, 1)
TEST = make_arrays(10, 2)


def py2_pickle(data: np.ndarray, labels: list[int], batch_label: bytes = b"training batch 1 of 5") -> bytes:
    """A batch pickled as Python 2's cPickle wrote the official files: protocol 2, str as BINSTRING,
    ``numpy.core.multiarray._reconstruct`` (no ``_codecs``, which only Python 3 pickles use)."""
    P = pickle

    def s(b: bytes) -> bytes:
        return P.SHORT_BINSTRING + bytes([len(b)]) + b if len(b) < 256 else P.BINSTRING + struct.pack("<i", len(b)) + b

    def i(v: int) -> bytes:
        return P.BININT + struct.pack("<i", v)

    dtype = (P.GLOBAL + b"numpy\ndtype\n" + s(b"u1") + i(0) + i(1) + P.TUPLE3 + P.REDUCE
             + P.MARK + i(3) + s(b"|") + P.NONE + P.NONE + P.NONE + i(-1) + i(-1) + i(0) + P.TUPLE + P.BUILD)
    array = (P.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n" + P.GLOBAL + b"numpy\nndarray\n"
             + i(0) + P.TUPLE1 + s(b"b") + P.TUPLE3 + P.REDUCE
             + P.MARK + i(1) + i(data.shape[0]) + i(data.shape[1]) + P.TUPLE2 + dtype
             + P.NEWFALSE + s(data.tobytes()) + P.TUPLE + P.BUILD)
    label_list = P.EMPTY_LIST + P.MARK + b"".join(i(int(v)) for v in labels) + P.APPENDS
    names = P.EMPTY_LIST + P.MARK + b"".join(s(f"img_{k}.png".encode()) for k in range(len(labels))) + P.APPENDS
    body = (P.EMPTY_DICT + P.MARK + s(b"batch_label") + s(batch_label) + s(b"labels") + label_list
            + s(b"data") + array + s(b"filenames") + names + P.SETITEMS)
    return P.PROTO + b"\x02" + body + P.STOP


def write_python_batches(d: Path, *, writer=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    writer = writer or (lambda x, y: py2_pickle(x.reshape(len(x), -1), list(y)))
    for k, (xs, ys) in enumerate(zip(np.array_split(TRAIN[0], 5), np.array_split(TRAIN[1], 5)), start=1):
        (d / f"data_batch_{k}").write_bytes(writer(xs, ys))
    (d / "test_batch").write_bytes(writer(*TEST))
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in c10.CLASSES]}, 2))
    return d


def bin_records(x: np.ndarray, y: np.ndarray) -> bytes:
    return np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], axis=1).tobytes()


def write_binary_batches(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for k, (xs, ys) in enumerate(zip(np.array_split(TRAIN[0], 5), np.array_split(TRAIN[1], 5)), start=1):
        (d / f"data_batch_{k}.bin").write_bytes(bin_records(xs, ys))
    (d / "test_batch.bin").write_bytes(bin_records(*TEST))
    return d


def png_bytes(img_chw: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    PIL.fromarray(img_chw.transpose(1, 2, 0)).save(buf, format=fmt)
    return buf.getvalue()


def write_image_tree(root: Path) -> Path:
    """PNG (lossless) so pixels can be compared exactly; file names sort in the arrays' order per class."""
    for split, (x, y) in (("train", TRAIN), ("test", TEST)):
        for k, (img, label) in enumerate(zip(x, y)):
            d = root / split / c10.CLASSES[label]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{k:04d}.png").write_bytes(png_bytes(img))
    return root


def in_class_order(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(y, kind="stable")  # ImageFolder order: class, then file name
    return x[order], y[order]


def assert_split(ds, x: np.ndarray, y: np.ndarray) -> None:
    images, labels = ds.tensors
    assert images.shape == (len(x), 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.tolist() == y.tolist()
    mean = torch.tensor(c10.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(c10.STD).view(1, 3, 1, 1)
    torch.testing.assert_close(images, (torch.from_numpy(x).float() / 255 - mean) / std)


def load(split: str, where, **kw):
    return c10.load_cifar10(split, where, check_counts=False, **kw)


# ---------------------------------------------------------------------------------------------- layouts

def test_python_batches_py2_pickles(tmp_path: Path):
    d = write_python_batches(tmp_path / "cifar-10-batches-py")
    globals_used = {arg for op, arg, _ in pickletools.genops((d / "test_batch").read_bytes()) if op.name == "GLOBAL"}
    assert globals_used == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert c10.find_cifar10(tmp_path) == c10.CIFAR10Source("python", d)  # found in the root's sub-folder
    assert_split(load("train", tmp_path), *TRAIN)
    assert_split(load("test", d), *TEST)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python_batches_repickled_by_python3(tmp_path: Path, protocol: int):
    # Python 3 pickles use _codecs.encode (protocol 2), numpy._core names, or _frombuffer (protocol 5).
    def writer(x, y):
        return pickle.dumps({"data": x.reshape(len(x), -1), "labels": [int(v) for v in y]}, protocol)

    d = write_python_batches(tmp_path, writer=writer)
    assert_split(load("test", d), *TEST)


@pytest.mark.parametrize("target", ["os system", "builtins eval", "subprocess call", "numpy load"])
def test_restricted_unpickler_refuses_other_globals(tmp_path: Path, target: str):
    marker = tmp_path / "pwned"
    module, name = target.split()
    payload = (pickle.PROTO + b"\x02" + pickle.GLOBAL + f"{module}\n{name}\n".encode()
               + pickle.SHORT_BINUNICODE + bytes([len(f"touch {marker}")]) + f"touch {marker}".encode()
               + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP)
    with pytest.raises(c10.UnsafePickleError, match=f"refusing to load global {module}.{name}"):
        c10.read_python_batch(io.BytesIO(payload))
    assert not marker.exists()
    # The same payload as a data_batch file fails the whole load, without running anything.
    write_python_batches(tmp_path / "py")
    (tmp_path / "py" / "test_batch").write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError):
        load("test", tmp_path / "py")
    assert not marker.exists()


def test_python_batch_wrong_content(tmp_path: Path):
    with pytest.raises(ValueError, match="CIFAR-100"):
        c10.read_python_batch(io.BytesIO(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                       b"fine_labels": [0, 1]}, 2)))
    with pytest.raises(ValueError, match="expected uint8"):
        c10.read_python_batch(io.BytesIO(pickle.dumps({b"data": np.zeros((2, 100), np.uint8),
                                                       b"labels": [0, 1]}, 2)))
    with pytest.raises(ValueError, match="not a readable"):
        c10.read_python_batch(io.BytesIO(pickle.dumps({b"x": 1}, 2)[:-5]))


def test_binary_batches(tmp_path: Path):
    d = write_binary_batches(tmp_path / "cifar-10-batches-bin")
    assert c10.find_cifar10(tmp_path).layout == "binary"
    assert_split(load("train", tmp_path), *TRAIN)
    assert_split(load("test", tmp_path), *TEST)
    (d / "test_batch.bin").write_bytes(bin_records(*TEST)[:-7])
    c10_cache.cached_arrays.cache_clear()
    with pytest.raises(ValueError, match="whole number of 3073-byte records"):
        load("test", tmp_path, cache=False)


def test_image_folder(tmp_path: Path):
    root = write_image_tree(tmp_path / "tree")
    assert c10.find_cifar10(root) == c10.CIFAR10Source("images", root)
    assert_split(load("train", root), *in_class_order(*TRAIN))
    assert_split(load("test", root), *in_class_order(*TEST))


def test_image_folder_decodes_jpeg(tmp_path: Path):
    root = write_image_tree(tmp_path)
    smooth = np.broadcast_to(np.linspace(40, 200, 32, dtype=np.uint8), (3, 32, 32)).copy()
    (root / "test" / "cat" / "0003.png").unlink()
    (root / "test" / "cat" / "0003.jpg").write_bytes(png_bytes(smooth, "JPEG"))
    x, y = c10.load_cifar10_arrays("test", root)
    assert y.tolist() == sorted(TEST[1].tolist())
    assert np.abs(x[3].astype(int) - smooth.astype(int)).max() < 12  # lossy, but the same picture


def test_image_folder_errors(tmp_path: Path):
    root = write_image_tree(tmp_path)
    (root / "test" / "dog" / "extra.png").write_bytes(png_bytes(np.zeros((3, 16, 16), np.uint8)))
    with pytest.raises(ValueError, match="16x16, expected 32x32"):
        load("test", root)
    (root / "test" / "dog" / "extra.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot decode"):
        load("test", root)
    (root / "test" / "dog" / "extra.png").unlink()
    (root / "test" / "dog").rename(root / "test" / "doggo")
    with pytest.raises(ValueError, match="different class folders"):
        load("test", root)


@pytest.mark.parametrize("inner", ["images", "python", "binary"])
def test_archives(tmp_path: Path, inner: str):
    src = tmp_path / "src"
    top = {"images": "cifar10-jpg", "python": "cifar-10-batches-py", "binary": "cifar-10-batches-bin"}[inner]
    {"images": write_image_tree, "python": write_python_batches, "binary": write_binary_batches}[inner](src / top)
    archive = tmp_path / "data" / "cifar-10-stuff.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / top, arcname=top)
    # the archive itself, or a folder holding it
    assert c10.find_cifar10(archive) == c10.find_cifar10(archive.parent) == c10.CIFAR10Source("archive", archive)
    order = in_class_order if inner == "images" else (lambda x, y: (x, y))
    assert_split(load("train", archive), *order(*TRAIN))
    assert_split(load("test", archive.parent), *order(*TEST))


def test_archive_without_cifar(tmp_path: Path):
    (tmp_path / "readme.txt").write_text("hi")
    archive = tmp_path / "cifar10.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "readme.txt", arcname="readme.txt")
    with pytest.raises(DatasetNotFoundError, match="no CIFAR-10 python batches"):
        load("train", archive)
    archive.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match="corrupt or truncated archive"):
        load("train", archive)


# ---------------------------------------------------------------------------------------------- search, errors

def test_missing_data_message(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError) as info:
        c10.load_cifar10("train")
    msg = str(info.value)
    for needle in ("cifar-10-batches-py", "cifar-10-batches-bin", "train/<class>", ".tar.gz", "--data-dir",
                   c10.DATA_DIR_ENV, "make cifar10", str(default_cache_dir() / "cifar10")):
        assert needle in msg
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)):
        c10.load_cifar10("train", tmp_path)


def test_dangling_cache_link_is_named(tmp_path: Path):
    """The cache link made from a checkout that is gone: the message names the link and its old target."""
    linked = c10.prepare_cifar10(write_python_batches(tmp_path / "old" / "cifar-10-batches-py"))
    shutil.rmtree(tmp_path / "old")
    with pytest.raises(DatasetNotFoundError) as info:
        c10.find_cifar10()
    msg = str(info.value)
    assert f"{linked.path} is a link to {tmp_path / 'old'}" in msg and "no longer exists" in msg


def test_missing_batch_is_named(tmp_path: Path):
    d = write_python_batches(tmp_path)
    (d / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing data_batch_3"):
        load("train", d)
    assert len(load("test", d)) == 10  # the other split still loads


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_image_tree(Path("data"))  # a bare train/test tree in ./data could be any dataset: not taken
    with pytest.raises(DatasetNotFoundError):
        c10.find_cifar10()
    cwd_data = write_binary_batches(Path("data") / "cifar-10-batches-bin")
    assert c10.find_cifar10().path == cwd_data  # last resort: CIFAR-named contents of ./data
    linked = c10.prepare_cifar10(write_python_batches(tmp_path / "cifar-10-batches-py"))
    assert linked.layout == "python" and c10.find_cifar10() == linked  # the cache link beats ./data
    env_dir = write_image_tree(tmp_path / "env")
    monkeypatch.setenv(c10.DATA_DIR_ENV, str(env_dir))
    assert c10.find_cifar10() == c10.CIFAR10Source("images", env_dir)  # the env variable beats both
    assert c10.find_cifar10(cwd_data).layout == "binary"  # an explicit folder beats everything


def test_check_counts_and_split(tmp_path: Path):
    d = write_binary_batches(tmp_path)
    with pytest.raises(ValueError, match="expected 50000"):
        c10.load_cifar10("train", d)
    with pytest.raises(ValueError, match="split"):
        c10.load_cifar10("valid", d)


def test_label_out_of_range(tmp_path: Path):
    d = write_binary_batches(tmp_path)
    (d / "test_batch.bin").write_bytes(bin_records(TEST[0], np.full(10, 10)))
    with pytest.raises(ValueError, match="out of range"):
        load("test", d)


# ---------------------------------------------------------------------------------------------- cache

def test_disk_cache_serves_second_load_and_sees_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = write_image_tree(tmp_path / "tree")
    first = load("train", root)
    first.tensors[0].zero_()  # callers own their tensors; the cache is unaffected
    cached = sorted(p.name for p in (default_cache_dir() / "cifar10").glob("decoded-*.npz"))
    assert len(cached) == 1 and cached[0].endswith("-train.npz")
    c10_cache.cached_arrays.cache_clear()  # as in a new process

    def no_decode(*a, **k):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(c10_cache, "decode_split", no_decode)
    assert_split(load("train", root), *in_class_order(*TRAIN))
    # Adding an image changes the class folder's mtime, hence the key: decode afresh.
    (root / "train" / "cat" / "9999.png").write_bytes(png_bytes(TRAIN[0][0]))
    os.utime(root / "train" / "cat", ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        load("train", root)
    monkeypatch.undo()
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache2"))
    assert len(load("train", root)) == 21


def test_archive_caches_both_splits_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_binary_batches(tmp_path / "src" / "cifar-10-batches-bin")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    calls = []
    real = c10_decode.read_archive
    monkeypatch.setattr(c10_decode, "read_archive", lambda p: calls.append(p) or real(p))
    load("train", archive)
    load("test", archive)
    assert len(calls) == 1


def test_archive_cache_is_keyed_by_name_size_and_mtime_not_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The same archive reached by another path (a copy in another checkout, a recreated symlink) reads the
    decoded arrays already on disk instead of writing a new pair; a changed archive is decoded afresh."""
    write_binary_batches(tmp_path / "src" / "cifar-10-batches-bin")
    first = tmp_path / "checkout1" / "cifar-10-binary.tar.gz"
    first.parent.mkdir()
    with tarfile.open(first, "w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    copy = tmp_path / "checkout2" / first.name
    copy.parent.mkdir()
    shutil.copy2(first, copy)  # same name, size and mtime
    link = tmp_path / "cache-link" / first.name
    link.parent.mkdir()
    link.symlink_to(copy)
    assert_split(load("test", first), *TEST)
    cached = sorted((default_cache_dir() / "cifar10").glob("decoded-*.npz"))
    assert len(cached) == 2  # both splits, from one pass over the archive

    def no_decode(*a, **k):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(c10_cache, "decode_split", no_decode)
    for where in (copy, link, link.parent):
        c10_cache.cached_arrays.cache_clear()  # as in a new process
        assert_split(load("test", where), *TEST)
    assert sorted((default_cache_dir() / "cifar10").glob("decoded-*.npz")) == cached
    os.utime(copy, ns=(1, 1))  # rewritten: another mtime
    c10_cache.cached_arrays.cache_clear()
    with pytest.raises(AssertionError, match="decoded again"):
        load("test", link)


def test_prepare_removes_only_its_own_stale_pairs(tmp_path: Path):
    """A re-provisioned archive (new mtime) is decoded again; the pair of the old mtime, written through the
    same link, is deleted, while the cache of another source stays."""
    write_binary_batches(tmp_path / "src" / "cifar-10-batches-bin")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    other = write_image_tree(tmp_path / "users-own")
    load("test", other)
    cache = default_cache_dir() / "cifar10"
    others = set(cache.glob("decoded-*.npz"))
    assert len(others) == 1  # an image tree decodes the split asked for
    c10.prepare_cifar10(archive)
    first = set(cache.glob("decoded-*.npz")) - others
    assert len(first) == 2
    os.utime(archive, ns=(2, 2))  # the same archive, provisioned again
    c10_cache.cached_arrays.cache_clear()
    c10.prepare_cifar10(archive)
    second = set(cache.glob("decoded-*.npz")) - others
    assert len(second) == 2 and not second & first  # a new pair replaced the stale one
    assert others <= set(cache.glob("decoded-*.npz"))  # the other source's cache is kept
    assert_split(load("test", None), *TEST)


def test_unwritable_cache_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocker))
    d = write_binary_batches(tmp_path / "b")
    assert_split(load("test", d), *TEST)


def test_corrupt_cache_file_is_ignored(tmp_path: Path):
    d = write_binary_batches(tmp_path)
    load("test", d)
    (cache_file,) = (default_cache_dir() / "cifar10").glob("decoded-*-test.npz")
    cache_file.write_bytes(b"garbage")
    c10_cache.cached_arrays.cache_clear()
    assert_split(load("test", d), *TEST)


# ---------------------------------------------------------------------------------------------- by name

def test_load_dataset_and_info(tmp_path: Path):
    d = write_binary_batches(tmp_path)
    ds = load_dataset("cifar10", "test", d, check_counts=False)
    assert_split(ds, *TEST)
    assert dataset_info("cifar10").input_shape == (3, 32, 32)
    assert dataset_info("Fashion-MNIST").input_shape == (1, 28, 28)
    assert dataset_info("fmnist").load.__name__ == "load_fashion_mnist"
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*fmnist, cifar10"):
        load_dataset("mnist", "train")


def test_loaders(tmp_path: Path):
    from torch_qinit.data import dataset_loaders

    d = write_binary_batches(tmp_path)
    tr, te = dataset_loaders("cifar10", batch_size=4, data_dir=d, train_subset=8, seed=1, check_counts=False)
    xb, yb = next(iter(tr))
    assert xb.shape == (4, 3, 32, 32) and len(tr.dataset) == 8 and len(te.dataset) == 10
    tr2, _ = dataset_loaders("cifar10", batch_size=4, data_dir=d, train_subset=8, seed=1, check_counts=False)
    torch.testing.assert_close(next(iter(tr2))[0], xb)


def _real_source() -> c10.CIFAR10Source | None:
    roots = ([Path(_REAL_ENV)] if _REAL_ENV else []) + [_REAL_CACHE_DIR / "cifar10"]
    for root in roots:
        src = c10_sources.detect(root)
        if src is not None:
            return src
    return None


@pytest.mark.skipif(
    _real_source() is None or not any((_REAL_CACHE_DIR / "cifar10").glob("decoded-*-test.npz")),
    reason="real CIFAR-10 not prepared (make cifar10)",
)
def test_real_dataset_from_cache(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(CACHE_DIR_ENV, str(_REAL_CACHE_DIR))
    src = _real_source()
    test = c10.load_cifar10("test", src.path)
    images, labels = test.tensors
    assert images.shape == (10000, 3, 32, 32)
    assert torch.bincount(labels).tolist() == [1000] * 10
    # MEAN/STD are train statistics, so the test split lands near zero mean and unit std per channel.
    assert images.mean((0, 2, 3)).abs().max() < 0.05
    assert (images.std((0, 2, 3)) - 1).abs().max() < 0.05
