"""Fake quantization and LSQ on small hand-computed grids, plus nearest-level properties (hypothesis).

test_quant.py checks level counts and ranges; these pin the exact values: which level each input lands
on, how the activation range is widened to contain 0, the LSQ step initialization and its scaled gradient.
"""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_qinit.quant import LSQQuantizer, fake_quant_act, fake_quant_weight

FAST = settings(max_examples=60, deadline=None)


def t(*v):
    return torch.tensor(v, dtype=torch.float32)


# ---------------------------------------------------------------- weights
def test_weight_exact_levels_per_channel():
    # 3 bits: Q_P = 3; row scales 3/3 = 1 and 0.6/3 = 0.2
    w = torch.tensor([[3.0, 1.4, -2.6, 0.4], [0.6, -0.25, 0.05, -0.6]])
    torch.testing.assert_close(fake_quant_weight(w, 3), torch.tensor([[3.0, 1.0, -3.0, 0.0], [0.6, -0.2, 0.0, -0.6]]))
    # 2 bits: Q_P = 1, levels {-absmax, 0, absmax}
    torch.testing.assert_close(fake_quant_weight(w, 2), torch.tensor([[3.0, 0.0, -3.0, 0.0], [0.6, 0.0, 0.0, -0.6]]))
    # 8 bits: Q_P = 127
    w8 = t(127.0, 63.4, -0.6, -126.5001)
    torch.testing.assert_close(fake_quant_weight(w8.view(1, 4), 8).view(4), t(127.0, 63.0, -1.0, -127.0))


def test_weight_per_tensor_uses_one_scale():
    w = torch.tensor([[3.0, 1.4], [0.6, -0.25]])
    # one scale 3/3 = 1 for the whole tensor: the small row rounds on the big row's grid
    torch.testing.assert_close(fake_quant_weight(w, 3, per_channel=False), torch.tensor([[3.0, 1.0], [1.0, 0.0]]))
    # a 1-D tensor has no channel dim: per_channel makes no difference
    v = t(3.0, 1.4, 0.6, -0.25)
    torch.testing.assert_close(fake_quant_weight(v, 3), t(3.0, 1.0, 1.0, 0.0))
    torch.testing.assert_close(fake_quant_weight(v, 3, per_channel=False), t(3.0, 1.0, 1.0, 0.0))


def test_weight_conv_scale_spans_all_non_output_dims():
    w = torch.zeros(2, 2, 1, 2)
    w[0, 1, 0, 1] = 3.0  # channel 0's abs-max sits in the last input channel and kernel position
    w[0, 0, 0, 0] = 1.4
    w[1, 0, 0, 0] = -0.3
    wq = fake_quant_weight(w, 3)
    assert wq[0, 0, 0, 0].item() == pytest.approx(1.0) and wq[0, 1, 0, 1].item() == pytest.approx(3.0)
    assert wq[1, 0, 0, 0].item() == pytest.approx(-0.3)  # channel 1 on its own scale


@FAST
@given(
    bits=st.sampled_from([2, 3, 4, 8]),
    rows=st.lists(st.lists(st.floats(-100, 100, allow_subnormal=False), min_size=1, max_size=6), min_size=1,
                  max_size=4).filter(lambda r: len({len(x) for x in r}) == 1),
)
def test_weight_lands_on_a_nearest_level_of_its_channel(bits, rows):
    w = torch.tensor(rows, dtype=torch.float64)
    wq = fake_quant_weight(w, bits)
    qp = 2 ** (bits - 1) - 1
    for c in range(w.shape[0]):
        amax = w[c].abs().max().item()
        if amax == 0:
            assert torch.equal(wq[c], torch.zeros_like(wq[c]))
            continue
        s = amax / qp
        k = wq[c] / s
        torch.testing.assert_close(k, k.round(), atol=1e-9, rtol=0)  # a grid point
        assert k.abs().max().item() <= qp + 1e-9  # within [-Q_P, Q_P]
        assert (wq[c] - w[c]).abs().max().item() <= s / 2 + 1e-9  # the nearest one
        assert wq[c].abs().max().item() == pytest.approx(amax)  # the abs-max is a level


# ------------------------------------------------------------ activations
def test_act_exact_levels_with_zero_point():
    # 2 bits over [-1, 2]: scale 1, zero point 1, levels {-1, 0, 1, 2}
    out = fake_quant_act(t(-1.7, -0.6, 0.4, 1.6, 2.6), 2, -1.0, 2.0)
    torch.testing.assert_close(out, t(-1.0, -1.0, 0.0, 2.0, 2.0))
    # 3 bits over [0, 7]: scale 1, unsigned
    out = fake_quant_act(t(-0.4, 0.6, 3.4, 6.6, 9.0), 3, 0.0, 7.0)
    torch.testing.assert_close(out, t(0.0, 1.0, 3.0, 7.0, 7.0))
    # 8 bits over [0, 255]
    torch.testing.assert_close(fake_quant_act(t(0.4, 100.6, 300.0), 8, 0.0, 255.0), t(0.0, 101.0, 255.0))


def test_act_range_widened_to_contain_zero():
    # lo > 0 is lowered to 0: [1, 3] becomes [0, 3], scale 1, values below lo are kept, not clipped to 1
    torch.testing.assert_close(fake_quant_act(t(0.2, 0.7, 2.2, 5.0), 2, 1.0, 3.0), t(0.0, 1.0, 2.0, 3.0))
    # hi < 0 is raised to 0: [-3, -1] becomes [-3, 0], zero point 3
    torch.testing.assert_close(fake_quant_act(t(-4.0, -2.6, -0.2, 1.0), 2, -3.0, -1.0), t(-3.0, -3.0, 0.0, 0.0))
    # tensors for the range behave like floats
    torch.testing.assert_close(
        fake_quant_act(t(0.2, 0.7, 2.2, 5.0), 2, torch.tensor(1.0), torch.tensor(3.0)), t(0.0, 1.0, 2.0, 3.0))


def test_act_collapsed_range_maps_everything_to_zero():
    out = fake_quant_act(t(-2.0, 0.0, 3.0), 4, 0.0, 0.0)
    assert torch.equal(out, torch.zeros(3))
    out = fake_quant_act(t(-2.0, 0.0, 3.0), 4, torch.tensor(0.5), torch.tensor(-0.5))  # widened to [0, 0]
    assert torch.equal(out, torch.zeros(3))


def test_act_float_is_identity_and_keeps_dtype():
    x = torch.randn(5)
    assert fake_quant_act(x, None, 0.0, 1.0) is x
    xd = torch.linspace(-1, 1, 7, dtype=torch.float64)
    assert fake_quant_act(xd, 4, -1.0, 1.0).dtype == torch.float64


def test_act_range_is_taken_in_the_input_dtype():
    # float64 input, float range: the grid is computed in float64 (0.1 is not exact in float32)
    x = torch.tensor([-0.1, -0.0333, 0.05, 0.1], dtype=torch.float64)
    out = fake_quant_act(x, 8, -0.1, 0.1)
    s = 0.2 / 255
    z = round(0.1 / s)
    expected = torch.tensor([(min(max(round(v / s) + z, 0), 255) - z) * s for v in x.tolist()], dtype=torch.float64)
    torch.testing.assert_close(out, expected, atol=1e-15, rtol=0)


@FAST
@given(
    bits=st.sampled_from([2, 3, 4, 8]),
    lo=st.floats(-10, 5, allow_subnormal=False),
    width=st.floats(0.01, 10, allow_subnormal=False),
    xs=st.lists(st.floats(-20, 20, allow_subnormal=False), min_size=1, max_size=20),
)
def test_act_lands_on_a_nearest_level_of_the_widened_range(bits, lo, width, xs):
    hi = lo + width
    x = torch.tensor(xs, dtype=torch.float64)
    out = fake_quant_act(x, bits, lo, hi)
    lo_w, hi_w = min(lo, 0.0), max(hi, 0.0)
    s = (hi_w - lo_w) / (2**bits - 1)
    z = round(-lo_w / s)
    k = out / s + z  # the integer code of each output
    torch.testing.assert_close(k, k.round(), atol=1e-6, rtol=0)
    assert k.min().item() >= -1e-6 and k.max().item() <= 2**bits - 1 + 1e-6
    xc = x.clamp(lo_w, hi_w)
    assert (out - xc).abs().max().item() <= s / 2 + 1e-9  # nearest code to the clipped input
    torch.testing.assert_close(fake_quant_act(out, bits, lo, hi), out)  # idempotent


# -------------------------------------------------------------------- LSQ
def test_lsq_step_initialization_per_tensor_and_per_channel():
    q = LSQQuantizer(3, signed=True)
    q(t(1.0, -2.0, 3.0, -4.0))
    # 2 * mean|x| / sqrt(Q_P), Q_P = 3
    assert q.step.item() == pytest.approx(2 * 2.5 / math.sqrt(3))
    assert q.step.shape == () and bool(q.initialized)
    qc = LSQQuantizer(4, signed=True, num_channels=2)
    qc(torch.tensor([[1.0, -1.0, 2.0], [0.0, 0.0, -6.0]]))
    torch.testing.assert_close(qc.step.detach(), t(2 * (4 / 3) / math.sqrt(7), 2 * 2.0 / math.sqrt(7)))
    qu = LSQQuantizer(2, signed=False)
    qu(t(1.0, 3.0))
    assert qu.step.item() == pytest.approx(2 * 2.0 / math.sqrt(3))  # unsigned Q_P = 2**2 - 1
    qz = LSQQuantizer(4)
    out = qz(torch.zeros(3))
    assert qz.step.item() == pytest.approx(1e-8) and torch.equal(out, torch.zeros(3))


def _fitted(bits, signed, step, num_channels=None):
    q = LSQQuantizer(bits, signed=signed, num_channels=num_channels)
    with torch.no_grad():
        q.step.copy_(torch.as_tensor(step))
    q.initialized.fill_(True)
    return q


def test_lsq_exact_levels_signed_and_unsigned():
    x = t(-5.0, -1.4, -0.2, 0.6, 2.4, 9.0)
    # signed 3 bits: codes in [-3, 3]
    torch.testing.assert_close(_fitted(3, True, 0.5)(x), t(-1.5, -1.5, -0.0, 0.5, 1.5, 1.5))
    # signed 2 bits: codes in [-1, 1]
    torch.testing.assert_close(_fitted(2, True, 1.0)(x), t(-1.0, -1.0, -0.0, 1.0, 1.0, 1.0))
    # unsigned 2 bits: codes in [0, 3], negatives clip to 0
    torch.testing.assert_close(_fitted(2, False, 1.0)(x), t(0.0, 0.0, 0.0, 1.0, 2.0, 3.0))
    # unsigned 3 bits: codes in [0, 7]
    torch.testing.assert_close(_fitted(3, False, 1.0)(x), t(0.0, 0.0, 0.0, 1.0, 2.0, 7.0))
    # signed 8 bits: codes in [-127, 127]
    torch.testing.assert_close(_fitted(8, True, 0.01)(t(-5.0, 0.626, 2.0)), t(-1.27, 0.63, 1.27))
    # per channel: each row on its own step
    qc = _fitted(3, True, [1.0, 0.1], num_channels=2)
    torch.testing.assert_close(qc(torch.tensor([[1.4, -9.0], [0.14, 0.26]])),
                               torch.tensor([[1.0, -3.0], [0.1, 0.3]]))


def test_lsq_explicit_signedness_is_kept():
    q = LSQQuantizer(2, signed=True)
    q(t(1.0, 2.0))  # non-negative input does not make an explicitly signed quantizer unsigned
    assert q.signed is True
    u = LSQQuantizer(2, signed=False)
    out = u(t(-3.0, 1.0, 2.0))
    assert u.signed is False and out.min().item() == 0.0
    a = LSQQuantizer(2)
    a(t(-1.0, 1.0))
    assert a.signed is True
    a(t(1.0, 2.0))
    assert a.signed is True  # decided once, on the first input


def test_lsq_step_gradient_is_scaled_by_one_over_sqrt_n_qp():
    x = t(-2.3, -0.7, 0.2, 1.1, 4.0)
    up = t(0.5, -1.0, 2.0, 1.5, -0.3)
    q = _fitted(3, True, 0.8)
    out = q(x)
    (out * up).sum().backward()
    # reference: the plain LSQ step gradient (round straight-through), times g = 1 / sqrt(N * Q_P)
    s = torch.tensor(0.8, requires_grad=True)
    v = torch.clamp(x / s, -3, 3)
    ref = (v + (v.round() - v).detach()) * s
    (ref * up).sum().backward()
    torch.testing.assert_close(out.detach(), ref.detach())
    torch.testing.assert_close(q.step.grad, s.grad / math.sqrt(5 * 3))
    # per channel: N is the elements per channel
    qc = _fitted(3, True, [0.8, 0.8], num_channels=2)
    xc = torch.stack([x, x])
    (qc(xc) * torch.stack([up, up])).sum().backward()
    torch.testing.assert_close(qc.step.grad, torch.stack([s.grad, s.grad]) / math.sqrt(5 * 3))
    # one element: N = 1
    q1 = _fitted(3, True, 0.8)
    x1 = t(1.1)
    q1(x1).sum().backward()
    s1 = torch.tensor(0.8, requires_grad=True)
    v1 = torch.clamp(x1 / s1, -3, 3)
    ((v1 + (v1.round() - v1).detach()) * s1).sum().backward()
    torch.testing.assert_close(q1.step.grad, s1.grad / math.sqrt(1 * 3))


def test_lsq_input_gradient_is_straight_through_inside_the_range():
    x = t(-9.0, -0.7, 0.2, 1.1, 9.0).requires_grad_()
    _fitted(3, True, 0.8)(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_lsq_bits_change_resets_only_when_different():
    q = LSQQuantizer(4, signed=True)
    q(t(1.0, -2.0))
    q.bits = 4
    assert bool(q.initialized)  # same bits: the fitted step stays
    q.bits = 3
    assert not bool(q.initialized) and q.bits == 3
    q(t(1.0, -2.0))
    assert q.step.item() == pytest.approx(2 * 1.5 / math.sqrt(3))  # refitted for 3 bits
    with pytest.raises(ValueError, match="got 9"):
        q.bits = 9
    q.bits = None
    x = t(0.3, -0.1)
    assert q(x) is x


@pytest.mark.parametrize("shape", [(), (7,), (2, 3), (2, 3, 4, 4)])
def test_lsq_keeps_the_input_shape(shape):
    x = torch.randn(shape)
    assert LSQQuantizer(4)(x).shape == x.shape
    n = shape[0] if shape else None
    if n:
        assert LSQQuantizer(4, signed=True, num_channels=n)(x).shape == x.shape


def test_lsq_repr():
    assert repr(LSQQuantizer(3, signed=True, num_channels=8)) == "LSQQuantizer(bits=3, signed=True, num_channels=8)"
    assert repr(LSQQuantizer(None)) == "LSQQuantizer(bits=None, signed=None, num_channels=None)"
