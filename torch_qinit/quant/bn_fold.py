"""Fold BatchNorm into the preceding convolution, for deploy-style evaluation."""
from __future__ import annotations

import copy
import logging
import warnings

import torch
import torch.fx
from torch import nn

from ..graph.fx import trace

__all__ = ["fold_bn", "fold_conv_bn_", "trace_layers"]

logger = logging.getLogger(__name__)

# Conv type -> the BatchNorm type that can follow it (same spatial rank).
_PAIRS: dict[type, type] = {
    nn.Conv1d: nn.BatchNorm1d,
    nn.Conv2d: nn.BatchNorm2d,
    nn.Conv3d: nn.BatchNorm3d,
}


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    for conv_t, bn_t in _PAIRS.items():
        if isinstance(conv, conv_t) and isinstance(bn, bn_t):
            # Without running stats BN always uses batch statistics: nothing fixed to fold.
            return bn.track_running_stats and bn.running_mean is not None and bn.num_features == conv.out_channels
    return False


@torch.no_grad()
def fold_conv_bn_(conv: nn.Module, bn: nn.Module) -> None:
    r"""Fold `bn`'s eval-mode affine map into `conv`'s weight and bias, in place.

    With :math:`a = \gamma / \sqrt{\sigma^2 + \epsilon}` per output channel:
    :math:`W' = a W`, :math:`b' = a (b - \mu) + \beta`.  A bias is added when
    `conv` had none.  `bn` itself is left unchanged.
    """
    var, mean = bn.running_var, bn.running_mean
    gamma = bn.weight if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(mean)
    a = gamma / torch.sqrt(var + bn.eps)
    w = conv.weight
    b = conv.bias if conv.bias is not None else torch.zeros_like(mean)
    new_w = w * a.to(w.dtype).view(-1, *([1] * (w.dim() - 1)))
    new_b = (b - mean) * a + beta
    conv.weight = nn.Parameter(new_w.to(w.dtype), requires_grad=w.requires_grad)
    conv.bias = nn.Parameter(new_b.to(w.dtype), requires_grad=w.requires_grad)


def layer_leaf(m: nn.Module) -> bool | None:
    """Leaf rule for tracing quantizable models: every conv/linear/BN, quantized subclasses included
    (Quant* layers live outside torch.nn, so fx would trace into their forward); None: fx's own rule."""
    return True if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)) else None


def trace_layers(model: nn.Module) -> torch.fx.Graph:
    """fx graph of `model` with every conv/linear/BN as a leaf (the library's one tracer, `graph.fx.trace`)."""
    return trace(model, layer_leaf)


def _fx_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv qualname, bn qualname) pairs where the conv's only user is the BN."""
    graph = trace_layers(model)
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.users) != 1:
            continue
        user = next(iter(node.users))
        if user.op != "call_module" or user.args[:1] != (node,):
            continue
        conv, bn = modules[node.target], modules[user.target]
        # A module called more than once cannot be folded for one call only.
        if calls[node.target] == 1 and calls[user.target] == 1 and _foldable(conv, bn):
            pairs.append((node.target, user.target))
    return pairs


def _sequential_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Adjacent (conv, bn) children of nn.Sequential containers."""
    pairs = []
    for name, mod in model.named_modules():
        if not isinstance(mod, nn.Sequential):
            continue
        children = list(mod.named_children())
        for (cn, conv), (bn_name, bn) in zip(children, children[1:]):
            if _foldable(conv, bn):
                prefix = f"{name}." if name else ""
                pairs.append((prefix + cn, prefix + bn_name))
    return pairs


def _set_submodule(root: nn.Module, qualname: str, new: nn.Module) -> None:
    parent_name, _, child = qualname.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of `model` with each BatchNorm folded into the conv right before it.

    Pairs are found with torch.fx (a conv whose only user is a BatchNorm); if
    tracing fails, adjacent pairs inside ``nn.Sequential`` are used instead,
    with a warning.  Folded BNs become ``nn.Identity``, so module names are
    kept.  Folding uses the running statistics (eval semantics); the copy only
    matches the original in eval mode.  `model` itself is not modified.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
        >>> folded = fold_bn(net)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"fold_bn expects an nn.Module, got {type(model).__name__}")
    model = copy.deepcopy(model)
    try:
        pairs = _fx_pairs(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...) on dynamic code
        warnings.warn(
            f"fold_bn: torch.fx tracing failed ({type(exc).__name__}: {exc}); "
            "folding only conv/BatchNorm pairs adjacent inside nn.Sequential",
            stacklevel=2,
        )
        pairs = _sequential_pairs(model)
    for conv_name, bn_name in pairs:
        fold_conv_bn_(model.get_submodule(conv_name), model.get_submodule(bn_name))
        _set_submodule(model, bn_name, nn.Identity())
    logger.debug("fold_bn: folded %d BatchNorm layers", len(pairs))
    return model
