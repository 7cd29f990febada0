"""Simulated quantization (ARCHITECTURE.md §2 "Other library parts"): plain tensor arithmetic, no ``torch.ao``."""
from .bn_fold import fold_bn, fold_conv_bn_
from .fake_quant import LSQQuantizer, check_bits, fake_quant_act, fake_quant_weight
from .metrics import qmse, sqnr, weight_quant_error
from .modules import (
    INPUT_MIN_BITS,
    BitsSpec,
    QuantConv1d,
    QuantConv2d,
    QuantConv3d,
    QuantConvTranspose1d,
    QuantConvTranspose2d,
    QuantConvTranspose3d,
    QuantLinear,
    calibrate,
    quantize_model,
    quantized_layers,
    set_quant_bits,
)

__all__ = [
    "check_bits",
    "fake_quant_weight",
    "fake_quant_act",
    "LSQQuantizer",
    "QuantConv1d",
    "QuantConv2d",
    "QuantConv3d",
    "QuantConvTranspose1d",
    "QuantConvTranspose2d",
    "QuantConvTranspose3d",
    "QuantLinear",
    "BitsSpec",
    "INPUT_MIN_BITS",
    "quantize_model",
    "set_quant_bits",
    "calibrate",
    "quantized_layers",
    "fold_bn",
    "fold_conv_bn_",
    "sqnr",
    "qmse",
    "weight_quant_error",
]
