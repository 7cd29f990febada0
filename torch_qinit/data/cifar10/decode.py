"""One found source to the arrays of a split: its batches, one streaming pass over an archive, or an image
folder, with the sanity checks on what came out."""
from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from torch_qinit.data._common import DatasetNotFoundError
from torch_qinit.data.cifar10.formats import (
    decode_images,
    is_image_name,
    read_binary_batch,
    read_image_dir,
    read_python_batch,
)
from torch_qinit.data.cifar10.layout import (
    BINARY_BATCH_FILES,
    NUM_CLASSES,
    PYTHON_BATCH_FILES,
)
from torch_qinit.data.cifar10.sources import CIFAR10Source, missing_message


def _check(x: np.ndarray, y: np.ndarray, where: str) -> None:
    if len(x) != len(y):
        raise ValueError(f"{where}: {len(x)} images but {len(y)} labels")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= NUM_CLASSES):
        raise ValueError(f"{where}: label {int(y.max())} out of range 0..{NUM_CLASSES - 1}")


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_batches(source: CIFAR10Source, split: str) -> tuple[np.ndarray, np.ndarray]:
    files = (PYTHON_BATCH_FILES if source.layout == "python" else BINARY_BATCH_FILES)[split]
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


def read_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
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
                if (base in PYTHON_BATCH_FILES["train"] + PYTHON_BATCH_FILES["test"]
                        or base in BINARY_BATCH_FILES["train"] + BINARY_BATCH_FILES["test"]):
                    f = tf.extractfile(m)
                    assert f is not None
                    where = f"{path}:{m.name}"
                    batches[base] = (read_binary_batch(f.read(), where) if base.endswith(".bin")
                                     else read_python_batch(f, where))
                    continue
                # ImageFolder member: .../<split>/<class>/<file>
                if len(parts) >= 3 and parts[-3] in images and is_image_name(base):
                    data = tf.extractfile(m).read()  # type: ignore[union-attr]
                    images[parts[-3]].append((parts[-2], base, (lambda d=data: d)))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: corrupt or truncated archive ({exc})") from exc
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for files in (PYTHON_BATCH_FILES, BINARY_BATCH_FILES):
        for split, names in files.items():
            if split not in out and all(n in batches for n in names):
                out[split] = _concat([batches[n] for n in names])
    if "train" not in out and "test" not in out and (images["train"] or images["test"]):
        classes = sorted({c for c, _, _ in images["train"] or images["test"]})
        for split, items in images.items():
            if items:
                out[split] = decode_images(items, f"{path}:{split}", classes)
    if not out:
        raise DatasetNotFoundError(f"{path}: no CIFAR-10 python batches, binary batches or image folders inside. "
                                   + missing_message([path]).split(". ", 1)[1])
    return out


def decode_split(source: CIFAR10Source, split: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The requested split, plus any other split that came for free (archives decode in one pass)."""
    if source.layout == "archive":
        out = read_archive(source.path)
        if split not in out:
            raise DatasetNotFoundError(f"{source.path}: the archive holds no CIFAR-10 {split} split")
    elif source.layout == "images":
        out = {split: read_image_dir(source.path, split)}
    else:
        out = {split: _read_batches(source, split)}
    for s, (x, y) in out.items():
        _check(x, y, f"{source.path} ({s})")
    return out
