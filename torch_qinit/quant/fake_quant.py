"""Simulated (fake) quantization with plain tensor arithmetic (no ``torch.ao``).

Weights: signed symmetric, per-output-channel abs-max scale, levels in
``[-Q_P, Q_P]`` with ``Q_P = 2**(b-1) - 1``.  Activations: per-tensor affine
over a range ``[lo, hi]`` that is widened to contain 0 (so zero is exact),
which makes it unsigned whenever ``lo >= 0`` (after ReLU).  Both use a
straight-through estimator (STE); :class:`LSQQuantizer` learns the step size.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..bits import MAX_BITS, MIN_BITS, check_bits  # re-exported: defined once in torch_qinit.bits

__all__ = ["check_bits", "fake_quant_weight", "fake_quant_act", "LSQQuantizer", "MIN_BITS", "MAX_BITS"]


def _ste(x: Tensor, q: Tensor) -> Tensor:
    # Forward value q, gradient of identity w.r.t. x.
    return x + (q - x).detach()


def fake_quant_weight(w: Tensor, bits: int | None, per_channel: bool = True) -> Tensor:
    r"""Fake-quantize a weight: signed symmetric, abs-max scale, straight-through gradient.

    .. math::
        s = \frac{\max |w|}{Q_P},\quad Q_P = 2^{b-1} - 1,\quad
        \hat w = s \cdot \mathrm{clamp}(\mathrm{round}(w / s), -Q_P, Q_P)

    The max is taken per output channel (dim 0) when `per_channel` and `w` has
    at least 2 dims, else over the whole tensor.  Zero maps to zero; an
    all-zero channel stays zero.  The gradient w.r.t. `w` is the identity.

    Args:
        w: weight tensor, output channels first.
        bits: bit-width in 2..8, or None to return `w` unchanged.
        per_channel: one scale per output channel instead of one per tensor.

    Examples:
        >>> w = torch.randn(8, 3, 3, 3, requires_grad=True)
        >>> wq = fake_quant_weight(w, 4)
    """
    bits = check_bits(bits)
    if bits is None:
        return w
    qp = 2 ** (bits - 1) - 1
    with torch.no_grad():
        wd = w.detach()
        if per_channel and wd.dim() >= 2:
            absmax = wd.abs().amax(dim=tuple(range(1, wd.dim())), keepdim=True)
        else:
            absmax = wd.abs().amax()
        # An all-zero channel would divide by zero; any positive scale maps it to 0.
        scale = torch.where(absmax > 0, absmax / qp, torch.ones_like(absmax))
        q = torch.clamp(torch.round(wd / scale), -qp, qp) * scale
    return _ste(w, q)


def _act_qparams(bits: int, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """(scale, zero_point, lo', hi', qmax) for an affine grid over [lo, hi] widened to contain 0."""
    qmax = 2**bits - 1
    lo = torch.clamp(lo, max=0.0)
    hi = torch.clamp(hi, min=0.0)
    scale = (hi - lo) / qmax
    # A collapsed range (e.g. all zeros) would divide by zero.
    scale = torch.where(scale > 0, scale, torch.full_like(scale, torch.finfo(scale.dtype).eps))
    zero_point = torch.clamp(torch.round(-lo / scale), 0, qmax)
    return scale, zero_point, lo, hi, qmax


def fake_quant_act(x: Tensor, bits: int | None, lo: float | Tensor, hi: float | Tensor) -> Tensor:
    r"""Fake-quantize an activation: per-tensor affine on ``[lo, hi]``, clipped STE.

    The range is first widened to contain 0 (so 0 is exactly representable);
    hence the grid is unsigned (zero point 0) whenever ``lo >= 0``.  With
    :math:`2^b` levels,

    .. math::
        s = \frac{hi - lo}{2^b - 1},\quad z = \mathrm{round}(-lo / s),\quad
        \hat x = s \cdot (\mathrm{clamp}(\mathrm{round}(x / s) + z, 0, 2^b - 1) - z)

    Gradient w.r.t. `x`: 1 inside ``[lo, hi]``, 0 outside (clipped STE).
    `lo`/`hi` are treated as constants (detached).

    Args:
        x: activation tensor.
        bits: bit-width in 2..8, or None to return `x` unchanged.
        lo: lower end of the range (float or 0-dim tensor).
        hi: upper end of the range.

    Examples:
        >>> x = torch.relu(torch.randn(4, 8))
        >>> xq = fake_quant_act(x, 4, 0.0, float(x.max()))
    """
    bits = check_bits(bits)
    if bits is None:
        return x
    lo_t = torch.as_tensor(lo, dtype=x.dtype, device=x.device).detach()
    hi_t = torch.as_tensor(hi, dtype=x.dtype, device=x.device).detach()
    with torch.no_grad():
        scale, zp, lo_t, hi_t, qmax = _act_qparams(bits, lo_t, hi_t)
    # clamp passes gradient 1 inside the range and 0 outside: the clipped STE.
    xc = torch.clamp(x, lo_t, hi_t)
    with torch.no_grad():
        q = (torch.clamp(torch.round(xc / scale) + zp, 0, qmax) - zp) * scale
    return _ste(xc, q)


def _grad_scale(x: Tensor, g: float) -> Tensor:
    # Forward x, gradient scaled by g (LSQ step-size gradient scaling).
    return (x - x * g).detach() + x * g


def _round_ste(x: Tensor) -> Tensor:
    return x + (torch.round(x) - x).detach()


class LSQQuantizer(nn.Module):
    r"""Learned Step Size Quantization (Esser et al., ICLR 2020), for weights or activations.

    .. math::
        \hat v = s \cdot \mathrm{round}(\mathrm{clamp}(v / s, -Q_N, Q_P))

    with a learned step :math:`s`, whose gradient is scaled by
    :math:`g = 1/\sqrt{N \cdot Q_P}` (N = elements per step value).  Signed
    grids are symmetric, :math:`Q_N = Q_P = 2^{b-1}-1`, matching
    :func:`fake_quant_weight`; unsigned grids use :math:`[0, 2^b - 1]`.  The
    step is initialized on the first forward to :math:`2\,\mathrm{mean}|v| / \sqrt{Q_P}`.

    Args:
        bits: bit-width in 2..8, or None (identity).
        signed: signed grid; None decides on first use (signed iff the first
            input has negative values).
        num_channels: one step per output channel (dim 0) for weights; None
            for a single per-tensor step.

    Examples:
        >>> q = LSQQuantizer(4, signed=True, num_channels=8)
        >>> wq = q(torch.randn(8, 3, 3, 3))
    """

    step: nn.Parameter
    initialized: Tensor

    def __init__(self, bits: int | None, signed: bool | None = None, num_channels: int | None = None) -> None:
        super().__init__()
        self._bits = check_bits(bits)
        self.signed = signed
        self.num_channels = num_channels
        self.step = nn.Parameter(torch.ones(num_channels if num_channels else ()))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def bits(self) -> int | None:
        """Current bit-width; setting it re-initializes the step on the next forward."""
        return self._bits

    @bits.setter
    def bits(self, value: int | None) -> None:
        value = check_bits(value)
        if value != self._bits:
            self.initialized.fill_(False)  # a step fitted to other bits is far off
        self._bits = value

    def _levels(self) -> tuple[int, int]:
        assert self._bits is not None
        if self.signed:
            qp = 2 ** (self._bits - 1) - 1
            return qp, qp
        return 0, 2**self._bits - 1

    def _view(self, t: Tensor, x: Tensor) -> Tensor:
        return t.view(-1, *([1] * (x.dim() - 1))) if self.num_channels else t

    def forward(self, x: Tensor) -> Tensor:
        """Fake-quantize `x` with the learned step."""
        if self._bits is None:
            return x
        if self.signed is None:
            self.signed = bool((x < 0).any())
        if not bool(self.initialized):
            with torch.no_grad():
                _, qp = self._levels()
                xa = x.detach().abs()
                if self.num_channels:
                    m = xa.reshape(xa.shape[0], -1).mean(dim=1)
                else:
                    m = xa.mean()
                self.step.copy_(torch.clamp(2 * m / math.sqrt(qp), min=1e-8))
                self.initialized.fill_(True)
        qn, qp = self._levels()
        per_step = x.numel() // (self.num_channels or 1)
        g = 1.0 / math.sqrt(max(per_step, 1) * qp)
        s = self._view(_grad_scale(self.step, g), x)
        return _round_ste(torch.clamp(x / s, -qn, qp)) * s

    def extra_repr(self) -> str:
        return f"bits={self._bits}, signed={self.signed}, num_channels={self.num_channels}"
