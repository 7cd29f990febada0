"""Decoder: node embedding → a fixed parameter block → any parameter shape.

A conv/linear node gets a (block_out, block_in, k, k) block, which is sliced
or tiled to the target shape and then normalized by fan-in (GHN-2's `-n`), so
the scale is right for any width.  Norm and bias vectors come from a small head.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GHNConfig


class BlockDecoder(nn.Module):
    """Factorized decoder: h → (block_out, rank) rows → per-row MLP → (block_in, k, k).

    Only the part of the block a node needs (input channels, centre kernel) is
    computed: nodes are grouped by that need, so a depthwise or 1×1 conv does
    not pay for a full 64×64×5×5 block.
    """

    def __init__(self, cfg: GHNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        r, d, K = cfg.decoder_rank, cfg.hidden, cfg.block_kernel
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

    def need(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(input channels, kh, kw) of the block a weight of `shape` reads."""
        c = self.cfg
        kh, kw = (shape[2], shape[3]) if len(shape) == 4 else (1, 1)
        return min(shape[1], c.block_in), min(kh, c.block_kernel), min(kw, c.block_kernel)

    def blocks(self, h: torch.Tensor, needs: list[tuple[int, int, int]]) -> list[torch.Tensor]:
        """h [M, hidden] and one need per row → M blocks [block_out, in', kh', kw']."""
        c = self.cfg
        rows = F.gelu(self.row_hidden(self.rows(h).view(-1, c.block_out, c.decoder_rank)))  # [M, out, d]
        out: list[torch.Tensor | None] = [None] * len(needs)
        groups: dict[tuple[int, int, int], list[int]] = {}
        for i, key in enumerate(needs):
            groups.setdefault(key, []).append(i)
        K = c.block_kernel
        for (cin, kh, kw), members in groups.items():  # a loop over distinct shapes, not nodes
            h0, w0 = (K - kh) // 2, (K - kw) // 2
            weight = self.out_weight[:, :cin, h0:h0 + kh, w0:w0 + kw].reshape(rows.shape[-1], -1)
            bias = self.out_bias[:cin, h0:h0 + kh, w0:w0 + kw].reshape(-1)
            idx = torch.tensor(members, device=h.device)
            block = (rows[idx] @ weight + bias).view(len(members), c.block_out, cin, kh, kw)
            for j, i in enumerate(members):
                out[i] = block[j]
        return out  # type: ignore[return-value]

    def gains_and_vectors(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """gains [M] in (0, 2) starting at 1, and vectors [M, 3, block_out]."""
        gains = 2.0 * torch.sigmoid(self.gain(h)).squeeze(-1)
        return gains, self.vec(h).view(-1, 3, self.cfg.block_out)


def _fit_dim(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Slice or tile `x` along `dim` to `size`."""
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


def shape_weight(block: torch.Tensor, gain: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Turn one decoded block into a weight of `shape` (4-D conv or 2-D linear).

    The result is standardized, then scaled to He's std sqrt(2 / fan_in) times
    the learned gain: the GHN decides the pattern and a bounded scale.
    """
    if len(shape) == 4:
        w = _pad_kernel(block, shape[2], shape[3])
    elif len(shape) == 2:
        w = block[..., 0, 0]
    else:
        raise ValueError(f"cannot decode a weight of shape {tuple(shape)}")
    w = _fit_dim(_fit_dim(w, 0, shape[0]), 1, shape[1])
    fan_in = math.prod(shape[1:])
    w = (w - w.mean()) / (w.std(unbiased=False) + 1e-6)
    return w * (gain * math.sqrt(2.0 / fan_in))


def shape_vector(vec: torch.Tensor, size: int, is_norm_weight: bool) -> torch.Tensor:
    """A bias / norm weight / norm bias of length `size` from a decoded vector."""
    v = _fit_dim(vec, 0, size)
    return 1.0 + v if is_norm_weight else v
