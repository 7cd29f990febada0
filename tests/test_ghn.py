import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from torch_qinit.ghn import GHN, GHNConfig, node_bits
from torch_qinit.graph import capture
from torch_qinit.space import SPLIT_SIZES, build_arch

SMALL = GHNConfig(hidden=32, layers=2, heads=4, decoder_rank=8)


@pytest.fixture(scope="module")
def ghn():
    torch.manual_seed(0)
    return GHN(SMALL)


def _check_shapes(ghn, model, bits=4):
    preds = ghn(capture(model), bits=bits)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert preds, "GHN predicted nothing"
    for name, value in preds.items():
        assert value.shape == shapes[name], name
        assert torch.isfinite(value).all(), name
    return preds, shapes


@pytest.mark.parametrize("split", ["test", "wide", "deep", "nobn"])
def test_shapes_for_every_architecture_of_every_split(ghn, split):
    with torch.no_grad():
        for i in range(SPLIT_SIZES[split]):
            model = build_arch(split, i)
            preds, shapes = _check_shapes(ghn, model)
            assert set(preds) == set(shapes), f"{split}/{i} left {set(shapes) - set(preds)}"


class OddNet(nn.Module):
    """Outside the design space: 7x7 conv, grouped conv, layernorm, wide linear, an unknown layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 96, 7, 2, 3)
        self.gconv = nn.Conv2d(96, 96, 3, padding=1, groups=4)
        self.norm = nn.GroupNorm(8, 96)
        self.fc1 = nn.Linear(96 * 4 * 4, 200)
        self.ln = nn.LayerNorm(200)
        self.fc2 = nn.Linear(200, 7)

    def forward(self, x):
        x = torch.relu(self.norm(self.gconv(self.conv(x))))
        x = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return self.fc2(self.ln(self.fc1(x)))


def test_shapes_for_hand_written_models(ghn):
    with torch.no_grad():
        _check_shapes(ghn, OddNet(), bits=None)
        _check_shapes(ghn, nn.Sequential(nn.Linear(20, 300), nn.ReLU(), nn.Linear(300, 3)), bits=2)


def test_conv_weights_have_he_scale(ghn):
    model = build_arch("test", 0)
    with torch.no_grad():
        preds = ghn(capture(model), bits=4)
    for name, p in model.named_parameters():
        if p.dim() == 4:
            he = math.sqrt(2.0 / p[0].numel())
            std = preds[name].std().item()
            assert he / 2 < std < he * 2, (name, std, he)


def test_gradient_reaches_every_ghn_parameter():
    torch.manual_seed(0)
    ghn = GHN(SMALL)
    # the wide net makes vectors longer than one block, so the vector-position encoder gets a gradient too
    wide = nn.Sequential(nn.Conv2d(1, 96, 3), nn.BatchNorm2d(96), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    wide(torch.zeros(1, 1, 6, 6))
    graphs = [capture(build_arch("test", i)) for i in range(5)] + [capture(wide)]
    preds = ghn(graphs, bits=[4, None, 2, {"stem.0": 3}, 8, 4])
    loss = sum((v ** 2).sum() for d in preds for v in d.values())
    loss.backward()
    missing = [n for n, p in ghn.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_bits_condition_the_prediction(ghn):
    g = capture(build_arch("test", 1))
    with torch.no_grad():
        a, b = ghn(g, bits=2), ghn(g, bits=8)
    assert any(not torch.allclose(a[k], b[k]) for k in a)


def test_node_bits_mixed_and_errors():
    g = capture(build_arch("test", 2))
    layers = [n.name for n in g.nodes if n.op in ("conv", "dw_conv", "group_conv", "linear")]
    first, last = layers[0], layers[-1]
    w, a = node_bits(g, {first: 2, last: 8})
    names = [n.name for n in g.nodes]
    assert w[names.index(first)] == 1 and w[names.index(last)] == 7
    with pytest.raises(ValueError, match="2..8"):
        node_bits(g, 9)
    with pytest.raises(TypeError):
        node_bits(g, 4.0)


def test_overfit_one_architecture_beats_random_init():
    """~100 steps on one net and a fixed synthetic task: the GHN's weights beat He init."""
    torch.manual_seed(0)
    x = torch.randn(256, 1, 12, 12)
    y = (x[:, 0, :6].mean((1, 2)) > x[:, 0, 6:].mean((1, 2))).long() * 2 + (x[:, 0, :, :6].mean((1, 2)) > 0).long()
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
    graph = capture(model)
    ghn = GHN(SMALL)
    opt = torch.optim.Adam(ghn.parameters(), lr=3e-3)
    for _ in range(100):
        loss = nn.functional.cross_entropy(functional_call(model, ghn(graph), (x,)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        ghn_acc = (functional_call(model, ghn(graph), (x,)).argmax(1) == y).float().mean().item()
        random_accs = []
        for seed in range(5):
            torch.manual_seed(seed)
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight)
                    nn.init.zeros_(m.bias)
            random_accs.append((model(x).argmax(1) == y).float().mean().item())
    assert ghn_acc > max(random_accs) + 0.1, (ghn_acc, random_accs)
