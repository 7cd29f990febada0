"""Capture path 2: the executed path of one forward pass, recorded by forward hooks in call order.

Leaf modules are connected by tensor identity; functional ops are invisible on this path.
"""
from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .arch_graph import ArchGraph, Node
from .ops import GraphBuilder, dedup, direct_param_node, module_node, ordered_modules
from .snapshot import tensors_in, untouched

__all__ = ["capture_hooks_retry", "example_input_of"]

logger = logging.getLogger(__name__)


def example_input_of(model: nn.Module, example_input: Any) -> Any:
    """`example_input`, else the model's own ``example_input`` / ``example_input_array`` attribute, else None."""
    if example_input is not None:
        return example_input
    for attr in ("example_input", "example_input_array"):
        value = getattr(model, attr, None)
        if isinstance(value, torch.Tensor) or (
                isinstance(value, (tuple, list, dict)) and any(True for _ in tensors_in(value))):
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
    order = ordered_modules(model)
    b = GraphBuilder()
    b.add(Node("input", "input"), [])
    producers: dict[int, tuple[weakref.ref, list[int]]] = {}
    last = [0]

    def lookup(t: torch.Tensor) -> list[int] | None:
        entry = producers.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        return None

    def record(out: Any, targets: list[int]) -> None:
        for t in tensors_in(out):
            try:
                producers[id(t)] = (weakref.ref(t), targets)
            except TypeError:
                pass

    def input_preds(args: Any, kwargs: Any) -> list[int]:
        preds: list[int] = []
        for t in tensors_in((args, kwargs)):
            found = lookup(t)
            if found:
                preds.extend(found)
        return dedup(preds) or [last[0]]

    def leaf_hook(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
            preds = input_preds(args, kwargs)
            node = module_node(mod, name, canonical)
            if node is None:
                record(out, preds)
                return
            idx = b.add(node, preds)
            last[0] = idx
            record(out, [idx])
        return hook

    def holder_hook(name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
            node = direct_param_node(mod, name, canonical)
            if node is None:
                return
            preds = []
            for t in tensors_in(out):
                preds.extend(lookup(t) or [])
            idx = b.add(node, dedup(preds) or [last[0]])
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
    for t in tensors_in(out):
        out_preds.extend(lookup(t) or [])
    b.add(Node("output", "output"), dedup(out_preds) or [last[0]])
    return b.graph("hooks")


def capture_hooks_retry(model: nn.Module, example: Any, canonical: dict[int, str]) -> ArchGraph:
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
