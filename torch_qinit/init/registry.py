"""Classic initializers by name, and applying one to a whole model."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..modules import check_materialized, check_writable, distinct_parameters, owned_parameters, write_values
from ..parametrized import computed_tensors, natural_shape, plain_copy, refresh_legacy_weights
from .classic import (
    glorot_normal_,
    glorot_uniform_,
    he_normal_,
    he_uniform_,
    normal_range_,
    orthogonal_,
    pytorch_default_,
    uniform_range_,
)

__all__ = ["INITIALIZERS", "get_initializer", "available_methods", "apply_classic_init", "classic_values",
           "owned_parameters", "as_generator", "check_writable"]

logger = logging.getLogger(__name__)

#: Name -> initializer.  All entries are tensor-level ``fn(tensor, generator=None)``
#: except ``"pytorch_default"``, which is module-level (see :func:`pytorch_default_`).
INITIALIZERS: dict[str, Callable] = {
    "uniform_0.01": functools.partial(uniform_range_, bound=0.01),
    "uniform_0.05": functools.partial(uniform_range_, bound=0.05),
    "uniform_0.1": functools.partial(uniform_range_, bound=0.1),
    "normal_0.01": functools.partial(normal_range_, std=0.01),
    "normal_0.05": functools.partial(normal_range_, std=0.05),
    "normal_0.1": functools.partial(normal_range_, std=0.1),
    "glorot_uniform": glorot_uniform_,
    "glorot_normal": glorot_normal_,
    "he_uniform": he_uniform_,
    "he_normal": he_normal_,
    "he_uniform_fan_out": functools.partial(he_uniform_, mode="fan_out"),
    "he_normal_fan_out": functools.partial(he_normal_, mode="fan_out"),
    "orthogonal": orthogonal_,
    "pytorch_default": pytorch_default_,
}

_MODULE_LEVEL = frozenset({"pytorch_default"})

# Norm layers whose affine parameters are reset to weight=1, bias=0.  _NormBase
# covers every BatchNorm/SyncBatchNorm/InstanceNorm variant.
_NORM_TYPES: tuple[type, ...] = tuple(
    t
    for t in (
        nn.modules.batchnorm._NormBase,
        nn.LayerNorm,
        nn.GroupNorm,
        getattr(nn, "RMSNorm", None),
    )
    if t is not None
)


def available_methods() -> list[str]:
    """Names accepted by :func:`get_initializer` / :func:`apply_classic_init`, in registry order."""
    return list(INITIALIZERS)


def get_initializer(name: str) -> Callable:
    """The initializer registered under `name`; ValueError listing valid names otherwise."""
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; valid names: {', '.join(INITIALIZERS)}")
    return INITIALIZERS[name]


def as_generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    """`generator` as a ``torch.Generator``: an int seeds a fresh CPU generator; None stays None.

    Raises TypeError for anything else, before any work (``generator=0.5`` would otherwise fail
    deep inside with ``'float' object has no attribute 'device'``).
    """
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(generator)
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Sample in at least float32 so low-precision params get the same draws as float ones.
    return torch.promote_types(dtype, torch.float32)


def _rule_value(owner: nn.Module, local: str, shape: tuple[int, ...], dtype: torch.dtype, method: str,
                generator: torch.Generator | None) -> tuple[Tensor | None, str]:
    """The weight/bias/norm rule for one floating tensor of `shape`, registered on `owner` as `local`."""
    if isinstance(owner, _NORM_TYPES):
        fill = 1.0 if local == "weight" else 0.0
        return torch.full(shape, fill, dtype=dtype), "ones" if fill else "zeros"
    if "bias" in local:
        return torch.zeros(shape, dtype=dtype), "zeros"
    if len(shape) >= 2:
        # Sample on the generator's device (CPU by default) so the draws do not depend on where the model lives.
        device = generator.device if generator is not None else torch.device("cpu")
        new = torch.empty(shape, dtype=_compute_dtype(dtype), device=device)
        INITIALIZERS[method](new, generator=generator)
        return new, method
    # 1-D non-bias parameters (PReLU slopes, custom scales) have no fan and no rule; their
    # construction-time value is the safest choice.
    return None, "unchanged (no rule for 1-D parameter)"


def _rule_values(
    model: nn.Module, method: str, generator: torch.Generator | None
) -> dict[int, tuple[Tensor | None, str]]:
    """New value and description per parameter id, by the weight/bias/norm rule."""
    values = _parametrized_values(model, method, generator)
    for _, mod, local, p in distinct_parameters(owned_parameters(model)):  # tied ones once
        if id(p) in values:
            continue
        if not p.dtype.is_floating_point:
            values[id(p)] = (None, "unchanged (not floating point)")
        elif p.numel() == 0:  # nothing to draw, and a zero fan-in has no scale
            values[id(p)] = (None, "unchanged (empty)")
        else:
            values[id(p)] = _rule_value(mod, local, tuple(p.shape), p.dtype, method, generator)
    return values


#: (module name, module, tensor name, its natural shape or None, dtype) -> (value, description), or None to leave
#: the layer's stored tensors to the per-tensor rule
ComputedValue = Callable[[str, nn.Module, str, tuple[int, ...] | None, torch.dtype], tuple[Tensor | None, str] | None]


def _stored_computed(model: nn.Module, value_of: ComputedValue) -> dict[int, tuple[Tensor | None, str]]:
    """{id of a stored tensor: (value, description)} for the layers whose weight is computed (weight_norm,
    spectral_norm, pruning masks, old-style weight_norm): `value_of` gives the computed tensor's new value,
    stored as the layer stores it (``right_inverse``, or weight_norm's norm/direction split). Layers it
    cannot serve are left out: the per-tensor rule decides for them."""
    values: dict[int, tuple[Tensor | None, str]] = {}
    for mod_name, m, name, stored, split in computed_tensors(model):
        shape = natural_shape(m, name)
        first = next(iter(stored.values()), None)
        if first is None or not first.dtype.is_floating_point or (shape is not None and 0 in shape):
            continue
        decided = value_of(mod_name, m, name, shape, first.dtype)
        if decided is None:
            continue
        value, desc = decided
        if value is None:  # e.g. no reset_parameters: every stored tensor stays, for that reason
            values.update((id(p), (None, desc)) for p in stored.values())
            continue
        split_values = split(value)
        if not isinstance(split_values, str):
            values.update((id(stored[local]), (t, desc)) for local, t in split_values.items())
    return values


def _parametrized_values(model: nn.Module, method: str, generator: torch.Generator | None
                         ) -> dict[int, tuple[Tensor | None, str]]:
    """The rule applied to what a layer with a computed weight computes, stored as the layer stores it.

    Drawing for the stored tensors themselves gave weight_norm's norm ``original0`` (out, 1, 1, 1) a
    He draw with fan-in 1: per-filter norms of random size and sign.
    """
    def rule(_mod_name: str, m: nn.Module, name: str, shape: tuple[int, ...] | None, dtype: torch.dtype
             ) -> tuple[Tensor | None, str] | None:
        return None if shape is None else _rule_value(m, name, shape, dtype, method, generator)

    return _stored_computed(model, rule)


def _default_values(
    model: nn.Module, generator: torch.Generator | None
) -> dict[int, tuple[Tensor | None, str]]:
    """PyTorch defaults: reset_parameters() on a deepcopy, then read the values back.

    Computed weights (weight_norm, spectral_norm...) are plain parameters in the copy, so the default is
    drawn for what the layer computes, then stored as the layer stores it.
    """
    clone = plain_copy(model)
    pytorch_default_(clone, generator=generator)
    reset_owned = {id(m) for m in clone.modules() if callable(getattr(m, "reset_parameters", None))}
    clone_params = {name: (mod, p) for name, mod, _, p in owned_parameters(clone)}

    def drawn(mod_name: str, _m: nn.Module, name: str, _shape: tuple[int, ...] | None, _dtype: torch.dtype
              ) -> tuple[Tensor | None, str]:
        if id(clone.get_submodule(mod_name)) not in reset_owned:
            return None, "unchanged (no reset_parameters)"
        return clone_params[f"{mod_name}.{name}" if mod_name else name][1].detach().clone(), "pytorch_default"

    values = _stored_computed(model, drawn)
    for name, _, _, p in distinct_parameters(owned_parameters(model)):
        if id(p) in values:
            continue
        if name not in clone_params:  # a computed weight's stored tensor that could not be stored back
            values[id(p)] = (None, "unchanged (its layer's right_inverse failed)")
            continue
        cmod, cp = clone_params[name]
        if id(cmod) in reset_owned:
            values[id(p)] = (cp.detach().clone(), "pytorch_default")
        else:
            values[id(p)] = (None, "unchanged (no reset_parameters)")
    return values


def classic_values(
    model: nn.Module, method: str, generator: torch.Generator | int | None = None
) -> dict[int, tuple[Tensor | None, str]]:
    """New values for `model`'s parameters under `method`, without writing them.

    Returns ``{id(param): (value or None, description)}``, one entry per
    distinct parameter (tied ones once).  ``None`` means "leave unchanged"
    (the description says why).  Values are fresh tensors (float32 or wider,
    on the generator's device) to be ``copy_``-ed into the parameters; this is
    the compute-first half of :func:`apply_classic_init`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"classic_values expects an nn.Module, got {type(model).__name__}")
    get_initializer(method)  # validates the name
    generator = as_generator(generator)
    if method in _MODULE_LEVEL:
        return _default_values(model, generator)
    return _rule_values(model, method, generator)


def apply_classic_init(
    model: nn.Module, method: str, generator: torch.Generator | int | None = None
) -> dict[str, str]:
    """Initialize every parameter of `model` in place with the classic `method`.

    Rules: conv/linear weights and any other parameter with >= 2 dims get the
    initializer; biases get zeros; norm-layer weights ones and biases zeros.
    ``"pytorch_default"`` instead runs each module's ``reset_parameters()`` on
    a deepcopy and copies the resulting values.  All new values are computed
    before anything is written, so a failure leaves the model untouched.
    Parameter identity, buffers (BN running stats) and train/eval mode are kept.

    Args:
        model: the model to initialize in place.
        method: one of :func:`available_methods`.
        generator: RNG for reproducible draws (default: the global RNG), or an int seed.

    Returns:
        parameter name -> source description (e.g. ``"he_normal"``, ``"zeros"``,
        ``"ones"``); tied parameters appear under each of their names.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        >>> apply_classic_init(net, "he_normal", generator=torch.Generator().manual_seed(0))
        {'0.weight': 'he_normal', '0.bias': 'zeros', '1.weight': 'ones', '1.bias': 'zeros'}
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"apply_classic_init expects an nn.Module, got {type(model).__name__}")
    get_initializer(method)  # validates the name
    params = owned_parameters(model)
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameters to initialize")
    check_materialized(model)

    values = classic_values(model, method, as_generator(generator))
    written = write_values(params, {pid: new for pid, (new, _) in values.items() if new is not None})
    refresh_legacy_weights(model)
    logger.debug("apply_classic_init(%s): %d parameters", method, written)
    return {name: values[id(p)][1] for name, _, _, p in params}
