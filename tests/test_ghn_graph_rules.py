"""What the GHN reads off a graph without learning: the signal rule of each weight (which op decides its scale,
whether a learned factor is allowed) and the per-node bit indices. Checked on small hand-built graphs."""
import pytest
import torch

from torch_qinit.ghn.bits import BITS_VOCAB, bits_index, node_bits
from torch_qinit.ghn.signal import ACT_GAINS, SignalRule, signal_rules
from torch_qinit.graph.arch_graph import ArchGraph, Node


def chain(*ops):
    """A graph of nodes named n0, n1, ... with ops `ops`, each feeding the next."""
    nodes = [Node(op, f"n{i}") for i, op in enumerate(ops)]
    return ArchGraph(nodes, [(i, i + 1) for i in range(len(ops) - 1)], "fx")


# ------------------------------------------------------------------ signal rules
@pytest.mark.parametrize("ops, rule", [
    (("conv", "relu"), SignalRule(ACT_GAINS["relu"], free=False)),
    (("conv", "gelu"), SignalRule(ACT_GAINS["gelu"], free=False)),
    (("conv", "sigmoid"), SignalRule(1.0, free=False)),
    # pools, flatten, add and concat pass the scale through: the activation after them decides
    (("conv", "max_pool", "flatten", "add", "concat", "other", "silu"), SignalRule(ACT_GAINS["silu"], free=False)),
    # a norm that absorbs the weight's scale fixes the factor at 1 (He's norm); one that does not frees it
    (("conv", "batch_norm", "relu"), SignalRule(ACT_GAINS["relu"], free=False, normed=True)),
    (("conv", "max_pool", "concat", "batch_norm", "relu"), SignalRule(ACT_GAINS["relu"], free=False, normed=True)),
    (("conv", "avg_pool", "group_norm", "tanh"), SignalRule(ACT_GAINS["tanh"], free=False, normed=True)),
    (("conv", "concat", "group_norm", "tanh"), SignalRule(ACT_GAINS["tanh"], free=True, normed=True)),
    (("conv", "add", "batch_norm", "relu"), SignalRule(ACT_GAINS["relu"], free=True, normed=True)),
    # another weight op or a mul after it: a linear map, gain 1
    (("linear", "linear"), SignalRule(1.0, free=False)),
    (("conv", "mul", "relu"), SignalRule(1.0, free=False)),
    (("conv", "layer_norm", "conv"), SignalRule(1.0, free=False, normed=True)),
    # the network output: the logit layer, free within the wider bound
    (("linear", "output"), SignalRule(1.0, free=True, output=True)),
    (("linear", "global_pool", "output"), SignalRule(1.0, free=True, output=True)),
    # a conv head ending in an activation (SqueezeNet: conv -> ReLU -> pool): still the logit layer
    (("conv", "relu", "global_pool", "flatten", "output"), SignalRule(1.0, free=True, output=True)),
    # ... but not when anything but pooling lies between that activation and the output
    (("conv", "relu", "linear", "output"), SignalRule(ACT_GAINS["relu"], free=False)),
    (("conv", "relu", "add", "output"), SignalRule(ACT_GAINS["relu"], free=False)),
    # nothing decides it (only transparent ops follow, or nothing at all): treated like an output
    (("conv", "flatten"), SignalRule(1.0, free=True, output=True)),
    (("linear",), SignalRule(1.0, free=True, output=True)),
])
def test_the_first_deciding_op_sets_the_rule(ops, rule):
    assert signal_rules(chain(*ops))[0] == rule


def test_rules_search_breadth_first_and_visit_each_node_once():
    # n0 feeds a long transparent path to a ReLU (n1 -> n2 -> n3) and, directly, a GELU (n4):
    # the nearer op decides, whichever edge comes first
    g = ArchGraph([Node(op, f"n{i}") for i, op in enumerate(("conv", "max_pool", "flatten", "relu", "gelu"))],
                  [(0, 1), (1, 2), (2, 3), (0, 4)], "fx")
    assert signal_rules(g)[0] == SignalRule(ACT_GAINS["gelu"], free=False)
    # a diamond through a norm on one side: the add is reached twice but walked once
    d = ArchGraph([Node("conv", "a"), Node("batch_norm", "b"), Node("add", "c"), Node("relu", "d")],
                  [(0, 1), (0, 2), (1, 2), (2, 3)], "fx")
    assert signal_rules(d)[0] == SignalRule(ACT_GAINS["relu"], free=True, normed=True)  # the add sees k·w unnormed
    # every node gets a rule, including the ones after the last weight
    assert set(signal_rules(d)) == {0, 1, 2, 3}


def test_a_biased_layer_keeps_its_factor_before_group_norm_but_not_before_batch_norm():
    def biased(norm):
        nodes = [Node("conv", "c", {"weight": (4, 4, 3, 3), "bias": (4,)}), Node(norm, "n"), Node("relu", "r")]
        return ArchGraph(nodes, [(0, 1), (1, 2)], "fx")
    assert signal_rules(biased("group_norm"))[0] == SignalRule(ACT_GAINS["relu"], free=True, normed=True)
    assert signal_rules(biased("batch_norm"))[0] == SignalRule(ACT_GAINS["relu"], free=False, normed=True)


@pytest.mark.parametrize("norm, bias", [("batch_norm", True), ("batch_norm", False), ("group_norm", False)])
def test_a_scale_the_norm_absorbs_changes_nothing_the_network_computes(norm, bias):
    """The premise of fixing the factor there: k·w gives the same output through the norm, in train mode."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, bias=bias)
    norm_layer = torch.nn.BatchNorm2d(8) if norm == "batch_norm" else torch.nn.GroupNorm(2, 8)
    x = torch.randn(16, 3, 8, 8)
    ref = norm_layer(conv(x))
    with torch.no_grad():
        conv.weight.mul_(3.0)
        if bias:
            conv.bias.mul_(0.5)  # BN removes any per-channel bias, scaled or not
    assert torch.allclose(norm_layer(conv(x)), ref, atol=1e-4)


def test_rules_are_computed_once_per_graph():
    g = chain("conv", "relu")
    first = signal_rules(g)
    g.nodes[1] = Node("gelu", "n1")  # a cached graph is not re-read
    assert signal_rules(g) is first and first[0].gain == ACT_GAINS["relu"]
    assert signal_rules(chain("conv", "gelu"))[0].gain == ACT_GAINS["gelu"]


def test_learned_factor_bounds():
    assert SignalRule(1.0, free=True).max_factor == 2.0
    assert SignalRule(1.0, free=True, output=True).max_factor == 4.0
    assert SignalRule(1.0, free=False).output is False


# ----------------------------------------------------------------------- bits
def test_bits_index():
    assert [bits_index(b) for b in (None, 2, 3, 4, 8)] == [0, 1, 2, 3, 7]
    assert BITS_VOCAB == 8  # float + 2..8: every index above fits the embedding
    with pytest.raises(ValueError, match="got 1"):
        bits_index(1)
    with pytest.raises(TypeError):
        bits_index(4.5)


def test_node_bits_uniform_and_float_activations():
    g = chain("conv", "relu", "linear")
    w, a = node_bits(g, 4)
    assert w.dtype == torch.long and w.tolist() == [3, 3, 3] and a.tolist() == [3, 3, 3]  # "same" by default
    w, a = node_bits(g, 4, None)
    assert w.tolist() == [3, 3, 3] and a.tolist() == [0, 0, 0]  # None: float activations
    w, a = node_bits(g, None, 8)
    assert w.tolist() == [0, 0, 0] and a.tolist() == [7, 7, 7]


def test_node_bits_dict_fills_unnamed_nodes_with_the_most_common_width():
    g = chain("conv", "relu", "conv", "relu", "conv", "linear")
    w, a = node_bits(g, {"n0": 8, "n2": 2, "n4": 2}, {"n0": 3})
    assert w.tolist() == [7, 1, 1, 1, 1, 1]  # 2 bits is the most common: the ReLUs and the unnamed linear get it
    assert a.tolist() == [2, 2, 2, 2, 2, 2]
    w, _ = node_bits(g, {"n0": None, "n2": None, "n5": 4})
    assert w.tolist() == [0, 0, 0, 0, 0, 3]
    w, a = node_bits(g, {})
    assert w.tolist() == [0] * 6 and a.tolist() == [0] * 6  # an empty dict: float everywhere


def test_node_bits_names_the_bad_spec():
    g = chain("conv", "relu")
    with pytest.raises(ValueError, match=r"^bits must be an int in 2\.\.8 or None, got 9$"):
        node_bits(g, 9)
    with pytest.raises(ValueError, match=r"^act_bits must be an int in 2\.\.8 or None, got 1$"):
        node_bits(g, 4, 1)
    with pytest.raises(ValueError, match=r"^act_bits\['n0'\] must be"):
        node_bits(g, 4, {"n0": 9})
