"""Hand-off to the QAT libraries users run: bit widths their layers declare.

``initialize_(model)`` without ``bits=`` reads these (``bits="auto"``); ``declared_bits(model)`` gives the
same dict to pass explicitly or to inspect. torchao and PT2E need no helper here: call ``initialize_``
before their prepare step (see the README, "Use it to start your own QAT").
"""
from __future__ import annotations

import logging
from typing import Union

from torch import nn

from ..modules import weight_layer_names
from .brevitas import brevitas_weight_bits

__all__ = ["declared_bits", "auto_bits", "brevitas_weight_bits", "DEFAULT_BITS"]

logger = logging.getLogger(__name__)

#: What ``bits="auto"`` gives layers that declare nothing.
DEFAULT_BITS = 4


def declared_bits(model: nn.Module) -> dict[str, int]:
    """``{module qualname: weight bits}`` for the layers of ``model`` that declare a weight bit width.

    Today that is brevitas layers (``QuantConv2d(..., weight_bit_width=4)``, ``QuantLinear``); ``{}`` for a
    plain PyTorch model. Pass it on as ``initialize_(model, bits=declared_bits(model))``.
    """
    return brevitas_weight_bits(model)


def auto_bits(model: nn.Module, default: int = DEFAULT_BITS) -> Union[int, dict[str, int]]:
    """What ``bits="auto"`` means: the declared widths, and ``default`` for every other conv/linear layer.

    Returns the plain int ``default`` when no layer declares a width, so a plain model is treated exactly
    like ``bits=default``.
    """
    declared = declared_bits(model)
    if not declared:
        return default
    logger.info("read declared weight bit widths of %d layer(s): %s", len(declared), declared)
    out = dict.fromkeys(weight_layer_names(model), default)
    out.update(declared)
    return out
