"""Pieces shared by the dataset modules: the missing-data error, the cache folder, a file's cache stamp,
the split-size check and loader building."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["CACHE_DIR_ENV", "DatasetNotFoundError", "default_cache_dir", "file_stamp", "check_count", "make_loaders",
           "split_loaders", "subset"]

CACHE_DIR_ENV = "TORCH_QINIT_CACHE_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message says what to install or where to point."""


def default_cache_dir() -> Path:
    """Where decoded datasets are cached: ``$TORCH_QINIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/torch_qinit``,
    else ``~/.cache/torch_qinit``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "torch_qinit"


def file_stamp(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(size, mtime in ns) of a file: part of every decoded-data cache key, so a rewritten file is not served stale."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def check_count(n: int, expected: int, split: str, where: str) -> None:
    """ValueError unless a split has its canonical size; `where` starts the message (the file, the dataset)."""
    if n != expected:
        raise ValueError(f"{where} {split} split has {n} examples, expected {expected} "
                         "(pass check_counts=False for a subset)")


def subset(ds: TensorDataset, n: int | None, generator: torch.Generator) -> TensorDataset:
    """A seeded random subset of ``n`` examples, in the dataset's order (``ds`` itself if ``n`` covers it)."""
    if n is None or n >= len(ds):
        return ds
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    # Sorted so the test subset keeps the file order; which examples are drawn depends only on the seed.
    idx = torch.randperm(len(ds), generator=generator)[:n].sort().values
    return TensorDataset(*(t[idx] for t in ds.tensors))


def make_loaders(
    train: TensorDataset,
    test: TensorDataset,
    batch_size: int,
    train_subset: int | None,
    test_subset: int | None,
    seed: int,
) -> tuple[DataLoader, DataLoader]:
    """Seeded subsets, then a shuffled train loader and an in-order test loader."""
    g = torch.Generator().manual_seed(seed)
    train = subset(train, train_subset, g)
    test = subset(test, test_subset, g)
    shuffle_gen = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=shuffle_gen)
    test_loader = DataLoader(test, batch_size=batch_size, shuffle=False)
    return train_loader, test_loader


def split_loaders(
    load: Callable[..., TensorDataset],
    batch_size: int,
    data_dir: str | os.PathLike[str] | None,
    train_subset: int | None,
    test_subset: int | None,
    seed: int,
    check_counts: bool,
) -> tuple[DataLoader, DataLoader]:
    """Both splits of a dataset through its ``load(split, data_dir, check_counts=...)``, then :func:`make_loaders`."""
    train = load("train", data_dir, check_counts=check_counts)
    test = load("test", data_dir, check_counts=check_counts)
    return make_loaders(train, test, batch_size, train_subset, test_subset, seed)
