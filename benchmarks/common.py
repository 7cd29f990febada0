"""Helpers shared by the benchmarks (ARCHITECTURE.md §4): data, seeded initialization, arguments, statistics.

Typical use in a benchmark's ``main``::

    parser = argparse.ArgumentParser(prog="torch-qinit bench NAME")
    common_args(parser)
    args = parser.parse_args(argv)
    with bench_context(args):                      # threads + --out, restored afterwards
        calib, test = load_data(args.quick, args.data_dir, dataset=args.dataset)
        model, report = init_model(("test", 0), "he_normal", seed=0)
"""
from __future__ import annotations

import argparse
import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmarks import results
from torch_qinit.data.registry import DATASET_NAMES, dataset_info
from torch_qinit.initialize import GHN_METHODS  # methods that need GHN weights
from torch_qinit.results import MAIN_METHODS, mean_std

__all__ = [
    "METHODS_MAIN",
    "GHN_METHODS",
    "DATA_SIZES",
    "DATASET_NAMES",
    "load_data",
    "result_name",
    "dataset_title",
    "in_channels",
    "fixed_batches",
    "build_model",
    "init_model",
    "mean_std",
    "ghn_available",
    "ghn_unavailable_reason",
    "classic_methods",
    "common_args",
    "resolve_seeds",
    "bench_context",
]

#: The methods every benchmark compares by default.
METHODS_MAIN: list[str] = list(MAIN_METHODS)

#: Data sizes (number of examples) and batch size for quick and full runs.
DATA_SIZES: dict[str, dict[str, int]] = {
    "quick": {"train": 512, "test": 256, "batch_size": 64},
    "full": {"train": 10000, "test": 2000, "batch_size": 128},
}

DEFAULT_RESULTS_DIR: Path = results.RESULTS_DIR

ModelSource = Union[nn.Module, "Any", tuple]  # nn.Module, ArchSpec, or (split, index)


# --------------------------------------------------------------------------- data


def load_data(quick: bool, data_dir: str | None = None, *, dataset: str = "fmnist", seed: int = 0,
              train_size: int | None = None, test_size: int | None = None,
              batch_size: int | None = None) -> tuple[DataLoader, DataLoader]:
    """``(train loader, test loader)`` of `dataset` ("fmnist" or "cifar10") on seeded subsets sized for
    quick or full runs.

    The train loader is shuffled with a seeded generator (use it for training, BN recalibration
    and activation calibration; see :func:`fixed_batches` for identical batches across methods);
    the test loader is a fixed, unshuffled subset (same examples for every method and seed).
    Sizes default to ``DATA_SIZES["quick" | "full"]``; ``None`` in an override keeps the default,
    ``0`` means the whole split.  Raises ``torch_qinit.data.DatasetNotFoundError`` if the data is absent.
    """
    from torch_qinit.data import dataset_loaders

    sizes = DATA_SIZES["quick" if quick else "full"]
    train_n = sizes["train"] if train_size is None else (train_size or None)
    test_n = sizes["test"] if test_size is None else (test_size or None)
    return dataset_loaders(dataset, batch_size=batch_size or sizes["batch_size"], data_dir=data_dir,
                           train_subset=train_n, test_subset=test_n, seed=seed)


def result_name(name: str, dataset: str) -> str:
    """Result file stem: ``name`` on Fashion-MNIST (the original results), ``name_cifar10`` and so on otherwise."""
    key = dataset_info(dataset).name
    return name if key == "fmnist" else f"{name}_{key}"


def dataset_title(dataset: str) -> str:
    """The dataset's display name ("Fashion-MNIST", "CIFAR-10")."""
    return dataset_info(dataset).title


def in_channels(dataset: str) -> int:
    """Image channels of `dataset`; design-space architectures are built for it (1: 28x28, 3: 32x32)."""
    return dataset_info(dataset).input_shape[0]


def fixed_batches(loader: Iterable[Any], n: int) -> list[Any]:
    """The first `n` batches of `loader` as a list, so every method sees exactly the same batches."""
    out = []
    for i, batch in enumerate(loader):
        if i >= n:
            break
        out.append(batch)
    return out


# --------------------------------------------------------------------------- models and init


def build_model(source: Any, seed: int = 0) -> nn.Module:
    """An nn.Module from a design-space ``(split, index)``, an ``ArchSpec`` or a module (deep-copied).

    Construction runs under ``torch.manual_seed(seed)`` (restored afterwards) so PyTorch's default
    init, which some layers keep, is reproducible too.
    """
    import copy

    from torch_qinit.space import build_arch

    if isinstance(source, nn.Module):
        return copy.deepcopy(source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(source, tuple):
            return build_arch(*source)
        if hasattr(source, "build"):
            return source.build()
    raise TypeError(f"expected an nn.Module, an ArchSpec or (split, index); got {type(source).__name__}")


def init_model(spec_or_model: Any, method: str, seed: int = 0, bits: Any = 4, device: str | torch.device = "cpu",
               **kwargs: Any) -> tuple[nn.Module, Any]:
    """Build a model, move it to `device` and initialize it there with `method`; returns ``(model, InitReport)``.

    `spec_or_model`: ``(split, index)``, an ``ArchSpec``, or an nn.Module (a deep copy is
    initialized; the argument is left as is).  Classic methods draw from
    ``torch.Generator().manual_seed(seed)``; "ghn-qat"/"ghn" use the bundled GHN checkpoints
    (deterministic: `seed` only affects fallback parameters).  `bits` is the target weight width
    (None = float) that "ghn-qat" predicts for; extra kwargs go to ``torch_qinit.initialize_``.
    The classic draws come from a CPU generator on any device, so a seed gives the same start on CPU and GPU.
    """
    import torch_qinit

    model = build_model(spec_or_model, seed).to(device)
    g = torch.Generator().manual_seed(seed)
    report = torch_qinit.initialize_(model, bits=bits, method=method, generator=g, **kwargs)
    return model, report


def classic_methods() -> list[str]:
    """Every classic initializer name (``torch_qinit.init.available_methods()``)."""
    from torch_qinit.init import available_methods

    return list(available_methods())


def ghn_unavailable_reason(method: str) -> str | None:
    """None if `method` can run; else why not (e.g. bundled GHN weights are missing).

    Cached per (method, weights folder), so setting ``$TORCH_QINIT_WEIGHTS_DIR`` is honoured.
    """
    if method not in GHN_METHODS:
        return None
    from torch_qinit.hub import bundled_weights_dir

    return _ghn_check(method, str(bundled_weights_dir()))


@functools.lru_cache(maxsize=None)
def _ghn_check(method: str, weights_dir: str) -> str | None:
    try:
        from torch_qinit.hub import load_ghn

        load_ghn(method)
    except Exception as exc:  # noqa: BLE001 - any failure means "skip with a note"
        return f"{type(exc).__name__}: {exc}"
    return None


def ghn_available(method: str) -> bool:
    """True for classic methods, and for "ghn-qat"/"ghn" when their bundled weights load.

    Benchmarks skip unavailable GHN methods and say so (see :func:`ghn_unavailable_reason`).
    """
    return ghn_unavailable_reason(method) is None


# --------------------------------------------------------------------------- arguments


def common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add --quick, --threads, --device, --dataset, --data-dir, --seeds and --out to `parser`; returns it."""
    parser.add_argument("--quick", action="store_true", help="seconds-long CI run; writes NAME.quick.* files")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", type=_device_arg, default=torch.device("cpu"),
                        help="where the models run: cpu (default) or cuda; GPU results differ from CPU ones in "
                             "rounding, so compare methods within one device")
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="fmnist",
                        help="fmnist (1x28x28, default) or cifar10 (3x32x32); results of a non-default dataset "
                             "are written as NAME_DATASET.*")
    parser.add_argument("--data-dir", default=None,
                        help="dataset folder (Fashion-MNIST default: $TORCH_QINIT_DATA_DIR or "
                             "/usr/share/datasets/fashion-mnist; CIFAR-10: python/binary batches, image folder "
                             "or .tar.gz, default $TORCH_QINIT_CIFAR10_DIR, then what `make cifar10` prepared)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                        help="seeds to run (default depends on the benchmark and --quick)")
    parser.add_argument("--out", default=None, help="results directory (default benchmarks/results)")
    return parser


def _device_arg(name: str) -> torch.device:
    """argparse type of --device: refused at parse time (malformed, or no such CUDA device here)."""
    from torch_qinit.modules import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def resolve_seeds(args: argparse.Namespace, quick: Sequence[int] = (0,), full: Sequence[int] = (0, 1)) -> list[int]:
    """--seeds if given, else the benchmark's quick or full default."""
    if args.seeds:
        return list(args.seeds)
    return list(quick if args.quick else full)


@contextlib.contextmanager
def bench_context(args: argparse.Namespace) -> Iterator[None]:
    """Apply --threads and --out for the duration of a benchmark; both are restored on exit."""
    old_threads = torch.get_num_threads()
    old_dir = results.RESULTS_DIR
    try:
        if getattr(args, "threads", None):
            torch.set_num_threads(max(1, int(args.threads)))
        out = getattr(args, "out", None)
        results.RESULTS_DIR = Path(out).expanduser().resolve() if out else DEFAULT_RESULTS_DIR
        yield
    finally:
        torch.set_num_threads(old_threads)
        results.RESULTS_DIR = old_dir
