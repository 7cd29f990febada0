"""The two-stage backward of GHN training: per-architecture drop of non-finite and clip of huge gradients."""
import math

import pytest
import torch

from torch_qinit.training.item_grads import backward_per_item


def _setup(scales):
    """A shared 'GHN' (one weight) predicting one tensor per item; item i's loss is scales[i] * sum(pred)."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4))
    preds = [{"p": w * 2.0} for _ in scales]
    losses = [s * p["p"].sum() for s, p in zip(scales, preds)]
    return w, preds, losses


def test_matches_plain_backward_when_nothing_is_clipped():
    w, preds, losses = _setup([1.0, 0.5, -0.3])
    stats = backward_per_item(losses, preds, item_clip=100.0, scale=1 / 3)
    got = w.grad.clone()
    w2, _, losses2 = _setup([1.0, 0.5, -0.3])
    (torch.stack(losses2).mean()).backward()
    assert torch.allclose(got, w2.grad)
    assert (stats.dropped, stats.clipped) == (0, 0)


def test_non_finite_item_is_dropped_and_the_rest_still_train():
    w, preds, losses = _setup([1.0, float("inf"), 1.0])
    stats = backward_per_item(losses, preds, item_clip=0.0)
    assert stats.dropped == 1
    assert torch.isfinite(w.grad).all()
    # the two finite items: d/dw of 2 * sum(2w) = 4 each
    assert torch.allclose(w.grad, torch.full((4,), 4.0))


def test_huge_item_is_clipped_to_item_clip():
    w, preds, losses = _setup([1e20, 1.0])
    stats = backward_per_item(losses, preds, item_clip=10.0)
    assert stats.clipped == 1 and stats.dropped == 0
    # item 0's gradient w.r.t. its prediction has norm 10 after clipping: 10 * 2 (chain) in w's direction
    expected = torch.full((4,), 10.0 / math.sqrt(4) * 2.0) + 2.0
    assert torch.allclose(w.grad, expected, rtol=1e-5)


def test_every_item_dropped_still_runs_a_zero_backward():
    w, preds, losses = _setup([float("nan")])
    stats = backward_per_item(losses, preds)
    assert stats.dropped == 1
    assert w.grad is not None and torch.equal(w.grad, torch.zeros(4))


def test_length_mismatch_is_an_error():
    _, preds, losses = _setup([1.0, 1.0])
    with pytest.raises(ValueError, match="2 losses for 1 predictions"):
        backward_per_item(losses, preds[:1])
