"""The graph hypernetwork: ArchGraph(s) + bits → {parameter name: tensor}.

Encoder: a Graphormer-style transformer (GHN-3) whose attention gets a learned
bias per directed shortest-path distance; all nodes of all graphs in a batch
are processed at once (no Python loop per node, unlike ppuda's GatedGNN).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..graph.arch_graph import (
    DISTANCE_VOCAB,
    NUM_SHAPE_FEATURES,
    OP_KINDS,
    SHAPE_VOCAB,
    WEIGHT_OPS,
    ArchGraph,
)
from .bits import BITS_VOCAB, BitsSpec, node_bits
from .config import GHNConfig
from .decoder import BlockDecoder, shape_vector, shape_weight
from .signal import signal_rules

__all__ = ["GHN", "GraphormerLayer", "servable_targets"]

_NORM_OPS = {"batch_norm", "layer_norm", "group_norm"}


@dataclass
class _Target:
    """One parameter the GHN predicts: where its node sits and how to shape it."""

    graph: int
    node: int          # index into the graph's nodes
    name: str          # full parameter name in the model
    shape: tuple[int, ...]
    kind: str          # "weight", "bias", "norm_weight", "norm_bias"


def servable_targets(graph: ArchGraph, graph_index: int = 0) -> list[_Target]:
    """The parameters of `graph` that the GHN can predict (first occurrence of shared modules)."""
    seen: set[str] = set()
    targets = []
    for i, node in enumerate(graph.nodes):
        if not node.servable:
            continue
        for local, shape in node.params.items():
            full = f"{node.name}.{local}" if node.name else local
            if full in seen:
                continue
            kind = _kind(node.op, local, tuple(shape))
            if kind is not None:
                seen.add(full)
                targets.append(_Target(graph_index, i, full, tuple(shape), kind))
    return targets


def _kind(op: str, local: str, shape: tuple[int, ...]) -> str | None:
    if op in WEIGHT_OPS:
        if local == "weight" and len(shape) in (2, 3, 4, 5):  # 3 / 5: Conv1d / Conv3d, decoded as Conv2d
            return "weight"
        if local == "bias" and len(shape) == 1:
            return "bias"
    elif op in _NORM_OPS and len(shape) == 1:
        return {"weight": "norm_weight", "bias": "norm_bias"}.get(local)
    return None


def _as_2d(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape the decoder makes for a weight: a Conv1d's (out, in, k) as a Conv2d's (out, in, 1, k), the
    rectangular kernel shape it already serves (same fan-in, same kernel feature in the encoder); a Conv3d's
    (out, in, kd, kh, kw) as (out, in·kd, kh, kw): the depth taps become input channels, so the fan-in and
    the kh×kw kernel stay, and a row-major reshape gives back the 5-D weight.  (Folding depth into the kernel
    instead would make a 3×3×3 kernel 9×3, beyond the decoder's 7×7 and cut off.)"""
    if len(shape) == 3:
        return (shape[0], shape[1], 1, shape[2])
    if len(shape) == 5:
        return (shape[0], shape[1] * shape[2], shape[3], shape[4])
    return shape


def _static_tensors(graph: ArchGraph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(op ids, shape features, distances), cached on the graph: training reuses graphs."""
    cache = graph.__dict__.get("_ghn_static")
    if cache is None:
        cache = (graph.op_ids(), graph.shape_features(), graph.distances())
        graph.__dict__["_ghn_static"] = cache
    return cache


def _per_graph(spec, n: int, what: str) -> list:
    """A list spec gives one bits spec per graph; anything else is shared by all graphs."""
    if isinstance(spec, list):
        if len(spec) != n:
            raise ValueError(f"{what} lists {len(spec)} specs for {n} graphs")
        return spec
    return [spec] * n


class GraphormerLayer(nn.Module):
    """Pre-LN transformer layer; attention logits get a per-head distance bias."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.dist_bias = nn.Embedding(DISTANCE_VOCAB, heads)
        nn.init.zeros_(self.dist_bias.weight)

    def forward(self, x: torch.Tensor, dist: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        B, N, H = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, N, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.dist_bias(dist).permute(0, 3, 1, 2)  # [B, heads, N, N]
        bias = bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + self.proj(att.transpose(1, 2).reshape(B, N, H))
        return x + self.mlp(self.norm2(x))


class GHN(nn.Module):
    """Graph hypernetwork conditioned on per-node weight and activation bits.

    Examples:
        >>> from torch_qinit.graph import capture
        >>> ghn = GHN(GHNConfig(hidden=32, layers=1))
        >>> params = ghn(capture(model), bits=4)   # {name: tensor}, differentiable
    """

    def __init__(self, config: GHNConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GHNConfig()
        H = config.hidden
        if H % config.heads:
            raise ValueError(f"hidden ({H}) must be divisible by heads ({config.heads})")
        self.op_embed = nn.Embedding(len(OP_KINDS), H)
        self.shape_embed = nn.Embedding(NUM_SHAPE_FEATURES * SHAPE_VOCAB, H)
        self.w_bits_embed = nn.Embedding(BITS_VOCAB, H)
        self.a_bits_embed = nn.Embedding(BITS_VOCAB, H)
        self.layers = nn.ModuleList(GraphormerLayer(H, config.heads) for _ in range(config.layers))
        self.norm = nn.LayerNorm(H)
        self.decoder = BlockDecoder(config)
        # column j of the shape features reads rows [j*V, (j+1)*V) of the shared table
        self.register_buffer("_shape_offsets", torch.arange(NUM_SHAPE_FEATURES) * SHAPE_VOCAB, persistent=False)

    def encode(self, graphs: list[ArchGraph], bits: BitsSpec | list[BitsSpec],
               act_bits: BitsSpec | list[BitsSpec] = "same") -> tuple[torch.Tensor, torch.Tensor]:
        """Node embeddings [B, Nmax, hidden] and the validity mask [B, Nmax]."""
        dev = self._shape_offsets.device
        n_max = max(g.num_nodes for g in graphs)
        B = len(graphs)
        ops = torch.zeros(B, n_max, dtype=torch.long)
        shapes = torch.zeros(B, n_max, NUM_SHAPE_FEATURES, dtype=torch.long)
        dist = torch.zeros(B, n_max, n_max, dtype=torch.long)
        wb = torch.zeros(B, n_max, dtype=torch.long)
        ab = torch.zeros(B, n_max, dtype=torch.long)
        mask = torch.zeros(B, n_max, dtype=torch.bool)
        per_graph = _per_graph(bits, B, "bits"), _per_graph(act_bits, B, "act_bits")
        for b, g in enumerate(graphs):  # cheap padding of cached per-graph tensors
            n = g.num_nodes
            o, s, d = _static_tensors(g)
            ops[b, :n], shapes[b, :n], dist[b, :n, :n], mask[b, :n] = o, s, d, True
            wb[b, :n], ab[b, :n] = node_bits(g, per_graph[0][b], per_graph[1][b])
        ops, shapes, dist, wb, ab, mask = (t.to(dev) for t in (ops, shapes, dist, wb, ab, mask))
        x = (self.op_embed(ops) + self.shape_embed(shapes + self._shape_offsets).sum(-2)
             + self.w_bits_embed(wb) + self.a_bits_embed(ab))
        for layer in self.layers:
            x = layer(x, dist, mask)
        return self.norm(x), mask

    def forward(self, graphs: ArchGraph | list[ArchGraph], bits: BitsSpec | list[BitsSpec] = None,
                act_bits: BitsSpec | list[BitsSpec] = "same"
                ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Predict parameters.  One graph → one dict; a list → a list of dicts.

        `bits`/`act_bits`: None (float), an int in 2..8, or {module qualname: bits};
        with a list of graphs, a list gives one such spec per graph.
        Only servable parameters appear in the result (see `servable_targets`).
        """
        single = isinstance(graphs, ArchGraph)
        graph_list = [graphs] if single else list(graphs)
        if not graph_list:
            raise ValueError("GHN needs at least one graph")
        h, _ = self.encode(graph_list, bits, act_bits)
        targets = [t for gi, g in enumerate(graph_list) for t in servable_targets(g, gi)]
        out: list[dict[str, torch.Tensor]] = [{} for _ in graph_list]
        if targets:
            # one decoder row per (graph, node) that owns a target
            rows: dict[tuple[int, int], int] = {}
            for t in targets:
                rows.setdefault((t.graph, t.node), len(rows))
            keys = list(rows)
            idx_g = torch.tensor([k[0] for k in keys], device=h.device)
            idx_n = torch.tensor([k[1] for k in keys], device=h.device)
            h_rows = h[idx_g, idx_n]
            gains = self.decoder.gains(h_rows)
            version = self.config.decoder_version
            weight_targets = [t for t in targets if t.kind == "weight"]
            rules = [signal_rules(g) if version >= 2 else None for g in graph_list]
            patterns = self.decoder.patterns(
                h_rows[[rows[(t.graph, t.node)] for t in weight_targets]], [_as_2d(t.shape) for t in weight_targets],
                [rules[t.graph] is None or not rules[t.graph][t.node].output for t in weight_targets])
            pattern_of = {id(t): p for t, p in zip(weight_targets, patterns)}
            vec_targets: dict[int, list[_Target]] = {}
            for t in targets:
                if t.kind == "weight":
                    rule = rules[t.graph][t.node] if rules[t.graph] is not None else None
                    pattern = pattern_of[id(t)]  # decoded for this call alone: without autograd, scaled in place
                    out[t.graph][t.name] = shape_weight(pattern, gains[rows[(t.graph, t.node)]], rule,
                                                        inplace=not pattern.requires_grad).reshape(t.shape)
                else:
                    vec_targets.setdefault(t.shape[0], []).append(t)
            for size, group in vec_targets.items():  # one decode per vector length, not per node
                r = torch.tensor([rows[(t.graph, t.node)] for t in group], device=h.device)
                vecs = self.decoder.vectors(h_rows[r], size)
                for j, t in enumerate(group):
                    which = {"bias": 0, "norm_weight": 1, "norm_bias": 2}[t.kind]
                    out[t.graph][t.name] = shape_vector(vecs[j, which], t.kind, version)
        return out[0] if single else out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
