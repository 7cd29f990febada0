"""initialize_ on brevitas models (QuantConv2d / QuantLinear): declared per-layer bits, values reach QAT."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_qinit
from torch_qinit.interop import auto_bits, declared_bits

qnn = pytest.importorskip("brevitas.nn", reason="needs the 'brevitas' extra: pip install torch_qinit[brevitas]")

DECLARED = {"conv1": 4, "conv2": 2, "fc": 8}


class QuantNet(nn.Module):
    """A small brevitas CNN whose weight layers declare 4, 2 and 8 bits."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = qnn.QuantIdentity(bit_width=8)
        self.conv1 = qnn.QuantConv2d(1, 8, 3, padding=1, weight_bit_width=4)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = qnn.QuantReLU(bit_width=4)
        self.conv2 = qnn.QuantConv2d(8, 16, 3, padding=1, stride=2, weight_bit_width=2)
        self.act2 = qnn.QuantReLU(bit_width=4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = qnn.QuantLinear(16, 10, bias=True, weight_bit_width=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(self.inp(x))))
        x = self.act2(self.conv2(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def _net(seed: int = 0) -> QuantNet:
    torch.manual_seed(seed)
    return QuantNet()


X = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def _weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in m.named_parameters()}


def test_declared_bits_reads_brevitas_layers():
    assert declared_bits(_net()) == DECLARED
    assert auto_bits(_net()) == DECLARED
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    assert declared_bits(plain) == {} and auto_bits(plain) == 4
    # a layer with its weight quantizer disabled declares nothing; others default to 4 under "auto"
    mixed = nn.Sequential(qnn.QuantConv2d(1, 4, 3, weight_bit_width=3), qnn.QuantConv2d(4, 4, 3, weight_quant=None),
                          nn.Conv2d(4, 4, 3))
    assert declared_bits(mixed) == {"0": 3}
    assert auto_bits(mixed) == {"0": 3, "1": 4, "2": 4}


def test_unsupported_declared_width_is_skipped_with_warning():
    net = nn.Sequential(qnn.QuantConv2d(1, 4, 3, weight_bit_width=1), qnn.QuantConv2d(4, 4, 3, weight_bit_width=4))
    with pytest.warns(UserWarning, match="outside 2..8"):
        assert declared_bits(net) == {"1": 4}


def test_initialize_brevitas_model_with_declared_bits(ghn_dir):
    m = _net()
    before = _weights(m)
    report = torch_qinit.initialize_(m, bits=declared_bits(m), weights=ghn_dir, example_input=X)
    # every conv/linear/bn weight and bias is predicted; brevitas' activation scales are left as they were
    assert set(report.predicted) == {f"{layer}.{p}" for layer in ("conv1", "bn1", "conv2", "fc")
                                     for p in ("weight", "bias")}
    for name in report.fallback:
        assert "scaling_impl" in name and torch.equal(dict(m.named_parameters())[name], before[name])
    init = _weights(m)
    assert not torch.equal(init["conv1.weight"], before["conv1.weight"])

    # the declared widths reach the GHN: same as passing them by hand, different from a uniform 4
    same = _net(1)
    torch_qinit.initialize_(same, bits=dict(DECLARED), weights=ghn_dir, example_input=X)
    uniform = _net(1)
    torch_qinit.initialize_(uniform, bits=4, weights=ghn_dir, example_input=X)
    for name in ("conv1.weight", "conv2.weight", "fc.weight"):
        assert torch.equal(dict(same.named_parameters())[name], init[name]), name
    assert not torch.equal(dict(uniform.named_parameters())["conv2.weight"], init["conv2.weight"])


def test_brevitas_qat_starts_from_predicted_values(ghn_dir):
    m = _net()
    torch_qinit.initialize_(m, bits=declared_bits(m), weights=ghn_dir, example_input=X)
    init = _weights(m)
    # brevitas fake-quantizes the predicted weight at the declared width: within half a step of it
    for layer, bits in DECLARED.items():
        qw = getattr(m, layer).quant_weight()
        assert int(qw.bit_width) == bits
        step = qw.scale.detach()
        assert (qw.value.detach() - init[f"{layer}.weight"]).abs().le(step / 2 + 1e-6).all(), layer
        assert (qw.value.detach() / step).round().unique().numel() <= 2 ** bits

    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    y = torch.arange(4) % 10
    loss = nn.functional.cross_entropy(m(X), y)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    assert m.conv1.weight.grad is not None and m.conv1.weight.grad.abs().sum() > 0
    opt.step()
    moved = m.conv1.weight.detach() - init["conv1.weight"]
    torch.testing.assert_close(moved, -0.01 * m.conv1.weight.grad, rtol=1e-4, atol=1e-7)


def test_initialize_without_bits_reads_the_declared_widths(ghn_dir):
    m, explicit = _net(), _net()
    report = torch_qinit.initialize_(m, weights=ghn_dir, example_input=X)  # bits="auto", the default
    torch_qinit.initialize_(explicit, bits=dict(DECLARED), weights=ghn_dir, example_input=X)
    assert report.bits == DECLARED
    assert "2, 4, 8 over 3 layers" in str(report)
    for (name, a), b in zip(m.named_parameters(), explicit.parameters()):
        assert torch.equal(a, b), name
    # an explicit bits= still wins over the declarations
    uniform = _net()
    assert torch_qinit.initialize_(uniform, bits=3, weights=ghn_dir, example_input=X).bits == \
        {"conv1": 3, "conv2": 3, "fc": 3}
