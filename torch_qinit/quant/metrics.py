"""Quantization error metrics: SQNR and quantization MSE."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..bits import check_bits
from .fake_quant import fake_quant_weight

__all__ = ["sqnr", "qmse", "weight_quant_error"]


def _pair(x: Tensor, xq: Tensor) -> tuple[Tensor, Tensor]:
    if x.shape != xq.shape:
        raise ValueError(f"shape mismatch: {tuple(x.shape)} vs {tuple(xq.shape)}")
    return x.detach().double(), xq.detach().double()


def sqnr(x: Tensor, xq: Tensor) -> float:
    r"""Signal-to-quantization-noise ratio in dB: :math:`10 \log_{10}(\sum x^2 / \sum (x - \hat x)^2)`.

    ``inf`` when `xq` equals `x` exactly (including an all-zero signal).
    """
    x, xq = _pair(x, xq)
    noise = float(((x - xq) ** 2).sum())
    signal = float((x**2).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def qmse(x: Tensor, xq: Tensor) -> float:
    r"""Quantization mean squared error :math:`\mathrm{mean}((x - \hat x)^2)`."""
    x, xq = _pair(x, xq)
    return float(((x - xq) ** 2).mean())


_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)


@torch.no_grad()
def weight_quant_error(model: nn.Module, bits: int, per_channel: bool = True) -> dict[str, dict[str, float]]:
    """Per-layer error of quantizing conv/linear weights to `bits`.

    Returns ``{layer qualname: {"qmse": float, "sqnr": float}}`` using
    :func:`fake_quant_weight` (signed symmetric, per-channel abs-max).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"weight_quant_error expects an nn.Module, got {type(model).__name__}")
    bits = check_bits(bits)
    out: dict[str, dict[str, float]] = {}
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(m, _LAYERS) and isinstance(w, Tensor):
            wq = fake_quant_weight(w, bits, per_channel=per_channel)
            out[name] = {"qmse": qmse(w, wq), "sqnr": sqnr(w, wq)}
    return out
