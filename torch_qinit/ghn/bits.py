"""Per-node quantization inputs of the GHN: bits → embedding index.

Index 0 means float; bits b in 2..8 map to index b - 1.  One checkpoint thus
serves uniform 2/3/4/8-bit and per-layer mixed precision.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Union

import torch

from ..graph.arch_graph import ArchGraph
from ..quant.fake_quant import check_bits

#: bits spec: None (float), an int for every layer, or {module qualname: bits or None}.
BitsSpec = Union[None, int, Mapping[str, Union[int, None]]]
BITS_VOCAB = 8  # float + 2..8


def bits_index(b: int | None) -> int:
    b = check_bits(b)
    return 0 if b is None else b - 1


def node_bits(graph: ArchGraph, bits: BitsSpec, act_bits: BitsSpec = "same") -> tuple[torch.Tensor, torch.Tensor]:
    """LongTensors [N] of weight- and activation-bit indices for each node.

    A dict gives bits per module qualname; nodes it does not name (activations,
    pools) take the most common value in the dict, so a mixed net still tells the
    GHN roughly how coarse its activations are.  ``act_bits="same"`` mirrors `bits`.
    """
    if act_bits == "same":
        act_bits = bits
    w_idx = _per_node(graph, bits, "bits")
    a_idx = _per_node(graph, act_bits, "act_bits")
    return w_idx, a_idx


def _per_node(graph: ArchGraph, spec: BitsSpec, what: str) -> torch.Tensor:
    if isinstance(spec, Mapping):
        values = list(spec.values())
        for name, b in spec.items():
            check_bits(b, f"{what}[{name!r}]")
        default = max(set(values), key=values.count, default=None) if values else None
        out = [bits_index(spec.get(n.name, default)) for n in graph.nodes]
        return torch.tensor(out, dtype=torch.long)
    check_bits(spec, what)
    return torch.full((graph.num_nodes,), bits_index(spec), dtype=torch.long)
