"""torch_qinit.data: IDX parsing, normalization, integrity errors, loaders (synthetic files)."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from torch_qinit.data import (
    MEAN,
    STD,
    DatasetNotFoundError,
    fashion_mnist_loaders,
    load_fashion_mnist,
    read_idx,
)
from torch_qinit.data import fashion_mnist as fm


def write_idx(path: Path, array: np.ndarray, *, magic: int | None = None, compress: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file; ``magic`` overrides the header's magic number."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 + array.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    if compress:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_split(directory: Path, split: str, n: int, *, seed: int = 0, labels: np.ndarray | None = None,
               image_size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, image_size, image_size), dtype=np.uint8)
    y = rng.integers(0, 10, size=n, dtype=np.uint8) if labels is None else labels.astype(np.uint8)
    img_name, lbl_name = fm.SPLIT_FILES[split]
    write_idx(directory / img_name, x)
    write_idx(directory / lbl_name, y)
    return x, y


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(fm.DATA_DIR_ENV, raising=False)
    fm._load_arrays.cache_clear()
    yield
    fm._load_arrays.cache_clear()


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    make_split(tmp_path, "train", 40, seed=1)
    make_split(tmp_path, "test", 12, seed=2)
    return tmp_path


def test_parse_and_normalize(tiny_dir: Path):
    x, y = make_split(tiny_dir, "train", 40, seed=1)
    ds = load_fashion_mnist("train", tiny_dir, check_counts=False)
    images, labels = ds.tensors
    assert images.shape == (40, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (40,) and labels.dtype == torch.int64
    expected = (torch.from_numpy(x.astype(np.float32)) / 255.0 - MEAN) / STD
    torch.testing.assert_close(images[:, 0], expected)
    assert labels.tolist() == y.tolist()
    # the GHN's recorded training normalization is the loader's
    from torch_qinit.ghn import GHNConfig
    assert GHNConfig().normalization == {"mean": MEAN, "std": STD}


def test_read_idx_raw_and_gz(tmp_path: Path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.gz", arr)), arr)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", arr, compress=False)), arr)


def test_uncompressed_files_are_accepted(tmp_path: Path):
    x = np.zeros((3, 28, 28), np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x, compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([1, 2, 3], np.uint8), compress=False)
    ds = load_fashion_mnist("test", tmp_path, check_counts=False)
    assert ds.tensors[1].tolist() == [1, 2, 3]


def test_env_var_and_argument_precedence(tiny_dir: Path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv(fm.DATA_DIR_ENV, str(tiny_dir))
    assert fm.resolve_data_dir() == tiny_dir
    assert len(load_fashion_mnist("test", check_counts=False)) == 12
    other = tmp_path_factory.mktemp("other")
    assert fm.resolve_data_dir(other) == other
    monkeypatch.delenv(fm.DATA_DIR_ENV)
    assert fm.resolve_data_dir() == fm.DEFAULT_DATA_DIR


def test_canonical_counts_enforced(tiny_dir: Path):
    with pytest.raises(ValueError, match="expected 60000"):
        load_fashion_mnist("train", tiny_dir)
    with pytest.raises(ValueError, match="expected 10000"):
        load_fashion_mnist("test", tiny_dir)


def test_missing_files_message(tmp_path: Path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist("train", tmp_path)
    msg = str(info.value)
    assert str(tmp_path) in msg
    assert "sudo apt-get install dataset-fashion-mnist" in msg
    assert "data_dir" in msg and fm.DATA_DIR_ENV in msg
    assert isinstance(info.value, FileNotFoundError)


def test_missing_one_file_is_named(tiny_dir: Path):
    (tiny_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist("test", tiny_dir, check_counts=False)


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("val")


def _corrupt(directory: Path, kind: str) -> None:
    img, lbl = (directory / n for n in fm.SPLIT_FILES["test"])
    if kind == "image-magic":
        write_idx(img, np.zeros((12, 28, 28), np.uint8), magic=0x0801)  # labels magic on images
    elif kind == "type-byte":
        write_idx(img, np.zeros((12, 28, 28), np.uint8), magic=0x0D03)  # float data, not ubyte
    elif kind == "label-magic":
        write_idx(lbl, np.zeros((12, 1), np.uint8))
    elif kind == "shape":
        write_idx(img, np.zeros((12, 32, 32), np.uint8))
    elif kind == "count":
        write_idx(lbl, np.zeros(11, np.uint8))
    elif kind == "label-range":
        write_idx(lbl, np.full(12, 10, np.uint8))
    elif kind == "truncated-payload":
        raw = gzip.decompress(img.read_bytes())
        img.write_bytes(gzip.compress(raw[:-100]))
    elif kind == "truncated-gzip":
        img.write_bytes(img.read_bytes()[:200])
    elif kind == "not-gzip":
        img.write_bytes(b"this is not a gzip file at all")
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, pattern",
    [
        ("image-magic", "magic"),
        ("type-byte", "magic"),
        ("label-magic", "magic"),
        ("shape", "32x32"),
        ("count", "12 images but .* 11 labels"),
        ("label-range", "out of range"),
        ("truncated-payload", "payload"),
        ("truncated-gzip", "corrupt or truncated"),
        ("not-gzip", "corrupt or truncated"),
    ],
)
def test_corruption_raises_value_error(tiny_dir: Path, kind: str, pattern: str):
    _corrupt(tiny_dir, kind)
    with pytest.raises(ValueError, match=pattern):
        load_fashion_mnist("test", tiny_dir, check_counts=False)


def test_cache_reuses_decoded_arrays_and_sees_rewrites(tiny_dir: Path):
    a = load_fashion_mnist("test", tiny_dir, check_counts=False)
    a.tensors[0].zero_()  # callers may mutate their tensors without poisoning the cache
    b = load_fashion_mnist("test", tiny_dir, check_counts=False)
    info = fm._load_arrays.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    assert b.tensors[0].abs().sum() > 0
    x, _ = make_split(tiny_dir, "test", 5, seed=9)
    # A rewrite changes size/mtime, so it is a new cache key rather than a stale hit.
    os.utime(tiny_dir / fm.SPLIT_FILES["test"][0], ns=(1, 1))
    c = load_fashion_mnist("test", tiny_dir, check_counts=False)
    assert len(c) == 5


def test_loaders_subsets_and_determinism(tiny_dir: Path):
    tr, te = fashion_mnist_loaders(batch_size=8, data_dir=tiny_dir, train_subset=20, test_subset=6, seed=3,
                                   check_counts=False)
    assert len(tr.dataset) == 20 and len(te.dataset) == 6
    assert len(tr) == 3 and len(te) == 1
    xb, yb = next(iter(tr))
    assert xb.shape == (8, 1, 28, 28) and yb.dtype == torch.int64
    tr2, te2 = fashion_mnist_loaders(batch_size=8, data_dir=tiny_dir, train_subset=20, test_subset=6, seed=3,
                                     check_counts=False)
    torch.testing.assert_close(next(iter(tr2))[0], xb)
    torch.testing.assert_close(te2.dataset.tensors[1], te.dataset.tensors[1])
    tr3, _ = fashion_mnist_loaders(batch_size=8, data_dir=tiny_dir, train_subset=20, seed=4, check_counts=False)
    assert not torch.equal(tr3.dataset.tensors[0], tr.dataset.tensors[0])
    full_tr, full_te = fashion_mnist_loaders(batch_size=64, data_dir=tiny_dir, check_counts=False)
    assert len(full_tr.dataset) == 40 and len(full_te.dataset) == 12
    # the test loader keeps file order
    assert torch.equal(next(iter(full_te))[1], full_te.dataset.tensors[1])


@pytest.mark.skipif(
    not (fm.DEFAULT_DATA_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_dataset_counts():
    test = load_fashion_mnist("test")
    images, labels = test.tensors
    assert images.shape == (10000, 1, 28, 28)
    assert torch.bincount(labels).tolist() == [1000] * 10
    # MEAN/STD are the train statistics, so the test split lands near zero mean, unit std.
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05
    train = load_fashion_mnist("train")
    assert len(train) == 60000
    assert torch.bincount(train.tensors[1]).tolist() == [6000] * 10
