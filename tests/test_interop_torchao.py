"""initialize_ → torchao eager QAT (quantize_ with QATConfig prepare → train → convert) keeps the predicted values."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_qinit

pytest.importorskip("torchao", reason="needs the 'torchao' extra: pip install torch_qinit[torchao]")
from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_  # noqa: E402
from torchao.quantization.granularity import PerAxis  # noqa: E402
from torchao.quantization.qat import FakeQuantizedLinear, IntxFakeQuantizeConfig, QATConfig  # noqa: E402


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


LINEARS = ("1", "3", "5")
g = torch.Generator().manual_seed(0)
X, Y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)


def _int4_per_channel(w: torch.Tensor) -> torch.Tensor:
    """torchao's symmetric int4 per-output-channel fake quant, written out: scale = absmax / 7.5, levels -8..7."""
    scale = w.abs().amax(dim=1, keepdim=True) / 7.5
    return (w / scale).round().clamp(-8, 7) * scale


def _assert_on_int4_grid(q: torch.Tensor, w: torch.Tensor) -> None:
    """``q`` is ``w`` rounded to int4 per channel (rounding ties may land one step off)."""
    ref = _int4_per_channel(w)
    step = w.abs().amax(dim=1, keepdim=True) / 7.5
    diff = (q.detach() - ref).abs()
    assert (diff <= step * 1.001 + 1e-7).all()
    assert (diff <= 1e-5 * step + 1e-7).float().mean() > 0.95  # ties: each row's abs-max sits at ±7.5 steps


CONFIGS = {
    # the form: fake-quant configs given directly; convert only swaps the modules back
    "weight_config": (dict(weight_config=IntxFakeQuantizeConfig(torch.int4, "per_channel", is_symmetric=True)),
                      None),
    # base PTQ configs: prepare infers the fake quantizers, convert applies the real int4 quantization
    "int4_weight_only": (dict(base_config=IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerAxis(0))),
                         "base"),
    "int8_act_int4_weight": (dict(base_config=Int8DynamicActivationIntxWeightConfig(
        weight_dtype=torch.int4, weight_granularity=PerAxis(0))), "base"),
}


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_torchao_qat_prepare_train_convert(ghn_dir, kind):
    kwargs, convert = CONFIGS[kind]
    model = _mlp()
    report = torch_qinit.initialize_(model, bits=4, weights=ghn_dir)
    assert report.num_fallback == 0 and report.capture_method == "fx"
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    params_before = {n: p for n, p in model.named_parameters()}
    ref = model(X)

    quantize_(model, QATConfig(**kwargs, step="prepare"))
    # prepare swaps nn.Linear for FakeQuantizedLinear and keeps the Parameter objects themselves
    for name in LINEARS:
        assert isinstance(model[int(name)], FakeQuantizedLinear), name
    for name, p in model.named_parameters():
        assert p is params_before[name] and torch.equal(p, init[name]), name

    # training starts from the predicted values: without fake quant it is the initialized float model,
    # with it the weight is the predicted weight rounded to int4 per output channel
    for name in LINEARS:
        model[int(name)].weight_fake_quantizer.enabled = False
        if model[int(name)].activation_fake_quantizer is not None:
            model[int(name)].activation_fake_quantizer.enabled = False
    torch.testing.assert_close(model(X), ref, rtol=0, atol=0)
    for name in LINEARS:
        model[int(name)].weight_fake_quantizer.enabled = True
        if model[int(name)].activation_fake_quantizer is not None:
            model[int(name)].activation_fake_quantizer.enabled = True
        fq = model[int(name)].weight_fake_quantizer(model[int(name)].weight)
        _assert_on_int4_grid(fq, init[f"{name}.weight"])

    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(X), Y)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        if not losses:  # the first step moves each weight by exactly -lr * grad from its predicted value
            grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        opt.step()
        if not losses:
            for n, p in model.named_parameters():
                torch.testing.assert_close(p.detach(), init[n] - 0.01 * grads[n], rtol=1e-5, atol=1e-7)
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}

    quantize_(model, QATConfig(kwargs.get("base_config"), step="convert"))
    for name in LINEARS:
        layer = model[int(name)]
        assert type(layer) is nn.Linear, type(layer)
        if convert is None:  # plain float weights back, the trained ones
            assert torch.equal(layer.weight, trained[f"{name}.weight"])
        else:  # int4 weights (a torchao tensor subclass) that dequantize to the trained weights' int4 grid
            assert type(layer.weight).__name__ == "IntxUnpackedToInt8Tensor"
            assert layer.weight.qdata.min() >= -8 and layer.weight.qdata.max() <= 7
            deq = layer.weight.dequantize()
            _assert_on_int4_grid(deq, trained[f"{name}.weight"])
    assert torch.isfinite(model(X)).all()
