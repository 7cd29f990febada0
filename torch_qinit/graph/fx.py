"""Capture path 1: torch.fx symbolic tracing, and the one fx tracer of the library.

`trace` is shared with `torch_qinit.quant.bn_fold` (conv/BN pairs) and `quant.modules` (execution order):
one tracer class whose leaves a predicate decides, which removes the attributes fx adds to the root.
"""
from __future__ import annotations

import builtins
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .arch_graph import ArchGraph, Node
from .ops import (
    ADAPTIVE_FUNCTIONS,
    FUNCTION_KINDS,
    GUARDS,
    META_ATTRS,
    META_FUNCTIONS,
    META_METHODS,
    METHOD_KINDS,
    REDUCE_FUNCTIONS,
    REDUCE_METHODS,
    SKIP_FUNCTIONS,
    SKIP_METHODS,
    GraphBuilder,
    dedup,
    first_of,
    is_graph_leaf,
    is_one,
    module_node,
)

__all__ = ["LeafTracer", "trace", "capture_fx"]


# --------------------------------------------------------------------------- #
# Path 1: torch.fx
# --------------------------------------------------------------------------- #
class LeafTracer(torch.fx.Tracer):
    """A torch.fx tracer whose leaf modules `is_leaf(module)` decides; where it returns None (or without
    it), torch.fx's own rule holds (modules of torch.nn are leaves)."""

    def __init__(self, is_leaf: Callable[[nn.Module], bool | None] | None = None) -> None:
        super().__init__()
        self._is_leaf = is_leaf

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:  # noqa: D102
        decision = self._is_leaf(m) if self._is_leaf is not None else None
        return super().is_leaf_module(m, module_qualified_name) if decision is None else decision


def trace(model: nn.Module, is_leaf: Callable[[nn.Module], bool | None] | None = None, *,
          concrete_args: dict[str, Any] | None = None, quiet: bool = False) -> torch.fx.Graph:
    """The fx graph of `model` under a :class:`LeafTracer`; attributes fx adds to the root (constants such
    as ``_tensor_constant0``) are removed again, so tracing leaves the model as it was.  `quiet` silences
    the warnings fx emits while tracing.

    Examples:
        >>> graph = trace(nn.Sequential(nn.Linear(4, 2), nn.ReLU()))
        >>> [n.op for n in graph.nodes]
        ['placeholder', 'call_module', 'call_module', 'output']
    """
    before = set(vars(model))
    tracer = LeafTracer(is_leaf)
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
            return tracer.trace(model, concrete_args=concrete_args)
    finally:
        for key in set(vars(model)) - before:  # e.g. `_tensor_constant0`
            del vars(model)[key]


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
    kernel = first_of(_arg(node, 1, "kernel_size"))
    stride = first_of(_arg(node, 2, "stride"))
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
        if target in META_FUNCTIONS:
            return "meta", {}
        if target is builtins.getattr and len(node.args) > 1 and node.args[1] in META_ATTRS:
            return "meta", {}
        if meta_inputs:
            return "meta", {}
        if target in SKIP_FUNCTIONS:
            return "skip", {}
        if target in FUNCTION_KINDS:
            kind = FUNCTION_KINDS[target]
            return kind, (_pool_attrs(node) if kind in ("max_pool", "avg_pool") else {})
        if target in ADAPTIVE_FUNCTIONS:
            size = _arg(node, 1, "output_size")
            if is_one(size):
                return "global_pool", {}
            return ADAPTIVE_FUNCTIONS[target], {}
        if target in REDUCE_FUNCTIONS:
            return ("global_pool" if _is_spatial_reduce(node, 0) else "other"), {}
        return "other", {"fn": _target_name(target)}
    # call_method
    if target in META_METHODS:
        return "meta", {}
    if meta_inputs:
        return "meta", {}
    if target in SKIP_METHODS:
        return "skip", {}
    if target in METHOD_KINDS:
        return METHOD_KINDS[target], {}
    if target in REDUCE_METHODS:
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


def _specialized(node: torch.fx.Node) -> bool:
    """A placeholder fixed to its default value (or an unused defaulted one)."""
    return bool(node.args) and all(
        u.op == "call_function" and u.target in GUARDS for u in node.users)


def capture_fx(model: nn.Module, canonical: dict[int, str]) -> ArchGraph:
    """Path 1: the graph of leaf modules and functional ops that torch.fx traces (raises when it cannot)."""
    fx_graph = trace(model, is_graph_leaf, concrete_args=_concrete_defaults(model) or None, quiet=True)
    b = GraphBuilder()
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
        return dedup(out)

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
            gnode = module_node(model.get_submodule(node.target), node.target, canonical)
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
