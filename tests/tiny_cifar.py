"""Tiny CIFAR-10 data for CLI and benchmark tests: binary batches with a few random images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_tiny_cifar(directory: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> Path:
    """``cifar-10-batches-bin``-style files (1 label byte + 3072 pixel bytes per record), labels 0..9 cycling."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name, n in [(f"data_batch_{i}.bin", n_train // 5) for i in range(1, 6)] + [("test_batch.bin", n_test)]:
        rec = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8)
        rec[:, 0] = np.arange(n) % 10
        (directory / name).write_bytes(rec.tobytes())
    return directory


def use_tiny_cifar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_train: int = 40, n_test: int = 20) -> Path:
    """Write tiny CIFAR-10 under ``tmp_path``, cache decoded arrays there too, and relax the 50000/10000 count
    check to these sizes (in this process only); returns the data folder."""
    from torch_qinit.data import cifar10
    from torch_qinit.data.cifar10 import cache as cifar10_cache

    monkeypatch.setenv("TORCH_QINIT_CACHE_DIR", str(tmp_path / "cifar_cache"))
    monkeypatch.setitem(cifar10.SPLIT_SIZES, "train", n_train)
    monkeypatch.setitem(cifar10.SPLIT_SIZES, "test", n_test)
    cifar10_cache.cached_arrays.cache_clear()
    return write_tiny_cifar(tmp_path / "cifar-10-batches-bin", n_train, n_test)
