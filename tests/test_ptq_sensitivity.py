"""benchmarks/scripts/ptq_sensitivity.py: the measures it takes a PTQ loss apart with."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def probe():
    path = REPO / "benchmarks" / "scripts" / "ptq_sensitivity.py"
    spec = importlib.util.spec_from_file_location("ptq_sensitivity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # it puts the repo root on sys.path itself, for `benchmarks`
    return module


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    net.eval()
    return net


def test_fold_scale_spread_is_max_over_median_of_gamma_over_std(probe):
    net = _net()
    bn = net[1]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, -2.0, 3.0]))
        bn.running_var.copy_(torch.tensor([1.0, 1.0, 0.25]) - bn.eps)  # scales 1, 2, 6
    assert probe.fold_scale_spread(net) == pytest.approx({"1": 3.0})


def test_first_conv_channels_rounds_one_channel_at_a_time_and_sorts_worst_first(probe):
    net = _net()
    x = torch.randn(16, 1, 6, 6)
    loader = [(x, net(x).argmax(1))]  # labels = the float net's answers, so float accuracy is 1
    weight = net[0].weight.detach().clone()
    rows = probe.first_conv_channels(net, loader, background=-0.8)
    assert sorted(c for _, c, _, _ in rows) == [0, 1, 2]
    assert [acc for acc, *_ in rows] == sorted(acc for acc, *_ in rows)
    assert all(0.0 <= acc <= 1.0 for acc, *_ in rows)
    assert torch.equal(net[0].weight, weight)  # the probe works on a folded copy
    # A background response is background * sum(folded kernel) + folded bias, before and after rounding.
    from torch_qinit.quant import fold_bn
    from torch_qinit.quant.fake_quant import fake_quant_weight
    conv = fold_bn(net)[0].requires_grad_(False)
    for _, c, before, after in rows:
        assert before == pytest.approx(float(-0.8 * conv.weight[c].sum() + conv.bias[c]), abs=1e-5)
        rounded = fake_quant_weight(conv.weight.detach(), 4)[c]
        assert after == pytest.approx(float(-0.8 * rounded.sum() + conv.bias[c]), abs=1e-5)
