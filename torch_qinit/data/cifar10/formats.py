"""Bytes to arrays: CIFAR-10's python batches (through a restricted unpickler), binary batches and images,
and one split of an ImageFolder tree."""
from __future__ import annotations

import functools
import importlib
import io
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_qinit.data._common import DatasetNotFoundError
from torch_qinit.data.cifar10.layout import IMAGE_SUFFIXES, NUM_CLASSES, RECORD_SIZE

# ---------------------------------------------------------------------------------------------- pickles

def _numpy_global(modules: tuple[str, ...], name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; import the real module so no deprecation shim fires.
    for mod in modules:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {modules[0]}.{name}")


_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
_NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")
# Every global the CIFAR-10 python batches (and re-pickled copies of them) reference. Each is a pure
# data constructor: array reconstruction, dtypes, and _codecs.encode, which protocol-2 pickles written
# by Python 3 use for bytes.
_SAFE_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_global(_MULTIARRAY, "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_global(_MULTIARRAY, "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_global(_NUMERIC, "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_global(_NUMERIC, "_frombuffer"),
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: importlib.import_module("_codecs").encode,
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global outside :class:`RestrictedUnpickler`'s allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR-10's python batches: dicts, lists, bytes, ints and numpy arrays only.

    Any other global (``os.system``, ``builtins.eval``, a class) raises :class:`UnsafePickleError`
    (a ``pickle.UnpicklingError``) before it is looked up, so loading a tampered file cannot run code.
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - documented on the class
        factory = _SAFE_GLOBALS.get((module, name))
        if factory is None:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: CIFAR-10 python batches hold only numpy arrays, "
                "lists, bytes and ints"
            )
        return factory()


def _get(d: dict, key: str) -> Any:
    # Read with encoding="bytes" the keys are bytes (Python 2 files); Python 3 re-pickles may use str.
    if key.encode() in d:
        return d[key.encode()]
    return d.get(key)


def read_python_batch(f: io.BufferedIOBase | Any, name: str = "<batch>") -> tuple[np.ndarray, np.ndarray]:
    """Decode one python batch (a binary file object) to uint8 images ``[N, 3, 32, 32]`` and labels ``[N]``.

    Raises :class:`UnsafePickleError` for globals outside the allow-list and ``ValueError`` if malformed.
    """
    try:
        obj = RestrictedUnpickler(f, encoding="bytes").load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or garbage bytes surface as EOFError, KeyError, ...
        raise ValueError(f"{name}: not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{name}: expected a dict, got {type(obj).__name__}")
    data, labels = _get(obj, "data"), _get(obj, "labels")
    if not isinstance(data, np.ndarray) or labels is None:
        raise ValueError(f"{name}: missing 'data' array or 'labels' (is this CIFAR-100? only CIFAR-10 is supported)")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != RECORD_SIZE - 1:
        raise ValueError(f"{name}: 'data' is {data.dtype} {data.shape}, expected uint8 [N, 3072]")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (len(data),):
        raise ValueError(f"{name}: {len(data)} images but {y.size} labels")
    return data.reshape(-1, 3, 32, 32), y


def read_binary_batch(raw: bytes, name: str = "<batch>") -> tuple[np.ndarray, np.ndarray]:
    """Decode one binary batch (records of 1 label byte + 3072 pixel bytes) to images and labels."""
    if len(raw) == 0 or len(raw) % RECORD_SIZE:
        raise ValueError(f"{name}: {len(raw)} bytes is not a whole number of {RECORD_SIZE}-byte records")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_SIZE)
    return rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0].astype(np.int64)


# ---------------------------------------------------------------------------------------------- images

@functools.lru_cache(maxsize=1)
def _image_decoder() -> Callable[[bytes], np.ndarray]:
    """bytes -> uint8 HWC RGB, with Pillow, else torchvision; ImportError naming both if neither exists."""
    try:
        from PIL import Image
    except ImportError:
        pass
    else:
        def decode_pil(data: bytes) -> np.ndarray:
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im.convert("RGB"))
        return decode_pil
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        raise ImportError(
            "decoding a CIFAR-10 image folder needs Pillow (`pip install Pillow`) or torchvision; "
            "the python and binary batches need neither"
        ) from None

    def decode_tv(data: bytes) -> np.ndarray:
        t = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        return t.permute(1, 2, 0).numpy()
    return decode_tv


def decode_images(items: Iterable[tuple[str, str, Callable[[], bytes]]], where: str,
                  classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``(class, file name, read)`` items into arrays; labels are sorted class names (ImageFolder)."""
    items = sorted(items, key=lambda it: (it[0], it[1]))
    names = sorted({c for c, _, _ in items}) if classes is None else classes
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{where}: found {len(names)} class folders ({', '.join(names[:12])}), "
                         f"CIFAR-10 has {NUM_CLASSES}")
    index = {c: i for i, c in enumerate(names)}
    decode = _image_decoder()
    x = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
    y = np.empty(len(items), dtype=np.int64)
    for i, (cls, fname, read) in enumerate(items):
        if cls not in index:
            raise ValueError(f"{where}: class folder {cls!r} is not one of the other split's {names}")
        try:
            img = decode(read())
        except Exception as exc:  # PIL raises several types for bad files
            raise ValueError(f"{where}/{cls}/{fname}: cannot decode image ({exc})") from exc
        if img.shape != (32, 32, 3):
            raise ValueError(f"{where}/{cls}/{fname}: image is {img.shape[1]}x{img.shape[0]}, expected 32x32")
        x[i] = img
        y[i] = index[cls]
    return x.transpose(0, 3, 1, 2).copy(), y


def is_image_name(name: str) -> bool:
    """Whether a file name is an image of an ImageFolder tree (a known suffix, not a hidden file)."""
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def class_dirs(split_dir: Path) -> list[Path]:
    """The class folders of a split folder, sorted (hidden folders are skipped)."""
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_image_dir(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split of the ImageFolder tree at ``root`` (``root/<split>/<class>/*``), labels in sorted class order."""
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetNotFoundError(f"CIFAR-10 image folder {root} has no {split}/ folder")
    classes = [p.name for p in class_dirs(split_dir)]
    other = root / ("test" if split == "train" else "train")
    if other.is_dir():
        other_classes = [p.name for p in class_dirs(other)]
        if other_classes != classes:
            raise ValueError(f"{root}: train/ and test/ have different class folders "
                             f"({classes} vs {other_classes}), so the labels would not match")
    items = [(c.name, f.name, f.read_bytes) for c in class_dirs(split_dir)
             for f in c.iterdir() if f.is_file() and is_image_name(f.name)]
    return decode_images(items, str(split_dir), classes)
