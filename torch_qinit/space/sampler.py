"""A seeded sampler of small VGG-like CNNs, with fixed held-out splits.

Every architecture is a pure function of (split, index), so benchmarks and
training agree on what is held out without storing any list.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
from torch import nn

from .blocks import ACTIVATIONS, BLOCK_TYPES, make_block

#: Held-out splits and their sizes; "train" is unbounded.
SPLIT_SIZES: dict[str, int] = {"test": 50, "wide": 20, "deep": 20, "nobn": 20}
SPLITS: tuple[str, ...] = ("train", *SPLIT_SIZES)
_BN_TYPES = {"conv_bn", "dws_bn"}
_NOBN_OF = {"conv_bn": "conv", "dws_bn": "dws"}


@dataclass(frozen=True)
class StageSpec:
    block: str
    width: int
    depth: int
    kernel: int


@dataclass(frozen=True)
class ArchSpec:
    """A point of the design space; `build()` makes the nn.Module."""

    stem_width: int
    stages: tuple[StageSpec, ...]
    act: str
    use_bn: bool          # BN in the stem and in residual/inverted blocks
    in_channels: int = 1
    num_classes: int = 10

    def key(self) -> str:
        """Canonical identity, used to keep training and held-out splits disjoint."""
        d = asdict(self)
        return repr(sorted((k, repr(v)) for k, v in d.items()))

    def build(self) -> nn.Module:
        return SpaceNet(self)


class SpaceNet(nn.Module):
    """stem conv (stride 1) → stages (each starts with stride 2) → global pool → linear."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        stem_kind = "conv_bn" if spec.use_bn else "conv"
        self.stem = make_block(stem_kind, spec.in_channels, spec.stem_width, 3, 1, spec.act, spec.use_bn)
        blocks, cin = [], spec.stem_width
        for stage in spec.stages:
            for i in range(stage.depth):
                stride = 2 if i == 0 else 1
                blocks.append(make_block(stage.block, cin, stage.width, stage.kernel, stride, spec.act, spec.use_bn))
                cin = stage.width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, spec.num_classes)

    def forward(self, x):
        x = self.pool(self.features(self.stem(x)))
        return self.classifier(torch.flatten(x, 1))


def _sample(rng: random.Random, split: str, in_channels: int, num_classes: int) -> ArchSpec:
    widths = (8, 16, 24, 32, 48, 64)
    if split == "wide":
        widths = (64, 96, 128)
    n_stages = rng.choice((2, 3))
    depth_range = (3, 4) if split == "deep" else (1, 2)
    use_bn = split != "nobn" and rng.random() < 0.75
    stages, width_idx = [], rng.randrange(0, 3) if split != "wide" else 0
    for _ in range(n_stages):
        block = rng.choice(BLOCK_TYPES)
        if split == "nobn":
            block = _NOBN_OF.get(block, block)
        width = widths[min(width_idx, len(widths) - 1)]
        stages.append(StageSpec(block, width, rng.randint(*depth_range), rng.choice((3, 5))))
        width_idx += rng.choice((1, 1, 2))
    stem_width = rng.choice((8, 16)) if split != "wide" else 32
    return ArchSpec(stem_width, tuple(stages), rng.choice(tuple(ACTIVATIONS)), use_bn, in_channels, num_classes)


def _rng(split: str, index: int) -> random.Random:
    digest = hashlib.sha256(f"torch_qinit-space/{split}/{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


@lru_cache(maxsize=None)
def _held_out_keys(in_channels: int, num_classes: int) -> frozenset[str]:
    return frozenset(
        _sample(_rng(s, i), s, in_channels, num_classes).key() for s, n in SPLIT_SIZES.items() for i in range(n)
    )


def get_arch(split: str, index: int, in_channels: int = 1, num_classes: int = 10) -> ArchSpec:
    """The architecture `index` of `split` ("train", "test", "wide", "deep", "nobn").

    Training architectures that coincide with a held-out one are re-drawn, so
    the splits never collide.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if index < 0 or (split in SPLIT_SIZES and index >= SPLIT_SIZES[split]):
        raise IndexError(f"split {split!r} has {SPLIT_SIZES.get(split, 'unbounded')} architectures; got index {index}")
    rng = _rng(split, index)
    sample_split = "test" if split == "train" else split  # train draws from the in-distribution family
    spec = _sample(rng, sample_split, in_channels, num_classes)
    if split == "train":
        held = _held_out_keys(in_channels, num_classes)
        while spec.key() in held:
            spec = _sample(rng, sample_split, in_channels, num_classes)
    return spec


def build_arch(split: str, index: int, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """Shortcut for ``get_arch(...).build()``."""
    return get_arch(split, index, in_channels, num_classes).build()
