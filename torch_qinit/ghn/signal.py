"""Signal propagation: how large each predicted weight must be so activations keep their scale.

A weight's output scale should match what the next nonlinearity needs (He for
ReLU, 1 for a linear map, ...).  The rule is read off the graph, not learned,
because a learned per-layer gain compounds through depth: a gain of 1.1 per
layer is 1.1**50 ≈ 117 after 50 layers.  The GHN keeps a bounded learned gain
only where scale cannot compound: before a normalization layer (which rescales
anyway) and on the output layer (the logit temperature).

Where a norm absorbs the weight's scale entirely (conv → BN, through pools or
a concat at most; see `norm_absorbs_scale`), the learned factor changes
nothing the network computes, only the step size training takes on that
weight: with BN, a weight k× larger learns as if its learning rate were k²
smaller.  There the factor is fixed at 1, so the predicted weights have He's
norm and users' He-tuned learning rates carry over (the shipped GHN-QAT had
drifted to 2×, the factor's upper bound, on every such layer, and trained
visibly slower than He init under SGD).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..graph.arch_graph import ArchGraph

__all__ = ["ACT_GAINS", "SignalRule", "norm_absorbs_scale", "signal_rules"]

#: 1 / sqrt(E[f(x)^2]) for x ~ N(0, 1): the gain that keeps the second moment
#: through activation f (He et al. 2015 for ReLU).  Values from numerical
#: integration; tests/test_ghn.py recomputes them.
ACT_GAINS: dict[str, float] = {
    "relu": 1.4142, "relu6": 1.4142, "leaky_relu": 1.4142,
    "hardswish": 1.7367, "gelu": 1.5335, "silu": 1.6765, "tanh": 1.5925,
    # a sigmoid gates (squeeze-excite): unit-scale logits keep the gate soft, so no boost
    "sigmoid": 1.0, "other_act": 1.0,
}
#: Ops a signal passes through unchanged in scale, for the purpose of the rule.
_TRANSPARENT = frozenset({"max_pool", "avg_pool", "global_pool", "flatten", "add", "concat", "other"})
_NORMS = frozenset({"batch_norm", "layer_norm", "group_norm"})
#: The transparent ops that are also per-channel and positively homogeneous: a weight's scale passes
#: them unchanged and unmixed with another branch's (an add mixes; "other" is unknown).
_CHANNELWISE = _TRANSPARENT - {"add", "other"}


@dataclass(frozen=True)
class SignalRule:
    """Scale of one weight: std = gain / sqrt(fan_in) × (learned factor if `free`).

    `output` marks a layer whose result is the network's output (the logits):
    its learned factor has a wider range (the logit temperature), and its
    pattern is not orthonormalized, so it can weigh classes unequally.
    `normed` marks a layer whose output a normalization rescales: signal
    calibration leaves it alone (calibration.py), whether or not it is `free`.
    """

    gain: float
    free: bool
    output: bool = False
    normed: bool = False

    @property
    def max_factor(self) -> float:
        """The learned factor lies in [1 / max_factor, max_factor]."""
        return 4.0 if self.output else 2.0


def signal_rules(graph: ArchGraph) -> dict[int, SignalRule]:
    """{node index: rule} for every node; cached on the graph (training reuses graphs)."""
    cached = graph.__dict__.get("_signal_rules")
    if cached is not None:
        return cached
    succ: dict[int, list[int]] = {}
    for s, d in graph.edges:
        succ.setdefault(s, []).append(d)
    rules = {i: _rule(graph, succ, i) for i in range(graph.num_nodes)}
    graph.__dict__["_signal_rules"] = rules
    return rules


def _rule(graph: ArchGraph, succ: dict[int, list[int]], start: int) -> SignalRule:
    """Walk forward from `start` to the first op that decides the scale (breadth-first)."""
    frontier, seen, normed = list(succ.get(start, [])), {start}, False
    while frontier:
        nxt: list[int] = []
        for i in frontier:
            if i in seen:
                continue
            seen.add(i)
            op = graph.nodes[i].op
            if op in ACT_GAINS:
                if _only_pools_to_output(graph, succ, i):
                    return SignalRule(1.0, True, output=True)  # SqueezeNet: conv → ReLU → pool are the logits
                return _normed_rule(ACT_GAINS[op], normed, graph, succ, start)
            if op == "output":
                return SignalRule(1.0, True, output=True)  # logit scale: the GHN's to choose, within bounds
            if op in _NORMS:
                normed = True
            elif op not in _TRANSPARENT:  # another weight op, mul, ...: a linear map
                return _normed_rule(1.0, normed, graph, succ, start)
            nxt.extend(succ.get(i, []))
        frontier = nxt
    return SignalRule(1.0, True, output=True)  # nothing follows: treat like an output


#: Ops between an activation and the output that leave it the network's last nonlinearity.
_POOLS = frozenset({"max_pool", "avg_pool", "global_pool", "flatten"})


def _only_pools_to_output(graph: ArchGraph, succ: dict[int, list[int]], act: int) -> bool:
    """True when every path from node `act` reaches the output through pooling/flatten only.

    Then the layer before `act` emits the logits (a conv head ending in an activation, as in SqueezeNet),
    and it is treated as the output layer instead of as a hidden layer the activation's gain would size.
    """
    stack, seen, reached = list(succ.get(act, [])), set(), False
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        op = graph.nodes[i].op
        if op == "output":
            reached = True
        elif op in _POOLS:
            stack.extend(succ.get(i, []))
        else:
            return False
    return reached


def _normed_rule(gain: float, normed: bool, graph: ArchGraph, succ: dict[int, list[int]], start: int) -> SignalRule:
    """The rule of a hidden layer: the learned factor is free after a norm, unless the norm absorbs it."""
    if not normed:
        return SignalRule(gain, False)
    return SignalRule(gain, not norm_absorbs_scale(graph, succ, start), normed=True)


def norm_absorbs_scale(graph: ArchGraph, succ: dict[int, list[int]], start: int) -> bool:
    """True when every path from node `start` reaches a norm that cancels a scaling w → k·w of its weight.

    Paths may pass `_CHANNELWISE` ops only.  BatchNorm always cancels it: it
    divides each channel by its own spread and subtracts its mean (the layer's
    bias with it), and per-channel weight quantization scales with w.
    Group/LayerNorm cancel it only for a layer without a bias (a fixed bias would
    shift relative to k·w) and only before any concat (they mix channels of
    several layers).
    """
    has_bias = "bias" in graph.nodes[start].params
    stack, seen, reached = [(d, False) for d in succ.get(start, [])], set(), False
    while stack:
        i, mixed = stack.pop()
        if (i, mixed) in seen:
            continue
        seen.add((i, mixed))
        op = graph.nodes[i].op
        if op == "batch_norm" or (op in _NORMS and not (mixed or has_bias)):
            reached = True
        elif op in _CHANNELWISE:
            stack.extend((d, mixed or op == "concat") for d in succ.get(i, []))
        else:
            return False
    return reached
