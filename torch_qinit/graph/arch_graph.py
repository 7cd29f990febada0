"""`ArchGraph`: a network's computational graph, as the GHN reads it.

Nodes are ops (ARCHITECTURE.md §2 "Capture"), edges are data flow.  The tensors a GNN
needs (op ids, bucketed shape features, shortest-path distances) are derived
on demand, so a graph stays a plain, inspectable record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["ArchGraph", "Node", "OP_KINDS", "OP_INDEX", "WEIGHT_OPS", "SERVABLE_OPS", "CHANNEL_BUCKETS",
           "NUM_SHAPE_FEATURES", "SHAPE_VOCAB", "MAX_DISTANCE", "DISTANCE_VOCAB", "bucket_channels"]

#: The op vocabulary.  Order matters: it is the GHN's op-embedding index.
OP_KINDS: tuple[str, ...] = (
    "input", "output", "other",
    "conv", "dw_conv", "group_conv", "linear",
    "batch_norm", "layer_norm", "group_norm",
    "relu", "relu6", "hardswish", "gelu", "silu", "sigmoid", "tanh", "leaky_relu", "other_act",
    "max_pool", "avg_pool", "global_pool",
    "add", "mul", "concat", "flatten",
)
OP_INDEX: dict[str, int] = {op: i for i, op in enumerate(OP_KINDS)}

#: Ops with a conv/linear weight (what per-layer bit widths apply to).
WEIGHT_OPS: frozenset[str] = frozenset({"conv", "dw_conv", "group_conv", "linear"})
#: Ops whose parameters the GHN predicts.
SERVABLE_OPS: frozenset[str] = frozenset(
    {"conv", "dw_conv", "group_conv", "linear", "batch_norm", "layer_norm", "group_norm"}
)

#: Buckets for channel counts; a count maps to the first bucket >= it.
CHANNEL_BUCKETS: tuple[int, ...] = (1, 2, 3, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048)
#: Shape feature columns: out channels, in channels (per group), kernel, stride, is-grouped.
NUM_SHAPE_FEATURES = 5
#: Vocabulary size of each shape-feature column (all columns share one table).
SHAPE_VOCAB = len(CHANNEL_BUCKETS) + 2
#: Distances are capped here; see `ArchGraph.distances`.
MAX_DISTANCE = 8
DISTANCE_VOCAB = 2 * MAX_DISTANCE + 2


def bucket_channels(n: int) -> int:
    """Bucket id (1-based; 0 means 'no value') of a channel count."""
    for i, b in enumerate(CHANNEL_BUCKETS):
        if n <= b:
            return i + 1
    return len(CHANNEL_BUCKETS) + 1


@dataclass
class Node:
    """One op of the graph.

    `name` is the module's qualified name for module ops (parameters live at
    ``f"{name}.{local}"``), or the fx/functional op name otherwise.
    `params` maps the module's *direct* parameter names to their shapes.
    `attrs` holds kernel/stride/groups/... where they apply.
    """

    op: str
    name: str
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in OP_INDEX:
            raise ValueError(f"unknown op kind {self.op!r}; expected one of {OP_KINDS}")

    @property
    def servable(self) -> bool:
        """True when the GHN predicts this node's parameters."""
        return self.op in SERVABLE_OPS and bool(self.params)

    def param_names(self) -> list[str]:
        return [f"{self.name}.{p}" if self.name else p for p in self.params]


@dataclass
class ArchGraph:
    """A captured architecture: ``nodes``, directed ``edges`` (src, dst), and
    ``method``, the capture path used ("fx", "hooks" or "module_order")."""

    nodes: list[Node]
    edges: list[tuple[int, int]]
    method: str

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def op_ids(self) -> torch.Tensor:
        """LongTensor [N]: index of each node's op in `OP_KINDS`."""
        return torch.tensor([OP_INDEX[n.op] for n in self.nodes], dtype=torch.long)

    def shape_features(self) -> torch.Tensor:
        """LongTensor [N, 5]: bucketed (out ch, in ch per group, kernel, stride, grouped)."""
        rows = []
        for n in self.nodes:
            w = n.params.get("weight")
            out_c = in_c = kernel = stride = 0
            if w is not None:
                out_c = bucket_channels(w[0])
                if len(w) >= 2:
                    in_c = bucket_channels(w[1])
                if len(w) >= 3:
                    kernel = min(int(w[2]), SHAPE_VOCAB - 1)
            s = n.attrs.get("stride", 0)
            if isinstance(s, (tuple, list)):
                s = s[0]
            stride = min(int(s or 0), SHAPE_VOCAB - 1)
            grouped = 2 if int(n.attrs.get("groups", 1) or 1) > 1 else 1
            rows.append((out_c, in_c, kernel, stride, grouped))
        return torch.tensor(rows, dtype=torch.long).reshape(len(self.nodes), NUM_SHAPE_FEATURES)

    def distances(self) -> torch.Tensor:
        """LongTensor [N, N] of directed hop distances, encoded for an embedding:
        0 = self, d in 1..MAX_DISTANCE = i reaches j in d hops (capped),
        MAX_DISTANCE + d = j reaches i in d hops, 2*MAX_DISTANCE + 1 = unrelated."""
        n = len(self.nodes)
        adj = torch.zeros(n, n)
        if self.edges:
            src, dst = zip(*self.edges)
            adj[list(src), list(dst)] = 1.0
        # Hop layers by frontier expansion (matmuls, not a BFS per node): exact up to the cap.
        fwd = torch.full((n, n), -1, dtype=torch.long)
        fwd.fill_diagonal_(0)
        frontier = torch.eye(n)
        for d in range(1, MAX_DISTANCE + 1):
            frontier = ((frontier @ adj) > 0).float()
            new = (frontier > 0) & (fwd < 0)
            fwd[new] = d
        # Anything reachable further away is marked at the cap: transitive closure by squaring.
        reach = ((adj + torch.eye(n)) > 0).float()
        for _ in range(max(1, (n - 1).bit_length())):
            reach = ((reach @ reach) > 0).float()
        fwd[(reach > 0) & (fwd < 0)] = MAX_DISTANCE
        out = torch.full((n, n), 2 * MAX_DISTANCE + 1, dtype=torch.long)
        f = fwd.clamp(max=MAX_DISTANCE)
        reach = fwd > 0
        out[reach] = f[reach]
        back = reach.T & ~reach
        out[back] = MAX_DISTANCE + f.T[back]
        out.fill_diagonal_(0)
        return out

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """{full parameter name: shape} over all nodes (first occurrence wins)."""
        out: dict[str, tuple[int, ...]] = {}
        for node in self.nodes:
            for local, shape in node.params.items():
                out.setdefault(f"{node.name}.{local}" if node.name else local, tuple(shape))
        return out

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        ops = ", ".join(f"{k}×{v}" for k, v in sorted(counts.items()))
        return f"ArchGraph({len(self.nodes)} nodes, {len(self.edges)} edges, via {self.method}: {ops})"
