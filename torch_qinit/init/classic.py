"""Classic parameter initializers, in the style of :mod:`torch.nn.init`.

Every tensor-level function fills its tensor in place under ``torch.no_grad()``
and returns it; ``generator`` is always the last argument.  These are the
initializers of the study set in ARCHITECTURE.md §2 ("Other library parts").
"""
from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "uniform_range_",
    "normal_range_",
    "glorot_uniform_",
    "glorot_normal_",
    "he_uniform_",
    "he_normal_",
    "orthogonal_",
    "pytorch_default_",
]

FanMode = Literal["fan_in", "fan_out"]
Nonlinearity = Literal["linear", "relu", "leaky_relu", "tanh", "sigmoid", "selu"]


def _fans(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) with the same convention as torch.nn.init: dim 1 is input."""
    if tensor.dim() < 2:
        raise ValueError(
            f"fan in/out need a tensor with at least 2 dimensions, got shape {tuple(tensor.shape)}"
        )
    receptive = 1
    for s in tensor.shape[2:]:
        receptive *= s
    return tensor.size(1) * receptive, tensor.size(0) * receptive


def _fan(tensor: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _empty(tensor: Tensor) -> bool:
    if tensor.numel() == 0:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=3)
        return True
    return False


def uniform_range_(tensor: Tensor, bound: float = 0.05, generator: torch.Generator | None = None) -> Tensor:
    r"""Fill `tensor` from :math:`\mathcal{U}(-\text{bound}, \text{bound})`, a fixed range.

    The fixed-range uniform baseline of the initializer study in *Starting
    Positions Matter* (Yun & Wong, 2025); it ignores the layer's fan.

    Args:
        tensor: an n-dimensional tensor, filled in place.
        bound: half-width of the range (> 0).
        generator: the torch Generator to sample from (default: None).

    Examples:
        >>> w = torch.empty(3, 5)
        >>> uniform_range_(w, 0.1)
    """
    if bound <= 0:
        raise ValueError(f"bound must be > 0, got {bound}")
    if _empty(tensor):
        return tensor
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def normal_range_(tensor: Tensor, std: float = 0.05, generator: torch.Generator | None = None) -> Tensor:
    r"""Fill `tensor` from :math:`\mathcal{N}(0, \text{std}^2)` with a fixed std.

    The fixed-scale normal baseline of the initializer study in *Starting
    Positions Matter* (Yun & Wong, 2025); it ignores the layer's fan.

    Args:
        tensor: an n-dimensional tensor, filled in place.
        std: standard deviation (> 0).
        generator: the torch Generator to sample from (default: None).

    Examples:
        >>> w = torch.empty(3, 5)
        >>> normal_range_(w, 0.01)
    """
    if std <= 0:
        raise ValueError(f"std must be > 0, got {std}")
    if _empty(tensor):
        return tensor
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def glorot_uniform_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    r"""Fill `tensor` with Glorot (Xavier) uniform values.

    From *Understanding the difficulty of training deep feedforward neural
    networks* - Glorot, X. & Bengio, Y. (2010).  Values are drawn from
    :math:`\mathcal{U}(-a, a)` with

    .. math::
        a = \text{gain} \times \sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}}

    Args:
        tensor: a tensor with at least 2 dimensions, filled in place.
        gain: optional scaling factor.
        generator: the torch Generator to sample from (default: None).

    Examples:
        >>> w = torch.empty(3, 5)
        >>> glorot_uniform_(w)
    """
    if _empty(tensor):
        return tensor
    fan_in, fan_out = _fans(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return tensor.uniform_(-a, a, generator=generator)


def glorot_normal_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    r"""Fill `tensor` with Glorot (Xavier) normal values.

    From *Understanding the difficulty of training deep feedforward neural
    networks* - Glorot, X. & Bengio, Y. (2010).  Values are drawn from
    :math:`\mathcal{N}(0, \text{std}^2)` with

    .. math::
        \text{std} = \text{gain} \times \sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    Args:
        tensor: a tensor with at least 2 dimensions, filled in place.
        gain: optional scaling factor.
        generator: the torch Generator to sample from (default: None).

    Examples:
        >>> w = torch.empty(3, 5)
        >>> glorot_normal_(w)
    """
    if _empty(tensor):
        return tensor
    fan_in, fan_out = _fans(tensor)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def _he_std(tensor: Tensor, mode: str, nonlinearity: str) -> float:
    gain = nn.init.calculate_gain(nonlinearity)
    return gain / math.sqrt(_fan(tensor, mode))


def he_uniform_(
    tensor: Tensor,
    mode: FanMode = "fan_in",
    nonlinearity: Nonlinearity = "relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Fill `tensor` with He (Kaiming) uniform values.

    From *Delving deep into rectifiers: Surpassing human-level performance on
    ImageNet classification* - He, K. et al. (2015).  Values are drawn from
    :math:`\mathcal{U}(-b, b)` with

    .. math::
        b = \text{gain} \times \sqrt{\frac{3}{\text{fan\_mode}}}

    where ``gain`` is ``nn.init.calculate_gain(nonlinearity)`` (:math:`\sqrt{2}`
    for ReLU).

    Args:
        tensor: a tensor with at least 2 dimensions, filled in place.
        mode: ``'fan_in'`` preserves the forward variance, ``'fan_out'`` the
            backward variance.
        nonlinearity: the activation after this layer (``nn.functional`` name).
        generator: the torch Generator to sample from (default: None).

    Examples:
        >>> w = torch.empty(16, 3, 3, 3)
        >>> he_uniform_(w, mode="fan_out")
    """
    if _empty(tensor):
        return tensor
    bound = math.sqrt(3.0) * _he_std(tensor, mode, nonlinearity)
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def he_normal_(
    tensor: Tensor,
    mode: FanMode = "fan_in",
    nonlinearity: Nonlinearity = "relu",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Fill `tensor` with He (Kaiming) normal values.

    From *Delving deep into rectifiers: Surpassing human-level performance on
    ImageNet classification* - He, K. et al. (2015).  Values are drawn from
    :math:`\mathcal{N}(0, \text{std}^2)` with

    .. math::
        \text{std} = \frac{\text{gain}}{\sqrt{\text{fan\_mode}}}

    where ``gain`` is ``nn.init.calculate_gain(nonlinearity)`` (:math:`\sqrt{2}`
    for ReLU).

    Args:
        tensor: a tensor with at least 2 dimensions, filled in place.
        mode: ``'fan_in'`` preserves the forward variance, ``'fan_out'`` the
            backward variance.
        nonlinearity: the activation after this layer (``nn.functional`` name).
        generator: the torch Generator to sample from (default: None).

    Examples:
        >>> w = torch.empty(16, 3, 3, 3)
        >>> he_normal_(w)
    """
    if _empty(tensor):
        return tensor
    std = _he_std(tensor, mode, nonlinearity)
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def orthogonal_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    r"""Fill `tensor` with a (semi-)orthogonal matrix.

    From *Exact solutions to the nonlinear dynamics of learning in deep linear
    neural networks* - Saxe, A. et al. (2013).  The tensor is viewed as a
    ``(size(0), numel / size(0))`` matrix :math:`W` and filled so that

    .. math::
        W W^\top = \text{gain}^2 I \quad (\text{rows} \le \text{cols}),
        \qquad W^\top W = \text{gain}^2 I \quad \text{otherwise}.

    Args:
        tensor: a tensor with at least 2 dimensions, filled in place.
        gain: optional scaling factor.
        generator: the torch Generator to sample from (default: None).

    Examples:
        >>> w = torch.empty(3, 5)
        >>> orthogonal_(w)
    """
    if tensor.dim() < 2:
        raise ValueError(f"orthogonal_ needs a tensor with at least 2 dimensions, got shape {tuple(tensor.shape)}")
    if _empty(tensor):
        return tensor
    rows = tensor.size(0)
    cols = tensor.numel() // rows
    # QR is not implemented for half precision: sample and factor in float32 at least.
    work_dtype = torch.promote_types(tensor.dtype, torch.float32)
    flat = torch.empty(rows, cols, dtype=work_dtype, device=tensor.device).normal_(0.0, 1.0, generator=generator)
    if rows < cols:
        flat = flat.t()
    q, r = torch.linalg.qr(flat)
    # Sign correction makes Q Haar-distributed (Mezzadri, 2007), as in torch.nn.init.
    q = q * torch.diagonal(r).sign()
    if rows < cols:
        q = q.t()
    with torch.no_grad():
        tensor.view(rows, cols).copy_(q)
        tensor.mul_(gain)
    return tensor


def pytorch_default_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    r"""Re-run PyTorch's own default initialization on every submodule, in place.

    Calls ``reset_parameters()`` on `module` and each of its submodules that
    define it, i.e. the initialization PyTorch applies at construction (for
    ``nn.Linear``/``nn.Conv*``: :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`,
    :math:`k = 1/\text{fan\_in}`, via Kaiming uniform with :math:`a=\sqrt{5}`).
    Unlike the tensor-level functions this takes a module, because the default
    differs per layer type.

    Note:
        ``reset_parameters()`` also resets buffers (e.g. BatchNorm running
        statistics).  :func:`~torch_qinit.init.apply_classic_init` uses this on
        a copy and only transfers parameter values.

    Args:
        module: the module to reset in place.
        generator: if given, a seed is drawn from it and the global RNG is
            forked, so the result is reproducible and the global RNG state is
            left as it was (``reset_parameters`` takes no generator).

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> pytorch_default_(net, generator=torch.Generator().manual_seed(0))
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"pytorch_default_ expects an nn.Module, got {type(module).__name__}")

    def _reset() -> None:
        for m in module.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()

    if generator is None:
        _reset()
        return module
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    # manual_seed also seeds CUDA, so fork (and later restore) every initialized CUDA device too.
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        _reset()
    return module
