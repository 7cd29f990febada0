"""torch_qinit.interop without the optional libraries: bits="auto" on a plain model is bits=4."""
from __future__ import annotations

import inspect

import torch
from torch import nn

import torch_qinit
from torch_qinit.ghn.config import GHNConfig
from torch_qinit.ghn.model import GHN
from torch_qinit.interop import DEFAULT_BITS, auto_bits, declared_bits


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 26 * 26, 10))


def test_auto_is_the_default_and_means_4_on_a_plain_model():
    assert inspect.signature(torch_qinit.initialize_).parameters["bits"].default == "auto"
    assert declared_bits(_net()) == {} and auto_bits(_net()) == DEFAULT_BITS == 4
    torch.manual_seed(0)
    ghn = GHN(GHNConfig(hidden=32, layers=1, heads=4, decoder_rank=8, bits=(2, 3, 4, 8)))
    a, b, c = _net(), _net(), _net()
    ra = torch_qinit.initialize_(a, weights=ghn)
    rb = torch_qinit.initialize_(b, bits=4, weights=ghn)
    torch_qinit.initialize_(c, bits=2, weights=ghn)
    assert ra.bits == rb.bits == {"0": 4, "4": 4}
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a[0].weight, c[0].weight)  # the bits do reach the GHN
