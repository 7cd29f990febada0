"""Layers whose weight is computed from other stored tensors: ``torch.nn.utils.parametrize`` parametrizations
(weight_norm, spectral_norm, pruning masks...) and the older hook-based ``torch.nn.utils.weight_norm``.

A parametrized layer's ``weight`` is computed from stored ``original`` tensors (weight_norm: a norm
``original0`` and a direction ``original1``); an old-style weight_norm layer recomputes its ``weight``
attribute from ``weight_g`` (norm) and ``weight_v`` (direction) in a forward pre-hook. The GHN sees the layer
as what it computes, a conv or linear with a ``weight`` of the usual shape (:func:`effective_shapes`); its
prediction for that weight is turned back into the stored tensors (:func:`to_originals`) by the
parametrizations' own ``right_inverse``, which is what ``layer.weight = value`` does in torch, or by the
split ``torch.nn.utils.weight_norm`` makes when it is applied (:func:`legacy_split`).
"""
from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.weight_norm import WeightNorm

__all__ = ["natural_shape", "effective_shapes", "graph_params", "computed_tensors", "to_originals",
           "refresh_legacy_weights", "plain_copy"]


def natural_shape(m: nn.Module, name: str) -> tuple[int, ...] | None:
    """The shape `m.<name>` has without parametrizations, from the layer's own settings (no forward:
    evaluating spectral_norm in training mode would advance its power iteration)."""
    if isinstance(m, nn.modules.conv._ConvNd):
        cin, cout = (m.out_channels, m.in_channels) if m.transposed else (m.in_channels, m.out_channels)
        return {"weight": (cout, cin // m.groups, *m.kernel_size), "bias": (m.out_channels,)}.get(name)
    if isinstance(m, nn.Linear):
        return {"weight": (m.out_features, m.in_features), "bias": (m.out_features,)}.get(name)
    if isinstance(m, nn.modules.batchnorm._NormBase) and name in ("weight", "bias"):
        return (m.num_features,)
    if isinstance(m, nn.GroupNorm) and name in ("weight", "bias"):
        return (m.num_channels,)
    if isinstance(m, nn.LayerNorm) and name in ("weight", "bias"):
        return tuple(m.normalized_shape)
    return None


def legacy_weight_norms(m: nn.Module) -> dict[str, WeightNorm]:
    """{tensor name: hook} of the old-style ``torch.nn.utils.weight_norm`` hooks on `m` (deprecated by torch,
    still common in older code: its ``<name>_g`` and ``<name>_v`` parameters replace ``<name>``)."""
    return {h.name: h for h in m._forward_pre_hooks.values() if isinstance(h, WeightNorm)}


def legacy_split(hook: WeightNorm, value: torch.Tensor) -> dict[str, torch.Tensor]:
    """{``<name>_g``: norm, ``<name>_v``: direction} that make an old-style weight_norm layer compute `value`:
    the split ``torch.nn.utils.weight_norm`` itself makes of the weight it is applied to."""
    with torch.no_grad():
        return {f"{hook.name}_g": torch.norm_except_dim(value, 2, hook.dim), f"{hook.name}_v": value}


def _computed_names(m: nn.Module) -> list[str]:
    """Names of the tensors `m` computes from stored ones (parametrized, or old-style weight_norm)."""
    names = list(m.parametrizations) if parametrize.is_parametrized(m) else []
    return names + list(legacy_weight_norms(m))


def effective_shapes(m: nn.Module) -> dict[str, tuple[int, ...]] | None:
    """{tensor name: shape} of `m`'s parametrized tensors as the layer computes them, or None when `m` has
    no parametrization or one whose shape cannot be told from the layer's settings."""
    names = _computed_names(m)
    if not names:
        return None
    shapes = {}
    for name in names:
        shape = natural_shape(m, name)
        if shape is None:
            return None
        shapes[name] = shape
    return shapes


def graph_params(m: nn.Module, params: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]] | None:
    """`m`'s {local name: shape} as the GHN should see them: each computed tensor in place of the parameters
    that store it (`params` are the stored ones); None when `m` computes none, or one of unknown shape."""
    effective = effective_shapes(m)
    if effective is None:
        return None
    legacy = {f"{name}{part}" for name in legacy_weight_norms(m) for part in ("_g", "_v")}
    return {**effective, **{k: v for k, v in params.items()
                            if not k.startswith("parametrizations.") and k not in legacy}}


def stored_values(plist: nn.Module, value: torch.Tensor) -> dict[str, torch.Tensor] | str:
    """{stored tensor name ("original", "original0"...): value} that make the parametrization list `plist`
    compute `value`, without writing anything; or why not (a message)."""
    try:
        with torch.no_grad():
            for p in reversed(plist):
                if hasattr(p, "right_inverse"):
                    value = p.right_inverse(value)
    except Exception as exc:  # noqa: BLE001 - user code: any failure means "fall back", with the reason
        return f"right_inverse of {type(p).__name__} failed ({type(exc).__name__}: {exc})"
    values = [value] if plist.is_tensor else list(value) if isinstance(value, (tuple, list)) else None
    names = ["original"] if plist.is_tensor else [f"original{i}" for i in range(plist.ntensors)]
    if values is None or len(values) != len(names) or not all(
            isinstance(v, torch.Tensor) and v.shape == getattr(plist, n).shape for v, n in zip(values, names)):
        return "right_inverse did not give tensors of the stored shapes"
    return dict(zip(names, values))


#: value of a computed tensor -> {stored parameter's name, local to its module: value}, or why not (a message)
Split = Callable[[torch.Tensor], dict[str, torch.Tensor] | str]


def computed_tensors(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, dict[str, nn.Parameter], Split]]:
    """(module name, module, computed tensor name, {local name: stored parameter}, split) for each tensor a
    module of `model` computes from stored ones; `split(value)` gives the stored values that make it compute
    `value` (old-style weight_norm: its norm/direction split; a parametrization: its ``right_inverse``)."""
    for mod_name, m in model.named_modules():
        for name, hook in legacy_weight_norms(m).items():
            stored = {f"{name}{part}": getattr(m, f"{name}{part}") for part in ("_g", "_v")}
            yield mod_name, m, name, stored, functools.partial(legacy_split, hook)
        if not parametrize.is_parametrized(m):
            continue
        for name, plist in m.parametrizations.items():
            prefix = f"parametrizations.{name}."
            stored = {prefix + local: p for local, p in plist.named_parameters(recurse=False)}

            def split(value: torch.Tensor, plist: nn.Module = plist, prefix: str = prefix
                      ) -> dict[str, torch.Tensor] | str:
                values = stored_values(plist, value)
                return values if isinstance(values, str) else {prefix + n: v for n, v in values.items()}

            yield mod_name, m, name, stored, split


def to_originals(model: nn.Module, preds: dict[str, torch.Tensor]) -> dict[str, str]:
    """Replace, in `preds`, each prediction of a computed tensor (``"conv.weight"``) by the stored tensors
    that give it (``"conv.parametrizations.weight.original0"``, ..., or ``"conv.weight_g"`` / ``"conv.weight_v"``);
    returns {stored-tensor name prefix: why it could not be done} for the ones left out (their stored tensors
    get the classic fallback).

    A parametrization without ``right_inverse`` (a pruning mask) stores the value as it is, as torch does
    when it is registered.
    """
    failed: dict[str, str] = {}
    for mod_name, _, name, _, split in computed_tensors(model):
        stem = f"{mod_name}." if mod_name else ""
        if f"{stem}{name}" not in preds:
            continue
        stored = split(preds.pop(f"{stem}{name}"))
        if isinstance(stored, str):  # only a parametrization's right_inverse can fail
            failed[f"{stem}parametrizations.{name}"] = stored
        else:
            preds.update((stem + local, v) for local, v in stored.items())
    return failed


def refresh_legacy_weights(model: nn.Module) -> None:
    """Recompute the ``weight`` attribute of old-style weight_norm layers from their new ``weight_g`` and
    ``weight_v`` (their pre-hook does it at the next forward; a user reading ``layer.weight`` before that
    would see the old weight), as ``torch.nn.utils.weight_norm`` does when it is applied."""
    for m in model.modules():
        for name, hook in legacy_weight_norms(m).items():
            with torch.no_grad():  # a leaf, so the model can be deep-copied until its next forward
                setattr(m, name, hook.compute_weight(m))


def _plain_stand_in(m: nn.Module) -> nn.Module:
    """A stand-in for parametrized `m` of its own (unparametrized) class, sharing its settings, with each
    parametrized tensor a plain parameter holding its current value. (``remove_parametrizations`` on a deep
    copy is no way to get it: the copy shares the parametrized class, and removal deletes the class's
    ``weight`` property, breaking the original model.)"""
    base = type(m).__bases__[0]
    plain = base.__new__(base)
    plain.__dict__.update(m.__dict__, _parameters=dict(m._parameters),
                          _modules={k: v for k, v in m._modules.items() if k != "parametrizations"})
    with torch.no_grad():
        for name in m.parametrizations:
            plain._parameters[name] = nn.Parameter(getattr(m, name).detach().clone())
    return plain


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` in which every computed weight is a plain parameter holding its current value
    (parametrized layers stood in for, old-style weight_norm hooks removed), so ``reset_parameters`` draws
    into it (on the original it draws into a computed tensor, and the draw is lost). Module names are kept."""
    legacy = [(m, name, getattr(m, name)) for m in model.modules() for name in legacy_weight_norms(m)]
    try:
        for m, name, value in legacy:  # deepcopy refuses the non-leaf tensor the hook computed
            setattr(m, name, value.detach())
        clone = copy.deepcopy(model)
    finally:
        for m, name, value in legacy:
            setattr(m, name, value)
    for m in clone.modules():
        for name in list(legacy_weight_norms(m)):
            torch.nn.utils.remove_weight_norm(m, name)
    if parametrize.is_parametrized(clone):
        clone = _plain_stand_in(clone)
    for parent in list(clone.modules()):
        for child_name, child in parent._modules.items():
            if child is not None and parametrize.is_parametrized(child):
                parent._modules[child_name] = _plain_stand_in(child)
    return clone
