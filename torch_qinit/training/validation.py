"""Held-out validation during GHN training (ARCHITECTURE.md §3, §4).

Every ``val_every`` steps the trainer initializes the first ``val_archs`` architectures of the
design space's ``val`` split with the GHN being trained, exactly as a user would
(`torch_qinit.initialize_` with ``weights=ghn``), and measures their zero-shot accuracy with the §4
protocol (`torch_qinit.evaluation.evaluate`: BN statistics re-estimated on fixed training batches,
BN folded and activation ranges calibrated for the quantized widths) on a fixed, seeded subset of
the dataset's test images, split evenly between the architectures (1000 image-architecture pairs
in all, whatever ``val_archs``).  The float stage reports float accuracy; the QAT stage also W4A4 and
W2A2.  Measured with 8 architectures, one thread, on 2 cores under a load of ~4.5: 5-7 s per float
validation (Fashion-MNIST and CIFAR-10), 26-27 s for the QAT stage's three widths (fake-quantized
forwards and range calibration); a training step there takes 1.2-2 s, so --val-every 250 adds 1-2 %
(float) and ~5 % (QAT).  The cost is the nets' forward passes: fewer images would make it noisier.

Nothing here touches the training state: the GHN's weights and train/eval flags, the global RNG
(forked) and the trainer's generators are left as they were, so a resumed run stays bit-exact.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..modules import preserved_modes
from ..space import SPLIT_SIZES, at_image_size, get_arch

__all__ = ["VAL_IMAGES", "VAL_CALIB_BATCHES", "ValData", "make_val_data", "val_bits", "validate"]

#: Test images a validation measures accuracy on (a fixed, seeded subset), shared out between the architectures.
VAL_IMAGES = 1000
#: Fixed training batches for BN re-estimation and activation-range calibration.
VAL_CALIB_BATCHES = 2
_CALIB_BATCH = 64


@dataclass(frozen=True)
class ValData:
    """The fixed batches of a validation: one test (x, y) batch per architecture and the calibration batches."""

    test: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    calib: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    in_channels: int
    num_classes: int
    image_size: int


def make_val_data(train_images: torch.Tensor, train_labels: torch.Tensor, test_images: torch.Tensor,
                  test_labels: torch.Tensor, archs: int, n_images: int = VAL_IMAGES, seed: int = 0) -> ValData:
    """The fixed subsets, drawn by `seed`: `n_images` test images dealt out to `archs` architectures and
    `VAL_CALIB_BATCHES` training batches."""
    if tuple(test_images.shape[1:]) != tuple(train_images.shape[1:]):
        raise ValueError(f"validation images are {tuple(test_images.shape[1:])}, "
                         f"training images {tuple(train_images.shape[1:])}")
    if not 1 <= archs <= min(SPLIT_SIZES["val"], n_images):
        raise ValueError(f"archs must be in 1..{SPLIT_SIZES['val']}, got {archs}")
    g = torch.Generator().manual_seed(seed)
    test_idx = torch.randperm(len(test_images), generator=g)[:n_images]
    archs = min(archs, len(test_idx))  # a tiny test set: no architecture without images
    calib_idx = torch.randperm(len(train_images), generator=g)[:VAL_CALIB_BATCHES * _CALIB_BATCH]
    num_classes = int(max(int(train_labels.max()), int(test_labels.max()))) + 1
    test = tuple((test_images[test_idx[i::archs]], test_labels[test_idx[i::archs]]) for i in range(archs))
    calib = tuple((train_images[idx], train_labels[idx]) for idx in calib_idx.split(_CALIB_BATCH))
    return ValData(test, calib, int(train_images.shape[1]), num_classes, int(train_images.shape[-1]))


def val_bits(ghn: torch.nn.Module) -> dict[str, int | None]:
    """History key -> weight/activation bits: float always; W4A4 and W2A2 for a GHN trained on them."""
    trained = tuple(getattr(ghn.config, "bits", ()) or ())
    return {"val_float": None, **{f"val_w{b}": b for b in (4, 2) if b in trained}}


@contextlib.contextmanager
def _quiet_library_logs() -> Iterator[None]:
    """initialize_ logs a report per call at INFO: keep them out of the training log."""
    root = logging.getLogger("torch_qinit")
    level = root.level
    root.setLevel(max(logging.WARNING, root.getEffectiveLevel()))
    try:
        yield
    finally:
        root.setLevel(level)


def validate(ghn: torch.nn.Module, data: ValData) -> dict[str, float]:
    """Zero-shot accuracy, per `val_bits`, of the first ``len(data.test)`` val architectures initialized by
    `ghn`, each on its own share of the test images (the mean over all image-architecture pairs)."""
    from ..evaluation import evaluate
    from ..initialize import initialize_

    bits = val_bits(ghn)
    method = "ghn-qat" if len(bits) > 1 else "ghn"
    accs: dict[str, list[float]] = {k: [] for k in bits}
    weights = [len(y) for _, y in data.test]
    with torch.random.fork_rng(devices=[]), preserved_modes(ghn), torch.no_grad(), _quiet_library_logs():
        for i, batch in enumerate(data.test):
            spec = get_arch("val", i, data.in_channels, data.num_classes)
            spec = at_image_size(spec, data.image_size)  # as training does (ArchCache)
            torch.manual_seed(i)  # the classic fallback of unservable parameters draws from it
            model = spec.build()
            for key, b in bits.items():
                initialize_(model, bits=b, method=method, weights=ghn)
                accs[key].append(evaluate(model, b, [batch], calib_loader=data.calib,
                                          recal_batches=len(data.calib), calib_batches=len(data.calib)))
    return {k: round(sum(a * n for a, n in zip(v, weights)) / sum(weights), 4) for k, v in accs.items()}
