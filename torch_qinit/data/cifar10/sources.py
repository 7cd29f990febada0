"""Finding CIFAR-10 on disk: which layout a folder or archive holds, where to look when no folder is given, and
the message when nothing is found."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch_qinit.data._common import DatasetNotFoundError, default_cache_dir
from torch_qinit.data.cifar10.layout import (
    ARCHIVE_SUFFIXES,
    BINARY_BATCH_FILES,
    DATA_DIR_ENV,
    KNOWN_SUBDIRS,
    LAYOUTS,
    PYTHON_BATCH_FILES,
)


@dataclass(frozen=True)
class CIFAR10Source:
    """Where CIFAR-10 was found: ``layout`` is a key of :data:`LAYOUTS`, ``path`` a folder or an archive."""

    layout: str
    path: Path

    def __str__(self) -> str:
        return f"{self.path} ({self.layout})"


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def detect(root: Path, root_images: bool = True) -> CIFAR10Source | None:
    """The layout at ``root`` (or in one of its known sub-folders); lossless layouts before images.

    ``root_images=False`` ignores a bare ``train/``+``test/`` tree at ``root`` itself: in a generic folder
    like ``./data`` that could be any dataset, so only CIFAR-named sub-folders and archives count there.
    """
    if _is_archive(root):
        return CIFAR10Source("archive", root)
    if not root.is_dir():
        return None
    dirs = [root] + [root / s for s in KNOWN_SUBDIRS if (root / s).is_dir()]
    for layout, files in (("python", PYTHON_BATCH_FILES), ("binary", BINARY_BATCH_FILES)):
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


def missing_message(searched: list[Path]) -> str:
    """Why nothing was found in ``searched``: the accepted layouts, and how to point at a copy."""
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
        source = detect(root, root_images=data_dir is not None or root != Path("data"))
        if source is not None:
            return source
    raise DatasetNotFoundError(missing_message(roots) + _dangling_links_note(roots))


def _dangling_links_note(roots: list[Path]) -> str:
    """A line per link in ``roots`` whose target is gone (the cache link `make cifar10` made from a
    checkout that was since moved or deleted), so the message says why a once-working setup fails."""
    dangling = [p for root in roots if root.is_dir() for p in sorted(root.iterdir())
                if p.is_symlink() and not p.exists()]
    return "".join(f"\n{p} is a link to {os.readlink(p)}, which no longer exists: run `make cifar10` "
                   "again from this checkout, or point --data-dir at your copy." for p in dangling)
