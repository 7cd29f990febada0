"""The switched-off-channel floor: exact values on hand-made predictions, and its effect on training."""
import json

import torch
from torch import nn

from torch_qinit.graph import capture
from torch_qinit.training import TrainConfig, train
from torch_qinit.training.norm_floor import SCALE_FLOOR, SHIFT_FLOOR, norm_channel_penalty

TINY = {"hidden": 32, "layers": 1, "heads": 4, "decoder_rank": 8}


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 10))


def test_channels_above_both_floors_cost_nothing():
    graph = capture(_net())
    params = {"1.weight": torch.full((4,), SCALE_FLOOR), "1.bias": torch.full((4,), SHIFT_FLOOR),
              "0.weight": torch.full((4, 1, 3, 3), -100.0)}  # conv weights are not norm parameters
    assert norm_channel_penalty(graph, params).item() == 0.0


def test_penalty_is_the_mean_squared_shortfall_over_scales_and_shifts():
    graph = capture(_net())
    scale = torch.tensor([0.0, 1.0, 1.0, 1.0], requires_grad=True)   # one channel 0.5 below the floor
    shift = torch.tensor([0.0, -1.5, 0.0, 0.0], requires_grad=True)  # one channel 1.0 below the floor
    value = norm_channel_penalty(graph, {"1.weight": scale, "1.bias": shift})
    assert abs(value.item() - (0.5 ** 2 + 1.0 ** 2) / 8) < 1e-7
    value.backward()
    assert scale.grad[0] < 0 and shift.grad[1] < 0   # descent raises both switched-off channels
    assert scale.grad[1:].eq(0).all() and shift.grad[[0, 2, 3]].eq(0).all()


def test_a_net_without_norm_layers_has_no_penalty():
    graph = capture(nn.Sequential(nn.Flatten(), nn.Linear(144, 10)))
    assert norm_channel_penalty(graph, {"1.weight": torch.zeros(10, 144)}) is None


def test_training_with_the_floor_differs_and_logs_it(tmp_path, monkeypatch):
    from torch_qinit.training import norm_floor

    # A scale floor above every prediction makes the penalty bite on any drawn net with a norm layer; at the
    # real floor an untrained tiny GHN may predict every channel above it, and the run would not differ.
    monkeypatch.setitem(norm_floor._FLOORS, "norm_weight", 10.0)
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(256, 1, 12, 12, generator=g), torch.randint(0, 10, (256,), generator=g)
    base = dict(steps=4, meta_batch=2, batch_size=16, ckpt_every=2, log_every=2, arch_pool=50, ghn=TINY,
                warmup=2, stage="qat", val_every=0)
    plain = train(TrainConfig(out=str(tmp_path / "plain"), **base), images, labels)
    floored = train(TrainConfig(out=str(tmp_path / "floor"), norm_floor_weight=5.0, **base), images, labels)
    assert any(not torch.equal(a, b) for a, b in zip(plain.state_dict().values(), floored.state_dict().values()))
    rows = json.loads((tmp_path / "floor" / "ckpt" / "state.json").read_text())["history"]
    assert [r["step"] for r in rows] == [2, 4] and all(r["floor"] > 0 for r in rows)
    plain = json.loads((tmp_path / "plain" / "ckpt" / "state.json").read_text())
    assert not any("floor" in r for r in plain["history"])
