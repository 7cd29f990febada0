"""Zero-shot quantized accuracy (ARCHITECTURE.md §4): BN recalibration, BN folding, fake-quant, accuracy."""
from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .bits import check_bits
from .modules import batch_input, device_of, preserved_modes
from .quant.modules import BitsSpec, quantize_model

__all__ = ["evaluate", "recalibrate_bn", "accuracy"]

logger = logging.getLogger(__name__)


def recalibrate_bn(model: nn.Module, batches: Iterable[Any], num_batches: int | None = None) -> nn.Module:
    """Re-estimate BatchNorm running statistics of `model` in place; returns `model`.

    Resets the running stats, then runs train-mode forward passes without
    gradient over at most `num_batches` batches with ``momentum=None``
    (cumulative average, so every batch counts equally).  Each module's
    train/eval mode and each BN's momentum are restored afterwards.  Only BN
    buffers change.

    Args:
        model: the model to recalibrate, in place.
        batches: iterable of input tensors or (x, y) batches.
        num_batches: at most this many batches (None = all).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"recalibrate_bn expects an nn.Module, got {type(model).__name__}")
    if num_batches is not None and num_batches < 0:
        raise ValueError(f"num_batches must be >= 0 or None, got {num_batches}")
    bns = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.running_mean is not None
    ]
    if not bns or num_batches == 0:
        return model
    momenta = [(m, m.momentum) for m in bns]
    device = device_of(model)
    seen = 0
    with preserved_modes(model):
        try:
            for m in bns:
                m.reset_running_stats()
                m.momentum = None
            model.train()
            with torch.no_grad():
                for batch in itertools.islice(batches, num_batches):
                    model(batch_input(batch).to(device))
                    seen += 1
        finally:
            for m, mom in momenta:
                m.momentum = mom
    if seen == 0:
        logger.warning("recalibrate_bn: no batches; running statistics were reset to defaults")
    return model


@torch.no_grad()
def accuracy(model: nn.Module, loader: Iterable[Any], device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy in [0, 1] of `model` (used as is, mode included) over (x, y) batches."""
    correct = total = 0
    for batch in loader:
        if not (isinstance(batch, (list, tuple)) and len(batch) >= 2):
            raise TypeError("accuracy needs (x, y) batches")
        x, y = batch[0].to(device), batch[1].to(device)
        pred = model(x).argmax(dim=1)
        correct += int((pred == y).sum())
        total += y.numel()
    if total == 0:
        raise ValueError("accuracy: the loader yielded no samples")
    return correct / total


def evaluate(
    model: nn.Module,
    bits: BitsSpec,
    loader: Iterable[Any],
    *,
    calib_loader: Iterable[Any] | None = None,
    recal_batches: int = 20,
    calib_batches: int = 10,
    device: str | torch.device = "cpu",
) -> float:
    """Zero-shot (quantized) accuracy in [0, 1], following ARCHITECTURE.md §4.

    On a deepcopy of `model`: recalibrate BN statistics on `recal_batches`
    batches of `calib_loader` (or `loader`); then, for ``bits=None``, measure
    float accuracy; otherwise fold BN, fake-quantize at W`bits`A`bits` (an int
    or a per-layer dict), calibrate activation ranges on `calib_batches`
    batches, and measure accuracy in eval mode over `loader`.  The caller's
    model is never modified.

    Args:
        model: the (initialized or trained) float model.
        bits: int in 2..8, None (float), or {layer qualname: bits}.
        loader: (x, y) batches to measure accuracy on.
        calib_loader: batches for BN recalibration and range calibration
            (default: `loader`); use training data to keep test data unseen.
        recal_batches: BN recalibration batches (0 skips recalibration).
        calib_batches: activation-range calibration batches.
        device: where to run.

    Examples:
        >>> acc = evaluate(net, 4, test_loader, calib_loader=train_loader)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"evaluate expects an nn.Module, got {type(model).__name__}")
    if not isinstance(bits, Mapping):
        check_bits(bits)  # fail before the copy and the recalibration passes
    source = calib_loader if calib_loader is not None else loader
    net = copy.deepcopy(model).to(device)
    recalibrate_bn(net, source, recal_batches)
    if bits is not None:
        net = quantize_model(
            net,
            w_bits=bits,
            a_bits=bits,
            fold_bn=True,
            calib_data=itertools.islice(source, calib_batches),
        )
    net.eval()
    acc = accuracy(net, loader, device)
    logger.debug("evaluate(bits=%s): accuracy %.4f", bits, acc)
    return acc
