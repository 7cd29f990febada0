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

Capture never changes the model.  fx tracing runs the model's Python code
(buffers are real tensors there, attribute assignments really happen) and the
hooks path runs a whole forward, so both run inside a snapshot: every
submodule's attributes, buffers (and, for the hooks path, parameters) and the
RNG state are put back afterwards (see `_Snapshot`), and every hook is removed.
`capture_with_note` also says why fx was not used.
"""
from __future__ import annotations

import builtins
import contextlib
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
from torch.utils._python_dispatch import TorchDispatchMode

from .arch_graph import SERVABLE_OPS, ArchGraph, Node

__all__ = ["capture", "capture_with_note", "untouched"]

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
# Leaving the model as it was
# --------------------------------------------------------------------------- #
_CONTAINER_TYPES = (list, dict, set, bytearray)


class _Snapshot:
    """What a forward on real tensors may change, saved so it can be put back.

    fx tracing runs the model's Python code: buffers are real tensors there
    (only parameters and inputs are proxies) and attribute assignments really
    happen; the hooks path runs the whole forward.  So capture saves, for every
    submodule, its ``__dict__`` (and the contents of list/dict/set attributes,
    which covers ``_buffers``, ``_modules``, ``_parameters`` and hook tables),
    plus a clone of every buffer (small: BN statistics, counters).  A buffer
    is copied back only where its value differs: version counters are not
    enough, since BatchNorm updates its running statistics inside the kernel.
    Parameters are large, so they are not cloned up front; see `_CopyOnWrite`.
    """

    def __init__(self, model: nn.Module) -> None:
        modules = list(model.modules())
        self.dicts = [(m.__dict__, dict(m.__dict__)) for m in modules]
        self.containers: list[tuple[Any, Any]] = []
        for d, _ in self.dicts:
            for v in d.values():
                if isinstance(v, _CONTAINER_TYPES):
                    self.containers.append((v, v.copy()))
        seen: set[int] = set()
        self.tensors: list[tuple[torch.Tensor, torch.Tensor]] = []
        for t in (b for m in modules for b in m._buffers.values() if b is not None):
            if id(t) in seen or not _restorable(t):
                continue
            seen.add(id(t))
            self.tensors.append((t, t.detach().clone()))

    def restore(self) -> None:
        for d, saved in self.dicts:
            for key in [k for k in d if k not in saved]:
                del d[key]
            for key, value in saved.items():
                if d.get(key, _MISSING) is not value:
                    d[key] = value
        for c, saved in self.containers:
            if isinstance(c, dict):
                if c.keys() != saved.keys() or any(c[k] is not v for k, v in saved.items()):
                    c.clear()
                    c.update(saved)
            elif isinstance(c, set):
                if c != saved:
                    c.clear()
                    c.update(saved)
            elif len(c) != len(saved) or any(a is not b for a, b in zip(c, saved)):
                c[:] = saved
        with torch.no_grad():
            for t, copy in self.tensors:
                if not torch.equal(t, copy):
                    t.copy_(copy)


_MISSING = object()


def _restorable(t: torch.Tensor) -> bool:
    # inference tensors cannot be written outside inference mode; meta and lazy ones hold no data
    return not (t.is_inference() or t.is_meta or isinstance(t, nn.parameter.UninitializedTensorMixin)
                or t.numel() == 0)


class _CopyOnWrite(TorchDispatchMode):
    """Saves a tensor the first time an op is about to write into its storage.

    Used for parameters during the hooks forward: cloning every parameter up
    front cost 165 ms of a 299 ms hooks capture of a 19M-parameter CNN, while
    a forward rarely writes its own parameters (``w.data.clamp_()``).  Writes
    through ``.data`` or views share the storage, so storages are matched.
    """

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        super().__init__()
        self.owners: dict[int, list[torch.Tensor]] = {}
        for t in tensors:
            if _restorable(t) and t.layout == torch.strided:
                self.owners.setdefault(t.untyped_storage().data_ptr(), []).append(t)
        self.saved: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        schema = func._schema
        if self.owners and schema.is_mutable:
            for i, arg in enumerate(schema.arguments):
                if arg.alias_info is None or not arg.alias_info.is_write:
                    continue
                value = args[i] if i < len(args) else kwargs.get(arg.name)
                for t in value if isinstance(value, (list, tuple)) else (value,):
                    if isinstance(t, torch.Tensor) and t.layout == torch.strided and t.numel():
                        ptr = t.untyped_storage().data_ptr()
                        if ptr in self.owners and ptr not in self.saved:
                            self.saved[ptr] = [(o, o.detach().clone()) for o in self.owners[ptr]]
        return func(*args, **kwargs)

    def restore(self) -> None:
        with torch.no_grad():
            for pairs in self.saved.values():
                for t, copy in pairs:
                    t.copy_(copy)


@contextlib.contextmanager
def untouched(model: nn.Module, example: Any = None, params: bool = False) -> Iterator[None]:
    """Run the body, then put `model` back as it was (attributes, buffers, RNG; parameters if `params`)."""
    devices = sorted({t.device.index or 0 for t in (*model.parameters(), *model.buffers(),
                                                     *_tensors(example)) if t.is_cuda})
    snapshot = _Snapshot(model)
    cow = _CopyOnWrite(list(model.parameters())) if params else None
    try:
        with torch.random.fork_rng(devices=devices), (cow if cow is not None else contextlib.nullcontext()):
            yield
    finally:
        if cow is not None:
            cow.restore()
        snapshot.restore()


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
    # The forward runs on real tensors: buffers, parameters, attributes, modes and RNG are put back.
    with untouched(model, example, params=True):
        try:
            for name, m, is_leaf in order:
                handles.append(m.register_forward_hook(
                    leaf_hook(name) if is_leaf else holder_hook(name), with_kwargs=True))
            if eval_mode:
                model.eval()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = _call(model, example)
        finally:
            for h in handles:
                h.remove()
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
def _reason(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def capture(model: nn.Module, example_input: torch.Tensor | None = None) -> ArchGraph:
    """Capture `model`'s computational graph as an `ArchGraph`.

    Tries torch.fx symbolic tracing, then (given an example input, from the
    argument or the model's ``example_input`` / ``example_input_array``
    attribute) forward hooks on one forward pass, then module order.  The path
    used is in the result's ``.method``; `capture_with_note` also says why fx
    was not used.  A model that is itself a single op module
    (``nn.Conv2d(...)``) gives input -> op -> output, with method
    ``"module_order"``.  The model is left unchanged: parameters, buffers,
    attributes, train/eval flags and the RNG state are as before.

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
    return capture_with_note(model, example_input)[0]


def capture_with_note(model: nn.Module, example_input: Any = None) -> tuple[ArchGraph, str]:
    """`capture`, plus a one-line note on why a fallback path was used ("" when fx traced it).

    Examples:
        >>> graph, note = capture_with_note(nn.Sequential(nn.Linear(4, 2)))
        >>> graph.method, note
        ('fx', '')
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"capture() expects a torch.nn.Module, got {type(model).__name__}")
    canonical = _canonical_names(model)

    if _is_leaf(model):  # a single op module: fx would trace its functional internals
        return _capture_module_order(model, canonical), ""

    if isinstance(model, torch.jit.ScriptModule):
        # Compiled TorchScript has no Python forward for fx or hooks to follow, and its
        # submodules are RecursiveScriptModules rather than nn layers.
        note = ("a torch.jit ScriptModule: its forward is compiled TorchScript, which torch.fx cannot trace "
                "and whose layers are not nn.Linear/nn.Conv modules; captured in module order, all as 'other'")
        return _capture_module_order(model, canonical), note

    try:
        with untouched(model):
            return _capture_fx(model, canonical), ""
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "use a fallback"
        fx_reason = _reason(exc)
        logger.info("fx tracing of %s failed (%s); trying forward hooks", type(model).__name__, fx_reason)

    example = _example_input(model, example_input)
    if example is None:
        logger.warning("fx tracing of %s failed and no example input is available "
                       "(pass example_input= or set model.example_input); capturing in "
                       "module order", type(model).__name__)
        note = (f"torch.fx could not trace {type(model).__name__} ({fx_reason}) and no example input was "
                "given (pass example_input=), so layers were chained in module order")
    else:
        try:
            graph = _capture_hooks_retry(model, example, canonical)
            return graph, (f"torch.fx could not trace {type(model).__name__} ({fx_reason}); used the executed "
                           "path of one forward pass on the example input")
        except Exception as exc:  # noqa: BLE001
            logger.warning("forward-hook capture of %s failed (%s); capturing in module order",
                           type(model).__name__, _reason(exc))
            note = (f"torch.fx could not trace {type(model).__name__} ({fx_reason}) and the forward pass on "
                    f"the example input failed ({_reason(exc)}), so layers were chained in module order")

    try:
        return _capture_module_order(model, canonical), note
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"could not build a graph of {type(model).__name__}: {exc}") from exc
