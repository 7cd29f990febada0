"""The decoder's small parts by formula: tile position encoding, kernel cut and padding, version-1 tiling,
weight scaling (fan-in rule, learned factor, degenerate patterns), vectors and gains, row-block orthonormalization."""
import math

import pytest
import torch

from torch_qinit.ghn import GHNConfig
from torch_qinit.ghn.decoder import (
    BlockDecoder,
    _fit_dim,
    _fit_v1,
    _kernel,
    _orthonormal_rows,
    _pad_kernel,
    orthonormalize,
    shape_vector,
    shape_weight,
    tile_encoding,
)
from torch_qinit.ghn.signal import SignalRule


def test_tile_encoding_formula_and_distinctness():
    enc = tile_encoding(torch.tensor([0, 1, 5]))
    assert enc.shape == (3, 16)
    k = torch.arange(8, dtype=torch.float32)
    freqs = 256.0 ** (-k / 8)
    for row, i in zip(enc, (0, 1, 5)):
        angle = i * freqs * math.pi / 2
        torch.testing.assert_close(row, torch.cat([torch.sin(angle), torch.cos(angle)]))
    all_idx = tile_encoding(torch.arange(2 ** 16))
    assert torch.unique(all_idx, dim=0).shape[0] == 2 ** 16


def test_kernel_and_padding():
    assert _kernel((8, 4, 3, 5), 7) == (3, 5) and _kernel((8, 4, 9, 11), 7) == (7, 7) and _kernel((8, 4), 7) == (1, 1)
    block = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    assert _pad_kernel(block, 3, 3) is block and _pad_kernel(block, 2, 3) is block
    padded = _pad_kernel(block, 6, 4)  # 3 more rows: 1 above, 2 below; 1 more column: on the right
    assert padded.shape == (1, 1, 6, 4)
    assert torch.equal(padded[0, 0, 1:4, 0:3], block[0, 0])
    assert padded.sum() == block.sum() and padded[0, 0, 0].abs().sum() == 0 and padded[0, 0, :, 3].abs().sum() == 0
    wide = _pad_kernel(block, 3, 6)  # 3 more columns: 1 left, 2 right
    assert torch.equal(wide[0, 0, :, 1:4], block[0, 0])
    # one more row only / one more column only: below / on the right
    tall1, wide1 = _pad_kernel(block, 4, 3), _pad_kernel(block, 3, 4)
    assert tall1.shape[-2:] == (4, 3) and torch.equal(tall1[0, 0, :3], block[0, 0])
    assert wide1.shape[-2:] == (3, 4) and torch.equal(wide1[0, 0, :, :3], block[0, 0])


def test_version1_tiling():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.equal(_fit_dim(x, 1, 2), torch.tensor([[1.0, 2.0]]))
    assert torch.equal(_fit_dim(x, 1, 3), x)
    assert torch.equal(_fit_dim(x, 1, 7), torch.tensor([[1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]]))
    assert torch.equal(_fit_dim(x, 0, 2), torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
    block = torch.arange(8.0).view(2, 1, 2, 2)
    lin = _fit_v1(block, (3, 2))  # a linear weight takes the kernel's top-left entry, tiled to the shape
    assert torch.equal(lin, torch.tensor([[0.0, 0.0], [4.0, 4.0], [0.0, 0.0]]))
    conv = _fit_v1(block, (2, 1, 4, 4))
    assert conv.shape == (2, 1, 4, 4) and torch.equal(conv[:, :, 1:3, 1:3], block)
    with pytest.raises(ValueError, match=r"^cannot decode a weight of shape \(3,\)$"):
        _fit_v1(block, (3,))


# --------------------------------------------------------------------- shape_weight
def test_version1_scale_is_he_times_the_gain_with_zero_mean():
    torch.manual_seed(0)
    pattern = torch.randn(16, 8, 3, 3) + 5.0
    w = shape_weight(pattern, torch.tensor(1.5), None)
    assert abs(w.mean().item()) < 1e-6
    assert w.std(unbiased=False).item() == pytest.approx(1.5 * math.sqrt(2 / 72), rel=1e-4)
    torch.testing.assert_close(w, shape_weight(pattern.clone(), torch.tensor(1.5), None, inplace=True))


def test_version2_scales_the_rms_and_keeps_the_direction():
    torch.manual_seed(0)
    pattern = torch.randn(8, 20) + 1.0
    for rule, t, factor in ((SignalRule(1.4, free=False), 0.7, 1.0), (SignalRule(1.4, free=True), 0.5, 2 ** 0.5),
                            (SignalRule(1.4, free=True), -1.0, 0.5)):
        w = shape_weight(pattern, torch.tensor(t), rule)
        std = factor * 1.4 / math.sqrt(20)
        assert w.pow(2).mean().sqrt().item() == pytest.approx(std, rel=1e-5)
        torch.testing.assert_close(w / pattern, torch.full_like(w, (w / pattern)[0, 0].item()))  # a pure rescale
    # the output layer is standardized instead (mean removed), with its wider bound 4**t
    out = shape_weight(pattern, torch.tensor(1.0), SignalRule(1.0, free=True, output=True))
    assert abs(out.mean().item()) < 1e-6
    assert out.std(unbiased=False).item() == pytest.approx(4.0 / math.sqrt(20), rel=1e-4)


def test_degenerate_patterns_get_plus_minus_std():
    rule = SignalRule(1.0, free=False)
    for c in (0.5, 0.3, -7.1):  # 0.5 is exact in float32; 0.3 and -7.1 have a rounding spread (~3e-8, ~5e-7)
        const = shape_weight(torch.full((4, 9), c), torch.tensor(0.0), SignalRule(1.0, free=False, output=True))
        # std 1/sqrt(9), every entry at the same +-std (the mean's own rounding picks the sign)
        torch.testing.assert_close(const, torch.full((4, 9), const[0, 0].item()))
        assert abs(const[0, 0].item()) == pytest.approx(1 / 3)
    two = shape_weight(torch.tensor([[1.0, 1.0]]), torch.tensor(1.0), None)  # version 1: gain 1, He std 1
    torch.testing.assert_close(two, torch.ones(1, 2))
    one = shape_weight(torch.tensor([[-0.2]]), torch.tensor(0.0), rule)
    assert one.item() == pytest.approx(1.0)  # fan-in 1: std 1, and a single entry is +std, never 0
    vec = shape_weight(torch.tensor([0.5, -0.5]), torch.tensor(1.0), None)  # a 1-D pattern has fan-in 1
    assert vec.std(unbiased=False).item() == pytest.approx(math.sqrt(2), rel=1e-4)
    zero_rms = shape_weight(torch.zeros(3, 4), torch.tensor(0.0), rule)
    torch.testing.assert_close(zero_rms, torch.full((3, 4), 0.5))  # no RMS to scale: +std everywhere
    empty = torch.empty(0, 4)
    assert shape_weight(empty, torch.tensor(0.0), rule) is empty
    assert not torch.isfinite(shape_weight(torch.tensor([[math.inf]]), torch.tensor(0.0), rule)).any()


# ---------------------------------------------------------------- vectors and gains
def test_shape_vector():
    v = torch.tensor([-10.0, 0.0, 0.5])
    torch.testing.assert_close(shape_vector(v, "norm_weight"), 1 + torch.tanh(v))
    torch.testing.assert_close(shape_vector(v, "norm_weight", version=1), 1 + v)
    for kind in ("bias", "norm_bias"):
        assert shape_vector(v, kind) is v


def _decoder(version):
    torch.manual_seed(0)
    c = GHNConfig(hidden=16, heads=2, block_out=4, block_in=4, block_kernel=3, decoder_rank=2,
                  decoder_version=version, decoder_hidden=8 if version >= 2 else 0)
    return BlockDecoder(c), c


def test_gains_start_neutral_and_stay_bounded():
    for version, neutral in ((2, 0.0), (1, 1.0)):
        dec, c = _decoder(version)
        h = torch.randn(5, c.hidden)
        torch.testing.assert_close(dec.gains(h), torch.full((5,), neutral))  # zero-initialized gain head
        with torch.no_grad():
            dec.gain.bias.fill_(100.0)
        assert torch.allclose(dec.gains(h), torch.full((5,), 1.0 if version == 2 else 2.0))


def test_vectors_are_decoded_per_chunk_position():
    dec, c = _decoder(2)
    h = torch.randn(2, c.hidden)
    with torch.no_grad():
        short = dec.vectors(h, 3)
        torch.testing.assert_close(short, dec.vec(h).view(2, 3, 4)[..., :3])
        long = dec.vectors(h, 10)  # 3 chunks of 4 at positions 0, 1, 2, cut to 10
        assert long.shape == (2, 3, 10)
        enc = tile_encoding(torch.arange(3))
        for j in range(3):
            chunk = dec.vec(h + dec.vec_pos(enc[j])).view(2, 3, 4)
            width = min(4, 10 - 4 * j)
            torch.testing.assert_close(long[..., 4 * j:4 * j + width], chunk[..., :width])
    v1, c1 = _decoder(1)
    h1 = torch.randn(2, c1.hidden)
    with torch.no_grad():
        tiled = v1.vectors(h1, 10)  # version 1 repeats the one block
    torch.testing.assert_close(tiled[..., 4:8], tiled[..., 0:4])
    assert not hasattr(v1, "vec_pos")


def test_version1_patterns_tile_one_block_per_node():
    dec, c = _decoder(1)
    h = torch.randn(2, c.hidden)
    with torch.no_grad():
        a, b = dec.patterns(h, [(9, 6, 3, 3), (5, 2)])
    assert a.shape == (9, 6, 3, 3) and b.shape == (5, 2)
    torch.testing.assert_close(a[4:8], a[0:4])  # rows repeat every block_out
    torch.testing.assert_close(a[:, 4:6], a[:, 0:2])  # input channels repeat every block_in
    assert not torch.allclose(a[0], a[1])


# --------------------------------------------------------------- orthonormal rows
def test_orthonormal_row_blocks():
    torch.manual_seed(0)
    w = torch.randn(10, 12)
    q = _orthonormal_rows(w, 4)  # blocks of rows 0-3, 4-7 and a short 8-9
    for rows in (slice(0, 4), slice(4, 8), slice(8, 10)):
        b = q[rows]
        torch.testing.assert_close(b @ b.T, torch.eye(b.shape[0]), atol=1e-4, rtol=0)
    assert (q[0:4] @ q[4:8].T).abs().max() > 1e-3  # blocks are not orthogonalized against each other
    tall = _orthonormal_rows(torch.randn(10, 3), 4)  # fewer inputs than rows and than a block: columns
    torch.testing.assert_close(tall.T @ tall, torch.eye(3), atol=1e-4, rtol=0)
    exact = _orthonormal_rows(torch.randn(8, 12), 4)  # full blocks only
    torch.testing.assert_close(exact[4:] @ exact[4:].T, torch.eye(4), atol=1e-4, rtol=0)


def test_a_non_finite_tile_is_nan_and_the_others_are_not():
    t = torch.randn(3, 2, 5)
    t[1, 0, 0] = math.nan
    q = orthonormalize(t)
    assert torch.isnan(q[1]).all()
    assert torch.isfinite(q[0]).all() and torch.isfinite(q[2]).all()
    torch.testing.assert_close(q[0] @ q[0].T, torch.eye(2), atol=1e-4, rtol=0)


def test_version1_decodes_the_centre_of_the_kernel_per_node():
    dec, c = _decoder(1)
    with torch.no_grad():
        dec.out_bias.normal_()  # zero at init: make the bias visible
    h = torch.randn(3, c.hidden)
    with torch.no_grad():
        lin_a, lin_b, conv = dec.patterns(h, [(4, 4), (4, 4), (4, 2, 1, 3)])  # two nodes share one decode group
        for m, got in ((0, lin_a), (1, lin_b)):
            rows = torch.nn.functional.gelu(dec.row_hidden(dec.rows(h[m]).view(4, 2)))
            # a linear weight is the centre (1, 1) of the 3x3 kernel
            torch.testing.assert_close(got, rows @ dec.out_weight[:, :4, 1, 1] + dec.out_bias[:4, 1, 1])
        rows = torch.nn.functional.gelu(dec.row_hidden(dec.rows(h[2]).view(4, 2)))
        expected = torch.einsum("rd,dckl->rckl", rows, dec.out_weight[:, :2, 1:2, 0:3]) + dec.out_bias[:2, 1:2, 0:3]
        torch.testing.assert_close(conv, expected)  # a 1x3 kernel: the middle row of the 3x3 block
    assert not torch.allclose(lin_a, lin_b)


def test_a_fresh_decoder_starts_as_designed():
    dec, c = _decoder(2)
    bound = 1 / math.sqrt(8)  # decoder_hidden 8
    w = dec.out_weight.detach()
    assert w.abs().max() <= bound and w.min() < -bound / 2 and w.max() > bound / 2
    assert torch.equal(dec.out_bias, torch.zeros_like(dec.out_bias))
    assert dec.vec.weight.std().item() == pytest.approx(0.01, rel=0.3) and not dec.vec.bias.any()
    for lin in (dec.tile_out, dec.tile_in, dec.vec_pos):
        assert lin.weight.std().item() == pytest.approx(1.0, rel=0.3) and not lin.bias.any()
