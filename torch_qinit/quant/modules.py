"""Fake-quantized Conv/Linear layers and whole-model quantization.

The quantized layers subclass the float ones, so a quantized model keeps the
original parameter names (``conv.weight``, ``fc.bias``): a parameter dict
predicted for the float model can be fed to
``torch.func.functional_call(qmodel, params, x)``.
"""
from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..bits import FLOAT, BitsSpec, act_spec, check_bits, check_spec, expand_bits
from ..graph.layout import swap_channel_axes
from ..modules import batch_input, device_of, preserved_modes
from .bn_fold import fold_bn as _fold_bn
from .bn_fold import trace_layers
from .fake_quant import LSQQuantizer, fake_quant_act, fake_quant_weight

__all__ = [
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
]

logger = logging.getLogger(__name__)

#: Minimum activation bits of the network-input layer.  The input is the image
#: itself, usually 8-bit pixels already; quantizing it coarser throws away
#: information no later layer can recover.  Keeping the first layer's input at
#: >= 8 bits is standard practice (e.g. PACT, LSQ, HAWQ keep the first layer
#: at 8 bits) and costs nothing on the compute that low bits are meant to save.
INPUT_MIN_BITS = 8


class _QuantMixin:
    """Shared state and input/weight quantization of the Quant* layers."""

    weight: Tensor
    act_lo: Tensor
    act_hi: Tensor
    act_calibrated: Tensor
    training: bool

    #: EMA momentum of the activation range in training mode.
    act_momentum: float = 0.1

    def _init_quant(self, w_bits: int | None = None, a_bits: int | None = None) -> None:
        self.w_bits = check_bits(w_bits)
        self.a_bits = check_bits(a_bits)
        #: True for the first quantized layer in execution order (the network input).
        self.first_layer = False
        self.w_lsq: LSQQuantizer | None = None
        self.a_lsq: LSQQuantizer | None = None
        self._observing = False
        self._obs_lo: Tensor | None = None
        self._obs_hi: Tensor | None = None
        dev = self.weight.device
        self.register_buffer("act_lo", torch.zeros((), device=dev))  # type: ignore[attr-defined]
        self.register_buffer("act_hi", torch.zeros((), device=dev))  # type: ignore[attr-defined]
        self.register_buffer("act_calibrated", torch.tensor(False, device=dev))  # type: ignore[attr-defined]

    @property
    def input_bits(self) -> int | None:
        """Bits actually used for this layer's input (>= 8 on the first layer)."""
        if self.a_bits is None:
            return None
        return max(self.a_bits, INPUT_MIN_BITS) if self.first_layer else self.a_bits

    @torch.no_grad()
    def _track_range(self, lo: Tensor, hi: Tensor) -> None:
        lo, hi = lo.to(self.act_lo.dtype), hi.to(self.act_hi.dtype)
        # The first tracked batch sets the range outright (weight 1).  A tensor weight
        # instead of `if bool(...)` avoids a host-device sync on every training step.
        weight = torch.where(self.act_calibrated, self.act_momentum, 1.0).to(self.act_lo.dtype)
        self.act_lo.lerp_(lo, weight)
        self.act_hi.lerp_(hi, weight)
        self.act_calibrated.fill_(True)

    def _quant_input(self, x: Tensor) -> Tensor:
        if self._observing:
            with torch.no_grad():
                lo, hi = x.detach().amin(), x.detach().amax()
                self._obs_lo = lo if self._obs_lo is None else torch.minimum(self._obs_lo, lo)
                self._obs_hi = hi if self._obs_hi is None else torch.maximum(self._obs_hi, hi)
            return x
        bits = self.input_bits
        if self.training:
            # Current batch range for quantizing; EMA of it for later eval.  Tracked even
            # at float so switching bits later finds a usable range.
            lo, hi = x.detach().amin(), x.detach().amax()
            self._track_range(lo, hi)
            if bits is None:
                return x
            if self.a_lsq is not None:
                return self.a_lsq(x)
            return fake_quant_act(x, bits, lo, hi)
        if bits is None:
            return x
        if self.a_lsq is not None:
            return self.a_lsq(x)
        if not bool(self.act_calibrated):
            warnings.warn(
                f"{type(self).__name__}: activation range not calibrated; using this batch's "
                "min/max (run calibrate() or a training-mode forward first)",
                stacklevel=3,
            )
            return fake_quant_act(x, bits, x.detach().amin(), x.detach().amax())
        return fake_quant_act(x, bits, self.act_lo, self.act_hi)

    def _quant_weight(self) -> Tensor:
        if self.w_bits is None:
            return self.weight
        w = self._output_major(self.weight)  # one scale per output channel: output channels on dim 0
        return self._output_major(self.w_lsq(w) if self.w_lsq is not None else fake_quant_weight(w, self.w_bits))

    def _output_major(self, w: Tensor) -> Tensor:
        """`w` with output channels on dim 0, and back (its own inverse); a conv or linear weight already is."""
        return w

    def _start_observing(self) -> None:
        self._observing, self._obs_lo, self._obs_hi = True, None, None

    @torch.no_grad()
    def _stop_observing(self, commit: bool) -> None:
        if commit and self._obs_lo is not None and self._obs_hi is not None:
            self.act_lo.copy_(self._obs_lo)
            self.act_hi.copy_(self._obs_hi)
            self.act_calibrated.fill_(True)
        self._observing, self._obs_lo, self._obs_hi = False, None, None

    def _set_bits(self, w_bits: int | None, a_bits: int | None) -> None:
        self.w_bits, self.a_bits = w_bits, a_bits
        if self.w_lsq is not None:
            self.w_lsq.bits = w_bits
        if self.a_lsq is not None:
            self.a_lsq.bits = self.input_bits

    def _quant_repr(self) -> str:
        return f"w_bits={self.w_bits}, a_bits={self.a_bits}" + (", first_layer=True" if self.first_layer else "")

    @classmethod
    def from_float(cls, mod: nn.Module, w_bits: int | None = None, a_bits: int | None = None) -> nn.Module:
        """A quantized copy of float layer `mod` (same parameter names and values)."""
        base = _SWAP_BASE[cls]
        if type(mod) is not base:
            raise TypeError(f"{cls.__name__}.from_float expects an {base.__name__}, got {type(mod).__name__}")
        q = copy.deepcopy(mod)
        _swap_(q, cls, check_bits(w_bits), check_bits(a_bits))
        return q


class QuantConv1d(_QuantMixin, nn.Conv1d):
    """``nn.Conv1d`` with fake-quantized weight (``w_bits``) and input (``a_bits``); None = float."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self._quant_input(x), self._quant_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """``nn.Conv2d`` with fake-quantized weight (``w_bits``) and input (``a_bits``); None = float.

    Weights: per-output-channel symmetric (:func:`fake_quant_weight`).  Input:
    per-tensor affine (:func:`fake_quant_act`) over the batch range in
    training mode (its EMA, momentum 0.1, is kept in ``act_lo``/``act_hi``)
    and over the stored, calibrated range in eval mode.
    """

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self._quant_input(x), self._quant_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


class QuantConv3d(_QuantMixin, nn.Conv3d):
    """``nn.Conv3d`` with fake-quantized weight (per output channel) and input; None = float."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self._quant_input(x), self._quant_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


class QuantLinear(_QuantMixin, nn.Linear):
    """``nn.Linear`` with fake-quantized weight (``w_bits``) and input (``a_bits``); None = float.

    Same quantization scheme as :class:`QuantConv2d`.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self._quant_input(x), self._quant_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


class _QuantConvTransposeMixin(_QuantMixin):
    """A transposed conv stores its weight as (in, out / groups, *k): per-output-channel scales need the
    channel axes swapped, group by group, around the quantizer."""

    groups: int
    stride: Any
    padding: Any
    kernel_size: Any
    dilation: Any
    _output_padding: Any
    _num_spatial_dims: int
    _transposed_conv: Any

    def _output_major(self, w: Tensor) -> Tensor:
        return swap_channel_axes(w, self.groups)

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        output_padding = self._output_padding(x, output_size, self.stride, self.padding, self.kernel_size,
                                              self._num_spatial_dims, self.dilation)
        return self._transposed_conv(self._quant_input(x), self._quant_weight(), self.bias, self.stride,
                                     self.padding, output_padding, self.groups, self.dilation)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


class QuantConvTranspose1d(_QuantConvTransposeMixin, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with fake-quantized weight (per output channel) and input; None = float."""

    _num_spatial_dims = 1
    _transposed_conv = staticmethod(F.conv_transpose1d)


class QuantConvTranspose2d(_QuantConvTransposeMixin, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with fake-quantized weight (per output channel) and input; None = float."""

    _num_spatial_dims = 2
    _transposed_conv = staticmethod(F.conv_transpose2d)


class QuantConvTranspose3d(_QuantConvTransposeMixin, nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` with fake-quantized weight (per output channel) and input; None = float."""

    _num_spatial_dims = 3
    _transposed_conv = staticmethod(F.conv_transpose3d)


# Exact float type -> quantized type.  Exact, because a user subclass may have its own forward.
_SWAP: dict[type, type] = {nn.Conv1d: QuantConv1d, nn.Conv2d: QuantConv2d, nn.Conv3d: QuantConv3d,
                           nn.Linear: QuantLinear, nn.ConvTranspose1d: QuantConvTranspose1d,
                           nn.ConvTranspose2d: QuantConvTranspose2d, nn.ConvTranspose3d: QuantConvTranspose3d}
_SWAP_BASE: dict[type, type] = {v: k for k, v in _SWAP.items()}


def _swap_(mod: nn.Module, cls: type, w_bits: int | None, a_bits: int | None) -> None:
    # Changing the class in place keeps the Parameter objects, hooks and every
    # reference to the module (shared modules included), and consumes no RNG,
    # unlike constructing a new layer and copying parameters into it.
    mod.__class__ = cls
    mod._init_quant(w_bits, a_bits)  # type: ignore[attr-defined]


def quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Qualified name -> quantized layer, for every Quant* layer in `model`."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _QuantMixin)}


def _validate_spec(spec: Any, names: list[str], what: str) -> None:
    check_spec(spec, what, names, "{what}: unknown layer names {unknown}; quantizable layers: " + repr(names))


def _execution_order(model: nn.Module, names: set[str]) -> list[str]:
    """Names in `names`, in forward order by fx when it traces, else registration order."""
    try:
        graph = trace_layers(model)
        order = [n.target for n in graph.nodes if n.op == "call_module" and n.target in names]
        if order:
            return list(dict.fromkeys(order))
    except Exception as exc:  # fx raises many types on dynamic code; registration order is a fine guess
        logger.debug("execution order: fx tracing failed (%s); using registration order", exc)
    return [n for n, _ in model.named_modules() if n in names]


def set_quant_bits(
    qmodel: nn.Module,
    w_bits: BitsSpec,
    a_bits: BitsSpec | str = None,
    *,
    default_bits: int | None = None,
) -> nn.Module:
    """Change the bit-widths of a quantized model's layers in place; returns `qmodel`.

    Args:
        qmodel: a model from :func:`quantize_model`.
        w_bits: int, None (float) or {layer qualname: bits} for mixed precision;
            layers missing from a dict get `default_bits`.
        a_bits: same forms; None means "same as `w_bits`", ``"float"`` means
            float activations everywhere (the rule of `torch_qinit.bits.act_spec`).
        default_bits: bits for layers missing from a dict (None = float).

    Everything is validated before any layer changes.
    """
    layers = quantized_layers(qmodel)
    if not layers:
        raise ValueError("set_quant_bits: no quantized layers; call quantize_model first")
    a_spec = act_spec(w_bits, a_bits, "a_bits")
    names = list(layers)
    check_bits(default_bits, "default_bits")
    _validate_spec(w_bits, names, "w_bits")
    _validate_spec(a_spec, names, "a_bits")
    w_per_layer, a_per_layer = expand_bits(w_bits, names, default_bits), expand_bits(a_spec, names, default_bits)
    for name, m in layers.items():
        m._set_bits(w_per_layer[name], a_per_layer[name])
    return qmodel


def calibrate(qmodel: nn.Module, batches: Iterable[Any], num_batches: int | None = None) -> nn.Module:
    """Record each quantized layer's input range (min/max) over `batches`; returns `qmodel`.

    Runs eval-mode forward passes without gradient, with activations left in
    float while observing; train/eval modes are restored afterwards.  The
    first batch also fixes which layer runs first (its input keeps >= 8 bits).

    Args:
        qmodel: a model from :func:`quantize_model`.
        batches: an iterable of input tensors or (x, y) batches.
        num_batches: use at most this many batches (None = all).
    """
    layers = quantized_layers(qmodel)
    if not layers:
        raise ValueError("calibrate: no quantized layers; call quantize_model first")
    if num_batches is not None and num_batches < 0:
        raise ValueError(f"num_batches must be >= 0 or None, got {num_batches}")
    order: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, _a, name=name: order.append(name))
        for name, m in layers.items()
    ]
    device = device_of(qmodel)
    seen = 0
    ok = False
    with preserved_modes(qmodel):
        try:
            qmodel.eval()
            for m in layers.values():
                m._start_observing()
            with torch.no_grad():
                for batch in batches:
                    if num_batches is not None and seen >= num_batches:
                        break
                    qmodel(batch_input(batch).to(device))
                    seen += 1
                    if seen == 1:
                        for h in hooks:
                            h.remove()
            ok = True
        finally:
            for h in hooks:
                h.remove()
            for m in layers.values():
                m._stop_observing(commit=ok)
    if seen == 0:
        warnings.warn("calibrate: no batches were given; activation ranges unchanged", stacklevel=2)
        return qmodel
    if order:
        for name, m in layers.items():
            m.first_layer = name == order[0]
            m._set_bits(m.w_bits, m.a_bits)  # refresh LSQ input bits
    return qmodel


def quantize_model(
    model: nn.Module,
    w_bits: BitsSpec = 4,
    a_bits: BitsSpec | str = None,
    fold_bn: bool = True,
    calib_data: Iterable[Any] | None = None,
    *,
    default_bits: int | None = None,
    calib_batches: int | None = None,
    lsq: bool = False,
) -> nn.Module:
    """A fake-quantized copy of `model` (the input model is not modified).

    Steps: deepcopy; fold BatchNorm into the preceding conv (`fold_bn`); swap
    every ``nn.Conv1d``/``nn.Conv2d``/``nn.Linear``/``nn.ConvTranspose{1,2}d`` (exact type) for its
    Quant* subclass, keeping parameter names and values; set bits; calibrate
    activation ranges on `calib_data` when given.  The first quantized layer
    in execution order quantizes its input (the image) with at least 8 bits,
    see :data:`INPUT_MIN_BITS`.

    Args:
        model: the float model.
        w_bits: weight bits: int in 2..8, None (float), or {layer qualname: bits}
            for per-layer mixed precision.
        a_bits: activation bits, same forms; None (default) means the same as
            `w_bits`, ``"float"`` means float activations.
        fold_bn: fold BatchNorm first (deploy-style; renames nothing but adds
            conv biases and turns BNs into Identity).  Use False to keep the
            exact parameter set of `model`, e.g. for ``functional_call``.
        calib_data: iterable of input tensors or (x, y) batches for :func:`calibrate`.
        default_bits: bits of layers missing from a dict spec (None = float).
        calib_batches: at most this many calibration batches (None = all).
        lsq: use learned step sizes (:class:`LSQQuantizer`) instead of abs-max /
            min-max scales; adds ``w_lsq.step`` / ``a_lsq.step`` parameters.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
        ...                     nn.Flatten(), nn.Linear(8 * 30 * 30, 10))
        >>> q = quantize_model(net.eval(), w_bits=4, calib_data=[torch.randn(8, 3, 32, 32)])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_model expects an nn.Module, got {type(model).__name__}")
    if next(model.parameters(), None) is None:
        raise ValueError(f"{type(model).__name__} has no parameters to quantize")
    check_bits(default_bits, "default_bits")
    a_spec = act_spec(w_bits, a_bits, "a_bits")
    names = [n for n, m in model.named_modules() if type(m) in _SWAP or isinstance(m, _QuantMixin)]
    # Validate before the (possibly expensive) copy and fold.
    _validate_spec(w_bits, names, "w_bits")
    _validate_spec(a_spec, names, "a_bits")
    if not names:
        warnings.warn(f"quantize_model: {type(model).__name__} has no Conv/Linear layers to quantize", stacklevel=2)

    q = _fold_bn(model) if fold_bn else copy.deepcopy(model)
    name_set = set(names)
    targets = {n: m for n, m in q.named_modules() if n in name_set}
    order = _execution_order(q, set(targets))
    for name, m in targets.items():
        if not isinstance(m, _QuantMixin):
            _swap_(m, _SWAP[type(m)], None, None)
    if order:
        for name, m in targets.items():
            m.first_layer = name == order[0]
    if lsq:
        for m in targets.values():
            if m.w_lsq is None:
                m.w_lsq = LSQQuantizer(None, signed=True,
                                       num_channels=m._output_major(m.weight).shape[0]).to(m.weight.device)
            if m.a_lsq is None:
                m.a_lsq = LSQQuantizer(None, signed=None).to(m.weight.device)
    if targets:
        set_quant_bits(q, w_bits, a_spec if a_spec is not None else FLOAT, default_bits=default_bits)
    if calib_data is not None and targets:
        calibrate(q, calib_data, calib_batches)
    return q
