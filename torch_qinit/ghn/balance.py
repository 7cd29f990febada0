"""Scale balancing: move scale between consecutive norm-free layers without changing the function.

Calibration (calibration.py) divides each norm-free layer by its output std, so the activations keep
their scale, but the layers' weights come out unequal: on the `classic` AlexNet-like net the calibrated
GHN-QAT weights sit at 0.34–0.74× He's fan-in std, layer to layer.  SGD's relative step on a layer grows
as its weights shrink, so the smallest layers take the longest steps; under SGD with momentum at lr 0.02
that net's loss rose 1.4 → 20.7 within 7 steps and the run ended at chance (the README's classic SGD table).

Between two layers joined only by ReLU, leaky ReLU, pooling or flatten, scale moves freely: these ops are
positively homogeneous per channel, so multiplying a layer's weight and bias by c and the next layer's
weight by 1/c leaves every output exactly as it was.  This module finds such joins in the graph and picks
the factors that give every layer of a chain the same fan-in-normalized weight RMS, the way He init
sizes them all alike.  Float outputs are unchanged up to rounding (checked by a forward pass in
``initialize_``), as is weight quantization, whose scale follows each tensor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call

from ..graph.arch_graph import WEIGHT_OPS, ArchGraph
from ..graph.capture import untouched
from .calibration import untied_state
from .signal import signal_rules

__all__ = ["BalanceResult", "ScaleLink", "balance_checked", "balance_scales", "scale_links"]

#: Ops a scale passes through unchanged and unmixed: f(c·x) = c·f(x) for c > 0, channel by channel.
#: (Dropout is not in the graph; ReLU6, GELU, SiLU, tanh and sigmoid are not homogeneous.)
HOMOGENEOUS = frozenset({"relu", "leaky_relu", "max_pool", "avg_pool", "global_pool", "flatten"})


@dataclass(frozen=True)
class ScaleLink:
    """`producer`'s output reaches exactly `consumers` (layer names), through homogeneous ops only,
    and nothing else reaches them: scaling the producer by c and the consumers by 1/c changes nothing."""

    producer: str
    consumers: tuple[str, ...]


@dataclass
class BalanceResult:
    """Per-layer factors applied to weights (``weight_factors``) and biases (``bias_factors``), and the
    spread of fan-in-normalized weight RMS (max / min) within the widest tree of links before and after;
    or why nothing was changed (`skipped`)."""

    weight_factors: dict[str, float] = field(default_factory=dict)
    bias_factors: dict[str, float] = field(default_factory=dict)
    spread_before: float = 1.0
    spread_after: float = 1.0
    skipped: str | None = None

    def summary(self) -> str:
        if self.skipped:
            return f"scale balancing skipped ({self.skipped})"
        if not self.weight_factors:
            return ""
        return (f"{len(self.weight_factors)} layers balanced (weight scale spread "
                f"{self.spread_before:.2f}x -> {self.spread_after:.2f}x, outputs unchanged)")


def scale_links(graph: ArchGraph) -> list[ScaleLink]:
    """Every join of `graph` across which scale can move, in graph order.

    A link starts at a conv/linear layer that no norm follows and ends at the conv/linear layers its output
    reaches through `HOMOGENEOUS` ops, provided the path neither branches off elsewhere (an add, a concat,
    the output, any other op) nor merges with another input.  A module called twice is never linked, nor
    a parametrized one (weight_norm, spectral_norm...), whose stored tensors may not carry a scale.
    """
    succ: dict[int, list[int]] = {}
    pred: dict[int, list[int]] = {}
    for s, d in graph.edges:
        succ.setdefault(s, []).append(d)
        pred.setdefault(d, []).append(s)
    counts: dict[str, int] = {}
    for node in graph.nodes:
        counts[node.name] = counts.get(node.name, 0) + 1
    rules = signal_rules(graph)

    def is_layer(i: int) -> bool:  # a parametrized layer may fix its own scale (spectral_norm): a barrier
        node = graph.nodes[i]
        return (node.op in WEIGHT_OPS and "weight" in node.params and counts[node.name] == 1
                and not node.attrs.get("parametrized"))

    links = []
    for start in range(graph.num_nodes):
        if not is_layer(start) or rules[start].normed or rules[start].output:
            continue
        region, consumers, stack, ok = {start}, [], list(succ.get(start, [])), True
        while stack and ok:
            i = stack.pop()
            if i in region:
                continue
            region.add(i)
            if any(p not in region for p in pred.get(i, [])):
                ok = False  # another input merges in: its scale would have to move too
            elif is_layer(i):
                consumers.append(i)
            elif graph.nodes[i].op in HOMOGENEOUS:
                stack.extend(succ.get(i, []))
            else:
                ok = False
        if ok and consumers:
            links.append(ScaleLink(graph.nodes[start].name, tuple(graph.nodes[c].name for c in sorted(consumers))))
    return links


def _log_scale(weight: torch.Tensor) -> float:
    """log of the weight's RMS times sqrt(fan-in): 0 for He's std without the gain, alike for every layer."""
    fan_in = weight[0].numel() if weight.dim() > 1 else 1
    rms = weight.detach().float().pow(2).mean().sqrt().item()
    return math.log(max(rms, 1e-30) * math.sqrt(fan_in))


def balance_scales(graph: ArchGraph, preds: dict[str, torch.Tensor], strength: float = 1.0) -> BalanceResult:
    """Equalize, in `preds` (updated in place), the weight scale along every chain of `scale_links`.

    Each link carries one log-factor x: its producer's weight and bias are multiplied by e^x, its
    consumers' weights by e^-x.  Along a tree of links every producer is set to one common level m, and m
    is the least-squares fit of the leaves (which have no link of their own to adjust them); on a chain
    that makes every layer equal, and the product of the factors is 1.  Separate trees get separate
    levels.  Links whose layers were not all predicted are left out.  `strength` in [0, 1] scales every
    log-factor: each chain layer moves that share of the way to the common level (any factors keep the
    outputs, so every strength is exact).
    """
    links = [link for link in scale_links(graph)
             if all(f"{name}.weight" in preds for name in (link.producer, *link.consumers))]
    if not links:
        return BalanceResult()
    by_producer = {link.producer: link for link in links}
    parent = {c: link.producer for link in links for c in link.consumers}
    level = {name: _log_scale(preds[f"{name}.weight"])
             for link in links for name in (link.producer, *link.consumers)}
    # Trees of links are independent (nothing joins them but a concat, an add or a norm), so each gets its
    # own level m.  Within a tree, x of each link is a + b·m, m unknown until the leaves are fitted; a
    # layer's level after balancing is its own level + x of its link - x of its parent's link.
    xs: dict[str, float] = {}
    trees: list[list[str]] = []
    for root in (link.producer for link in links if link.producer not in parent):
        x: dict[str, tuple[float, float]] = {}
        leaves: list[tuple[float, float]] = []
        tree: list[str] = []
        stack = [(root, (0.0, 0.0))]  # depth-first with a stack: chains can be 1,000 layers deep
        while stack:
            name, parent_x = stack.pop()
            tree.append(name)
            own = (level[name] - parent_x[0], -parent_x[1])  # level after the parent's factor, as a + b·m
            link = by_producer.get(name)
            if link is None:
                leaves.append(own)
                continue
            x[name] = (-own[0], 1.0 - own[1])  # brings this producer to m
            stack.extend((c, x[name]) for c in link.consumers)
        # leaves: level a + b·m; m minimizes sum (a + b·m - m)^2 (on a chain: the mean level of the chain)
        den = sum((1.0 - b) ** 2 for _, b in leaves)
        m = sum(a * (1.0 - b) for a, b in leaves) / den if den > 1e-12 else sum(level[n] for n in tree) / len(tree)
        xs.update((name, strength * (a + b * m)) for name, (a, b) in x.items())
        trees.append(tree)

    result = BalanceResult()
    after = {}
    for name in level:
        log_w = xs.get(name, 0.0) - (xs[parent[name]] if name in parent else 0.0)
        after[name] = level[name] + log_w
        if abs(log_w) > 1e-12:
            result.weight_factors[name] = math.exp(log_w)
        if name in xs and f"{name}.bias" in preds:
            result.bias_factors[name] = math.exp(xs[name])
    for name, factor in result.weight_factors.items():
        preds[f"{name}.weight"] = preds[f"{name}.weight"] * factor
    for name, factor in result.bias_factors.items():
        preds[f"{name}.bias"] = preds[f"{name}.bias"] * factor
    # the widest tree before and after (levels of separate trees need not match)
    result.spread_before = max(math.exp(max(level[n] for n in t) - min(level[n] for n in t)) for t in trees)
    result.spread_after = max(math.exp(max(after[n] for n in t) - min(after[n] for n in t)) for t in trees)
    return result


def _float_tensors(out: object) -> list[torch.Tensor]:
    """The floating tensors in a model output (a tensor, or tuples / lists / dicts of them), in order."""
    if isinstance(out, torch.Tensor):
        return [out.detach().float()] if out.is_floating_point() and out.numel() else []
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in _float_tensors(item)]
    return []


def balance_checked(model: nn.Module, graph: ArchGraph, preds: dict[str, torch.Tensor],
                    x: torch.Tensor | None, rtol: float = 1e-3, strength: float = 1.0) -> BalanceResult:
    """`balance_scales`, kept only if the model's output on `x` is unchanged (within `rtol` of its largest
    value); otherwise `preds` stay as they were and the result says why.

    The graph may come from a fallback capture whose edges are guessed from module order, so a link can be
    wrong; one forward before and after (eval mode, no gradient, the model restored afterwards) catches it.
    """
    trial = dict(preds)
    result = balance_scales(graph, trial, strength)
    if not result.weight_factors:
        return result
    if x is None:
        return BalanceResult(skipped="no input to check the outputs on")
    # A float16/bfloat16 model's own round-off moves its outputs by percents (0.035 on a 3-layer bf16 CNN),
    # more than any tolerance that still catches a missed join: check the function in float32 instead.
    low = any(t.is_floating_point() and t.dtype.itemsize < 4 for t in model.state_dict().values())
    dtype = torch.float32 if low else None
    if low and x.is_floating_point():
        x = x.float()
    try:
        with untouched(model, x), torch.no_grad():
            model.eval()  # dropout off: the two passes must see the same function
            before = functional_call(model, untied_state(model, preds, dtype), (x,), strict=False)
            after = functional_call(model, untied_state(model, trial, dtype), (x,), strict=False)
    except Exception as exc:  # noqa: BLE001 - the model ran in calibration; anything odd here means "keep as is"
        return BalanceResult(skipped=f"check pass failed: {type(exc).__name__}")
    outs_before, outs_after = _float_tensors(before), _float_tensors(after)
    if not outs_before or len(outs_before) != len(outs_after):
        return BalanceResult(skipped="the output holds no tensor")
    for ref, new in zip(outs_before, outs_after):  # each head of a multi-output model on its own scale
        err = (new - ref).abs().max().item() if ref.shape == new.shape else math.inf
        if not math.isfinite(err) or err > rtol * max(ref.abs().max().item(), 1e-12):
            return BalanceResult(skipped=f"outputs changed ({err:.2g}): the captured graph misses a join")
    preds.update(trial)
    return result
