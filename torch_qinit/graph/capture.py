"""Capture an `nn.Module` as an `ArchGraph` (DESIGN §2 'graph').

Three paths, tried in order; the one used is recorded in ``ArchGraph.method``:

1. ``"fx"``: `torch.fx` symbolic tracing with a tracer that keeps parameterized
   modules and known op modules (activations, pools, flatten, dropout, ...) as
   leaves.  Functional ops between them (``x + y``, ``torch.cat``, ``F.relu``,
   ``x.mean((2, 3))``, ...) become nodes too.
2. ``"hooks"``: when fx fails (data-dependent control flow and similar), one
   forward pass on an example input, recording leaf modules in call order with
   forward hooks and connecting them by tensor identity.  Functional ops are
   invisible on this path.
3. ``"module_order"``: leaf modules in ``named_modules()`` order, chained.

Capture never changes the model: fx's temporary tensor-constant attributes are
removed, and the hooks pass runs under ``torch.no_grad()`` with buffers,
train/eval flags and the RNG state restored, and every hook removed.
"""
from __future__ import annotations

import builtins
import inspect
import logging
import operator
import warnings
import weakref
from collections.abc import Iterator
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .arch_graph import SERVABLE_OPS, ArchGraph, Node

__all__ = ["capture"]

logger = logging.getLogger(__name__)

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
    nn.LayerNorm, nn.GroupNorm, nn.Flatten, nn.Unflatten,
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


def _is_leaf(m: nn.Module) -> bool:
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


def _first(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return v[0] if len(v) else None
    return v


def _is_one(size: Any) -> bool:
    if isinstance(size, (tuple, list)):
        return len(size) > 0 and all(s == 1 for s in size)
    return size == 1


def _module_kind(m: nn.Module) -> tuple[str | None, dict[str, Any]]:
    """(op kind, attrs) of a leaf module; kind None means 'skip (bypass)'."""
    if isinstance(m, _SKIP_MODULES):
        return None, {}
    if isinstance(m, nn.modules.conv._ConvNd):
        attrs: dict[str, Any] = {
            "kernel": int(_first(m.kernel_size)),
            "stride": int(_first(m.stride)),
            "groups": int(m.groups),
            "padding": m.padding if isinstance(m.padding, str) else int(_first(m.padding)),
        }
        if getattr(m, "transposed", False):
            return "other", attrs  # weight layout (in, out/groups, ...) differs from conv
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
    for cls, kind in _ACT_MODULES:
        if isinstance(m, cls):
            return kind, {}
    if isinstance(m, (nn.Flatten, nn.Unflatten)):
        return "flatten", {}
    pooling = nn.modules.pooling
    if isinstance(m, (pooling._AdaptiveAvgPoolNd, pooling._AdaptiveMaxPoolNd)):
        attrs = {"output_size": m.output_size}
        if _is_one(m.output_size):
            return "global_pool", attrs
        return ("avg_pool" if isinstance(m, pooling._AdaptiveAvgPoolNd) else "max_pool"), attrs
    if isinstance(m, (pooling._MaxPoolNd, pooling._AvgPoolNd)):
        attrs = {"kernel": int(_first(m.kernel_size))}
        stride = _first(m.stride)
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


def _module_node(m: nn.Module, name: str, canonical: dict[int, str]) -> Node | None:
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
    if kind in SERVABLE_OPS and (nested or has_lazy or not set(params) <= _SERVABLE_PARAM_NAMES):
        kind = "other"  # parametrizations, weight_norm's weight_g/_v, lazy shapes...
    if kind == "other_act" and params:
        kind = "other"
    if kind == "other":
        attrs = dict(attrs, module_type=type(m).__name__)
    if tied:
        attrs = dict(attrs, tied=tied)
    return Node(kind, name, params, attrs)


def _direct_param_node(m: nn.Module, name: str, canonical: dict[int, str]) -> Node | None:
    """An "other" node for the direct parameters of a traced-through module."""
    params = {}
    for local, p in _param_entries(m, recurse=False):
        full = f"{name}.{local}" if name else local
        if canonical.get(id(p), full) == full:
            params[local] = tuple(p.shape)
    if not params:
        return None
    return Node("other", name, params, {"module_type": type(m).__name__})


def _ordered_modules(model: nn.Module) -> list[tuple[str, nn.Module, bool]]:
    """(name, module, is_leaf): top-most leaves in ``named_modules()`` order, plus
    traced-through modules holding direct parameters, each after its children."""
    out: list[tuple[str, nn.Module, bool]] = []
    seen: set[int] = set()

    def visit(prefix: str, m: nn.Module) -> None:
        if id(m) in seen:
            return
        seen.add(id(m))
        if prefix and _is_leaf(m):
            out.append((prefix, m, True))
            return
        for child_name, child in m.named_children():
            visit(f"{prefix}.{child_name}" if prefix else child_name, child)
        if _has_direct_params(m):  # after its children, as the hooks path sees it
            out.append((prefix, m, False))

    visit("", model)
    return out


def _canonical_names(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


# --------------------------------------------------------------------------- #
# Graph assembly helper
# --------------------------------------------------------------------------- #
class _Builder:
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


def _dedup(xs: list[int]) -> list[int]:
    return list(dict.fromkeys(xs))


# --------------------------------------------------------------------------- #
# Path 1: torch.fx
# --------------------------------------------------------------------------- #
class _LeafTracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:  # noqa: D102
        return _is_leaf(m)


def _table(pairs: list[tuple[str, list[Any]]]) -> dict[Any, str]:
    out: dict[Any, str] = {}
    for kind, fns in pairs:
        for fn in fns:
            if fn is not None:
                out[fn] = kind
    return out


def _fns(mod: Any, *names: str) -> list[Any]:
    return [getattr(mod, n, None) for n in names]


_FUNCTION_KINDS: dict[Any, str] = _table([
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
_ADAPTIVE_FUNCTIONS: dict[Any, str] = _table([
    ("avg_pool", _fns(F, "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d")
     + _fns(torch, "adaptive_avg_pool1d")),
    ("max_pool", _fns(F, "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d")
     + _fns(torch, "adaptive_max_pool1d")),
])
_REDUCE_FUNCTIONS = frozenset(fn for fn in _fns(torch, "mean", "amax") if fn is not None)
_SKIP_FUNCTIONS = frozenset(fn for fn in [
    operator.getitem, builtins.getattr, torch._assert,
    getattr(torch.fx._symbolic_trace, "_assert_is_none", None),
    *_fns(F, "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
          "feature_alpha_dropout"),
    *_fns(torch, "dropout", "permute", "transpose", "t", "squeeze", "unsqueeze", "chunk",
          "split", "unbind", "narrow", "select", "clone", "detach", "movedim", "swapaxes"),
] if fn is not None)
_GUARDS = frozenset(fn for fn in (
    operator.eq, torch._assert, getattr(torch.fx._symbolic_trace, "_assert_is_none", None),
) if fn is not None)
_META_FUNCTIONS = frozenset([builtins.len, *[fn for fn in _fns(torch, "numel") if fn is not None]])
_META_ATTRS = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout"})

_METHOD_KINDS: dict[str, str] = {
    "add": "add", "add_": "add", "__add__": "add", "__radd__": "add", "__iadd__": "add",
    "mul": "mul", "mul_": "mul", "__mul__": "mul", "__rmul__": "mul", "__imul__": "mul",
    "flatten": "flatten", "view": "flatten", "reshape": "flatten",
    "view_as": "flatten", "reshape_as": "flatten",
    "relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
    "tanh": "tanh", "tanh_": "tanh",
    "softmax": "other_act", "log_softmax": "other_act",
}
_REDUCE_METHODS = frozenset({"mean", "amax"})
_SKIP_METHODS = frozenset({
    "contiguous", "permute", "transpose", "transpose_", "t", "squeeze", "squeeze_", "unsqueeze",
    "unsqueeze_", "expand", "expand_as", "repeat", "chunk", "split", "unbind", "to", "type",
    "type_as", "float", "double", "half", "bfloat16", "cpu", "cuda", "detach", "detach_",
    "clone", "narrow", "select", "requires_grad_", "__getitem__", "movedim", "swapaxes",
})
_META_METHODS = frozenset({
    "size", "dim", "numel", "nelement", "stride", "get_device", "is_contiguous",
    "element_size", "ndimension",
})


def _arg(node: torch.fx.Node, pos: int, key: str, default: Any = None) -> Any:
    if len(node.args) > pos:
        return node.args[pos]
    return node.kwargs.get(key, default)


def _is_spatial_reduce(node: torch.fx.Node, self_pos: int) -> bool:
    """``x.mean(dims)`` over spatial dims (all >= 2, or negative)."""
    dims = _arg(node, self_pos + 1, "dim")
    if isinstance(dims, int):
        dims = (dims,)
    if not isinstance(dims, (tuple, list)) or not dims:
        return False
    return all(isinstance(d, int) and (d >= 2 or d < 0) for d in dims)


def _pool_attrs(node: torch.fx.Node) -> dict[str, Any]:
    kernel = _first(_arg(node, 1, "kernel_size"))
    stride = _first(_arg(node, 2, "stride"))
    attrs: dict[str, Any] = {}
    if isinstance(kernel, int):
        attrs["kernel"] = kernel
        attrs["stride"] = stride if isinstance(stride, int) else kernel
    return attrs


def _target_name(target: Any) -> str:
    if isinstance(target, str):
        return target
    return getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)


def _fx_kind(node: torch.fx.Node, meta_inputs: bool) -> tuple[str, dict[str, Any]]:
    """Classify a call_function / call_method node.

    Returns (kind, attrs), where kind is an op kind, "skip" (bypass) or "meta"
    (shape bookkeeping, no data flow)."""
    target = node.target
    if node.op == "call_function":
        if target in _META_FUNCTIONS:
            return "meta", {}
        if target is builtins.getattr and len(node.args) > 1 and node.args[1] in _META_ATTRS:
            return "meta", {}
        if meta_inputs:
            return "meta", {}
        if target in _SKIP_FUNCTIONS:
            return "skip", {}
        if target in _FUNCTION_KINDS:
            kind = _FUNCTION_KINDS[target]
            return kind, (_pool_attrs(node) if kind in ("max_pool", "avg_pool") else {})
        if target in _ADAPTIVE_FUNCTIONS:
            size = _arg(node, 1, "output_size")
            if _is_one(size):
                return "global_pool", {}
            return _ADAPTIVE_FUNCTIONS[target], {}
        if target in _REDUCE_FUNCTIONS:
            return ("global_pool" if _is_spatial_reduce(node, 0) else "other"), {}
        return "other", {"fn": _target_name(target)}
    # call_method
    if target in _META_METHODS:
        return "meta", {}
    if meta_inputs:
        return "meta", {}
    if target in _SKIP_METHODS:
        return "skip", {}
    if target in _METHOD_KINDS:
        return _METHOD_KINDS[target], {}
    if target in _REDUCE_METHODS:
        return ("global_pool" if _is_spatial_reduce(node, 0) else "other"), {}
    return "other", {"fn": f"Tensor.{target}"}


def _concrete_defaults(model: nn.Module) -> dict[str, Any]:
    """Specialize forward() arguments whose defaults are simple constants
    (``flag=False``, ``mask=None``), as a plain ``model(x)`` call would."""
    try:
        sig = inspect.signature(inspect.unwrap(type(model).forward))
    except (TypeError, ValueError):
        return {}
    out = {}
    for i, (name, p) in enumerate(sig.parameters.items()):
        if i == 0 or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is not inspect.Parameter.empty and (
                p.default is None or isinstance(p.default, (bool, int, float, str))):
            out[name] = p.default
    return out


def _trace(model: nn.Module) -> torch.fx.Graph:
    """fx-trace `model`, undoing the attributes fx adds to the root."""
    before = set(vars(model))
    tracer = _LeafTracer()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tracer.trace(model, concrete_args=_concrete_defaults(model) or None)
    finally:
        for key in set(vars(model)) - before:  # e.g. `_tensor_constant0`
            del vars(model)[key]


def _specialized(node: torch.fx.Node) -> bool:
    """A placeholder fixed to its default value (or an unused defaulted one)."""
    return bool(node.args) and all(
        u.op == "call_function" and u.target in _GUARDS for u in node.users)


def _capture_fx(model: nn.Module, canonical: dict[int, str]) -> ArchGraph:
    fx_graph = _trace(model)
    b = _Builder()
    kept: dict[torch.fx.Node, list[int]] = {}  # fx node -> the kept graph nodes it stands for
    meta: set[torch.fx.Node] = set()
    param_nodes: set[int] = set()  # graph nodes of raw parameters (get_attr)
    output_preds: list[int] = []
    if not any(n.op == "placeholder" and not _specialized(n) for n in fx_graph.nodes):
        b.add(Node("input", "input"), [])  # forward() without tensor arguments

    def preds_of(node: torch.fx.Node) -> list[int]:
        out: list[int] = []
        for inp in node.all_input_nodes:
            if inp not in meta:
                out.extend(kept.get(inp, ()))
        return _dedup(out)

    for node in fx_graph.nodes:
        if node.op == "placeholder":
            if _specialized(node):
                meta.add(node)
                continue
            kept[node] = [b.add(Node("input", node.target), [])]
        elif node.op == "output":
            output_preds = preds_of(node)
        elif node.op == "get_attr":
            try:
                p = model.get_parameter(node.target)
            except (AttributeError, TypeError):
                kept[node] = []  # a buffer or tensor constant: no graph node
                continue
            prefix, _, local = node.target.rpartition(".")
            canon = canonical.get(id(p), node.target)
            if canon != node.target:
                prefix, _, local = canon.rpartition(".")
            kept[node] = [b.add(Node("other", prefix, {local: tuple(p.shape)},
                                     {"get_attr": node.target}), [])]
            param_nodes.add(kept[node][0])
        elif node.op == "call_module":
            preds = preds_of(node)
            gnode = _module_node(model.get_submodule(node.target), node.target, canonical)
            kept[node] = preds if gnode is None else [b.add(gnode, preds)]
        else:  # call_function / call_method
            inputs = node.all_input_nodes
            meta_inputs = bool(inputs) and all(i in meta for i in inputs)
            kind, attrs = _fx_kind(node, meta_inputs)
            if kind == "meta":
                meta.add(node)
                continue
            preds = preds_of(node)
            if kind == "flatten" and preds and all(p in param_nodes for p in preds):
                kind = "skip"  # reshaping a raw parameter (`self.scale.view(1, -1, 1, 1)`)
            if kind == "skip" or (not preds and kind == "other" and not inputs):
                kept[node] = preds  # bookkeeping, or a constant factory like torch.zeros
                continue
            kept[node] = [b.add(Node(kind, node.name, {}, attrs), preds)]
    b.add(Node("output", "output"), output_preds)
    return b.graph("fx")


# --------------------------------------------------------------------------- #
# Path 2: forward hooks on one forward pass
# --------------------------------------------------------------------------- #
def _tensors(obj: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 8 and isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o, depth + 1)
    elif depth < 8 and isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o, depth + 1)


def _example_input(model: nn.Module, example_input: Any) -> Any:
    if example_input is not None:
        return example_input
    for attr in ("example_input", "example_input_array"):
        value = getattr(model, attr, None)
        if isinstance(value, torch.Tensor) or (
                isinstance(value, (tuple, list, dict)) and any(True for _ in _tensors(value))):
            return value
    return None


def _call(model: nn.Module, example: Any) -> Any:
    if isinstance(example, (tuple, list)):
        return model(*example)
    if isinstance(example, dict):
        return model(**example)
    return model(example)


def _capture_hooks(model: nn.Module, example: Any, canonical: dict[int, str],
                   eval_mode: bool = False) -> ArchGraph:
    if any(isinstance(t, (nn.parameter.UninitializedParameter, nn.parameter.UninitializedBuffer))
           for t in (*model.parameters(), *model.buffers())):
        raise RuntimeError("lazy modules would be materialized by a forward pass")
    order = _ordered_modules(model)
    b = _Builder()
    b.add(Node("input", "input"), [])
    producers: dict[int, tuple[weakref.ref, list[int]]] = {}
    last = [0]

    def lookup(t: torch.Tensor) -> list[int] | None:
        entry = producers.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        return None

    def record(out: Any, targets: list[int]) -> None:
        for t in _tensors(out):
            try:
                producers[id(t)] = (weakref.ref(t), targets)
            except TypeError:
                pass

    def input_preds(args: Any, kwargs: Any) -> list[int]:
        preds: list[int] = []
        for t in _tensors((args, kwargs)):
            found = lookup(t)
            if found:
                preds.extend(found)
        return _dedup(preds) or [last[0]]

    def leaf_hook(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
            preds = input_preds(args, kwargs)
            node = _module_node(mod, name, canonical)
            if node is None:
                record(out, preds)
                return
            idx = b.add(node, preds)
            last[0] = idx
            record(out, [idx])
        return hook

    def holder_hook(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
            node = _direct_param_node(mod, name, canonical)
            if node is None:
                return
            preds = []
            for t in _tensors(out):
                preds.extend(lookup(t) or [])
            idx = b.add(node, _dedup(preds) or [last[0]])
            last[0] = idx
            record(out, [idx])
        return hook

    record(example, [0])
    handles = []
    modules = list(model.modules())
    flags = [m.training for m in modules]
    saved = [(m, k, buf, buf.detach().clone()) for m in modules
             for k, buf in m._buffers.items() if buf is not None]
    devices = sorted({t.device.index or 0 for t in (*model.parameters(), *model.buffers(),
                                                     *_tensors(example)) if t.is_cuda})
    try:
        for name, m, is_leaf in order:
            handles.append(m.register_forward_hook(
                leaf_hook(name) if is_leaf else holder_hook(name), with_kwargs=True))
        if eval_mode:
            model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=devices), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = _call(model, example)
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for m, k, buf, copy in saved:
                m._buffers[k] = buf
                if not torch.equal(buf, copy):
                    buf.copy_(copy)
        for m, flag in zip(modules, flags):
            m.training = flag
    out_preds: list[int] = []
    for t in _tensors(out):
        out_preds.extend(lookup(t) or [])
    b.add(Node("output", "output"), _dedup(out_preds) or [last[0]])
    return b.graph("hooks")


def _capture_hooks_retry(model: nn.Module, example: Any, canonical: dict[int, str]) -> ArchGraph:
    """The hooks path in the model's own mode, then (if that forward fails in
    training mode, e.g. BatchNorm1d on a batch of one) once more in eval mode."""
    try:
        return _capture_hooks(model, example, canonical)
    except Exception as exc:  # noqa: BLE001
        if not any(m.training for m in model.modules()):
            raise
        logger.info("training-mode forward of %s failed (%s: %s); retrying in eval mode",
                    type(model).__name__, type(exc).__name__, exc)
        return _capture_hooks(model, example, canonical, eval_mode=True)


# --------------------------------------------------------------------------- #
# Path 3: module order
# --------------------------------------------------------------------------- #
def _capture_module_order(model: nn.Module, canonical: dict[int, str]) -> ArchGraph:
    b = _Builder()
    prev = b.add(Node("input", "input"), [])
    if _is_leaf(model):
        items = [("", model, True)]
    else:
        items = _ordered_modules(model)
    for name, m, is_leaf in items:
        node = _module_node(m, name, canonical) if is_leaf else _direct_param_node(m, name, canonical)
        if node is not None:
            prev = b.add(node, [prev])
    b.add(Node("output", "output"), [prev])
    return b.graph("module_order")


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
def capture(model: nn.Module, example_input: torch.Tensor | None = None) -> ArchGraph:
    """Capture `model`'s computational graph as an `ArchGraph`.

    Tries torch.fx symbolic tracing, then (given an example input, from the
    argument or the model's ``example_input`` / ``example_input_array``
    attribute) forward hooks on one forward pass, then module order.  The path
    used is in the result's ``.method``.  A model that is itself a single op
    module (``nn.Conv2d(...)``) gives input -> op -> output, with method
    ``"module_order"``.  The model is left unchanged.

    Args:
        model: the network to capture.
        example_input: an input for the hooks fallback (a tensor, or a tuple /
            dict of positional / keyword arguments).

    Raises:
        TypeError: if `model` is not an ``nn.Module``.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten())
        >>> capture(net).method
        'fx'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"capture() expects a torch.nn.Module, got {type(model).__name__}")
    canonical = _canonical_names(model)

    if _is_leaf(model):  # a single op module: fx would trace its functional internals
        return _capture_module_order(model, canonical)

    try:
        return _capture_fx(model, canonical)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "use a fallback"
        logger.info("fx tracing of %s failed (%s: %s); trying forward hooks",
                    type(model).__name__, type(exc).__name__, exc)

    example = _example_input(model, example_input)
    if example is None:
        logger.warning("fx tracing of %s failed and no example input is available "
                       "(pass example_input= or set model.example_input); capturing in "
                       "module order", type(model).__name__)
    else:
        try:
            return _capture_hooks_retry(model, example, canonical)
        except Exception as exc:  # noqa: BLE001
            logger.warning("forward-hook capture of %s failed (%s: %s); capturing in module order",
                           type(model).__name__, type(exc).__name__, exc)

    try:
        return _capture_module_order(model, canonical)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"could not build a graph of {type(model).__name__}: {exc}") from exc
