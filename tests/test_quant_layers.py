"""Quantized layers compute what they claim: the float op on the fake-quantized weight and input, with the input
range taken from the batch (training, uncalibrated eval) or the stored range (eval), or from LSQ quantizers."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torch_qinit.graph.layout import swap_channel_axes
from torch_qinit.quant import (
    INPUT_MIN_BITS,
    QuantConv1d,
    QuantConv2d,
    QuantConv3d,
    QuantConvTranspose1d,
    QuantConvTranspose2d,
    QuantConvTranspose3d,
    QuantLinear,
    fake_quant_act,
    fake_quant_weight,
    quantize_model,
    set_quant_bits,
)


def _linear(w_bits, a_bits):
    torch.manual_seed(0)
    return QuantLinear.from_float(nn.Linear(5, 3), w_bits, a_bits)


def test_from_float_copies_the_layer_with_its_bits():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    q = QuantLinear.from_float(lin, 4, 2)
    assert type(q) is QuantLinear and q is not lin and type(lin) is nn.Linear
    assert (q.w_bits, q.a_bits, q.first_layer, q.input_bits) == (4, 2, False, 2)
    assert torch.equal(q.weight, lin.weight) and q.weight is not lin.weight
    assert not bool(q.act_calibrated) and q.act_lo.item() == 0.0 and q.act_hi.item() == 0.0
    assert q.w_lsq is None and q.a_lsq is None
    assert [n for n, _ in q.named_parameters()] == ["weight", "bias"]
    assert sorted(n for n, _ in q.named_buffers()) == ["act_calibrated", "act_hi", "act_lo"]
    c = QuantConv2d.from_float(nn.Conv2d(2, 4, 3, stride=2, padding=1), None, 8)
    assert type(c) is QuantConv2d and (c.w_bits, c.a_bits) == (None, 8) and c.stride == (2, 2)


def test_from_float_takes_the_exact_float_type_only():
    class MyLinear(nn.Linear):
        pass

    with pytest.raises(TypeError, match=r"^QuantLinear\.from_float expects an Linear, got MyLinear$"):
        QuantLinear.from_float(MyLinear(2, 2))
    with pytest.raises(TypeError, match=r"^QuantConv2d\.from_float expects an Conv2d, got Conv1d$"):
        QuantConv2d.from_float(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="got 9"):
        QuantConv1d.from_float(nn.Conv1d(2, 2, 1), 9)


def test_training_forward_quantizes_weight_and_input_on_the_batch_range():
    q = _linear(2, 3).train()
    x = torch.randn(4, 5)
    expected = F.linear(fake_quant_act(x, 3, x.min(), x.max()), fake_quant_weight(q.weight, 2), q.bias)
    torch.testing.assert_close(q(x), expected)
    # weight only / input only / float
    for w_bits, a_bits in ((2, None), (None, 3), (None, None)):
        q = _linear(w_bits, a_bits).train()
        xq = fake_quant_act(x, a_bits, x.min(), x.max())
        w = fake_quant_weight(q.weight, w_bits)
        torch.testing.assert_close(q(x), F.linear(xq, w, q.bias))
        assert bool(q.act_calibrated)  # the range is tracked even at float


def test_uncalibrated_eval_uses_the_batch_range_and_warns():
    q = _linear(None, 2).eval()
    x = torch.randn(4, 5)
    with pytest.warns(UserWarning, match=r"^QuantLinear: activation range not calibrated; using this batch's "
                                         r"min/max \(run calibrate\(\) or a training-mode forward first\)$"):
        y = q(x)
    torch.testing.assert_close(y, F.linear(fake_quant_act(x, 2, x.min(), x.max()), q.weight, q.bias))
    assert not bool(q.act_calibrated)  # eval never writes the range
    f = _linear(None, None).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a float input needs no range
        torch.testing.assert_close(f(x), F.linear(x, f.weight, f.bias))


def test_eval_uses_the_stored_range():
    q = _linear(3, 2).train()
    q(torch.tensor([[-1.0, 0.0, 0.0, 0.0, 2.0]]))  # the first batch sets the range: [-1, 2]
    q(torch.tensor([[1.0, 1.0, 1.0, 1.0, 4.0]]))  # then an EMA with momentum 0.1 toward [1, 4]
    q.eval()
    x = torch.linspace(-2, 3, 10).view(2, 5)
    lo, hi = q.act_lo.clone(), q.act_hi.clone()
    torch.testing.assert_close(lo, torch.tensor(0.9 * -1.0 + 0.1 * 1.0))
    torch.testing.assert_close(hi, torch.tensor(0.9 * 2.0 + 0.1 * 4.0))
    expected = F.linear(fake_quant_act(x, 2, lo, hi), fake_quant_weight(q.weight, 3), q.bias)
    torch.testing.assert_close(q(x), expected)


def test_first_layer_input_keeps_8_bits():
    q = _linear(2, 2)
    q.first_layer = True
    assert q.input_bits == INPUT_MIN_BITS
    x = torch.randn(4, 5)
    torch.testing.assert_close(q.train()(x), F.linear(fake_quant_act(x, INPUT_MIN_BITS, x.min(), x.max()),
                                                      fake_quant_weight(q.weight, 2), q.bias))
    f = _linear(2, None)
    f.first_layer = True
    assert f.input_bits is None  # float stays float


def test_conv_layers_quantize_like_the_functional_conv():
    torch.manual_seed(1)
    c2 = QuantConv2d.from_float(nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2), 3, 4).train()
    x = torch.randn(2, 2, 6, 6)
    ref = F.conv2d(fake_quant_act(x, 4, x.min(), x.max()), fake_quant_weight(c2.weight, 3), c2.bias,
                   stride=2, padding=1, groups=2)
    torch.testing.assert_close(c2(x), ref)
    c1 = QuantConv1d.from_float(nn.Conv1d(2, 3, 3, dilation=2), 2, 3).train()
    x1 = torch.randn(2, 2, 9)
    ref1 = F.conv1d(fake_quant_act(x1, 3, x1.min(), x1.max()), fake_quant_weight(c1.weight, 2), c1.bias, dilation=2)
    torch.testing.assert_close(c1(x1), ref1)


def test_transposed_conv_layers_quantize_per_output_channel():
    """The stored weight is (in, out/groups, k, k): each output channel (a column block of it, per group) gets
    its own scale, as a conv's filter does; quantizing along dim 0 would share scales across outputs."""
    torch.manual_seed(2)
    layer = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    with torch.no_grad():
        layer.weight[:, 0] *= 100  # one loud output channel: per-input scales would flatten the others to 0
    q = QuantConvTranspose2d.from_float(layer, 3, 4).train()
    x = torch.randn(2, 4, 5, 5)
    per_output = swap_channel_axes(layer.weight.detach(), 2)  # (out, in/groups, k, k)
    w_q = swap_channel_axes(fake_quant_weight(per_output, 3), 2)
    ref = F.conv_transpose2d(fake_quant_act(x, 4, x.min(), x.max()), w_q, layer.bias, stride=2, padding=1,
                             output_padding=1, groups=2)
    out = q(x)
    torch.testing.assert_close(out, ref)
    assert out.shape == (2, 6, 10, 10)
    assert (q._quant_weight()[:, 1:].abs() > 0).float().mean() > 0.5  # quieter channels keep their values
    assert tuple(q(x, output_size=[9, 9]).shape) == (2, 6, 9, 9)  # the output_size argument still works
    q1 = QuantConvTranspose1d.from_float(nn.ConvTranspose1d(2, 3, 3, stride=2), 2, None).train()
    x1 = torch.randn(2, 2, 7)
    w1 = swap_channel_axes(fake_quant_weight(swap_channel_axes(q1.weight.detach(), 1), 2), 1)
    torch.testing.assert_close(q1(x1), F.conv_transpose1d(x1, w1, q1.bias, stride=2))


def test_quantize_model_swaps_transposed_convs_with_per_output_lsq_steps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 6, 4, 2, 1, groups=2))
    x = torch.randn(4, 1, 8, 8)
    q = quantize_model(net, w_bits=4, calib_data=[x])
    assert isinstance(q[2], QuantConvTranspose2d) and q[2].w_bits == 4 and q[2].act_calibrated
    assert q.eval()(x).shape == (4, 6, 8, 8)
    lsq = quantize_model(net, w_bits=4, lsq=True, calib_data=[x])
    assert lsq[2].w_lsq.step.numel() == 6  # one learned step per output channel


def test_3d_conv_layers_quantize_per_output_channel_and_are_swapped_by_quantize_model():
    torch.manual_seed(0)
    conv = nn.Conv3d(2, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight[0] *= 100  # a loud filter must not flatten the others: one scale per output channel
    q = QuantConv3d.from_float(conv, 3, 4).train()
    x = torch.randn(2, 2, 4, 5, 5)
    ref = F.conv3d(fake_quant_act(x, 4, x.min(), x.max()), fake_quant_weight(conv.weight.detach(), 3), conv.bias,
                   padding=1)
    torch.testing.assert_close(q(x), ref)
    assert (q._quant_weight()[1:].abs() > 0).float().mean() > 0.5
    up = nn.ConvTranspose3d(4, 6, 2, stride=2, groups=2)
    qt = QuantConvTranspose3d.from_float(up, 2, None).train()
    h = torch.randn(2, 4, 2, 3, 3)
    w_q = swap_channel_axes(fake_quant_weight(swap_channel_axes(up.weight.detach(), 2), 2), 2)
    torch.testing.assert_close(qt(h), F.conv_transpose3d(h, w_q, up.bias, stride=2, groups=2))
    net = nn.Sequential(conv, nn.BatchNorm3d(4), nn.ReLU(), up)
    qnet = quantize_model(net, w_bits=4, lsq=True, calib_data=[x])
    assert isinstance(qnet[0], QuantConv3d) and isinstance(qnet[3], QuantConvTranspose3d)
    assert qnet[3].w_lsq.step.numel() == 6 and qnet.eval()(x).shape == (2, 6, 8, 10, 10)


def test_lsq_layers_quantize_with_their_quantizers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    x = torch.randn(8, 5)
    q = quantize_model(net, w_bits=3, a_bits=2, lsq=True, calib_data=[x])
    layer = q[2]
    assert layer.w_lsq.bits == 3 and layer.a_lsq.bits == 2 and q[0].a_lsq.bits == INPUT_MIN_BITS
    h = torch.relu(torch.randn(8, 4))
    for mode in ("train", "eval"):
        getattr(q, mode)()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # LSQ input quantizers need no calibrated range
            y = layer(h)
        torch.testing.assert_close(y, F.linear(layer.a_lsq(h), layer.w_lsq(layer.weight), layer.bias))
    assert len(torch.unique(layer.a_lsq(h).detach())) <= 4
    # set_quant_bits re-targets the quantizers: weights follow w_bits, inputs the input bits
    set_quant_bits(q, 4, 3)
    assert (q[0].w_lsq.bits, q[0].a_lsq.bits) == (4, INPUT_MIN_BITS)
    assert (layer.w_lsq.bits, layer.a_lsq.bits) == (4, 3)


def test_repr_shows_the_bits():
    q = _linear(4, 2)
    assert repr(q) == "QuantLinear(in_features=5, out_features=3, bias=True, w_bits=4, a_bits=2)"
    q.first_layer = True
    assert repr(q).endswith("w_bits=4, a_bits=2, first_layer=True)")
    c = QuantConv1d.from_float(nn.Conv1d(2, 3, 1), None, None)
    assert repr(c) == "QuantConv1d(2, 3, kernel_size=(1,), stride=(1,), w_bits=None, a_bits=None)"


def test_quantize_model_sets_first_layer_by_forward_order_and_validates():
    class Reordered(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)
            self.body = nn.Linear(3, 4)

        def forward(self, x):
            return self.head(self.body(x))

    q = quantize_model(Reordered(), w_bits=2, fold_bn=False)
    assert q.body.first_layer and not q.head.first_layer  # fx order, not registration order
    assert q.body.input_bits == INPUT_MIN_BITS and q.head.input_bits == 2
    with pytest.raises(ValueError, match=r"^w_bits: unknown layer names \['nope'\]; quantizable layers: "
                                         r"\['head', 'body'\]$"):
        quantize_model(Reordered(), w_bits={"nope": 2})
    with pytest.raises(TypeError, match=r"^quantize_model expects an nn.Module, got str$"):
        quantize_model("net")
    with pytest.raises(ValueError, match=r"^Sequential has no parameters to quantize$"):
        quantize_model(nn.Sequential(nn.ReLU()))
    with pytest.warns(UserWarning, match=r"^quantize_model: Sequential has no Conv/Linear layers to quantize$"):
        out = quantize_model(nn.Sequential(nn.LayerNorm(3)))
    assert isinstance(out[0], nn.LayerNorm)


def test_quantize_model_calibrates_at_most_calib_batches():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2))
    batches = [torch.full((1, 3), 1.0), torch.full((1, 3), 5.0)]
    q = quantize_model(net, w_bits=4, calib_data=batches, calib_batches=1)
    assert (q[0].act_lo.item(), q[0].act_hi.item()) == (1.0, 1.0)
    q = quantize_model(net, w_bits=4, calib_data=batches)
    assert q[0].act_hi.item() == 5.0
    q = quantize_model(net, w_bits=4, default_bits=2, a_bits={"0": 3})
    assert (q[0].w_bits, q[0].a_bits) == (4, 3)
    with pytest.raises(ValueError, match=r"^default_bits must be an int in 2\.\.8 or None, got 9$"):
        quantize_model(net, w_bits={"0": 4}, default_bits=9)
    with pytest.raises(ValueError, match=r"^a_bits: unknown layer names \['x'\]; quantizable layers: \['0'\]$"):
        quantize_model(net, w_bits=4, a_bits={"x": 4})
    with pytest.raises(ValueError, match=r"^a_bits must be an int, None, a dict, 'same' or 'float', got 'fp'$"):
        quantize_model(net, w_bits=4, a_bits="fp")


def test_first_quantized_layer_may_follow_other_modules():
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    q = quantize_model(net, w_bits=2, fold_bn=False)
    assert q[1].first_layer and not q[3].first_layer
    assert (q[1].input_bits, q[3].input_bits) == (INPUT_MIN_BITS, 2)


def test_set_quant_bits_names_what_is_wrong_and_changes_nothing():
    torch.manual_seed(0)
    q = quantize_model(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), w_bits=4, fold_bn=False)
    cases = [
        (dict(w_bits={"nope": 2}), r"^w_bits: unknown layer names \['nope'\]; quantizable layers: \['0', '2'\]$"),
        (dict(w_bits=2, a_bits={"x": 2}), r"^a_bits: unknown layer names \['x'\]; quantizable layers: \['0', '2'\]$"),
        (dict(w_bits={"0": 9}), r"^w_bits\['0'\] must be an int in 2\.\.8 or None, got 9$"),
        (dict(w_bits=2, a_bits={"2": 1}), r"^a_bits\['2'\] must be an int in 2\.\.8 or None, got 1$"),
        (dict(w_bits=2, default_bits=9), r"^default_bits must be an int in 2\.\.8 or None, got 9$"),
        (dict(w_bits=2, a_bits="fp"), r"^a_bits must be an int, None, a dict, 'same' or 'float', got 'fp'$"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            set_quant_bits(q, **kwargs)
        assert [(m.w_bits, m.a_bits) for m in (q[0], q[2])] == [(4, 4), (4, 4)]
    # a dict for the weights and None for the activations: the activations follow the weights' dict
    set_quant_bits(q, {"2": 3}, default_bits=2)
    assert [(m.w_bits, m.a_bits) for m in (q[0], q[2])] == [(2, 2), (3, 3)]
    set_quant_bits(q, 8, "float")
    assert [(m.w_bits, m.a_bits) for m in (q[0], q[2])] == [(8, None), (8, None)]


def test_quantize_model_defaults_copy_and_lsq_quantizers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 3))
    q = quantize_model(net)
    assert [(m.w_bits, m.a_bits) for m in (q[0], q[3])] == [(4, 4), (4, 4)]  # 4 bits by default
    q = quantize_model(net, w_bits=3, fold_bn=False)
    assert type(net[0]) is nn.Conv2d and type(q[0]) is QuantConv2d and q[0] is not net[0]  # the input is copied
    assert q[0].weight is not net[0].weight
    q = quantize_model(net, w_bits=3, lsq=True)
    wq, aq = q[0].w_lsq, q[0].a_lsq
    # weights: signed, one step per output channel; inputs: one step, signedness from the first input
    assert (wq.signed, wq.num_channels, tuple(wq.step.shape)) == (True, 6, (6,))
    assert (aq.signed, aq.num_channels, tuple(aq.step.shape)) == (None, None, ())
    assert q[3].w_lsq.num_channels == 3
    q.train()(torch.relu(torch.randn(2, 2, 6, 6)))
    assert aq.signed is False and q[3].a_lsq.signed is False  # non-negative inputs: unsigned grids
