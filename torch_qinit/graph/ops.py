"""Which modules are leaves of a captured graph, and the op kind of each module and function.

The tables every capture path reads (`torch_qinit.graph.capture`): activation and skip modules, the
leaf rule, module -> `Node`, and the torch functions and tensor methods the fx path recognizes.
"""
from __future__ import annotations

import builtins
import operator
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..parametrized import graph_params
from .arch_graph import SERVABLE_OPS, ArchGraph, Node
from .layout import conv_layout

__all__ = ["is_graph_leaf", "module_node", "direct_param_node", "ordered_modules", "canonical_names", "GraphBuilder",
           "dedup", "first_of", "is_one", "FUNCTION_KINDS", "METHOD_KINDS", "ADAPTIVE_FUNCTIONS", "REDUCE_FUNCTIONS",
           "REDUCE_METHODS", "SKIP_FUNCTIONS", "SKIP_METHODS", "GUARDS", "META_FUNCTIONS", "META_ATTRS",
           "META_METHODS"]

_SERVABLE_PARAM_NAMES = frozenset({"weight", "bias"})
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)

# Activation modules with their own op kind.  ReLU6 subclasses Hardtanh, so
# exact kinds are matched before the generic "other_act".
_ACT_MODULES: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.ReLU6, "relu6"),
    (nn.ReLU, "relu"),
    (nn.Hardswish, "hardswish"),
    (nn.GELU, "gelu"),
    (nn.SiLU, "silu"),
    (nn.Sigmoid, "sigmoid"),
    (nn.Tanh, "tanh"),
    (nn.LeakyReLU, "leaky_relu"),
)
_SKIP_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.modules.dropout._DropoutNd,
)
_KNOWN_OP_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm,
    nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.Flatten, nn.Unflatten,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
) + _SKIP_MODULES


# --------------------------------------------------------------------------- #
# Leaf selection and module -> Node
# --------------------------------------------------------------------------- #
def _has_direct_params(m: nn.Module) -> bool:
    return next(m.parameters(recurse=False), None) is not None


def _has_child_params(m: nn.Module) -> bool:
    return any(next(c.parameters(), None) is not None for c in m.children())


def _is_torch_nn(m: nn.Module) -> bool:
    return type(m).__module__.startswith("torch.nn.")


def _is_known_op_module(m: nn.Module) -> bool:
    if isinstance(m, _KNOWN_OP_MODULES):
        return True
    mod = type(m).__module__
    return mod in ("torch.nn.modules.activation", "torch.nn.modules.pooling")


def is_graph_leaf(m: nn.Module) -> bool:
    """Whether capture treats `m` as one op (an fx leaf / a hooked module)."""
    if isinstance(m, _CONTAINERS):
        return False
    if _is_known_op_module(m):
        return True
    if _has_direct_params(m):
        # A user block holding its own parameter (a layer scale, say) next to
        # parameterized children is traced through, so the children stay
        # visible; its own parameter shows up as an fx get_attr node.
        return _is_torch_nn(m) or not _has_child_params(m)
    # Parameter-free torch.nn modules (Upsample, padding, PixelShuffle, ...).
    return _is_torch_nn(m) and next(m.parameters(), None) is None


def first_of(v: Any) -> Any:
    """The first element of a tuple/list attribute (``kernel_size=(3, 3)``), or the value itself."""
    if isinstance(v, (tuple, list)):
        return v[0] if len(v) else None
    return v


def is_one(size: Any) -> bool:
    """Whether an output size (int or tuple) is 1 everywhere: a global pool."""
    if isinstance(size, (tuple, list)):
        return len(size) > 0 and all(s == 1 for s in size)
    return size == 1


def _module_kind(m: nn.Module) -> tuple[str | None, dict[str, Any]]:
    """(op kind, attrs) of a leaf module; kind None means 'skip (bypass)'."""
    if isinstance(m, _SKIP_MODULES):
        return None, {}
    if isinstance(m, nn.modules.conv._ConvNd):
        attrs: dict[str, Any] = {
            "kernel": int(first_of(m.kernel_size)),
            "stride": int(first_of(m.stride)),
            "groups": int(m.groups),
            "padding": m.padding if isinstance(m.padding, str) else int(first_of(m.padding)),
        }
        if getattr(m, "transposed", False):
            attrs["transposed"] = True  # stored weight (in, out/groups, ...): the GHN sees a conv's (graph/layout.py)
        g, cin = int(m.groups), int(m.in_channels)
        if g > 1 and g == cin:
            return "dw_conv", attrs
        if 1 < g < cin:
            return "group_conv", attrs
        return "conv", attrs
    if isinstance(m, nn.Linear):
        return "linear", {}
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "batch_norm", {}
    if isinstance(m, nn.LayerNorm):
        return "layer_norm", {}
    if isinstance(m, nn.GroupNorm):
        return "group_norm", {"groups": int(m.num_groups)}
    if isinstance(m, nn.modules.instancenorm._InstanceNorm):
        # per-channel statistics over the map: a group norm with one channel per group (same affine layout)
        return "group_norm", {"groups": int(m.num_features)}
    for cls, kind in _ACT_MODULES:
        if isinstance(m, cls):
            return kind, {}
    if isinstance(m, (nn.Flatten, nn.Unflatten)):
        return "flatten", {}
    pooling = nn.modules.pooling
    if isinstance(m, (pooling._AdaptiveAvgPoolNd, pooling._AdaptiveMaxPoolNd)):
        attrs = {"output_size": m.output_size}
        if is_one(m.output_size):
            return "global_pool", attrs
        return ("avg_pool" if isinstance(m, pooling._AdaptiveAvgPoolNd) else "max_pool"), attrs
    if isinstance(m, (pooling._MaxPoolNd, pooling._AvgPoolNd)):
        attrs = {"kernel": int(first_of(m.kernel_size))}
        stride = first_of(m.stride)
        attrs["stride"] = int(stride) if stride is not None else attrs["kernel"]
        return ("max_pool" if isinstance(m, pooling._MaxPoolNd) else "avg_pool"), attrs
    if isinstance(m, (pooling.FractionalMaxPool2d, pooling.FractionalMaxPool3d)):
        return "max_pool", {}
    if type(m).__module__ == "torch.nn.modules.activation" and not _has_direct_params(m) \
            and not _has_child_params(m):
        return "other_act", {}
    return "other", {}


def _param_entries(m: nn.Module, recurse: bool) -> Iterator[tuple[str, nn.Parameter]]:
    for local, p in m.named_parameters(recurse=recurse):
        if isinstance(p, nn.parameter.UninitializedParameter):
            continue  # lazy module before its first forward: shape unknown
        yield local, p


def module_node(m: nn.Module, name: str, canonical: dict[int, str]) -> Node | None:
    """The node of leaf module `m` (qualified name `name`), or None to bypass it."""
    kind, attrs = _module_kind(m)
    if kind is None:
        return None
    has_lazy = any(isinstance(p, nn.parameter.UninitializedParameter) for p in m.parameters())
    nested = _has_child_params(m)
    params: dict[str, tuple[int, ...]] = {}
    tied: dict[str, str] = {}
    for local, p in _param_entries(m, recurse=nested):
        full = f"{name}.{local}" if name else local
        canon = canonical.get(id(p), full)
        if canon != full:  # tied to a parameter registered under another name first
            tied[local] = canon
            continue
        params[local] = tuple(p.shape)
    computed = graph_params(m, params) if kind in SERVABLE_OPS else None
    if computed is not None:  # weight_norm, spectral_norm, a pruning mask: the GHN sees the computed weight
        attrs = dict(attrs, parametrized=sorted(set(computed) - set(params)))
        params, nested = computed, False
    if kind in SERVABLE_OPS and (nested or has_lazy or not set(params) <= _SERVABLE_PARAM_NAMES):
        kind = "other"  # parametrizations of unknown shape, lazy shapes...
    if attrs.get("transposed") and "weight" in params:
        params = dict(params, weight=conv_layout(params["weight"], int(attrs["groups"])))
    if any(0 in shape for shape in params.values()):
        # A zero-size dimension (nn.Linear(0, 4)): nothing to predict, and a fan-in of 0 has no scale.
        attrs = dict(attrs, empty=True)
        if kind in SERVABLE_OPS:
            kind = "other"
    if kind == "other_act" and params:
        kind = "other"
    if kind == "other":
        attrs = dict(attrs, module_type=type(m).__name__)
    if tied:
        attrs = dict(attrs, tied=tied)
    return Node(kind, name, params, attrs)


def direct_param_node(m: nn.Module, name: str, canonical: dict[int, str]) -> Node | None:
    """An "other" node for the direct parameters of a traced-through module."""
    params = {}
    for local, p in _param_entries(m, recurse=False):
        full = f"{name}.{local}" if name else local
        if canonical.get(id(p), full) == full:
            params[local] = tuple(p.shape)
    if not params:
        return None
    return Node("other", name, params, {"module_type": type(m).__name__})


def ordered_modules(model: nn.Module) -> list[tuple[str, nn.Module, bool]]:
    """(name, module, is_leaf): top-most leaves in ``named_modules()`` order, plus
    traced-through modules holding direct parameters, each after its children."""
    out: list[tuple[str, nn.Module, bool]] = []
    seen: set[int] = set()

    def visit(prefix: str, m: nn.Module) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        if prefix and is_graph_leaf(m):
            out.append((prefix, m, True))
            return
        for child_name, child in m.named_children():
            visit(f"{prefix}.{child_name}" if prefix else child_name, child)
        if _has_direct_params(m):  # after its children, as the hooks path sees it
            out.append((prefix, m, False))

    visit("", model)
    return out


def canonical_names(model: nn.Module) -> dict[int, str]:
    """id(param) -> its first name: the name a tied parameter is predicted under."""
    return {id(p): n for n, p in model.named_parameters()}


# --------------------------------------------------------------------------- #
# Graph assembly helper
# --------------------------------------------------------------------------- #
class GraphBuilder:
    """Nodes and deduplicated edges, appended in topological order."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.edges: list[tuple[int, int]] = []
        self._edge_set: set[tuple[int, int]] = set()

    def add(self, node: Node, preds: list[int]) -> int:
        idx = len(self.nodes)
        self.nodes.append(node)
        for p in preds:
            if (p, idx) not in self._edge_set:
                self._edge_set.add((p, idx))
                self.edges.append((p, idx))
        return idx

    def graph(self, method: str) -> ArchGraph:
        return ArchGraph(self.nodes, self.edges, method)


def dedup(xs: list[int]) -> list[int]:
    """`xs` without repeats, first occurrence kept."""
    return list(dict.fromkeys(xs))


# --------------------------------------------------------------------------- #
# Functional ops (the fx path sees them; hooks do not)
# --------------------------------------------------------------------------- #
def _table(pairs: list[tuple[str, list[Any]]]) -> dict[Any, str]:
    out: dict[Any, str] = {}
    for kind, fns in pairs:
        for fn in fns:
            if fn is not None:
                out[fn] = kind
    return out


def _fns(mod: Any, *names: str) -> list[Any]:
    return [getattr(mod, n, None) for n in names]


FUNCTION_KINDS: dict[Any, str] = _table([
    ("add", [operator.add, operator.iadd, torch.add]),
    ("mul", [operator.mul, operator.imul, torch.mul]),
    ("concat", _fns(torch, "cat", "concat", "concatenate", "stack")),
    ("flatten", _fns(torch, "flatten", "reshape")),
    ("relu", _fns(F, "relu", "relu_") + _fns(torch, "relu", "relu_")),
    ("relu6", [F.relu6]),
    ("hardswish", [F.hardswish]),
    ("gelu", [F.gelu]),
    ("silu", [F.silu]),
    ("sigmoid", _fns(F, "sigmoid") + _fns(torch, "sigmoid", "sigmoid_")),
    ("tanh", _fns(F, "tanh") + _fns(torch, "tanh", "tanh_")),
    ("leaky_relu", _fns(F, "leaky_relu", "leaky_relu_")),
    ("other_act", _fns(F, "elu", "elu_", "selu", "selu_", "celu", "celu_", "mish", "hardsigmoid",
                       "softplus", "softmax", "log_softmax", "softmin", "hardtanh", "hardtanh_",
                       "glu", "logsigmoid", "softsign", "tanhshrink", "hardshrink",
                       "softshrink", "rrelu", "rrelu_", "threshold", "threshold_", "prelu")
     + _fns(torch, "softmax", "log_softmax", "prelu")),
    ("max_pool", _fns(F, "max_pool1d", "max_pool2d", "max_pool3d")
     + _fns(torch, "max_pool1d", "max_pool2d", "max_pool3d")),
    ("avg_pool", _fns(F, "avg_pool1d", "avg_pool2d", "avg_pool3d") + _fns(torch, "avg_pool1d")),
])
ADAPTIVE_FUNCTIONS: dict[Any, str] = _table([
    ("avg_pool", _fns(F, "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d")
     + _fns(torch, "adaptive_avg_pool1d")),
    ("max_pool", _fns(F, "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d")
     + _fns(torch, "adaptive_max_pool1d")),
])
REDUCE_FUNCTIONS = frozenset(fn for fn in _fns(torch, "mean", "amax") if fn is not None)
SKIP_FUNCTIONS = frozenset(fn for fn in [
    operator.getitem, builtins.getattr, torch._assert,
    getattr(torch.fx._symbolic_trace, "_assert_is_none", None),
    *_fns(F, "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
          "feature_alpha_dropout"),
    *_fns(torch, "dropout", "permute", "transpose", "t", "squeeze", "unsqueeze", "chunk",
          "split", "unbind", "narrow", "select", "clone", "detach", "movedim", "swapaxes"),
] if fn is not None)
GUARDS = frozenset(fn for fn in (
    operator.eq, torch._assert, getattr(torch.fx._symbolic_trace, "_assert_is_none", None),
) if fn is not None)
META_FUNCTIONS = frozenset([builtins.len, *[fn for fn in _fns(torch, "numel") if fn is not None]])
META_ATTRS = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout"})

METHOD_KINDS: dict[str, str] = {
    "add": "add", "add_": "add", "__add__": "add", "__radd__": "add", "__iadd__": "add",
    "mul": "mul", "mul_": "mul", "__mul__": "mul", "__rmul__": "mul", "__imul__": "mul",
    "flatten": "flatten", "view": "flatten", "reshape": "flatten",
    "view_as": "flatten", "reshape_as": "flatten",
    "relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
    "tanh": "tanh", "tanh_": "tanh",
    "softmax": "other_act", "log_softmax": "other_act",
}
REDUCE_METHODS = frozenset({"mean", "amax"})
SKIP_METHODS = frozenset({
    "contiguous", "permute", "transpose", "transpose_", "t", "squeeze", "squeeze_", "unsqueeze",
    "unsqueeze_", "expand", "expand_as", "repeat", "chunk", "split", "unbind", "to", "type",
    "type_as", "float", "double", "half", "bfloat16", "cpu", "cuda", "detach", "detach_",
    "clone", "narrow", "select", "requires_grad_", "__getitem__", "movedim", "swapaxes",
})
META_METHODS = frozenset({
    "size", "dim", "numel", "nelement", "stride", "get_device", "is_contiguous",
    "element_size", "ndimension",
})
