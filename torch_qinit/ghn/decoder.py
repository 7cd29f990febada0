"""Decoder: node embedding → a weight of any shape, every output channel distinct.

Version 2 (current).  A weight of shape (out, in, kh, kw) is cut into tiles of
(block_out, block_in) channels.  Tile (a, b) is decoded from the node embedding
plus an encoding of its position (a, b), so no two tiles, and hence no two
output channels, are copies: a 512×512×3×3 conv is 8×8 distinct tiles, not one
64×64 block repeated (rank ≤ 64, duplicate filters that gradient descent never
separates because their gradients are equal).

    h + P_out(a) + P_in(b) ─rows─▶ [block_out, rank] ─MLP─▶ [block_out, d] ─@ out_weight[d, cin·kh·kw]─▶ tile

Cost: one [d]-dot per predicted weight entry, so linear in the model's size.

Version 1 (the first shipped checkpoints) decoded one block per node and tiled it;
it is kept only so those checkpoints still load.

The decoded pattern is standardized and scaled to a fan-in rule (GHN-2's `-n`),
see `shape_weight` and `signal.py`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GHNConfig
from .signal import SignalRule

__all__ = ["BlockDecoder", "orthonormalize", "shape_weight", "shape_vector", "tile_encoding"]

#: Frequencies of the sinusoidal tile-position encoding.
_POS_FREQS = 8


def tile_encoding(index: torch.Tensor) -> torch.Tensor:
    """Sinusoidal features [n, 2*_POS_FREQS] of tile indices [n]; distinct for every index < 2**16."""
    freqs = torch.exp(-torch.arange(_POS_FREQS, dtype=torch.float32, device=index.device)
                      * (math.log(256.0) / _POS_FREQS))
    angles = index.float()[:, None] * freqs * (math.pi / 2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class BlockDecoder(nn.Module):
    """Factorized decoder: h → (block_out, rank) rows → per-row MLP → (block_in, k, k) tiles."""

    def __init__(self, cfg: GHNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        r, d, K = cfg.decoder_rank, cfg.decoder_hidden or cfg.hidden, cfg.block_kernel
        self.rows = nn.Linear(cfg.hidden, cfg.block_out * r)
        self.row_hidden = nn.Linear(r, d)
        self.out_weight = nn.Parameter(torch.empty(d, cfg.block_in, K, K).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))
        self.out_bias = nn.Parameter(torch.zeros(cfg.block_in, K, K))
        self.gain = nn.Linear(cfg.hidden, 1)        # learned per-node scale around the fan-in rule
        self.vec = nn.Linear(cfg.hidden, 3 * cfg.block_out)  # bias, norm weight, norm bias
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.gain.bias)
        nn.init.normal_(self.vec.weight, std=0.01)
        nn.init.zeros_(self.vec.bias)
        if cfg.decoder_version >= 2:
            # Position of an output / input tile; random (not zero) init so tiles differ from step 0.
            self.tile_out = nn.Linear(2 * _POS_FREQS, cfg.hidden)
            self.tile_in = nn.Linear(2 * _POS_FREQS, cfg.hidden)
            self.vec_pos = nn.Linear(2 * _POS_FREQS, cfg.hidden)
            for lin in (self.tile_out, self.tile_in, self.vec_pos):
                nn.init.normal_(lin.weight, std=1.0)
                nn.init.zeros_(lin.bias)

    # -- weights -----------------------------------------------------------------------------
    def patterns(self, h: torch.Tensor, shapes: list[tuple[int, ...]],
                 orthonormal: list[bool] | None = None) -> list[torch.Tensor]:
        """h [M, hidden] and one weight shape per row → M unnormalized patterns of those shapes.

        Version 2 orthonormalizes each pattern's row blocks unless `orthonormal[m]` is False.
        """
        if self.cfg.decoder_version >= 2:
            return self._tiled_patterns(h, shapes, orthonormal or [True] * len(shapes))
        blocks = self._blocks(h, [self._need_v1(s) for s in shapes])
        return [_fit_v1(b, s) for b, s in zip(blocks, shapes)]

    def _decode(self, z: torch.Tensor, cin: int, kh: int, kw: int) -> torch.Tensor:
        """Row codes z [G, rows, rank] → G tiles [rows, cin, kh, kw] (centre kh×kw of the kernel)."""
        K = self.cfg.block_kernel
        rows = F.gelu(self.row_hidden(z))  # [G, rows, d]
        h0, w0 = (K - kh) // 2, (K - kw) // 2
        weight = self.out_weight[:, :cin, h0:h0 + kh, w0:w0 + kw].reshape(rows.shape[-1], -1)
        bias = self.out_bias[:cin, h0:h0 + kh, w0:w0 + kw].reshape(-1)
        return F.linear(rows, weight.t(), bias).view(z.shape[0], z.shape[1], cin, kh, kw)  # fused bias add

    def _row_codes(self, h: torch.Tensor) -> torch.Tensor:
        return self.rows(h).view(-1, self.cfg.block_out, self.cfg.decoder_rank)

    def _position_codes(self, tile: nn.Linear, positions: torch.Tensor) -> torch.Tensor:
        """A tile position's term of the row MLP's pre-activation [n, block_out, d]: the linear parts of
        `rows` and `row_hidden` only (their biases enter once, through the node's code)."""
        codes = F.linear(tile(positions), self.rows.weight).view(-1, self.cfg.block_out, self.cfg.decoder_rank)
        return F.linear(codes, self.row_hidden.weight)

    def _tiled_patterns(self, h: torch.Tensor, shapes: list[tuple[int, ...]],
                        orthonormal: list[bool]) -> list[torch.Tensor]:
        c, K = self.cfg, self.cfg.block_kernel
        if not shapes:
            return []
        grids = [(math.ceil(s[0] / c.block_out), math.ceil(s[1] / c.block_in)) for s in shapes]
        # The decoder's first two maps are affine, so row_hidden(rows(h + P_out(a) + P_in(b))) splits into
        # row_hidden(rows(h)) + A·rows_W·P_out(a) + A·rows_W·P_in(b) (A: row_hidden's weight, no bias on the
        # position terms).  Each term runs once per node or tile position, not once per tile row, and the
        # per-row work is one broadcast add at the MLP's width.
        n_pos = max(max(g) for g in grids)
        positions = tile_encoding(torch.arange(n_pos, device=h.device))
        codes = self.row_hidden(self._row_codes(h))  # [M, bo, d]
        out_codes = self._position_codes(self.tile_out, positions)  # [n_pos, bo, d]
        in_codes = self._position_codes(self.tile_in, positions)
        out = []
        for m, (shape, (n_out, n_in)) in enumerate(zip(shapes, grids)):
            w = self._decode_weight(codes[m], out_codes[:n_out], in_codes[:n_in], shape)
            if orthonormal[m]:
                w = _orthonormal_rows(w, c.block_out)
            if len(shape) == 4:
                w = _pad_kernel(w.reshape(shape[0], shape[1], *_kernel(shape, K)), shape[2], shape[3])
            out.append(w.contiguous())
        return out

    def _decode_weight(self, code: torch.Tensor, out_codes: torch.Tensor, in_codes: torch.Tensor,
                       shape: tuple[int, ...]) -> torch.Tensor:
        """All tiles of one weight, decoded straight into its [out, fan_in] matrix (no per-tile tensors).

        Tile (a, b) holds rows a·block_out.. and input channels b·block_in..; its row r's hidden
        pre-activation is code[r] + out_codes[a, r] + in_codes[b, r] (each already through the row MLP's
        linear map).  The sum is laid out as [a, r, b], so the rows of the last matmul come out in the
        weight's own order: row a·block_out + r, then input tile b, then (channel, kh, kw): the
        [out, in·kh·kw] matrix.  A narrower last input tile is decoded at full width and cut off
        (column j depends only on out_weight[:, j]).
        """
        c, K = self.cfg, self.cfg.block_kernel
        out_c, in_c = shape[0], shape[1]
        kh, kw = _kernel(shape, K)
        n_out, n_in, d = out_codes.shape[0], in_codes.shape[0], code.shape[-1]
        bo = c.block_out
        in_codes = in_codes.transpose(0, 1).contiguous()  # [r, b, d]; small, and keeps the sum row-major
        rows = (code + out_codes).view(n_out, bo, 1, d) + in_codes  # [a, r, b, d]
        rows = rows.view(n_out * bo, n_in, d)[:out_c]  # a last row tile may be partial
        rows = F.gelu(rows) if rows.requires_grad else torch.ops.aten.gelu_(rows)  # in place without autograd
        cin = min(c.block_in, in_c)
        h0, w0 = (K - kh) // 2, (K - kw) // 2
        weight = self.out_weight[:, :cin, h0:h0 + kh, w0:w0 + kw].reshape(d, -1)
        bias = self.out_bias[:cin, h0:h0 + kh, w0:w0 + kw].reshape(-1)
        x = F.linear(rows, weight.t(), bias)  # [out, n_in, cin·kh·kw], bias add fused
        return x.view(out_c, -1)[:, :in_c * kh * kw]

    # -- version 1 (tiled copies; only for loading the first checkpoints) ---------------------
    def _need_v1(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        c = self.cfg
        kh, kw = (shape[2], shape[3]) if len(shape) == 4 else (1, 1)
        return min(shape[1], c.block_in), min(kh, c.block_kernel), min(kw, c.block_kernel)

    def _blocks(self, h: torch.Tensor, needs: list[tuple[int, int, int]]) -> list[torch.Tensor]:
        out: list[torch.Tensor | None] = [None] * len(needs)
        groups: dict[tuple[int, int, int], list[int]] = {}
        for i, key in enumerate(needs):
            groups.setdefault(key, []).append(i)
        for (cin, kh, kw), members in groups.items():  # a loop over distinct shapes, not nodes
            block = self._decode(self._row_codes(h[torch.tensor(members, device=h.device)]), cin, kh, kw)
            for j, i in enumerate(members):
                out[i] = block[j]
        return out  # type: ignore[return-value]

    # -- scales and vectors -------------------------------------------------------------------
    def gains(self, h: torch.Tensor) -> torch.Tensor:
        """Learned per-node gain [M]: v1 the factor in (0, 2); v2 its log-position t in (-1, 1),
        mapped to a factor by `shape_weight` (the range depends on the layer's rule).  Both start at 1 / 0."""
        g = self.gain(h).squeeze(-1)
        if self.cfg.decoder_version >= 2:
            return torch.tanh(g)
        return 2.0 * torch.sigmoid(g)

    def vectors(self, h: torch.Tensor, size: int) -> torch.Tensor:
        """[M, 3, size]: bias, norm weight, norm bias; v2 decodes each 64-chunk at its position."""
        c = self.cfg
        if c.decoder_version < 2 or size <= c.block_out:
            return _fit_dim(self.vec(h).view(-1, 3, c.block_out), 2, size)
        n = math.ceil(size / c.block_out)
        pos = self.vec_pos(tile_encoding(torch.arange(n, device=h.device)))  # [n, hidden]
        v = self.vec(h[:, None, :] + pos[None]).view(h.shape[0], n, 3, c.block_out)
        return v.permute(0, 2, 1, 3).reshape(h.shape[0], 3, n * c.block_out)[..., :size]


def _kernel(shape: tuple[int, ...], K: int) -> tuple[int, int]:
    """The decoded kernel size of a weight: its (kh, kw) up to K×K; (1, 1) for a linear weight."""
    return (min(shape[2], K), min(shape[3], K)) if len(shape) == 4 else (1, 1)


def _orthonormal_rows(w: torch.Tensor, block: int) -> torch.Tensor:
    """Orthonormalize an [out, fan_in] matrix in row blocks of ≤ `block` rows.

    Each block of rows becomes orthonormal over the *whole* fan-in, so no two
    rows in a block are parallel; the full blocks of a matrix share one batched
    Cholesky.  A matrix with fewer inputs than rows (fan_in < out,
    fan_in < block: depthwise, narrow linear) gets orthonormal columns instead.
    """
    out_c, fan_in = w.shape
    rows = out_c if out_c > fan_in and fan_in < block else block
    n_full = out_c // rows
    parts = []
    if n_full:
        parts.append(orthonormalize(w[:n_full * rows].view(n_full, rows, fan_in)).reshape(n_full * rows, fan_in))
    if out_c > n_full * rows:  # a last, shorter block
        parts.append(orthonormalize(w[n_full * rows:][None])[0])
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def orthonormalize(t: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Batched tiles [G, r, f] → orthonormal rows (r ≤ f) or columns (r > f), by Cholesky QR.

    Flattening each tile's spectrum is what keeps the signal through depth: a
    decoded pattern concentrates its energy in a few directions, so after
    fan-in scaling its top singular value is far above 1 and stacks of such
    layers explode (measured: ×2000 through a 50-layer plain CNN).  Orthonormal
    tiles cost ~r flops per entry, about as much as decoding them.  `eps`
    (relative to the mean eigenvalue) keeps the Cholesky factor defined for
    rank-deficient patterns.
    """
    wide = t.shape[-2] <= t.shape[-1]
    x = t if wide else t.mT
    gram = x @ x.mT
    n = gram.shape[-1]
    diag = gram.diagonal(dim1=-2, dim2=-1)
    ridge = eps * diag.mean(-1).clamp_min(1e-12)
    diag.add_(ridge[:, None])  # gram + ridge·I, on the diagonal alone
    chol, info = torch.linalg.cholesky_ex(gram)  # a non-finite pattern gives NaN tiles, never an exception
    # invert the small [r, r] factor once, then one batched matmul (much faster than a wide triangular solve)
    inv = torch.linalg.solve_triangular(chol, torch.eye(n, dtype=t.dtype, device=t.device).expand_as(chol), upper=False)
    q = inv @ x
    failed = info > 0
    if bool(failed.any()):  # rare (a non-finite pattern); a where() over every weight would cost a full pass
        q = q.masked_fill(failed[:, None, None], float("nan"))
    return q if wide else q.mT


def _fit_dim(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Slice or tile `x` along `dim` to `size` (version 1 only)."""
    have = x.shape[dim]
    if size <= have:
        return x.narrow(dim, 0, size)
    reps = [1] * x.dim()
    reps[dim] = math.ceil(size / have)
    return x.repeat(*reps).narrow(dim, 0, size)


def _pad_kernel(block: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Zero-pad the spatial dims of a block up to (kh, kw) for kernels larger than the block."""
    dh, dw = kh - block.shape[-2], kw - block.shape[-1]
    if dh <= 0 and dw <= 0:
        return block
    return F.pad(block, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])


def _fit_v1(block: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if len(shape) == 4:
        w = _pad_kernel(block, shape[2], shape[3])
    elif len(shape) == 2:
        w = block[..., 0, 0]
    else:
        raise ValueError(f"cannot decode a weight of shape {tuple(shape)}")
    return _fit_dim(_fit_dim(w, 0, shape[0]), 1, shape[1])


def shape_weight(pattern: torch.Tensor, gain: torch.Tensor, rule: SignalRule | None = None, *,
                 inplace: bool = False) -> torch.Tensor:
    """Standardize a decoded pattern and scale it to std = rule.gain × gain / sqrt(fan_in).

    `rule=None` is version 1: He's std sqrt(2 / fan_in) times the learned gain.
    With a rule (version 2), `gain` is the decoder's t in (-1, 1), a factor
    max_factor**t that applies only where `rule.free` (see signal.py).
    Empty weights stay empty; a one-element or constant pattern, which has no
    spread to standardize, gets ±std instead of 0.  `inplace=True` (no autograd)
    may overwrite `pattern` and return it: the same values without a new tensor.
    """
    shape = pattern.shape
    if pattern.numel() == 0:
        return pattern
    fan_in = max(1, math.prod(shape[1:]))
    if rule is None:
        std = gain * math.sqrt(2.0 / fan_in)
    else:
        factor = torch.exp(math.log(rule.max_factor) * gain) if rule.free else 1.0
        std = factor * (rule.gain / math.sqrt(fan_in))
    if rule is not None and not rule.output and pattern.numel() > 1:
        # version 2 patterns are orthonormal tiles: scale by their RMS; subtracting a mean would bend them
        rms = torch.linalg.vector_norm(pattern) / math.sqrt(pattern.numel())  # one fused pass, no temporary
        if rms > 1e-8:
            return pattern.mul_(std / rms) if inplace else pattern * (std / rms)
    spread = pattern.std(unbiased=False) if pattern.numel() > 1 else pattern.new_zeros(())
    # a NaN or inf anywhere makes the spread NaN, so only a single element needs its own check
    if not torch.isfinite(spread) or (pattern.numel() == 1 and not torch.isfinite(pattern).all()):
        return pattern * spread  # keep a broken prediction visibly non-finite (initialize_ falls back)
    # "constant" is relative: a float32 constant like 0.3 has a rounding spread of ~3e-8, which standardizing
    # would blow up into noise instead of giving the +-std fallback
    if pattern.numel() == 1 or not spread > (1e-6 * pattern.detach().abs().max()).clamp(min=1e-8):
        sign = torch.where(pattern >= pattern.mean(), 1.0, -1.0) if pattern.numel() > 1 else torch.ones_like(pattern)
        return sign * std
    centred = pattern - pattern.mean()
    if inplace:
        return centred.div_(spread + 1e-6).mul_(std)
    return centred / (spread + 1e-6) * std


def shape_vector(vec: torch.Tensor, kind: str, version: int = 2) -> torch.Tensor:
    """A bias / norm weight / norm bias from a decoded vector of the right length.

    Version 2 bounds norm weights to (0, 2) around 1, so a residual stream cannot
    be amplified without limit by predicted BN scales.
    """
    if kind == "norm_weight":
        return 1.0 + (torch.tanh(vec) if version >= 2 else vec)
    return vec
