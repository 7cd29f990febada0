"""Per-node quantization inputs of the GHN: bits → embedding index.

Index 0 means float; bits b in 2..8 map to index b - 1.  One checkpoint thus
serves uniform 2/3/4/8-bit and per-layer mixed precision.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..bits import SAME, BitsSpec, check_bits, check_spec
from ..graph.arch_graph import ArchGraph

__all__ = ["BITS_VOCAB", "BitsSpec", "bits_index", "node_bits"]

BITS_VOCAB = 8  # float + 2..8


def bits_index(b: int | None) -> int:
    b = check_bits(b)
    return 0 if b is None else b - 1


def node_bits(graph: ArchGraph, bits: BitsSpec, act_bits: BitsSpec | str = SAME) -> tuple[torch.Tensor, torch.Tensor]:
    """LongTensors [N] of weight- and activation-bit indices for each node.

    A dict gives bits per module qualname; nodes it does not name (activations,
    pools) take the most common value in the dict, so a mixed net still tells the
    GHN roughly how coarse its activations are.  Specs are resolved ones (`torch_qinit.bits`): None is
    float; ``act_bits="same"`` mirrors `bits`.
    """
    if act_bits == SAME:
        act_bits = bits
    w_idx = _per_node(graph, bits, "bits")
    a_idx = _per_node(graph, act_bits, "act_bits")
    return w_idx, a_idx


def _per_node(graph: ArchGraph, spec: BitsSpec, what: str) -> torch.Tensor:
    check_spec(spec, what)
    if isinstance(spec, Mapping):
        values = list(spec.values())
        default = max(set(values), key=values.count, default=None) if values else None
        out = [bits_index(spec.get(n.name, default)) for n in graph.nodes]
        return torch.tensor(out, dtype=torch.long)
    return torch.full((graph.num_nodes,), bits_index(spec), dtype=torch.long)
