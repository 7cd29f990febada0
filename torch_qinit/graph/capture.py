"""Capture an `nn.Module` as an `ArchGraph` (ARCHITECTURE.md §2 "Capture").

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

import logging
from typing import Any

import torch
from torch import nn

from .arch_graph import ArchGraph, Node
from .fx import capture_fx
from .hooks import capture_hooks_retry, example_input_of
from .ops import GraphBuilder, canonical_names, direct_param_node, is_graph_leaf, module_node, ordered_modules
from .snapshot import untouched

__all__ = ["capture", "capture_with_note", "untouched"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- #
# Path 3: module order
# --------------------------------------------------------------------------- #
def _capture_module_order(model: nn.Module, canonical: dict[int, str]) -> ArchGraph:
    b = GraphBuilder()
    prev = b.add(Node("input", "input"), [])
    if is_graph_leaf(model):
        items = [("", model, True)]
    else:
        items = ordered_modules(model)
    for name, m, is_leaf in items:
        node = module_node(m, name, canonical) if is_leaf else direct_param_node(m, name, canonical)
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
    canonical = canonical_names(model)

    if is_graph_leaf(model):  # a single op module: fx would trace its functional internals
        return _capture_module_order(model, canonical), ""

    if isinstance(model, torch.jit.ScriptModule):
        # Compiled TorchScript has no Python forward for fx or hooks to follow, and its
        # submodules are RecursiveScriptModules rather than nn layers.
        note = ("a torch.jit ScriptModule: its forward is compiled TorchScript, which torch.fx cannot trace "
                "and whose layers are not nn.Linear/nn.Conv modules; captured in module order, all as 'other'")
        return _capture_module_order(model, canonical), note

    try:
        with untouched(model):
            return capture_fx(model, canonical), ""
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "use a fallback"
        fx_reason = _reason(exc)
        logger.info("fx tracing of %s failed (%s); trying forward hooks", type(model).__name__, fx_reason)

    example = example_input_of(model, example_input)
    if example is None:
        logger.warning("fx tracing of %s failed and no example input is available "
                       "(pass example_input= or set model.example_input); capturing in "
                       "module order", type(model).__name__)
        note = (f"torch.fx could not trace {type(model).__name__} ({fx_reason}) and no example input was "
                "given (pass example_input=), so layers were chained in module order")
    else:
        try:
            graph = capture_hooks_retry(model, example, canonical)
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
