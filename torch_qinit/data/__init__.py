"""Datasets: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``."""
from torch_qinit.data.fashion_mnist import (
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    MEAN,
    NUM_CLASSES,
    STD,
    DatasetNotFoundError,
    fashion_mnist_loaders,
    load_fashion_mnist,
    read_idx,
    resolve_data_dir,
)

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "MEAN",
    "NUM_CLASSES",
    "STD",
    "DatasetNotFoundError",
    "fashion_mnist_loaders",
    "load_fashion_mnist",
    "read_idx",
    "resolve_data_dir",
]
