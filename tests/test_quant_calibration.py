"""Calibration of quantized models: the recorded range is the min/max over exactly the batches used, the first
layer in execution order keeps 8-bit input, bad arguments raise, and a failed run leaves the model as it was."""
import warnings

import pytest
import torch
from torch import nn

from torch_qinit.quant import (
    INPUT_MIN_BITS,
    calibrate,
    fake_quant_weight,
    quantize_model,
    quantized_layers,
    set_quant_bits,
)


def linear_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()


def batch(lo, hi):
    """A (x, y) batch of 2 x 3 inputs whose min is `lo` and max is `hi`."""
    x = torch.zeros(2, 3)
    x[0, 0], x[1, 2] = lo, hi
    return x, torch.zeros(2)


def test_range_is_min_and_max_over_all_batches_wherever_they_are():
    q = quantize_model(linear_net(), w_bits=4)
    # the minimum comes in the first batch, the maximum in the second, then a narrower third batch
    calibrate(q, [batch(-5.0, 1.0), batch(-1.0, 4.0), batch(-0.5, 0.5)])
    assert (q[0].act_lo.item(), q[0].act_hi.item()) == (-5.0, 4.0)
    assert bool(q[0].act_calibrated) and bool(q[2].act_calibrated)


@pytest.mark.parametrize("n, expected", [(1, (-1.0, 1.0)), (2, (-1.0, 2.0)), (3, (-3.0, 2.0)), (None, (-3.0, 2.0))])
def test_num_batches_limits_the_batches_used(n, expected):
    q = quantize_model(linear_net(), w_bits=4)
    batches = iter([batch(-1.0, 1.0), batch(-0.5, 2.0), batch(-3.0, 0.5)])
    calibrate(q, batches, num_batches=n)
    assert (q[0].act_lo.item(), q[0].act_hi.item()) == expected


def test_no_batches_warns_and_changes_nothing():
    q = quantize_model(linear_net(), w_bits=4)
    for data, n in (([], None), ([batch(-1.0, 1.0)], 0)):
        with pytest.warns(UserWarning, match=r"^calibrate: no batches were given; activation ranges unchanged$"):
            assert calibrate(q, data, num_batches=n) is q
        assert not bool(q[0].act_calibrated) and q[0].act_hi.item() == 0.0


def test_bad_arguments_raise():
    q = quantize_model(linear_net(), w_bits=4)
    with pytest.raises(ValueError, match=r"^num_batches must be >= 0 or None, got -1$"):
        calibrate(q, [batch(-1.0, 1.0)], num_batches=-1)
    with pytest.raises(ValueError, match=r"^calibrate: no quantized layers; call quantize_model first$"):
        calibrate(linear_net(), [batch(-1.0, 1.0)])
    with pytest.raises(ValueError, match=r"^set_quant_bits: no quantized layers; call quantize_model first$"):
        set_quant_bits(linear_net(), 4)


def test_failed_calibration_commits_nothing_and_stops_observing():
    q = quantize_model(linear_net(), w_bits=4)
    with pytest.raises(RuntimeError):
        calibrate(q, [batch(-1.0, 1.0), (torch.zeros(2, 5), None)])  # the second batch has the wrong width
    assert not bool(q[0].act_calibrated) and q[0].act_lo.item() == 0.0
    assert not q[0]._observing
    # the model quantizes again afterwards (an observing layer would pass its input through unchanged)
    q.train()
    x = torch.linspace(-1, 1, 12).view(4, 3)
    y = q[0](x)
    assert not torch.equal(y, nn.functional.linear(x, q[0].weight, q[0].bias))


class RegisteredBackwards(nn.Module):
    """`late` is registered first but runs second, behind data-dependent control flow fx cannot trace."""

    def __init__(self):
        super().__init__()
        self.late = nn.Linear(4, 2)
        self.early = nn.Linear(3, 4)

    def forward(self, x):
        h = self.early(x)
        return self.late(h if h.sum() > 0 else -h)


def test_calibration_marks_the_layer_that_runs_first():
    torch.manual_seed(0)
    q = quantize_model(RegisteredBackwards().eval(), w_bits=2, lsq=True, fold_bn=False)
    # without fx, quantize_model can only guess from registration order
    assert q.late.first_layer and not q.early.first_layer
    calibrate(q, [torch.randn(2, 3), torch.randn(2, 3)])
    assert q.early.first_layer and not q.late.first_layer
    assert q.early.input_bits == INPUT_MIN_BITS and q.late.input_bits == 2
    # the LSQ input quantizers follow: 8 bits on the new first layer, 2 on the other
    assert q.early.a_lsq.bits == INPUT_MIN_BITS and q.late.a_lsq.bits == 2


def test_training_forward_tracks_an_ema_of_the_batch_range():
    q = quantize_model(linear_net(), w_bits=4).train()
    q[0](batch(-2.0, 4.0)[0])  # the first tracked batch sets the range outright
    assert (q[0].act_lo.item(), q[0].act_hi.item()) == (-2.0, 4.0)
    q[0](batch(-12.0, 14.0)[0])  # then momentum 0.1
    assert q[0].act_lo.item() == pytest.approx(0.9 * -2.0 + 0.1 * -12.0)
    assert q[0].act_hi.item() == pytest.approx(0.9 * 4.0 + 0.1 * 14.0)


def test_eval_forward_quantizes_on_the_stored_range():
    q = quantize_model(linear_net(), w_bits=2, a_bits=2)
    calibrate(q, [batch(-1.0, 2.0)])
    layer = q[2]  # not the first layer: 2-bit input, stored range [0, max after ReLU]
    lo, hi = layer.act_lo.item(), layer.act_hi.item()
    assert lo == 0.0 and hi > 0
    x = torch.tensor([[0.0, hi / 3 * 1.2, hi * 5, -1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = layer(x)
    xq = torch.tensor([[0.0, hi / 3, hi, 0.0]])  # 2 bits over [0, hi]: step hi / 3, clipped to the range
    torch.testing.assert_close(y, nn.functional.linear(xq, fake_quant_weight(layer.weight, 2), layer.bias))
    assert quantized_layers(q) == {"0": q[0], "2": q[2]}
