"""Pick a dataset by name: ``load_dataset("cifar10", "train")``, ``dataset_loaders("fmnist", ...)``."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from torch.utils.data import DataLoader, TensorDataset

from torch_qinit.data import cifar10 as _cifar10
from torch_qinit.data import fashion_mnist as _fmnist

__all__ = ["DATASET_NAMES", "DatasetInfo", "dataset_info", "dataset_for_input", "describe_training_data",
           "normalization_record",
           "load_dataset", "dataset_loaders"]


@dataclass(frozen=True)
class DatasetInfo:
    """What callers need to know about a dataset without loading it."""

    name: str
    title: str
    input_shape: tuple[int, int, int]
    num_classes: int
    train_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data_dir_env: str
    load: Callable[..., TensorDataset]
    loaders: Callable[..., tuple[DataLoader, DataLoader]]


_DATASETS: dict[str, DatasetInfo] = {
    "fmnist": DatasetInfo("fmnist", "Fashion-MNIST", (1, 28, 28), 10, 60000, (_fmnist.MEAN,), (_fmnist.STD,),
                          _fmnist.DATA_DIR_ENV, _fmnist.load_fashion_mnist, _fmnist.fashion_mnist_loaders),
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", (3, 32, 32), 10, 50000, _cifar10.MEAN, _cifar10.STD,
                           _cifar10.DATA_DIR_ENV, _cifar10.load_cifar10, _cifar10.cifar10_loaders),
}
_ALIASES = {"fashion-mnist": "fmnist", "fashion_mnist": "fmnist", "cifar-10": "cifar10", "cifar_10": "cifar10"}
DATASET_NAMES = tuple(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``"fmnist"`` or ``"cifar10"`` (a few spellings accepted); ValueError otherwise."""
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return _DATASETS[key]


def dataset_for_input(input_shape: tuple[int, ...]) -> DatasetInfo | None:
    """The dataset whose images have shape ``input_shape`` (C, H, W), or None."""
    shape = tuple(int(d) for d in input_shape)
    return next((info for info in _DATASETS.values() if info.input_shape == shape), None)


def normalization_record(input_shape: tuple[int, ...]) -> dict[str, float] | None:
    """The input normalization a checkpoint trained on these images records (``GHNConfig.normalization``).

    One channel: ``{"mean": m, "std": s}``; several: ``{"mean_0": ..., "std_0": ..., ...}`` per channel.
    None for images of no known dataset.
    """
    info = dataset_for_input(input_shape)
    if info is None:
        return None
    if len(info.mean) == 1:
        return {"mean": info.mean[0], "std": info.std[0]}
    return {**{f"mean_{c}": m for c, m in enumerate(info.mean)}, **{f"std_{c}": s for c, s in enumerate(info.std)}}


def describe_training_data(input_shape: tuple[int, ...], data_dir: str | os.PathLike[str] | None = None) -> str:
    """A one-line record of the training data for a checkpoint's config, from the images' shape.

    Names the dataset, its size and normalization; for CIFAR-10 also the source file and layout found in
    ``data_dir`` (or along the default search), since the JPEG copy differs slightly from the batches.
    """
    info = dataset_for_input(input_shape)
    if info is None:
        return f"custom data, images {'x'.join(str(d) for d in input_shape)}"
    def fmt(v: tuple[float, ...]) -> str:
        return f"{v[0]:.4f}" if len(v) == 1 else "(" + ", ".join(f"{x:.4f}" for x in v) + ")"
    text = f"{info.title} train ({info.train_size // 1000}k), normalized mean {fmt(info.mean)} std {fmt(info.std)}"
    if info.name == "cifar10":
        try:
            src = _cifar10.find_cifar10(data_dir)
        except FileNotFoundError:
            return text
        text += f", from {src.path.resolve().name} ({src.layout})"
    return text


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike[str] | None = None,
                 **kwargs) -> TensorDataset:
    """A split of dataset ``name`` as a ``TensorDataset`` (normalized float images, int64 labels).

    ``kwargs`` go to the dataset's loader (``check_counts=False`` for a subset folder).

    Examples:
        >>> images, labels = load_dataset("cifar10", "train").tensors  # doctest: +SKIP
        >>> images.shape
        torch.Size([50000, 3, 32, 32])
    """
    return dataset_info(name).load(split, data_dir, **kwargs)


def dataset_loaders(name: str, batch_size: int = 128, data_dir: str | os.PathLike[str] | None = None,
                    train_subset: int | None = None, test_subset: int | None = None, seed: int = 0,
                    **kwargs) -> tuple[DataLoader, DataLoader]:
    """Train (shuffled) and test loaders of dataset ``name``, with seeded subsets."""
    return dataset_info(name).loaders(batch_size, data_dir, train_subset, test_subset, seed, **kwargs)
