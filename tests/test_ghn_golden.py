"""Golden values: a fixed small GHN's predictions for a fixed net, against a stored file.

The other GHN tests check properties (shapes, distinct rows, signal scale), which a flipped residual
sign, a swapped embedding or an ignored activation width all keep. This one pins the numbers, so any
change to the forward computation of ghn/model.py or ghn/decoder.py fails here (mutation testing found
37 such survivors in ghn/model.py). A deliberate change regenerates the file:

    TORCH_QINIT_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_ghn_golden.py
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from torch_qinit.ghn import GHN, GHNConfig
from torch_qinit.graph import capture

GOLDEN = Path(__file__).parent / "data" / "ghn_golden.safetensors"
# (weight bits, activation bits) queried: float, uniform 4, 4-bit weights with 2-bit activations
QUERIES = {"float": (None, None), "w4a4": (4, "same"), "w4a2": (4, 2)}


def _net() -> nn.Module:
    """Conv with and without bias, BN, a residual-free stack and a linear head: every kind of target."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def _predictions() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    ghn = GHN(GHNConfig(hidden=32, layers=2, heads=4, decoder_rank=8, decoder_hidden=32)).eval()
    graph = capture(_net())
    out = {}
    with torch.no_grad():
        for tag, (w, a) in QUERIES.items():
            for name, value in ghn(graph, bits=w, act_bits=a).items():
                out[f"{tag}/{name}"] = value.detach().float().contiguous()
    return out


def test_predictions_match_the_golden_file():
    preds = _predictions()
    if os.environ.get("TORCH_QINIT_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        save_file(preds, str(GOLDEN))
        pytest.skip(f"regenerated {GOLDEN}")
    golden = load_file(str(GOLDEN))
    assert sorted(preds) == sorted(golden)
    for key, value in preds.items():
        torch.testing.assert_close(value, golden[key], rtol=1e-4, atol=1e-5, msg=lambda m, k=key: f"{k}: {m}")


def test_the_golden_queries_differ_from_each_other():
    """The file would not catch an ignored bit width if the widths gave the same numbers anyway."""
    golden = load_file(str(GOLDEN))
    for name in ("0.weight", "3.weight", "8.weight", "1.weight"):
        for a, b in (("float", "w4a4"), ("w4a4", "w4a2")):
            assert not torch.allclose(golden[f"{a}/{name}"], golden[f"{b}/{name}"]), (name, a, b)
