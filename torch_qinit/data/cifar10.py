"""CIFAR-10 (Krizhevsky, 2009) from the layouts users already have, decoded once and cached.

Accepted layouts, looked for in a root folder (or given directly):

- ``cifar-10-batches-py``: the python batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``),
  what torchvision downloads. They are pickles; :class:`RestrictedUnpickler` admits only the numpy
  types those files hold, so a tampered file cannot run code.
- ``cifar-10-batches-bin``: the binary batches (``data_batch_N.bin``, ``test_batch.bin``), records
  of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32).
- an ImageFolder tree ``train/<class>/*.jpg|png`` and ``test/<class>/...``; labels are the sorted
  class folder names (for CIFAR-10's names that is the standard order airplane..truck).
  Needs Pillow (or torchvision) to decode.
- a ``.tar.gz`` / ``.tgz`` / ``.tar`` archive holding any of these (``cifar-10-python.tar.gz``,
  ``cifar-10-binary.tar.gz``, ``cifar10-jpg.tar.gz``), read without extracting.

Search order when no folder is given: ``$TORCH_QINIT_CIFAR10_DIR``, then ``<cache>/cifar10`` (where
:func:`prepare_cifar10` and ``make cifar10`` link the data), then ``./data`` (torchvision's usual root;
only its CIFAR-named sub-folders and archives, since a bare ``train/`` there could be any dataset).

Decoded uint8 arrays are cached as ``.npz`` files in ``<cache>/cifar10`` (``<cache>`` is
``$TORCH_QINIT_CACHE_DIR``, else ``~/.cache/torch_qinit``), keyed by the source's size and mtime and its
path (an archive: its file name, so any path to the same archive shares one cache), and also in-process;
so only the first load decodes.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import io
import json
import logging
import os
import pickle
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from torch_qinit.data._common import DatasetNotFoundError, check_count, default_cache_dir, file_stamp, split_loaders

__all__ = [
    "CLASSES",
    "MEAN",
    "STD",
    "NUM_CLASSES",
    "SPLIT_SIZES",
    "DATA_DIR_ENV",
    "LAYOUTS",
    "CIFAR10Source",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "read_python_batch",
    "read_binary_batch",
    "search_paths",
    "find_cifar10",
    "load_cifar10_arrays",
    "load_cifar10",
    "cifar10_loaders",
    "prepare_cifar10",
]

logger = logging.getLogger(__name__)

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = 10
# Per-channel mean/std of the 50,000 official training images, pixels scaled to [0, 1] (the values
# used across the CIFAR literature). The JPEG re-encoding in cifar10-jpg.tar.gz shifts them by < 0.002.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
SPLIT_SIZES: dict[str, int] = {"train": 50000, "test": 10000}
DATA_DIR_ENV = "TORCH_QINIT_CIFAR10_DIR"

LAYOUTS: dict[str, str] = {
    "python": "cifar-10-batches-py/ (data_batch_1..5, test_batch: the python pickles torchvision downloads)",
    "binary": "cifar-10-batches-bin/ (data_batch_1..5.bin, test_batch.bin)",
    "images": "an ImageFolder tree train/<class>/*.jpg|png and test/<class>/*.jpg|png",
    "archive": "a .tar.gz/.tgz/.tar holding one of these (cifar-10-python.tar.gz, cifar-10-binary.tar.gz, "
               "cifar10-jpg.tar.gz)",
}

_PY_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_BIN_FILES = {split: tuple(f"{n}.bin" for n in names) for split, names in _PY_FILES.items()}
# Sub-folders of a root that may hold a layout (the official names, and common names for the image tree).
_KNOWN_SUBDIRS = ("cifar-10-batches-py", "cifar-10-batches-bin", "cifar10-jpg", "cifar10", "CIFAR-10-images")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_RECORD = 1 + 3 * 32 * 32
_CACHE_VERSION = 1


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
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _RECORD - 1:
        raise ValueError(f"{name}: 'data' is {data.dtype} {data.shape}, expected uint8 [N, 3072]")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (len(data),):
        raise ValueError(f"{name}: {len(data)} images but {y.size} labels")
    return data.reshape(-1, 3, 32, 32), y


def read_binary_batch(raw: bytes, name: str = "<batch>") -> tuple[np.ndarray, np.ndarray]:
    """Decode one binary batch (records of 1 label byte + 3072 pixel bytes) to images and labels."""
    if len(raw) == 0 or len(raw) % _RECORD:
        raise ValueError(f"{name}: {len(raw)} bytes is not a whole number of {_RECORD}-byte records")
    rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _RECORD)
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


def _decode_images(items: Iterable[tuple[str, str, Callable[[], bytes]]], where: str,
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


def _is_image(name: str) -> bool:
    return name.lower().endswith(_IMAGE_SUFFIXES) and not name.startswith(".")


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _read_image_dir(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetNotFoundError(f"CIFAR-10 image folder {root} has no {split}/ folder")
    classes = [p.name for p in _class_dirs(split_dir)]
    other = root / ("test" if split == "train" else "train")
    if other.is_dir():
        other_classes = [p.name for p in _class_dirs(other)]
        if other_classes != classes:
            raise ValueError(f"{root}: train/ and test/ have different class folders "
                             f"({classes} vs {other_classes}), so the labels would not match")
    items = [(c.name, f.name, f.read_bytes) for c in _class_dirs(split_dir)
             for f in c.iterdir() if f.is_file() and _is_image(f.name)]
    return _decode_images(items, str(split_dir), classes)


# ---------------------------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class CIFAR10Source:
    """Where CIFAR-10 was found: ``layout`` is a key of :data:`LAYOUTS`, ``path`` a folder or an archive."""

    layout: str
    path: Path

    def __str__(self) -> str:
        return f"{self.path} ({self.layout})"


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def _detect(root: Path, root_images: bool = True) -> CIFAR10Source | None:
    """The layout at ``root`` (or in one of its known sub-folders); lossless layouts before images.

    ``root_images=False`` ignores a bare ``train/``+``test/`` tree at ``root`` itself: in a generic folder
    like ``./data`` that could be any dataset, so only CIFAR-named sub-folders and archives count there.
    """
    if _is_archive(root):
        return CIFAR10Source("archive", root)
    if not root.is_dir():
        return None
    dirs = [root] + [root / s for s in _KNOWN_SUBDIRS if (root / s).is_dir()]
    for layout, files in (("python", _PY_FILES), ("binary", _BIN_FILES)):
        for d in dirs:
            if any((d / n).is_file() for names in files.values() for n in names):
                return CIFAR10Source(layout, d)
    for d in dirs if root_images else dirs[1:]:
        if (d / "train").is_dir() or (d / "test").is_dir():
            return CIFAR10Source("images", d)
    archives = sorted(p for p in root.iterdir() if _is_archive(p) and "cifar" in p.name.lower()
                      and "100" not in p.name)
    return CIFAR10Source("archive", archives[0]) if archives else None


def search_paths() -> list[Path]:
    """Where CIFAR-10 is looked for when no folder is given, in order: ``$TORCH_QINIT_CIFAR10_DIR``, then
    ``<cache>/cifar10`` (see :func:`prepare_cifar10`), then ``./data`` (only its CIFAR-named contents)."""
    paths = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        paths.append(Path(env).expanduser())
    paths += [default_cache_dir() / "cifar10", Path("data")]
    return paths


def _missing_message(searched: list[Path]) -> str:
    layouts = "\n".join(f"  - {v}" for v in LAYOUTS.values())
    return (
        f"CIFAR-10 not found (looked in: {', '.join(str(p) for p in searched)}). Accepted layouts:\n{layouts}\n"
        f"Point at your copy with --data-dir DIR (data_dir=... in Python) or set {DATA_DIR_ENV}=DIR; "
        "in this repository `make cifar10` links ../shared/data/cifar10-jpg.tar.gz into the cache."
    )


def find_cifar10(data_dir: str | os.PathLike[str] | None = None) -> CIFAR10Source:
    """Locate CIFAR-10 in ``data_dir`` (a folder or an archive), else along :func:`search_paths`.

    Raises ``DatasetNotFoundError`` naming the accepted layouts, ``--data-dir`` and the env variable.
    """
    roots = [Path(data_dir).expanduser()] if data_dir is not None else search_paths()
    for root in roots:
        source = _detect(root, root_images=data_dir is not None or root != Path("data"))
        if source is not None:
            return source
    raise DatasetNotFoundError(_missing_message(roots) + _dangling_links_note(roots))


def _dangling_links_note(roots: list[Path]) -> str:
    """A line per link in ``roots`` whose target is gone (the cache link `make cifar10` made from a
    checkout that was since moved or deleted), so the message says why a once-working setup fails."""
    dangling = [p for root in roots if root.is_dir() for p in sorted(root.iterdir())
                if p.is_symlink() and not p.exists()]
    return "".join(f"\n{p} is a link to {os.readlink(p)}, which no longer exists: run `make cifar10` "
                   "again from this checkout, or point --data-dir at your copy." for p in dangling)


# ---------------------------------------------------------------------------------------------- decoding

def _check(x: np.ndarray, y: np.ndarray, where: str) -> None:
    if len(x) != len(y):
        raise ValueError(f"{where}: {len(x)} images but {len(y)} labels")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= NUM_CLASSES):
        raise ValueError(f"{where}: label {int(y.max())} out of range 0..{NUM_CLASSES - 1}")


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_batches(source: CIFAR10Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    files = (_PY_FILES if source.layout == "python" else _BIN_FILES)[split]
    missing = [n for n in files if not (source.path / n).is_file()]
    if missing:
        raise DatasetNotFoundError(f"CIFAR-10 {source.layout} batches in {source.path}: missing {', '.join(missing)}")
    parts = []
    for n in files:
        path = source.path / n
        if source.layout == "python":
            with path.open("rb") as f:
                parts.append(read_python_batch(f, str(path)))
        else:
            parts.append(read_binary_batch(path.read_bytes(), str(path)))
    return _concat(parts)


def _read_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits from one streaming pass over the archive (gzip cannot seek, so one pass decodes all)."""
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    images: dict[str, list[tuple[str, str, Callable[[], bytes]]]] = {"train": [], "test": []}
    try:
        with tarfile.open(path, "r:*") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                parts = PurePosixPath(m.name).parts
                base = parts[-1]
                if base in _PY_FILES["train"] + _PY_FILES["test"] or base in _BIN_FILES["train"] + _BIN_FILES["test"]:
                    f = tf.extractfile(m)
                    assert f is not None
                    where = f"{path}:{m.name}"
                    batches[base] = (read_binary_batch(f.read(), where) if base.endswith(".bin")
                                     else read_python_batch(f, where))
                    continue
                # ImageFolder member: .../<split>/<class>/<file>
                if len(parts) >= 3 and parts[-3] in images and _is_image(base):
                    data = tf.extractfile(m).read()  # type: ignore[union-attr]
                    images[parts[-3]].append((parts[-2], base, (lambda d=data: d)))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: corrupt or truncated archive ({exc})") from exc
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for files in (_PY_FILES, _BIN_FILES):
        for split, names in files.items():
            if split not in out and all(n in batches for n in names):
                out[split] = _concat([batches[n] for n in names])
    if "train" not in out and "test" not in out and (images["train"] or images["test"]):
        classes = sorted({c for c, _, _ in images["train"] or images["test"]})
        for split, items in images.items():
            if items:
                out[split] = _decode_images(items, f"{path}:{split}", classes)
    if not out:
        raise DatasetNotFoundError(f"{path}: no CIFAR-10 python batches, binary batches or image folders inside. "
                                   + _missing_message([path]).split(". ", 1)[1])
    return out


def _decode(source: CIFAR10Source, split: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The requested split, plus any other split that came for free (archives decode in one pass)."""
    if source.layout == "archive":
        out = _read_archive(source.path)
        if split not in out:
            raise DatasetNotFoundError(f"{source.path}: the archive holds no CIFAR-10 {split} split")
    elif source.layout == "images":
        out = {split: _read_image_dir(source.path, split)}
    else:
        out = {split: _read_batches(source, split)}
    for s, (x, y) in out.items():
        _check(x, y, f"{source.path} ({s})")
    return out


# ---------------------------------------------------------------------------------------------- cache

def _identity(source: CIFAR10Source) -> str:
    """A key that changes when the source does: the size/mtime of what it reads, and where it is.

    An archive is keyed by its file name, size and mtime, not its path: the same archive reached through
    another path (a symlink recreated from another checkout) must find its decoded arrays (180 MB) again
    rather than write a new pair. A folder layout is keyed by its resolved path too.
    """
    path = source.path.resolve()
    where = str(path)
    stats: list[Any] = []
    if source.layout == "archive":
        where = path.name
        stats.append(list(file_stamp(path)))
    elif source.layout == "images":
        # Directory mtimes change when files are added, removed or renamed; 22 stats, not 60,000.
        for split in ("train", "test"):
            d = path / split
            if d.is_dir():
                stats.append([split, d.stat().st_mtime_ns])
                stats += [[f"{split}/{c.name}", c.stat().st_mtime_ns] for c in _class_dirs(d)]
    else:
        files = _PY_FILES if source.layout == "python" else _BIN_FILES
        for n in files["train"] + files["test"]:
            p = path / n
            if p.is_file():
                stats.append([n, *file_stamp(p)])
    blob = json.dumps([_CACHE_VERSION, source.layout, where, stats])
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _cache_file(cache_dir: Path, key: str, split: str) -> Path:
    return cache_dir / "cifar10" / f"decoded-{key}-{split}.npz"


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z["x"], z["y"]
    except FileNotFoundError:
        return None
    except Exception as exc:  # a half-written or foreign file: decode again
        logger.warning("ignoring unreadable CIFAR-10 cache %s (%s)", path, exc)
        return None
    if x.dtype != np.uint8 or x.shape[1:] != (3, 32, 32) or y.shape != (len(x),):
        logger.warning("ignoring malformed CIFAR-10 cache %s", path)
        return None
    return x, y.astype(np.int64, copy=False)


def _write_cache(path: Path, x: np.ndarray, y: np.ndarray, source: CIFAR10Source) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            # Uncompressed: pixels barely compress, and loading must stay well under a second.
            np.savez(f, x=x, y=y.astype(np.uint8), source=np.array(str(source)))
        os.replace(tmp, path)  # atomic, so a concurrent reader never sees a partial file
    except OSError as exc:
        logger.warning("could not write the CIFAR-10 cache %s (%s); the next load decodes again", path, exc)


@functools.lru_cache(maxsize=4)
def _arrays(source: CIFAR10Source, split: str, key: str, cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    # key is part of the lru key, so a changed source is decoded afresh rather than served stale.
    if cache_dir is not None:
        hit = _read_cache(_cache_file(cache_dir, key, split))
        if hit is not None:
            logger.debug("CIFAR-10 %s from cache %s", split, _cache_file(cache_dir, key, split))
            x, y = hit
            x.flags.writeable = y.flags.writeable = False
            return x, y
    logger.info("decoding CIFAR-10 %s from %s (first load; cached afterwards)", split, source)
    decoded = _decode(source, split)
    if cache_dir is not None:
        for s, (x, y) in decoded.items():
            _write_cache(_cache_file(cache_dir, key, s), x, y, source)
    x, y = decoded[split]
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False  # shared by every caller through the lru cache
    return x, y


def load_cifar10_arrays(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw, read-only uint8 images ``[N, 3, 32, 32]`` and int64 labels of one split (cached; see module doc)."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {sorted(SPLIT_SIZES)}, got {split!r}")
    source = find_cifar10(data_dir)
    cdir = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) if cache else None
    return _arrays(source, split, _identity(source), cdir)


def load_cifar10(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    check_counts: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> TensorDataset:
    """Load a CIFAR-10 split as a ``TensorDataset`` of normalized images and labels.

    Images are float32 ``[N, 3, 32, 32]``, scaled to [0, 1] then normalized per channel with
    ``MEAN``/``STD`` (the standard CIFAR-10 train statistics); labels are int64 in 0..9.
    ``data_dir`` is a folder or archive in any layout of :data:`LAYOUTS`; without it the search order
    of :func:`search_paths` applies. ``check_counts`` enforces the canonical 50000/10000 sizes.
    Raises ``DatasetNotFoundError`` when nothing is found and ``ValueError`` for corrupt files.

    Examples:
        >>> ds = load_cifar10("test", "~/data/cifar-10-batches-py")  # doctest: +SKIP
        >>> ds.tensors[0].shape
        torch.Size([10000, 3, 32, 32])
    """
    x, y = load_cifar10_arrays(split, data_dir, cache=cache, cache_dir=cache_dir)
    if check_counts:
        check_count(len(x), SPLIT_SIZES[split], split, "CIFAR-10")
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    with warnings.catch_warnings():
        # The cached array is read-only on purpose; torch only reads it here.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        pixels = torch.from_numpy(x)
    # (x/255 - mean)/std as a conversion (a new float32 tensor) and an in-place multiply-add. Measured on
    # the 600 MB train split: 0.33 s CPU, against 0.7 s for a type-promoting torch.mul and more for div/sub/div.
    images = pixels.to(torch.float32).mul_(1.0 / (255.0 * std)).add_(-mean / std)
    labels = torch.from_numpy(y.copy())
    return TensorDataset(images, labels)


def cifar10_loaders(
    batch_size: int = 128,
    data_dir: str | os.PathLike[str] | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
    *,
    check_counts: bool = True,
) -> tuple[DataLoader, DataLoader]:
    """Train (shuffled) and test loaders; ``*_subset`` draws a seeded random subset of that many examples."""
    return split_loaders(load_cifar10, batch_size, data_dir, train_subset, test_subset, seed, check_counts)


def prepare_cifar10(
    source: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
) -> CIFAR10Source:
    """Link ``source`` (any accepted layout or archive) into ``<cache>/cifar10`` and decode both splits there.

    Afterwards ``load_cifar10()`` finds it without arguments and loads from the decoded cache.
    """
    src = Path(source).expanduser().resolve()
    found = _detect(src)
    if found is None:
        raise DatasetNotFoundError(_missing_message([src]))
    cdir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target_dir = cdir / "cifar10"
    target_dir.mkdir(parents=True, exist_ok=True)
    # Keep the name when the search recognises it; otherwise use one it does.
    if src.is_file():
        name = src.name if "cifar" in src.name.lower() else "cifar10" + "".join(src.suffixes[-2:])
    else:
        name = src.name if src.name in _KNOWN_SUBDIRS else "cifar10"
    # Only one linked source, so the search cannot pick a stale one.
    for old in target_dir.iterdir():
        if old.is_symlink():
            old.unlink()
    link = target_dir / name
    link.symlink_to(src, target_is_directory=src.is_dir())
    linked = _detect(target_dir)
    assert linked is not None
    key = _identity(linked)
    for split in SPLIT_SIZES:
        _arrays(linked, split, key, cdir)
    _prune_stale_cache(target_dir, linked, key)
    logger.info("CIFAR-10 prepared: %s -> %s", link, src)
    return linked


def _prune_stale_cache(target_dir: Path, linked: CIFAR10Source, key: str) -> None:
    """Delete decoded pairs an earlier ``prepare_cifar10`` wrote through the same link for another key.

    A re-provisioned archive (same file, new mtime: our machines recreate ../shared every session) gets a
    new key, and each old pair (180 MB) would otherwise stay forever. Only files that record this very link
    as their source are touched; caches of other sources (a user's --data-dir) are kept.
    """
    for path in target_dir.glob("decoded-*.npz"):
        if path.name.startswith(f"decoded-{key}-"):
            continue
        try:
            with np.load(path, allow_pickle=False) as z:
                source = str(z["source"])
        except Exception:  # unreadable: not ours to judge
            continue
        if source == str(linked):
            path.unlink(missing_ok=True)
            logger.info("removed stale CIFAR-10 cache %s", path)
