"""Weight bit widths declared by brevitas layers (``QuantConv2d(..., weight_bit_width=4)``, ``QuantLinear``).

brevitas is optional (``pip install torch_qinit[brevitas]``) and never imported here: a model can only
hold brevitas layers if the user already imported brevitas, so ``sys.modules`` tells whether to look.
"""
from __future__ import annotations

import logging
import math
import sys
import warnings

from torch import nn

from ..bits import MAX_BITS, MIN_BITS

__all__ = ["brevitas_weight_bits"]

logger = logging.getLogger(__name__)


def _declared_width(module: nn.Module) -> float | None:
    """The weight bit width a brevitas layer declares, or None (no weight quantizer, or it is disabled)."""
    proxy = getattr(module, "weight_quant", None)
    if proxy is None or not getattr(proxy, "is_quant_enabled", False):
        return None
    bit_width = getattr(proxy, "bit_width", None)
    if not callable(bit_width):
        return None
    value = bit_width()
    if value is None:
        return None
    return float(value.detach().reshape(-1)[0]) if hasattr(value, "detach") else float(value)


def brevitas_weight_bits(model: nn.Module) -> dict[str, int]:
    """``{module qualname: weight bits}`` for the brevitas layers of ``model`` that quantize their weight.

    Reads ``layer.weight_quant.bit_width()`` of every brevitas weight-quantized layer (``QuantConv1d/2d/3d``,
    ``QuantLinear``, ...). A learned (parameter) bit width is rounded to the nearest int. Widths the GHN
    cannot take (outside 2..8, e.g. binary weights) are left out with a warning, so those layers get the
    caller's default. Returns ``{}`` when brevitas is not imported.

    Examples:
        >>> import brevitas.nn as qnn                                    # doctest: +SKIP
        >>> net = nn.Sequential(qnn.QuantConv2d(1, 8, 3, weight_bit_width=4), nn.Flatten(),
        ...                     qnn.QuantLinear(8 * 26 * 26, 10, bias=True, weight_bit_width=8))  # doctest: +SKIP
        >>> brevitas_weight_bits(net)                                    # doctest: +SKIP
        {'0': 4, '2': 8}
    """
    if "brevitas" not in sys.modules:
        return {}
    try:
        from brevitas.nn.mixin.parameter import QuantWeightMixin
    except ImportError:  # a brevitas without this mixin: nothing we know how to read
        logger.warning("brevitas %s has no QuantWeightMixin; declared bit widths are not read",
                       getattr(sys.modules["brevitas"], "__version__", "?"))
        return {}
    out: dict[str, int] = {}
    skipped: dict[str, float] = {}
    for name, module in model.named_modules():
        if not isinstance(module, QuantWeightMixin):
            continue
        width = _declared_width(module)
        if width is None or not math.isfinite(width):
            continue
        bits = int(round(width))
        if MIN_BITS <= bits <= MAX_BITS:
            out[name] = bits
        else:
            skipped[name] = width
    if skipped:
        warnings.warn(f"declared weight bit widths outside {MIN_BITS}..{MAX_BITS} are not read (those layers get "
                      f"the default): {dict(list(skipped.items())[:5])}", stacklevel=2)
    return out
