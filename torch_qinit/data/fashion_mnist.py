"""Fashion-MNIST from the IDX ``.gz`` files shipped by the Debian package ``dataset-fashion-mnist``.

The decoded uint8 arrays are cached in-process, because GHN training and the benchmarks reload
the data many times; every call still returns fresh tensors, so callers may modify them freely.
"""
from __future__ import annotations

import functools
import gzip
import logging
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from torch_qinit.data._common import DatasetNotFoundError, check_count, file_stamp, split_loaders

__all__ = [
    "MEAN",
    "STD",
    "NUM_CLASSES",
    "DEFAULT_DATA_DIR",
    "DATA_DIR_ENV",
    "SPLIT_FILES",
    "SPLIT_SIZES",
    "DatasetNotFoundError",
    "resolve_data_dir",
    "read_idx",
    "load_fashion_mnist",
    "fashion_mnist_loaders",
]

logger = logging.getLogger(__name__)

MEAN = 0.2860
STD = 0.3530
NUM_CLASSES = 10
DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "TORCH_QINIT_DATA_DIR"

SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SPLIT_SIZES: dict[str, int] = {"train": 60000, "test": 10000}

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), then the number of dimensions.
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801
_IMAGE_SIZE = 28


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The dataset directory: ``data_dir``, else ``$TORCH_QINIT_DATA_DIR``, else the Debian location."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_DIR


def _find_file(directory: Path, name: str) -> Path | None:
    path = directory / name
    if path.is_file():
        return path
    # Some mirrors ship the IDX files already decompressed.
    raw = directory / name.removesuffix(".gz")
    return raw if raw.is_file() else None


def _missing_error(directory: Path, missing: list[str]) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"Fashion-MNIST not found in {directory} (missing: {', '.join(missing)}). "
        "Install it with `sudo apt-get install dataset-fashion-mnist`, "
        f"or pass data_dir=... / set {DATA_DIR_ENV} to a directory holding the IDX .gz files."
    )


def read_idx(path: str | os.PathLike[str], expected_magic: int | None = None) -> np.ndarray:
    """Decode one IDX file (gzip-compressed or raw) holding unsigned bytes; ValueError if malformed."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc
    if len(data) < 4:
        raise ValueError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x}")
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: bad IDX magic number 0x{magic:08x} (expected unsigned-byte data 0x000008NN)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(f"{path}: truncated IDX header (magic 0x{magic:08x})")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX payload has {len(data) - header} bytes, but header shape {shape} needs {expected}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


@functools.lru_cache(maxsize=8)
def _load_arrays(images: str, labels: str, _stamp: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    # _stamp (size, mtime of both files) is part of the key so a rewritten file is not served stale.
    x = read_idx(images, _IMAGES_MAGIC)
    y = read_idx(labels, _LABELS_MAGIC)
    if x.shape[1:] != (_IMAGE_SIZE, _IMAGE_SIZE):
        raise ValueError(f"{images}: images are {x.shape[1]}x{x.shape[2]}, expected {_IMAGE_SIZE}x{_IMAGE_SIZE}")
    if len(x) != len(y):
        raise ValueError(f"{images} has {len(x)} images but {labels} has {len(y)} labels")
    if len(y) and int(y.max()) >= NUM_CLASSES:
        raise ValueError(f"{labels}: label {int(y.max())} out of range 0..{NUM_CLASSES - 1}")
    x.flags.writeable = False  # shared by every caller through the cache
    y.flags.writeable = False
    return x, y


def load_fashion_mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    check_counts: bool = True,
) -> TensorDataset:
    """Load a Fashion-MNIST split as a ``TensorDataset`` of normalized images and labels.

    Images are float32 ``[N, 1, 28, 28]``, scaled to [0, 1] then normalized with ``MEAN``/``STD``;
    labels are int64 in 0..9. ``check_counts`` enforces the canonical 60000/10000 sizes (turn it off
    for a subset directory). Raises ``DatasetNotFoundError`` when files are missing and
    ``ValueError`` when they are corrupt.

    Examples:
        >>> ds = load_fashion_mnist("test")  # doctest: +SKIP
        >>> ds.tensors[0].shape
        torch.Size([10000, 1, 28, 28])
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}, got {split!r}")
    directory = resolve_data_dir(data_dir)
    names = SPLIT_FILES[split]
    found = [_find_file(directory, n) for n in names]
    missing = [n for n, p in zip(names, found) if p is None]
    if missing:
        raise _missing_error(directory, missing)
    img_path, lbl_path = (p.resolve() for p in found)  # type: ignore[union-attr]
    x, y = _load_arrays(str(img_path), str(lbl_path), file_stamp(img_path) + file_stamp(lbl_path))
    if check_counts:
        check_count(len(x), SPLIT_SIZES[split], split, f"{img_path}:")
    images = torch.from_numpy(np.asarray(x, dtype=np.float32)).unsqueeze(1)  # new writable copy
    images.div_(255.0).sub_(MEAN).div_(STD)
    labels = torch.from_numpy(y.astype(np.int64))
    logger.debug("loaded Fashion-MNIST %s: %d examples from %s", split, len(labels), directory)
    return TensorDataset(images, labels)


def fashion_mnist_loaders(
    batch_size: int = 128,
    data_dir: str | os.PathLike[str] | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    *,
    check_counts: bool = True,
) -> tuple[DataLoader, DataLoader]:
    """Train (shuffled) and test loaders; ``*_subset`` draws a seeded random subset of that many examples."""
    return split_loaders(load_fashion_mnist, batch_size, data_dir, train_subset, test_subset, seed, check_counts)
