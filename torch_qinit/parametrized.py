"""Layers with ``torch.nn.utils.parametrize`` parametrizations (weight_norm, spectral_norm, pruning masks...).

Such a layer's ``weight`` is computed from stored ``original`` tensors (weight_norm: a norm ``original0`` and a
direction ``original1``). The GHN sees the layer as what it computes, a conv or linear with a ``weight`` of the
usual shape (:func:`effective_shapes`); its prediction for that weight is turned back into the stored tensors
by the parametrizations' own ``right_inverse``, which is what ``layer.weight = value`` does in torch
(:func:`to_originals`).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["natural_shape", "effective_shapes", "stored_values", "to_originals"]


def natural_shape(m: nn.Module, name: str) -> tuple[int, ...] | None:
    """The shape `m.<name>` has without parametrizations, from the layer's own settings (no forward:
    evaluating spectral_norm in training mode would advance its power iteration)."""
    if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed:
        return {"weight": (m.out_channels, m.in_channels // m.groups, *m.kernel_size),
                "bias": (m.out_channels,)}.get(name)
    if isinstance(m, nn.Linear):
        return {"weight": (m.out_features, m.in_features), "bias": (m.out_features,)}.get(name)
    if isinstance(m, nn.modules.batchnorm._NormBase) and name in ("weight", "bias"):
        return (m.num_features,)
    if isinstance(m, nn.GroupNorm) and name in ("weight", "bias"):
        return (m.num_channels,)
    if isinstance(m, nn.LayerNorm) and name in ("weight", "bias"):
        return tuple(m.normalized_shape)
    return None


def effective_shapes(m: nn.Module) -> dict[str, tuple[int, ...]] | None:
    """{tensor name: shape} of `m`'s parametrized tensors as the layer computes them, or None when `m` has
    no parametrization or one whose shape cannot be told from the layer's settings."""
    if not parametrize.is_parametrized(m):
        return None
    shapes = {}
    for name in m.parametrizations:
        shape = natural_shape(m, name)
        if shape is None:
            return None
        shapes[name] = shape
    return shapes


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


def to_originals(model: nn.Module, preds: dict[str, torch.Tensor]) -> dict[str, str]:
    """Replace, in `preds`, each prediction of a parametrized tensor (``"conv.weight"``) by the stored tensors
    that give it (``"conv.parametrizations.weight.original0"``, ...); returns {stored-tensor name prefix:
    why it could not be done} for the ones left out (their stored tensors get the classic fallback).

    A parametrization without ``right_inverse`` (a pruning mask) stores the value as it is, as torch does
    when it is registered.
    """
    failed: dict[str, str] = {}
    for mod_name, m in model.named_modules():
        if not parametrize.is_parametrized(m):
            continue
        for name, plist in m.parametrizations.items():
            key = f"{mod_name}.{name}" if mod_name else name
            if key not in preds:
                continue
            prefix = f"{mod_name}.parametrizations.{name}" if mod_name else f"parametrizations.{name}"
            stored = stored_values(plist, preds.pop(key))
            if isinstance(stored, str):
                failed[prefix] = stored
            else:
                preds.update((f"{prefix}.{n}", v) for n, v in stored.items())
    return failed
