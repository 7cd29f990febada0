"""qat_finetune / qat_accuracy on a tiny synthetic task, and GHN-initialized weights through torch.ao QAT."""
import copy
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torch_qinit
from torch_qinit.qat import QATResult, qat_accuracy, qat_finetune
from torch_qinit.quant import quantized_layers


def data(n: int = 256, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    y = torch.randint(0, 3, (n,), generator=g)
    x = protos[y] + 0.8 * torch.randn(n, 1, 8, 8, generator=g)
    return TensorDataset(x, y)


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3),
    )


def train_loader(seed: int = 0) -> DataLoader:
    return DataLoader(data(256, seed=0), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed))


def test_qat_improves_loss_and_accuracy():
    model = net()
    test = DataLoader(data(256, seed=1), batch_size=128)
    res = qat_finetune(model, 4, train_loader(), steps=60, lr=1e-2, eval_every=20,
                       eval_fn=lambda q: qat_accuracy(q, test))
    assert isinstance(res, QATResult)
    assert len(res.losses) == 60 and res.skipped_steps == 0
    assert [s for s, _ in res.curve] == [20, 40, 60]
    first, last = sum(res.losses[:5]) / 5, sum(res.losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert res.final_metric == res.curve[-1][1] > 0.8
    assert not res.model.training
    # qat_accuracy with recalibrated ranges works on a copy: the trained model is unchanged
    state = copy.deepcopy(res.model.state_dict())
    acc_cal = qat_accuracy(res.model, test, calib_loader=train_loader(), calib_batches=2)
    assert acc_cal > 0.8
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_input_model_untouched_and_bits_respected():
    model = net().eval()
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    res = qat_finetune(model, 3, train_loader(), steps=3, act_bits=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), rng)  # seeded run leaves the global RNG alone
    assert not model.training and all(not m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert res.model is not model
    layers = quantized_layers(res.model)
    assert len(layers) == 3
    assert all(m.w_bits == 3 and m.a_bits == 5 for m in layers.values())
    assert not quantized_layers(model)
    # BN kept (fold_bn=False), so parameter names match the float model's
    assert set(dict(res.model.named_parameters())) == set(dict(model.named_parameters()))


def test_seeded_runs_are_reproducible():
    def run():
        # the loader draws its shuffle from the global RNG, which the generator seeds
        loader = DataLoader(data(128), batch_size=32, shuffle=True)
        return qat_finetune(net(), 4, loader, steps=6, generator=torch.Generator().manual_seed(3)).losses

    assert run() == run()


@pytest.mark.parametrize("bits", [1, 9, 0, None, 4.0, "4", True, {"0": 1}, {}])
def test_bad_bits(bits):
    with pytest.raises(ValueError, match="bits"):
        qat_finetune(net(), bits, train_loader(), steps=1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="act_bits"):
        qat_finetune(net(), 4, train_loader(), steps=1, act_bits=12)
    with pytest.raises(ValueError, match="steps"):
        qat_finetune(net(), 4, train_loader(), steps=0)
    with pytest.raises(ValueError, match="lr"):
        qat_finetune(net(), 4, train_loader(), steps=1, lr=-1.0)
    with pytest.raises(ValueError, match="optimizer"):
        qat_finetune(net(), 4, train_loader(), steps=1, optimizer="lamb")
    with pytest.raises(ValueError, match="no batches"):
        qat_finetune(net(), 4, [], steps=1)
    for bad in (0, -1.0, float("inf"), float("nan"), True, "5"):
        with pytest.raises(ValueError, match="clip_grad_norm"):
            qat_finetune(net(), 4, train_loader(), steps=1, clip_grad_norm=bad)
    with pytest.raises(ValueError, match="quantized layers"):
        qat_accuracy(net(), train_loader())


def test_mixed_precision_and_sgd():
    res = qat_finetune(net(), {"0": 8, "3": 2, "8": 4}, train_loader(), steps=2, optimizer="sgd", lr=0.05,
                       progress=True)
    assert {n: m.w_bits for n, m in quantized_layers(res.model).items()} == {"0": 8, "3": 2, "8": 4}


def test_non_finite_loss_is_skipped():
    calls = {"n": 0}

    def loss_fn(logits, y):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(logits, y)
        return loss * float("nan") if calls["n"] == 2 else loss

    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        res = qat_finetune(net(), 4, train_loader(), steps=4, loss_fn=loss_fn)
    assert res.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


def test_clip_grad_norm_bounds_each_update():
    # SGD with Nesterov momentum 0.9 moves the weights by lr * 1.9 * gradient on its first step, so a
    # clipped gradient bounds that move; unclipped, the same step moves them much further.
    def moved(clip):
        model = net()
        before = torch.cat([p.detach().flatten() for p in model.parameters()])
        res = qat_finetune(model, 4, train_loader(), steps=1, optimizer="sgd", lr=0.1, clip_grad_norm=clip)
        after = torch.cat([p.detach().flatten() for p in res.model.parameters()])
        return float((after - before).norm()), res.clipped_steps

    clipped, n_clipped = moved(1e-3)
    free, n_free = moved(None)
    assert n_clipped == 1 and n_free == 0
    assert clipped <= 0.1 * 1.9 * 1e-3 * 1.001 < free


def test_a_non_finite_gradient_is_skipped_when_clipping():
    def loss_fn(logits, y):  # a finite loss whose gradient is NaN: d sqrt(u)/du is inf at u = 0, times 0
        return nn.functional.cross_entropy(logits, y) + torch.sqrt((logits * 0).sum())

    with pytest.warns(UserWarning, match="skipped 2 of 2"):
        res = qat_finetune(net(), 4, train_loader(), steps=2, optimizer="sgd", lr=0.1, clip_grad_norm=1.0,
                           loss_fn=loss_fn)
    assert res.skipped_steps == 2
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


# ---------------------------------------------------------------- torch.ao: the README's QAT loop


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _qconfig_mapping(kind: str):
    from torch.ao.quantization import (
        FakeQuantize,
        MovingAverageMinMaxObserver,
        MovingAveragePerChannelMinMaxObserver,
        QConfig,
        QConfigMapping,
        get_default_qat_qconfig_mapping,
    )

    if kind == "x86":
        return get_default_qat_qconfig_mapping("x86")  # 8-bit
    # 4-bit: the same observers with 16 levels
    act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=15,
                                 dtype=torch.quint8)
    wt = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-8, quant_max=7,
                                dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    return QConfigMapping().set_global(QConfig(activation=act, weight=wt))


@pytest.mark.parametrize("kind", ["x86", "4bit"])
def test_predicted_weights_survive_torch_ao_prepare_qat_fx(ghn_dir, kind):
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in recent torch; its warnings are not what this test checks.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")
        from torch.ao.quantization.quantize_fx import prepare_qat_fx

        model = SmallCNN()
        report = torch_qinit.initialize_(model, bits=4, weights=ghn_dir)
        assert report.num_fallback == 0
        init = {n: p.detach().clone() for n, p in model.named_parameters()}

        example_inputs = (torch.randn(2, 1, 28, 28),)
        prepared = prepare_qat_fx(model.train(), _qconfig_mapping(kind), example_inputs)

        # conv+bn become fused QAT modules (ConvBn2d, named after the conv) whose .weight is the conv
        # weight and .bn the BN: parameter names change ("bn1.weight" -> "conv1.bn.weight"), values must not.
        mods = dict(prepared.named_modules())
        fused = [n for n, m in mods.items() if type(m).__name__.startswith("ConvBn")]
        assert fused == ["conv1", "conv2"], [(n, type(m).__name__) for n, m in mods.items()]
        for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
            m = mods[conv]
            assert torch.equal(m.weight, init[f"{conv}.weight"]), conv
            assert torch.equal(m.bn.weight, init[f"{bn}.weight"]) and torch.equal(m.bn.bias, init[f"{bn}.bias"]), bn
        fc = mods["fc"]
        assert torch.equal(fc.weight, init["fc.weight"]) and torch.equal(fc.bias, init["fc.bias"])
        # every initialized value is present in the prepared model, once
        prepared_params = list(prepared.parameters())
        assert len(prepared_params) == len(init)
        for name, value in init.items():
            assert sum(torch.equal(p, value) for p in prepared_params if p.shape == value.shape) >= 1, name

        # and QAT training starts from them
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt = torch.optim.SGD(prepared.parameters(), lr=0.01, momentum=0.9)
        loss = nn.functional.cross_entropy(prepared(x), y)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert not torch.equal(mods["conv1"].weight, init["conv1.weight"])
        assert all(torch.isfinite(p).all() for p in prepared.parameters())
