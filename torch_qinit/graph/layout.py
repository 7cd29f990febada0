"""Transposed convolutions: the GHN sees their weight as a conv's, the layer stores it transposed.

``nn.ConvTranspose{1,2,3}d`` stores its weight as (in, out / groups, *kernel), a conv as (out, in / groups,
*kernel). The graph presents a transposed conv to the GHN as the conv with the same channels, groups and
kernel (:func:`conv_layout`), so it gets a prediction of the layout the decoder knows, with one filter per
output channel; :func:`to_stored_layout` swaps the two channel axes, group by group, before anything is
written or run. The spatial flip that makes a transposed conv the adjoint of a conv is left out: an
initialization has no preferred orientation.
"""
from __future__ import annotations

import torch

from .arch_graph import ArchGraph

__all__ = ["conv_layout", "swap_channel_axes", "to_stored_layout"]


def conv_layout(shape: tuple[int, ...], groups: int) -> tuple[int, ...]:
    """(out, in / groups, *kernel) of a transposed conv whose stored weight has `shape` (in, out / groups, *kernel)."""
    cin, out_per_group, *kernel = shape
    return (out_per_group * groups, cin // groups, *kernel)


def swap_channel_axes(w: torch.Tensor, groups: int) -> torch.Tensor:
    """(a, b / groups, *k) -> (b, a / groups, *k), keeping each group's block together; its own inverse."""
    a, b_per_group, *kernel = w.shape
    blocks = w.reshape(groups, a // groups, b_per_group, *kernel)
    return blocks.transpose(1, 2).reshape(groups * b_per_group, a // groups, *kernel)


def to_stored_layout(graph: ArchGraph, preds: dict[str, torch.Tensor]) -> int:
    """Turn, in `preds` (updated in place), the conv-layout weight predicted for each transposed conv of
    `graph` into the layout the layer stores; returns how many were turned."""
    turned = 0
    for node in graph.nodes:
        if not node.attrs.get("transposed"):
            continue
        name = f"{node.name}.weight" if node.name else "weight"
        w = preds.get(name)
        if w is not None:
            preds[name] = swap_channel_axes(w, int(node.attrs.get("groups", 1)))
            turned += 1
    return turned
