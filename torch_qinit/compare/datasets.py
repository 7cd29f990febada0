"""Data for `compare`: built-in datasets, an image folder, or the user's own ``module:loaders`` callable."""
from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .errors import CompareError, DataError
from .loading import load_object, one_line, where

__all__ = ["DATASETS", "IMAGE_EXTENSIONS", "Data", "resolve_data", "load_image_folder", "first_batch"]

logger = logging.getLogger(__name__)

#: ``--dataset`` names.
DATASETS = ("fmnist", "cifar10", "imagefolder")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_TRAIN_DIRS = ("train", "training")
_TEST_DIRS = ("test", "val", "valid", "validation")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F", "P;L"}


@dataclass
class Data:
    """A train and a test loader of ``(x, y)`` batches, with a description for the report."""

    train: Iterable[Any]
    test: Iterable[Any]
    name: str


def _call_with_supported(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """Call `fn` with the keyword arguments its signature accepts (all of them if it takes **kwargs)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn()
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return fn(**kwargs)
    return fn(**{k: v for k, v in kwargs.items() if k in params})


def resolve_data(
    dataset: str | None = None,
    data: str | Callable[..., Any] | Sequence[Iterable[Any]] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 128,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
) -> Data:
    """Train and test loaders from exactly one of `dataset` (a :data:`DATASETS` name) or `data`.

    `data` is ``(train_loader, test_loader)``, a callable returning that pair, or a
    ``package.module:loaders`` / ``file.py:loaders`` spec of such a callable.  The callable is given
    whichever of ``batch_size``, ``seed`` and ``data_dir`` its signature accepts.  `train_size` and
    `test_size` draw seeded subsets of the built-in datasets.  Raises :class:`DataError`.
    """
    if (dataset is None) == (data is None):
        raise CompareError("give exactly one of --dataset NAME or --data module:loaders")
    if data is not None:
        return _user_data(data, data_dir=data_dir, batch_size=batch_size, seed=seed)
    if dataset == "fmnist":
        from torch_qinit.data import DatasetNotFoundError, fashion_mnist_loaders

        try:
            train, test = fashion_mnist_loaders(batch_size=batch_size, data_dir=data_dir, train_subset=train_size,
                                                test_subset=test_size, seed=seed)
        except (DatasetNotFoundError, ValueError) as exc:
            raise DataError(str(exc)) from exc
        return Data(train, test, f"Fashion-MNIST ({_size(train)} train / {_size(test)} test images)")
    if dataset == "cifar10":
        return _cifar10(data_dir, batch_size, train_size, test_size, seed)
    if dataset == "imagefolder":
        if data_dir is None:
            raise CompareError("--dataset imagefolder needs --data-dir DIR (DIR/train/<class>/*.png and "
                               "DIR/test/<class>/*.png, or DIR/<class>/*.png)")
        train_ds, test_ds, classes = load_image_folder(data_dir, train_size=train_size, test_size=test_size,
                                                       seed=seed)
        train, test = _loaders(train_ds, test_ds, batch_size, seed)
        shape = "x".join(str(d) for d in train_ds.tensors[0].shape[1:])
        return Data(train, test, f"image folder {data_dir} ({len(classes)} classes, {shape}, {len(train_ds)} train / "
                                 f"{len(test_ds)} test images)")
    raise CompareError(f"unknown --dataset {dataset!r}; choose one of {', '.join(DATASETS)} or use --data")


def _size(loader: Any) -> str:
    try:
        return str(len(loader.dataset))
    except (AttributeError, TypeError):
        return "?"


def _cifar10(data_dir: Any, batch_size: int, train_size: int | None, test_size: int | None, seed: int) -> Data:
    try:  # added by the data package; older versions lack it
        from torch_qinit.data import cifar10_loaders
    except ImportError:
        raise DataError("this torch_qinit has no CIFAR-10 reader (torch_qinit.data.cifar10_loaders); use "
                        "--dataset imagefolder --data-dir DIR on an image tree, or --data module:loaders") from None
    from torch_qinit.data import DatasetNotFoundError

    try:
        train, test = _call_with_supported(cifar10_loaders, batch_size=batch_size, data_dir=data_dir,
                                           train_subset=train_size, test_subset=test_size, seed=seed)
    except (DatasetNotFoundError, ValueError, OSError) as exc:
        raise DataError(str(exc)) from exc
    return Data(train, test, f"CIFAR-10 ({_size(train)} train / {_size(test)} test images)")


def _user_data(data: Any, *, data_dir: Any, batch_size: int, seed: int) -> Data:
    name = data if isinstance(data, str) else getattr(data, "__qualname__", type(data).__name__)
    if isinstance(data, str):
        data = load_object(data, what="--data", error=DataError)
    if callable(data):
        try:
            data = _call_with_supported(data, batch_size=batch_size, seed=seed,
                                        data_dir=None if data_dir is None else str(data_dir))
        except Exception as exc:
            raise DataError(f"--data {name} raised {one_line(exc)} ({where(exc)})") from exc
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise DataError(f"--data {name} must return (train_loader, test_loader), got {type(data).__name__}")
    for what, loader in zip(("train", "test"), data):
        if not isinstance(loader, Iterable):
            raise DataError(f"--data {name}: the {what} loader is a {type(loader).__name__}, not an iterable "
                            "of (x, y) batches")
    return Data(data[0], data[1], f"{name} ({_size(data[0])} train / {_size(data[1])} test examples)")


def first_batch(loader: Iterable[Any], what: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``(x, y)`` batch of `loader`, checked: DataError when it is empty or not tensors."""
    try:
        batch = next(iter(loader))
    except StopIteration:
        raise DataError(f"the {what} loader yielded no batches") from None
    except Exception as exc:
        raise DataError(f"reading the first {what} batch raised {one_line(exc)} ({where(exc)})") from exc
    if not (isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[0], torch.Tensor)
            and isinstance(batch[1], torch.Tensor)):
        raise DataError(f"the {what} loader must yield (x, y) tensor batches, got {type(batch).__name__}")
    x, y = batch[0], batch[1]
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or y.dim() != 1:
        raise DataError(f"the {what} labels must be a 1-D integer tensor of class indices, got {y.dtype} "
                        f"{list(y.shape)}")
    return x, y


# --------------------------------------------------------------------------- image folders


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _find_split(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _pick(files: list[tuple[Path, int]], n: int | None, g: torch.Generator) -> list[tuple[Path, int]]:
    if n is None or n >= len(files):
        return files
    if n <= 0:
        raise CompareError(f"subset size must be positive, got {n}")
    return [files[int(i)] for i in torch.randperm(len(files), generator=g)[:n].sort().values]


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    train_size: int | None = None,
    test_size: int | None = None,
    image_size: tuple[int, int] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[TensorDataset, TensorDataset, list[str]]:
    """Read an ImageFolder tree into normalized in-memory ``TensorDataset``s; returns ``(train, test, classes)``.

    Layouts: ``root/train/<class>/*`` with ``root/test/<class>/*`` (or ``val``), or ``root/<class>/*``,
    split seeded per class with `test_fraction` held out.  Images are read with Pillow: one channel
    when every image is grayscale, else RGB; all resized to `image_size` (default: the first training
    image's size); normalized per channel with the training set's mean and std.
    """
    try:
        from PIL import Image
    except ImportError:
        raise DataError("--dataset imagefolder needs Pillow to read images: pip install pillow") from None
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} not found")
    train_dir, test_dir = _find_split(root, _TRAIN_DIRS), _find_split(root, _TEST_DIRS)
    base = train_dir or root
    classes = [d.name for d in _class_dirs(base) if d.name not in (_TRAIN_DIRS + _TEST_DIRS) or train_dir]
    if not classes:
        raise DataError(f"no class folders in {base}: expected {base}/<class>/<image> (e.g. {base}/cat/1.png)")
    g = torch.Generator().manual_seed(seed)
    train_files: list[tuple[Path, int]] = []
    test_files: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        files = _images(base / cls)
        if train_dir is not None and test_dir is not None:
            train_files += [(p, label) for p in files]
        else:  # no test split on disk: hold out a seeded share of each class
            order = torch.randperm(len(files), generator=g).tolist()
            n_test = max(1, round(test_fraction * len(files))) if len(files) > 1 else 0
            test_files += [(files[i], label) for i in order[:n_test]]
            train_files += [(files[i], label) for i in order[n_test:]]
    if test_dir is not None and train_dir is not None:
        for cls in _class_dirs(test_dir):
            if cls.name not in classes:
                raise DataError(f"{test_dir}/{cls.name} is a class the training folder {train_dir} does not have")
            test_files += [(p, classes.index(cls.name)) for p in _images(cls)]
    if not train_files or not test_files:
        raise DataError(f"image folder {root}: found {len(train_files)} training and {len(test_files)} test images "
                        f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    train_files, test_files = _pick(train_files, train_size, g), _pick(test_files, test_size, g)

    def header(p: Path) -> tuple[str, tuple[int, int]]:
        try:
            with Image.open(p) as im:  # reads the header only
                return im.mode, im.size
        except Exception as exc:  # PIL raises several types for unreadable files
            raise DataError(f"cannot read image {p}: {one_line(exc)}") from exc

    heads = [header(p) for p, _ in train_files + test_files]
    mode = "L" if all(m in _GRAY_MODES for m, _ in heads) else "RGB"
    width, height = (image_size[1], image_size[0]) if image_size else heads[0][1]

    def to_tensor(files: list[tuple[Path, int]]) -> TensorDataset:
        arrays = []
        for p, _ in files:
            try:
                with Image.open(p) as im:
                    im = im.convert(mode)
                    if im.size != (width, height):
                        im = im.resize((width, height), Image.BILINEAR)
                    a = np.asarray(im, dtype=np.float32) / 255.0
            except Exception as exc:
                raise DataError(f"cannot decode image {p}: {one_line(exc)}") from exc
            arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        x = torch.from_numpy(np.stack(arrays))
        return TensorDataset(x, torch.tensor([label for _, label in files], dtype=torch.int64))

    train, test = to_tensor(train_files), to_tensor(test_files)
    mean = train.tensors[0].mean(dim=(0, 2, 3), keepdim=True)
    std = train.tensors[0].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    for ds in (train, test):
        ds.tensors[0].sub_(mean).div_(std)
    logger.info("image folder %s: %d classes, %s %dx%d, %d train / %d test", root, len(classes), mode, height, width,
                len(train), len(test))
    return train, test, classes


def _loaders(train: TensorDataset, test: TensorDataset, batch_size: int, seed: int) -> tuple[DataLoader, DataLoader]:
    # drop_last: a 1-image last batch breaks BatchNorm1d in training mode.
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=len(train) > batch_size,
                              generator=torch.Generator().manual_seed(seed))
    return train_loader, DataLoader(test, batch_size=batch_size)
