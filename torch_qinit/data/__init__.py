"""Datasets: Fashion-MNIST (Debian ``dataset-fashion-mnist``) and CIFAR-10 (python/binary batches,
image folders, archives), by name through :func:`load_dataset`."""
from torch_qinit.data._common import CACHE_DIR_ENV, DatasetNotFoundError, default_cache_dir, subset
from torch_qinit.data.cifar10 import (
    cifar10_loaders,
    find_cifar10,
    load_cifar10,
    prepare_cifar10,
)
from torch_qinit.data.fashion_mnist import (
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    MEAN,
    NUM_CLASSES,
    STD,
    fashion_mnist_loaders,
    load_fashion_mnist,
    read_idx,
    resolve_data_dir,
)
from torch_qinit.data.registry import (
    DATASET_NAMES,
    DatasetInfo,
    dataset_for_input,
    dataset_info,
    dataset_loaders,
    describe_training_data,
    load_dataset,
    normalization_record,
)

__all__ = [
    "CACHE_DIR_ENV",
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "MEAN",
    "NUM_CLASSES",
    "STD",
    "DatasetInfo",
    "DatasetNotFoundError",
    "cifar10_loaders",
    "dataset_for_input",
    "dataset_info",
    "dataset_loaders",
    "default_cache_dir",
    "describe_training_data",
    "fashion_mnist_loaders",
    "find_cifar10",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "normalization_record",
    "prepare_cifar10",
    "read_idx",
    "resolve_data_dir",
    "subset",
]
