"""The decoded-array cache: a source's key, the ``.npz`` files on disk and the in-process copy, and
:func:`prepare_cifar10`, which links a source into the cache and fills it."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from torch_qinit.data._common import DatasetNotFoundError, default_cache_dir, file_stamp
from torch_qinit.data.cifar10.decode import decode_split
from torch_qinit.data.cifar10.formats import class_dirs
from torch_qinit.data.cifar10.layout import (
    BINARY_BATCH_FILES,
    KNOWN_SUBDIRS,
    PYTHON_BATCH_FILES,
    SPLIT_SIZES,
)
from torch_qinit.data.cifar10.sources import CIFAR10Source, detect, missing_message

logger = logging.getLogger(__name__)

_CACHE_VERSION = 1


def source_key(source: CIFAR10Source) -> str:
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
                stats += [[f"{split}/{c.name}", c.stat().st_mtime_ns] for c in class_dirs(d)]
    else:
        files = PYTHON_BATCH_FILES if source.layout == "python" else BINARY_BATCH_FILES
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
def cached_arrays(source: CIFAR10Source, split: str, key: str,
                  cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Read-only arrays of ``split``: from memory, else the ``.npz`` cache in ``cache_dir``, else decoded (and
    written there, with any other split the decode produced); ``cache_dir=None`` skips the disk cache."""
    # key is part of the lru key, so a changed source is decoded afresh rather than served stale.
    if cache_dir is not None:
        hit = _read_cache(_cache_file(cache_dir, key, split))
        if hit is not None:
            logger.debug("CIFAR-10 %s from cache %s", split, _cache_file(cache_dir, key, split))
            x, y = hit
            x.flags.writeable = y.flags.writeable = False
            return x, y
    logger.info("decoding CIFAR-10 %s from %s (first load; cached afterwards)", split, source)
    decoded = decode_split(source, split)
    if cache_dir is not None:
        for s, (x, y) in decoded.items():
            _write_cache(_cache_file(cache_dir, key, s), x, y, source)
    x, y = decoded[split]
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False  # shared by every caller through the lru cache
    return x, y


def prepare_cifar10(
    source: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
) -> CIFAR10Source:
    """Link ``source`` (any accepted layout or archive) into ``<cache>/cifar10`` and decode both splits there.

    Afterwards ``load_cifar10()`` finds it without arguments and loads from the decoded cache.
    """
    src = Path(source).expanduser().resolve()
    found = detect(src)
    if found is None:
        raise DatasetNotFoundError(missing_message([src]))
    cdir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target_dir = cdir / "cifar10"
    target_dir.mkdir(parents=True, exist_ok=True)
    # Keep the name when the search recognises it; otherwise use one it does.
    if src.is_file():
        name = src.name if "cifar" in src.name.lower() else "cifar10" + "".join(src.suffixes[-2:])
    else:
        name = src.name if src.name in KNOWN_SUBDIRS else "cifar10"
    # Only one linked source, so the search cannot pick a stale one.
    for old in target_dir.iterdir():
        if old.is_symlink():
            old.unlink()
    link = target_dir / name
    link.symlink_to(src, target_is_directory=src.is_dir())
    linked = detect(target_dir)
    assert linked is not None
    key = source_key(linked)
    for split in SPLIT_SIZES:
        cached_arrays(linked, split, key, cdir)
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
