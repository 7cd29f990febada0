"""The lookahead objective: the loss after simulated SGD steps, its frozen calibration, and the trainer's use of it."""
import json

import pytest
import torch
import torch.nn.functional as F
from test_train import _cfg, _data
from torch import nn
from torch.func import functional_call

from torch_qinit.cli.train import _config, build_parser
from torch_qinit.ghn.calibration import output_divisor
from torch_qinit.training import TrainConfig, train
from torch_qinit.training.lookahead import UnitStdScales, lookahead_loss


def _linear_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = nn.Linear(5, 3)
    params = {"weight": torch.randn(3, 5, generator=g).requires_grad_(),
              "bias": torch.randn(3, generator=g).requires_grad_()}
    batches = [(torch.randn(8, 5, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    return net, params, batches


def _loss(params, batch):
    x, y = batch
    return F.cross_entropy(x @ params["weight"].T + params["bias"], y)


def test_lookahead_loss_is_the_loss_after_plain_sgd_steps():
    net, params, batches = _linear_problem()
    lr = 0.3
    first = F.cross_entropy(functional_call(net, params, (batches[0][0],)), batches[0][1])
    got = lookahead_loss(net, params, first, batches[1:], lr)
    # by hand: two SGD steps, gradients on batches 0 and 1, loss on batch 2
    p = {k: v.detach().clone() for k, v in params.items()}
    for batch in batches[:2]:
        p = {k: v.requires_grad_() for k, v in p.items()}
        grads = torch.autograd.grad(_loss(p, batch), list(p.values()))
        p = {k: (v - lr * g).detach() for (k, v), g in zip(p.items(), grads)}
    assert got.item() == pytest.approx(_loss(p, batches[2]).item(), rel=1e-5)
    # the loss at the start can still be backpropagated (the trainer mixes both)
    first.backward()
    assert params["weight"].grad is not None


def test_second_order_sees_the_curvature_first_order_does_not():
    net, params, batches = _linear_problem(1)
    lr = 0.5

    def grad_of(second_order):
        first = F.cross_entropy(functional_call(net, params, (batches[0][0],)), batches[0][1])
        loss = lookahead_loss(net, params, first, batches[1:2], lr, second_order=second_order)
        return torch.autograd.grad(loss, [params["weight"]])[0]

    second, first = grad_of(True), grad_of(False)
    # first order: exactly the gradient of the loss at the stepped point
    p = {k: v.detach() for k, v in params.items()}
    stepped = {k: v.clone().requires_grad_() for k, v in p.items()}
    grads = torch.autograd.grad(_loss(stepped, batches[0]), list(stepped.values()))
    after = {k: (v - lr * g).detach().requires_grad_() for (k, v), g in zip(p.items(), grads)}
    expected = torch.autograd.grad(_loss(after, batches[1]), [after["weight"]])[0]
    assert torch.allclose(first, expected, atol=1e-6)
    assert not torch.allclose(second, first, atol=1e-4)  # the (I - lr H) factor


def test_no_batches_is_an_error():
    net, params, batches = _linear_problem()
    with pytest.raises(ValueError, match="at least one batch"):
        lookahead_loss(net, params, _loss(params, batches[0]), [], 0.1)


def test_unit_std_scales_match_the_hook_and_hold_inside_frozen():
    layer = nn.Linear(4, 6)
    scales = UnitStdScales([layer])
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = nn.functional.linear(x, layer.weight, layer.bias)
        assert torch.equal(layer(x), raw / output_divisor(raw))  # outside frozen: divided by its own std
        with scales.frozen():
            # doubled weights: the divisor measured before stays, so the output doubles (calibration is fixed once)
            doubled = functional_call(layer, {"weight": 2 * layer.weight, "bias": 2 * layer.bias}, (x,))
        assert torch.allclose(doubled, 2 * layer(x), atol=1e-6)
        # and after frozen, the divisor is measured per batch again
        again = functional_call(layer, {"weight": 2 * layer.weight, "bias": 2 * layer.bias}, (x,))
        assert torch.allclose(again, layer(x), atol=1e-6)


def test_trainer_mixes_the_lookahead_in_records_it_and_resumes_bit_exactly(tmp_path):
    images, labels = _data()
    plain = train(_cfg(tmp_path / "plain", stage="qat"), images, labels)
    kw = {"stage": "qat", "lookahead_steps": 1, "lookahead_lr": (0.01, 0.2), "log_every": 3}
    ahead = train(_cfg(tmp_path / "ahead", **kw), images, labels)
    assert any(not torch.equal(a, b) for a, b in zip(plain.state_dict().values(), ahead.state_dict().values()))
    state = json.loads((tmp_path / "ahead" / "ckpt" / "state.json").read_text())
    assert all(row["ahead"] is None or row["ahead"] > 0 for row in state["history"])
    assert state["lookahead_diverged"] >= 0
    record = json.loads((tmp_path / "ahead" / "final" / "config.json").read_text())["training"]
    assert record["lookahead"] == {"steps": 1, "lr": [0.01, 0.2], "weight": 1.0, "first_order": False,
                                   "diverged": state["lookahead_diverged"]}
    assert "lookahead" not in json.loads((tmp_path / "plain" / "final" / "config.json").read_text())["training"]
    train(_cfg(tmp_path / "cut", stop_after=3, **kw), images, labels)
    resumed = train(_cfg(tmp_path / "cut", **kw), images, labels, resume=True)
    for (name, a), b in zip(ahead.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_zero_weight_lookahead_changes_nothing(tmp_path):
    """Weight 0 skips the steps, but the draws still happen; a run without lookahead keeps its old stream."""
    images, labels = _data()
    plain = train(_cfg(tmp_path / "plain", stage="qat", steps=2), images, labels)
    zero = train(_cfg(tmp_path / "zero", stage="qat", steps=2, lookahead_steps=1, lookahead_weight=0.0), images,
                 labels)
    for (name, a), b in zip(plain.state_dict().items(), zero.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("kw, match", [
    ({"lookahead_steps": -1}, "lookahead_steps"),
    ({"lookahead_steps": 1, "lookahead_lr": (0.2, 0.1)}, "lookahead_lr"),
    ({"lookahead_steps": 1, "lookahead_lr": (0.0, 0.1)}, "lookahead_lr"),
    ({"lookahead_steps": 1, "lookahead_lr": (0.1,)}, "lookahead_lr"),
    ({"lookahead_weight": -1.0}, "lookahead_weight"),
])
def test_bad_lookahead_options_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_cli_passes_the_lookahead_options():
    args = build_parser().parse_args(["--lookahead-steps", "2", "--lookahead-lr", "0.05", "0.1",
                                      "--lookahead-weight", "0.5", "--lookahead-first-order"])
    cfg = _config(args, [])
    assert (cfg.lookahead_steps, cfg.lookahead_lr, cfg.lookahead_weight, cfg.lookahead_first_order) == \
        (2, (0.05, 0.1), 0.5, True)
    assert build_parser().parse_args([]).lookahead_steps == 0
