"""Simulated quantization: fake-quant properties, BN folding, quantized models, metrics."""
import math
import warnings

import pytest
import torch
from torch import nn

from torch_qinit.quant import (
    INPUT_MIN_BITS,
    LSQQuantizer,
    QuantConv2d,
    QuantLinear,
    calibrate,
    check_bits,
    fake_quant_act,
    fake_quant_weight,
    fold_bn,
    qmse,
    quantize_model,
    quantized_layers,
    set_quant_bits,
    sqnr,
    weight_quant_error,
)

ALL_BITS = [2, 3, 4, 8]


# ---------------------------------------------------------------- check_bits
def test_check_bits_messages():
    assert check_bits(None) is None
    assert check_bits(4) == 4
    with pytest.raises(ValueError, match=r"bits must be an int in 2\.\.8 or None, got 1$"):
        check_bits(1)
    with pytest.raises(ValueError, match=r"bits must be an int in 2\.\.8 or None, got 9$"):
        check_bits(9)
    for bad in (True, 4.0, "4"):
        with pytest.raises(TypeError):
            check_bits(bad)
    with pytest.raises(ValueError, match="got 1"):
        fake_quant_weight(torch.randn(3, 3), 1)
    with pytest.raises(ValueError, match="got 9"):
        fake_quant_act(torch.randn(3), 9, 0.0, 1.0)


# ------------------------------------------------------------ weight quant
@pytest.mark.parametrize("bits", ALL_BITS)
def test_weight_levels_per_channel(bits):
    torch.manual_seed(0)
    w = torch.randn(6, 8, 5, 5)
    wq = fake_quant_weight(w, bits)
    qp = 2 ** (bits - 1) - 1
    for c in range(w.shape[0]):
        levels = torch.unique(wq[c])
        assert len(levels) <= 2**bits
        scale = w[c].abs().max() / qp
        ints = wq[c] / scale
        torch.testing.assert_close(ints, ints.round(), atol=1e-4, rtol=0)
        assert ints.abs().max().item() <= qp + 1e-4
    # per-channel abs-max is preserved (the largest weight is a grid point)
    torch.testing.assert_close(wq.abs().amax(dim=(1, 2, 3)), w.abs().amax(dim=(1, 2, 3)))


@pytest.mark.parametrize("bits", ALL_BITS)
def test_weight_idempotent_and_zero(bits):
    torch.manual_seed(1)
    w = torch.randn(4, 16)
    w[0, :5] = 0.0
    w[2] = 0.0  # an all-zero channel must not produce NaN
    wq = fake_quant_weight(w, bits)
    assert torch.isfinite(wq).all()
    assert torch.all(wq[0, :5] == 0) and torch.all(wq[2] == 0)
    torch.testing.assert_close(fake_quant_weight(wq, bits), wq, atol=1e-6, rtol=1e-6)
    assert torch.equal(fake_quant_weight(torch.zeros(3, 3), bits), torch.zeros(3, 3))


def test_weight_per_tensor_and_float():
    w = torch.randn(4, 16)
    w[1] *= 100
    wq = fake_quant_weight(w, 2, per_channel=False)
    assert len(torch.unique(wq)) <= 3  # one scale for the whole tensor: {-s, 0, s}
    assert fake_quant_weight(w, None) is w


def test_weight_ste_identity_gradient():
    w = torch.randn(5, 7, requires_grad=True)
    g = torch.randn(5, 7)
    (fake_quant_weight(w, 3) * g).sum().backward()
    assert torch.equal(w.grad, g)


# -------------------------------------------------------- activation quant
@pytest.mark.parametrize("bits", ALL_BITS)
def test_act_levels_idempotent_unsigned(bits):
    torch.manual_seed(2)
    x = torch.relu(torch.randn(1000)) * 3
    xq = fake_quant_act(x, bits, 0.0, 2.0)
    assert len(torch.unique(xq)) <= 2**bits
    assert xq.min().item() == 0.0  # unsigned: zero is a level, nothing below it
    assert xq.max().item() <= 2.0 + 1e-6
    assert torch.all(xq[x == 0] == 0)
    torch.testing.assert_close(fake_quant_act(xq, bits, 0.0, 2.0), xq)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_act_signed_range(bits):
    x = torch.linspace(-3, 3, 1001)
    xq = fake_quant_act(x, bits, -1.0, 2.0)
    assert len(torch.unique(xq)) <= 2**bits
    # the integer zero point may shift the grid by up to half a step
    half_step = 0.5 * 3.0 / (2**bits - 1) + 1e-6
    assert xq.min().item() >= -1.0 - half_step and xq.max().item() <= 2.0 + half_step
    assert fake_quant_act(torch.zeros(3), bits, -1.0, 2.0).abs().max().item() == 0.0


def test_act_clipped_ste_gradient():
    x = torch.tensor([-2.0, -0.5, 0.1, 0.7, 0.99, 1.5, 3.0], requires_grad=True)
    fake_quant_act(x, 4, -1.0, 1.0).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    lo = torch.tensor(0.0, requires_grad=True)
    x2 = torch.randn(10, requires_grad=True)
    fake_quant_act(x2, 4, lo, torch.tensor(1.0)).sum().backward()
    assert lo.grad is None  # the range is a constant


def test_act_degenerate_range():
    out = fake_quant_act(torch.zeros(4), 4, 0.0, 0.0)
    assert torch.equal(out, torch.zeros(4))


# ---------------------------------------------------------------------- LSQ
def test_lsq_quantizer():
    torch.manual_seed(0)
    q = LSQQuantizer(3, signed=True, num_channels=4)
    w = torch.randn(4, 10, requires_grad=True)
    out = q(w)
    assert bool(q.initialized)
    for c in range(4):
        assert len(torch.unique(out[c].detach())) <= 2**3
    out.pow(2).sum().backward()
    assert q.step.grad is not None and q.step.grad.abs().sum() > 0
    assert w.grad is not None
    q.bits = 4  # other bits: step re-fitted on next use
    assert not bool(q.initialized)
    a = LSQQuantizer(2)
    y = a(torch.relu(torch.randn(100)))
    assert a.signed is False and y.min().item() >= 0
    assert len(torch.unique(y)) <= 4
    assert LSQQuantizer(None)(w) is w


# ------------------------------------------------------------------ BN fold
def bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=2, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.2, 3.0)
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-1, 1)
    return net.eval()


def test_fold_bn_matches_float():
    net = bn_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_bn(net)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 0
    assert isinstance(folded[1], nn.Identity) and folded[3].bias is not None
    x = torch.randn(5, 3, 10, 10)
    torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)
    for k, v in net.state_dict().items():  # original untouched
        assert torch.equal(v, before[k])
    assert isinstance(net[1], nn.BatchNorm2d)


class Dynamic(nn.Module):
    """Data-dependent control flow: fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.body = bn_net()

    def forward(self, x):
        if x.sum() > 0:
            return self.body(x)
        return self.body(-x)


def test_fold_bn_fx_fallback_warns():
    net = Dynamic().eval()
    x = torch.randn(2, 3, 6, 6)
    with pytest.warns(UserWarning, match="fx tracing failed"):
        folded = fold_bn(net)
    assert isinstance(folded.body[1], nn.Identity) and isinstance(folded.body[4], nn.Identity)
    torch.testing.assert_close(folded(x), net(x), atol=1e-5, rtol=1e-5)


class Branchy(nn.Module):
    """conv output used twice: its BN cannot be folded."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


def test_fold_bn_skips_shared_output():
    folded = fold_bn(Branchy().eval())
    assert isinstance(folded.bn, nn.BatchNorm2d)


# ------------------------------------------------------------ quantize_model
def test_quantize_model_structure_and_input_unchanged():
    net = bn_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    q = quantize_model(net, w_bits=4)
    assert isinstance(q[0], QuantConv2d) and isinstance(q[8], QuantLinear)
    assert isinstance(q[1], nn.Identity)  # folded
    assert (q[0].w_bits, q[0].a_bits) == (4, 4)
    assert type(net[0]) is nn.Conv2d and isinstance(net[1], nn.BatchNorm2d)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def test_quantize_model_param_names_and_functional_call():
    net = bn_net()
    q = quantize_model(net, w_bits=4, fold_bn=False)
    assert [n for n, _ in q.named_parameters()] == [n for n, _ in net.named_parameters()]
    params = {n: p.detach().clone().requires_grad_() for n, p in net.named_parameters()}
    x = torch.randn(3, 3, 8, 8)
    q.train()
    out = torch.func.functional_call(q, params, (x,))
    out.sum().backward()
    assert all(p.grad is not None for p in params.values())
    # the supplied tensors are used: scaling the last layer's weight changes the output
    params2 = {n: t.detach() for n, t in params.items()}
    params2["8.weight"] = params2["8.weight"] * 2
    assert not torch.allclose(torch.func.functional_call(q, params2, (x,)), out)


def test_first_layer_keeps_8_bit_input():
    q = quantize_model(bn_net(), w_bits=2)
    layers = quantized_layers(q)
    assert layers["0"].first_layer and layers["0"].input_bits == INPUT_MIN_BITS
    assert layers["0"].w_bits == 2
    assert layers["3"].input_bits == 2 and not layers["3"].first_layer


def test_mixed_precision_dict():
    net = bn_net()
    q = quantize_model(net, w_bits={"0": 8, "3": 2}, default_bits=4)
    layers = quantized_layers(q)
    assert {n: m.w_bits for n, m in layers.items()} == {"0": 8, "3": 2, "8": 4}
    assert {n: m.a_bits for n, m in layers.items()} == {"0": 8, "3": 2, "8": 4}
    q = quantize_model(net, w_bits={"3": 3}, a_bits="float")
    layers = quantized_layers(q)
    assert {n: m.w_bits for n, m in layers.items()} == {"0": None, "3": 3, "8": None}
    assert all(m.a_bits is None for m in layers.values())
    set_quant_bits(q, 4, {"8": 2})
    assert {n: (m.w_bits, m.a_bits) for n, m in layers.items()} == {"0": (4, None), "3": (4, None), "8": (4, 2)}
    with pytest.raises(ValueError, match="unknown layer names"):
        quantize_model(net, w_bits={"nope": 4})
    with pytest.raises(ValueError, match="got 1"):
        set_quant_bits(q, {"3": 1})
    assert layers["8"].a_bits == 2  # a failed call changes nothing


def test_quantize_model_bad_inputs():
    with pytest.raises(TypeError):
        quantize_model("model")
    with pytest.raises(ValueError, match="no parameters"):
        quantize_model(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="got 1"):
        quantize_model(bn_net(), w_bits=1)
    with pytest.raises(ValueError, match="got 9"):
        quantize_model(bn_net(), w_bits=4, a_bits=9)


def test_calibration_and_training_range():
    q = quantize_model(bn_net(), w_bits=4)
    assert not bool(q[0].act_calibrated)
    torch.manual_seed(0)
    batches = [(torch.randn(4, 3, 8, 8) * s, torch.zeros(4)) for s in (1.0, 3.0)]
    q.train()
    calibrate(q, batches)
    assert q.training  # mode restored
    lo = min(b[0].min() for b in batches)
    hi = max(b[0].max() for b in batches)
    assert q[0].act_lo.item() == pytest.approx(lo.item()) and q[0].act_hi.item() == pytest.approx(hi.item())
    assert bool(q[3].act_calibrated) and q[3].act_lo.item() >= 0  # after ReLU
    # training-mode forward: EMA with momentum 0.1 toward the batch range
    x = torch.full((2, 3, 8, 8), 0.5)
    x[0, 0, 0, 0] = 10.0
    old_hi = q[0].act_hi.item()
    q(x)
    assert q[0].act_hi.item() == pytest.approx(0.9 * old_hi + 0.1 * 10.0, rel=1e-5)
    # eval mode uses the stored range: values beyond it are clipped
    q.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q(torch.randn(2, 3, 8, 8))


def test_uncalibrated_eval_warns():
    q = quantize_model(bn_net(), w_bits=4).eval()
    with pytest.warns(UserWarning, match="not calibrated"):
        q(torch.randn(2, 3, 8, 8))


def make_blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Linearly separable 4-class images: a class-specific pattern plus noise."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(123))
    y = torch.randint(0, 4, (n,), generator=g)
    x = protos[y] + 0.5 * torch.randn(n, 1, 8, 8, generator=g)
    return x, y


def test_8bit_close_to_float_after_training():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 4),
    )
    xtr, ytr = make_blobs(2048, 0)
    xte, yte = make_blobs(1000, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    net.train()
    for step in range(200):
        i = (step * 64) % 2048
        loss = nn.functional.cross_entropy(net(xtr[i:i + 64]), ytr[i:i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        acc_f = (net(xte).argmax(1) == yte).float().mean().item()
        q = quantize_model(net, w_bits=8, calib_data=[xtr[i:i + 256] for i in range(0, 1024, 256)]).eval()
        acc_q = (q(xte).argmax(1) == yte).float().mean().item()
    assert acc_f > 0.9
    assert abs(acc_f - acc_q) <= 0.01, (acc_f, acc_q)


def test_lsq_model_option():
    net = bn_net()
    q = quantize_model(net, w_bits=4, lsq=True, calib_data=[torch.randn(4, 3, 8, 8)])
    assert q[0].w_lsq is not None and q[0].a_lsq.bits == INPUT_MIN_BITS and q[3].a_lsq.bits == 4
    out = q.train()(torch.randn(4, 3, 8, 8))
    out.sum().backward()
    assert q[3].w_lsq.step.grad is not None


# ------------------------------------------------------------------ metrics
def test_metrics():
    x = torch.ones(100)
    assert sqnr(x, x) == math.inf
    assert sqnr(x, 0.9 * x) == pytest.approx(20.0)
    assert qmse(x, 0.9 * x) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        qmse(x, torch.ones(3))
    net = bn_net()
    err = {b: weight_quant_error(net, b) for b in (2, 4, 8)}
    assert set(err[4]) == {"0", "3", "8"}
    for name in err[4]:
        assert err[2][name]["sqnr"] < err[4][name]["sqnr"] < err[8][name]["sqnr"]
        assert err[2][name]["qmse"] > err[4][name]["qmse"] > err[8][name]["qmse"]
    with pytest.raises(ValueError):
        weight_quant_error(net, 1)


def test_conv1d_and_requantize_without_warnings():
    net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6, 2)).eval()
    x = torch.randn(3, 2, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = quantize_model(net, w_bits=8, calib_data=[x])
        q2 = quantize_model(q, w_bits=3, calib_data=[x])  # a quantized model can be re-quantized
    assert type(q[0]).__name__ == "QuantConv1d" and isinstance(q[1], nn.Identity)
    torch.testing.assert_close(q.eval()(x), net(x), atol=0.05, rtol=0.05)
    assert q2[0].w_bits == 3 and q[0].w_bits == 8


def test_metrics_edge_cases_and_per_tensor_error():
    zero, x = torch.zeros(4), torch.tensor([1.0, -2.0, 0.5, 0.0])
    assert sqnr(zero, x) == -math.inf  # pure noise, no signal
    assert sqnr(zero, zero) == math.inf
    assert sqnr(x, 2 * x) == pytest.approx(0.0)  # noise as large as the signal: 0 dB
    assert qmse(x, x + 0.5) == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"^shape mismatch: \(4,\) vs \(2, 2\)$"):
        sqnr(x, x.view(2, 2))
    with pytest.raises(TypeError, match=r"^weight_quant_error expects an nn.Module, got str$"):
        weight_quant_error("net", 4)
    lin = nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.3, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]))
    # 2 bits per channel: 0.3 -> 0 on row 0; per tensor the whole first row rounds to 0
    assert weight_quant_error(lin, 2)[""]["qmse"] == pytest.approx(0.3 ** 2 / 8)  # the root module is named ""
    assert weight_quant_error(lin, 2, per_channel=False)[""]["qmse"] == pytest.approx((1.0 + 0.3 ** 2) / 8)
