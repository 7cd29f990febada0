"""What CIFAR-10 looks like: its classes and statistics, the accepted layouts, and the names and sizes of its
files on disk."""
from __future__ import annotations

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = 10
# Per-channel mean/std of the 50,000 official training images, pixels scaled to [0, 1] (the values
# used across the CIFAR literature). The JPEG re-encoding in cifar10-jpg.tar.gz shifts them by < 0.002.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
SPLIT_SIZES: dict[str, int] = {"train": 50000, "test": 10000}
DATA_DIR_ENV = "TORCH_QINIT_CIFAR10_DIR"

LAYOUTS: dict[str, str] = {
    "python": "cifar-10-batches-py/ (data_batch_1..5, test_batch: the python pickles torchvision downloads)",
    "binary": "cifar-10-batches-bin/ (data_batch_1..5.bin, test_batch.bin)",
    "images": "an ImageFolder tree train/<class>/*.jpg|png and test/<class>/*.jpg|png",
    "archive": "a .tar.gz/.tgz/.tar holding one of these (cifar-10-python.tar.gz, cifar-10-binary.tar.gz, "
               "cifar10-jpg.tar.gz)",
}

PYTHON_BATCH_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
BINARY_BATCH_FILES = {split: tuple(f"{n}.bin" for n in names) for split, names in PYTHON_BATCH_FILES.items()}
# Sub-folders of a root that may hold a layout (the official names, and common names for the image tree).
KNOWN_SUBDIRS = ("cifar-10-batches-py", "cifar-10-batches-bin", "cifar10-jpg", "cifar10", "CIFAR-10-images")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
RECORD_SIZE = 1 + 3 * 32 * 32
