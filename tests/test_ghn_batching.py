"""GHN predictions per graph: a batch of graphs (padded, masked) predicts for each graph what it predicts alone,
per-graph bits specs go to their own graph, and exactly the servable parameters are predicted, once each."""
import pytest
import torch
from torch import nn

from torch_qinit.ghn import GHN, GHNConfig, servable_targets
from torch_qinit.graph import capture
from torch_qinit.graph.arch_graph import ArchGraph, Node

SMALL = GHNConfig(hidden=32, layers=2, heads=4, decoder_rank=8, block_out=16, block_in=16)


@pytest.fixture(scope="module")
def ghn():
    torch.manual_seed(0)
    g = GHN(SMALL).eval()
    with torch.no_grad():  # non-zero distance biases, so the attention mask and distances matter
        for layer in g.layers:
            layer.dist_bias.weight.normal_()
    return g


def _small():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))


def _big():
    torch.manual_seed(2)
    return nn.Sequential(nn.Conv2d(3, 20, 3), nn.ReLU(), nn.Conv2d(20, 20, 1), nn.GroupNorm(4, 20), nn.ReLU(),
                         nn.Conv2d(20, 40, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(30), nn.ReLU(), nn.Linear(30, 5))


def _graphs():
    small, big = _small(), _big()
    small(torch.zeros(1, 1, 6, 6))
    big(torch.zeros(1, 3, 7, 7))
    return capture(small), capture(big)


def _close(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-4, msg=k)


def test_a_batch_predicts_each_graph_as_alone(ghn):
    gs, gb = _graphs()
    assert gs.num_nodes != gb.num_nodes  # the smaller one is padded in the batch
    with torch.no_grad():
        alone = [ghn(gs, bits=4), ghn(gb, bits=4)]
        both = ghn([gs, gb], bits=4)
        reversed_ = ghn([gb, gs], bits=4)
    assert isinstance(both, list) and len(both) == 2
    _close(both[0], alone[0])
    _close(both[1], alone[1])
    _close(reversed_[0], alone[1])


def test_per_graph_bits_reach_their_own_graph(ghn):
    gs, gb = _graphs()
    with torch.no_grad():
        both = ghn([gs, gb], bits=[2, 8], act_bits=[None, 3])
        _close(both[0], ghn(gs, bits=2, act_bits=None))
        _close(both[1], ghn(gb, bits=8, act_bits=3))
        a, b = ghn(gs, bits=2), ghn(gs, bits=8)
    assert any(not torch.allclose(a[k], b[k]) for k in a)  # bits condition the prediction
    with pytest.raises(ValueError, match=r"^bits lists 1 specs for 2 graphs$"):
        ghn([gs, gb], bits=[4])
    with pytest.raises(ValueError, match=r"^act_bits lists 3 specs for 2 graphs$"):
        ghn([gs, gb], bits=4, act_bits=[4, 4, 4])
    with pytest.raises(ValueError, match=r"^GHN needs at least one graph$"):
        ghn([], bits=4)


def test_predicts_exactly_the_servable_parameters(ghn):
    gs, gb = _graphs()
    with torch.no_grad():
        preds = ghn(gb, bits=4)
    model_params = {n: p.shape for n, p in _big().named_parameters() if not n.startswith("8.")}
    assert set(preds) == set(model_params) | {"8.weight", "8.bias"}
    for name, value in preds.items():
        if name in model_params:
            assert value.shape == model_params[name], name
        assert torch.isfinite(value).all(), name
    # the group norm weight is 1 + tanh(.) in (0, 2), biases free
    assert ((preds["3.weight"] > 0) & (preds["3.weight"] < 2)).all()


def test_servable_targets_kinds_and_shared_modules():
    g = ArchGraph([
        Node("input", ""),
        Node("conv", "c", {"weight": (4, 2, 3, 3), "bias": (4,)}),
        Node("batch_norm", "bn", {"weight": (4,), "bias": (4,)}),
        Node("conv", "c", {"weight": (4, 2, 3, 3), "bias": (4,)}),  # the same module called again
        Node("conv", "c3d", {"weight": (4, 4, 3, 3, 3)}),  # a Conv3d's 5-D weight: decoded as (4, 12, 3, 3)
        Node("linear", "", {"weight": (3, 4), "bias": (3,), "extra": (3,)}),  # root module: no prefix
        Node("relu", "r", {"weight": (4,)}),  # not a servable op
        Node("layer_norm", "ln", {"weight": (3, 3)}),  # a 2-D norm weight: not a vector
        Node("output", "out"),
    ], [(i, i + 1) for i in range(8)], "fx")
    got = [(t.node, t.name, t.shape, t.kind) for t in servable_targets(g, graph_index=5)]
    assert got == [
        (1, "c.weight", (4, 2, 3, 3), "weight"), (1, "c.bias", (4,), "bias"),
        (2, "bn.weight", (4,), "norm_weight"), (2, "bn.bias", (4,), "norm_bias"),
        (4, "c3d.weight", (4, 4, 3, 3, 3), "weight"),
        (5, "weight", (3, 4), "weight"), (5, "bias", (3,), "bias"),
    ]
    assert {t.graph for t in servable_targets(g, graph_index=5)} == {5}


def test_a_graph_without_servable_parameters_predicts_nothing(ghn):
    g = capture(nn.Sequential(nn.ReLU(), nn.Flatten()))
    with torch.no_grad():
        assert ghn(g, bits=4) == {}


def test_config_checks_and_parameter_count():
    with pytest.raises(ValueError, match=r"^hidden \(30\) must be divisible by heads \(4\)$"):
        GHN(GHNConfig(hidden=30, heads=4))
    g = GHN(SMALL)
    assert g.num_parameters() == sum(p.numel() for p in g.parameters())
    assert len(g.layers) == 2 and g.config is SMALL
    assert GHN().config == GHNConfig()


def test_config_round_trip_and_unknown_keys():
    c = GHNConfig(bits=(2, 4), input_shape=(3, 32, 32))
    d = c.to_dict()
    assert d["bits"] == [2, 4] and d["input_shape"] == [3, 32, 32]  # lists in config.json
    back = GHNConfig.from_dict(d)
    assert back == c and back.bits == (2, 4) and back.input_shape == (3, 32, 32)  # tuples again
    with pytest.raises(ValueError, match=r"^config\.json has keys this GHN does not know: \['a', 'z'\]$"):
        GHNConfig.from_dict({**d, "z": 1, "a": 2})


def test_a_conv1d_weight_is_decoded_in_its_own_shape(ghn):
    g = ArchGraph([Node("input", ""), Node("conv", "c", {"weight": (8, 2, 5), "bias": (8,)}),
                   Node("relu", "r"), Node("output", "out")], [(0, 1), (1, 2), (2, 3)], "fx")
    assert [(t.name, t.shape, t.kind) for t in servable_targets(g)] == [("c.weight", (8, 2, 5), "weight"),
                                                                       ("c.bias", (8,), "bias")]
    w = ghn(g, bits=4)["c.weight"]
    assert w.shape == (8, 2, 5) and torch.isfinite(w).all()
    assert len(torch.unique(w.flatten(1), dim=0)) == 8
