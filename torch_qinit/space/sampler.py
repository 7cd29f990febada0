"""A seeded sampler of small CNNs and MLPs, with fixed held-out splits.

Every architecture is a pure function of (split, index, in_channels, num_classes),
so benchmarks and training agree on what is held out without storing any list.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Sequence, Union

import torch
from torch import nn

from .blocks import ACTIVATIONS, ALL_BLOCK_TYPES, BLOCK_TYPES, VALID_BLOCKS, SqueezeExcite, make_block, make_norm1d
from .classic import CLASSIC_NAMES, ClassicSpec, classic_mlp_signatures, get_classic

__all__ = ["SPLITS", "SPLIT_SIZES", "HELD_OUT_SAMPLED", "PREACT_SHARE", "VALID_SHARE", "ArchSpec", "SpaceNet",
           "StageSpec", "at_image_size", "build_arch", "default_image_size", "feature_resolution", "get_arch"]

#: Held-out splits and their sizes; "train" is unbounded.  "classic" is the hand-written families.
#: "val" is drawn like "test" and watched during GHN training (`--val-every`); the benchmarks report on
#: "test", which training therefore never looks at.
SPLIT_SIZES: dict[str, int] = {"test": 50, "wide": 20, "deep": 20, "nobn": 20, "classic": len(CLASSIC_NAMES),
                               "val": 20}
SPLITS: tuple[str, ...] = ("train", *SPLIT_SIZES)
#: Held-out splits drawn by the sampler (the classic split is a separate spec type).
HELD_OUT_SAMPLED: tuple[str, ...] = ("test", "wide", "deep", "nobn", "val")
#: Splits whose draws come from the training distribution ("test"'s family).
_IN_DISTRIBUTION: tuple[str, ...] = ("train", "val")
_NORMED_BLOCKS = {"conv_bn", "dws_bn"}
_NOBN_OF = {"conv_bn": "conv", "dws_bn": "dws"}
#: Channel ladder.  Widths >= 256 are drawn only by a small share of archs, at <= 7x7 (see `_sample`).
_WIDTHS: tuple[int, ...] = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
#: Fully convolutional heads (SqueezeNet, NiN): a 1x1 conv to the classes, then global average pool;
#: "conv_act" puts the activation between them, as SqueezeNet does. Training draws only (`_conv_head_variant`).
CONV_HEADS: tuple[str, ...] = ("conv", "conv_act")
#: Flatten heads only when the flattened features stay this small (keeps the first Linear cheap).
_MAX_FLATTEN = 4096


def _flatten_fits(width: int, side: int) -> bool:
    """Whether a flatten head over `width` maps of `side` x `side` stays within _MAX_FLATTEN features."""
    return width * side * side <= _MAX_FLATTEN


def default_image_size(in_channels: int) -> int:
    """The input side the space assumes: 28 for 1 channel (Fashion-MNIST), else 32 (CIFAR-10)."""
    return 28 if in_channels == 1 else 32


@dataclass(frozen=True)
class StageSpec:
    """A stage: `depth` blocks of `block`; the first one halves the resolution (how: `down`)."""

    block: str
    width: int
    depth: int
    kernel: int
    down: str = "stride"   # "stride" (strided first block), "max" or "avg" (2x2 pool before the stage)
    se: bool = False       # squeeze-excite after every block
    se_linear: bool = False


@dataclass(frozen=True)
class ArchSpec:
    """A point of the design space; `build()` makes the nn.Module.

    The first six fields are the original space; the defaults of the rest reproduce it exactly
    (stem 3x3 conv, global average pool, one Linear).
    """

    stem_width: int
    stages: tuple[StageSpec, ...]
    act: str
    use_bn: bool          # norm in the stem and in residual/inverted/dense/fire blocks (and MLP layers)
    in_channels: int = 1
    num_classes: int = 10
    family: str = "cnn"   # "cnn" or "mlp" (flatten → Linear stack; `head` holds its hidden widths)
    norm: str = "bn"      # norm kind wherever a norm is used: "bn", "gn" (GroupNorm), "ln" (GroupNorm(1,C)/LayerNorm)
    bias: bool | None = None  # None: conv/linear bias only without a norm; True: always
    stem_kernel: int = 3
    head_pool: str = "avg"    # "avg"/"max" (global pool), "flatten", or a conv head (CONV_HEADS)
    head: tuple[int, ...] = ()  # hidden widths of the classifier: 1 + len(head) Linear layers
    dropout: float = 0.0
    image_size: int = 0       # 0: default_image_size(in_channels)
    padding: str = "same"     # "valid": the stem and plain conv blocks without zero padding (LeNet-style)
    preact: bool = False      # dense blocks in DenseNet-BC's pre-activation form (norm → act → conv)

    @property
    def name(self) -> str:
        """A short readable description (for logs and benchmark tables)."""
        return self.describe()

    @property
    def resolution(self) -> int:
        return self.image_size or default_image_size(self.in_channels)

    def describe(self) -> str:
        """e.g. ``stem16k3 conv_bn32x2k3/max dws64x1k5+se | relu bn | avg fc128``."""
        norm = self.norm if self.use_bn or any(s.block in _NORMED_BLOCKS for s in self.stages) else "nonorm"
        head = "".join(f" fc{h}" for h in self.head) + (f" do{self.dropout:g}" if self.dropout else "")
        if self.family == "mlp":
            return f"mlp{head} | {self.act} {norm if self.use_bn else 'nonorm'}"
        stages = " ".join(f"{s.block}{s.width}x{s.depth}k{s.kernel}{'' if s.down == 'stride' else '/' + s.down}"
                          f"{'+se' if s.se else ''}" for s in self.stages)
        valid = " | valid" if self.padding == "valid" else ""
        preact = " | preact" if self.preact else ""
        return (f"stem{self.stem_width}k{self.stem_kernel} {stages} | {self.act} {norm} | {self.head_pool}{head}"
                f"{valid}{preact}")

    def key(self) -> str:
        """Canonical identity, used to keep training and held-out splits disjoint."""
        d = asdict(self)
        return repr(sorted((k, repr(v)) for k, v in d.items()))

    def valid_at(self, stage: int | None) -> bool:
        """Whether the stem (`stage` None) or the blocks of stage `stage` run without zero padding."""
        block = "conv" if stage is None else self.stages[stage].block
        return self.padding == "valid" and block in VALID_BLOCKS

    def build(self) -> nn.Module:
        return SpaceNet(self)


class SpaceNet(nn.Module):
    """CNN: stem conv (stride 1) → stages (each halves the resolution) → pool/flatten → Linear head.
    MLP: flatten → [Linear → (norm) → act → (dropout)]* → Linear."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        kw = {"norm": spec.norm, "bias": spec.bias}
        if spec.family == "mlp":
            self.flatten = nn.Flatten()
            self.classifier = _mlp(spec.in_channels * spec.resolution ** 2, spec, norm=spec.use_bn)
            return
        stem_kind = "conv_bn" if spec.use_bn else "conv"
        self.stem = make_block(stem_kind, spec.in_channels, spec.stem_width, spec.stem_kernel, 1, spec.act,
                               spec.use_bn, valid=spec.valid_at(None), **kw)
        blocks: list[nn.Module] = []
        cin = spec.stem_width
        for s, stage in enumerate(spec.stages):
            if stage.down != "stride":
                # ceil_mode: same output size as a padded stride-2 conv, so all three downsamplings agree
                pool = nn.MaxPool2d if stage.down == "max" else nn.AvgPool2d
                blocks.append(pool(2, 2, ceil_mode=True))
            for i in range(stage.depth):
                stride = 2 if i == 0 and stage.down == "stride" else 1
                blocks.append(make_block(stage.block, cin, stage.width, stage.kernel, stride, spec.act, spec.use_bn,
                                         valid=spec.valid_at(s), preact=spec.preact and stage.block == "dense",
                                         **kw))
                if stage.se:
                    blocks.append(SqueezeExcite(stage.width, spec.act, linear=stage.se_linear))
                cin = stage.width
        self.features = nn.Sequential(*blocks)
        if spec.head_pool in CONV_HEADS:
            self.pool: nn.Module = nn.Identity()
            self.classifier: nn.Module = _conv_head(cin, spec)
            return
        if spec.head_pool == "flatten":
            self.pool = nn.Identity()
            features = cin * feature_resolution(spec) ** 2
        else:
            self.pool = nn.AdaptiveAvgPool2d(1) if spec.head_pool == "avg" else nn.AdaptiveMaxPool2d(1)
            features = cin
        # The original space's single Linear keeps its name and type (benchmarks index it).
        self.classifier = nn.Linear(features, spec.num_classes) if not spec.head else _mlp(features, spec, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spec.family == "mlp":
            return self.classifier(self.flatten(x))
        x = self.pool(self.features(self.stem(x)))
        if self.spec.head_pool in CONV_HEADS:
            return torch.flatten(self.classifier(x), 1)
        return self.classifier(torch.flatten(x, 1))


def feature_resolution(spec: ArchSpec) -> int:
    """Side of the feature map a CNN spec's head receives (0 or less: an unpadded spec shrank it away).

    Padded ("same") stages halve the side, rounding up, whichever way they downsample; an unpadded
    (valid) conv of kernel k and stride t maps side n to (n - k) // t + 1, as nn.Conv2d does.
    """
    res = spec.resolution
    if spec.valid_at(None):
        res = res - spec.stem_kernel + 1
    for s, stage in enumerate(spec.stages):
        if stage.down != "stride":
            res = math.ceil(res / 2)
        for i in range(stage.depth):
            stride = 2 if i == 0 and stage.down == "stride" else 1
            if spec.valid_at(s):
                res = (res - stage.kernel) // stride + 1 if res >= stage.kernel else 0
            elif stride == 2:
                res = math.ceil(res / 2)
            if res < 1:
                return 0
    return res


def at_image_size(spec: ArchSpec, image_size: int) -> ArchSpec:
    """`spec` for inputs of side `image_size` (flatten heads size to it); an unpadded spec whose maps that
    would shrink away runs padded."""
    if spec.resolution == image_size:
        return spec
    sized = replace(spec, image_size=image_size)
    if sized.padding == "valid" and feature_resolution(sized) < 1:
        sized = replace(sized, padding="same")
    return sized


def _conv_head(features: int, spec: ArchSpec) -> nn.Sequential:
    """(dropout →) 1x1 conv to the classes (→ activation) → global average pool, as SqueezeNet ends."""
    layers: list[nn.Module] = [nn.Dropout(spec.dropout)] if spec.dropout else []
    layers.append(nn.Conv2d(features, spec.num_classes, 1))
    if spec.head_pool == "conv_act":
        layers.append(ACTIVATIONS[spec.act]())
    layers.append(nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers)


def _mlp(features: int, spec: ArchSpec, norm: bool) -> nn.Sequential:
    """Linear stack with hidden widths `spec.head`; a head after conv features carries no norm."""
    layers: list[nn.Module] = []
    for h in spec.head:
        layers.append(nn.Linear(features, h, bias=(not norm) if spec.bias is None else spec.bias))
        if norm:
            layers.append(make_norm1d(h, spec.norm))
        layers.append(ACTIVATIONS[spec.act]())
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        features = h
    layers.append(nn.Linear(features, spec.num_classes))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- sampling

def _pick(rng: random.Random, options: Sequence, weights: Sequence[float]):
    return rng.choices(options, weights)[0]


_ACT_W = {"relu": 0.3, "relu6": 0.1, "hardswish": 0.1, "gelu": 0.13, "silu": 0.13, "leaky_relu": 0.12, "tanh": 0.05}
_BLOCK_W = {"conv": 0.13, "conv_bn": 0.13, "dws": 0.11, "dws_bn": 0.11, "residual": 0.15, "inverted": 0.13,
            "dense": 0.12, "fire": 0.12}
assert set(_ACT_W) == set(ACTIVATIONS) and set(_BLOCK_W) == set(ALL_BLOCK_TYPES)


def _head(rng: random.Random, wide: bool) -> tuple[tuple[int, ...], float]:
    n = _pick(rng, (0, 1, 2), (0.5, 0.33, 0.17))
    widths = (64, 128, 256, 512)
    w = (0.15, 0.3, 0.3, 0.25) if wide else (0.35, 0.35, 0.2, 0.1)
    head: list[int] = []
    for _ in range(n):
        h = _pick(rng, widths, w)
        head.append(min(h, head[-1]) if head else h)  # hidden widths do not grow
    dropout = _pick(rng, (0.0, 0.2, 0.5), (0.6, 0.2, 0.2)) if head else 0.0
    return tuple(head), dropout


def _sample_mlp(rng: random.Random, split: str, in_channels: int, num_classes: int) -> ArchSpec:
    depth = _pick(rng, (1, 2, 3, 4), (0.3, 0.35, 0.25, 0.1))
    widths, w = (64, 128, 256, 512), (0.2, 0.3, 0.3, 0.2)
    head: list[int] = []
    for _ in range(depth):
        h = _pick(rng, widths, w)
        head.append(min(h, head[-1]) if head and rng.random() < 0.7 else h)
    use_bn = split != "nobn" and rng.random() < 0.5
    norm = _pick(rng, ("bn", "ln", "gn"), (0.45, 0.45, 0.1)) if use_bn else "bn"
    dropout = _pick(rng, (0.0, 0.2, 0.5), (0.6, 0.25, 0.15))
    bias = True if use_bn and rng.random() < 0.5 else None
    return ArchSpec(0, (), _pick(rng, tuple(_ACT_W), tuple(_ACT_W.values())), use_bn, in_channels, num_classes,
                    family="mlp", norm=norm, bias=bias, stem_kernel=0, head_pool="flatten", head=tuple(head),
                    dropout=dropout)


#: Share of CNN draws that are "plain": what most hand-written CNNs look like and what the first space
#: held (BN, a ReLU-family activation, the six original blocks with kernel 3/5, strided downsampling,
#: global average pool, one Linear).  Without it every draw mixed several rarer features, and GHN
#: training on the broad space stayed at chance on every CNN for 400 steps (measured), while these
#: nets alone trained from step ~30.  The rare features still appear in the other draws.
PLAIN_SHARE = 0.4
#: Share of training CNNs whose stem and plain conv stages run without zero padding, as LeNet's do, so the
#: GHN sees feature maps of every side (a flatten head after 5x5 maps, LeNet-5's, was never drawn: padded
#: stages give 28 -> 14 -> 7 -> 4 -> 2 only). Drawn for "train" only, from a stream of its own
#: (`_unpadded_variant`), so the held-out splits and "val" stay exactly what they were.
VALID_SHARE = 0.25
#: Share of training CNNs whose Linear head is swapped for a conv head (CONV_HEADS), from a stream of its
#: own (`_conv_head_variant`): SqueezeNet-like nets end so, and the GHN had never seen a conv emit logits.
CONV_HEAD_SHARE = 0.1
#: Share of training CNNs with a dense stage whose dense blocks take DenseNet-BC's pre-activation form
#: (`_preact_variant`, a stream of its own): hand-written DenseNets are built so, the space's dense blocks
#: were post-activation only, and the classic DenseNet started at 26 % W4A4.
PREACT_SHARE = 0.5
_PLAIN_ACTS = ("relu", "relu6", "hardswish")


def _sample(rng: random.Random, split: str, in_channels: int, num_classes: int) -> ArchSpec:
    """One draw of `split`'s family ("test" is the training distribution)."""
    if split in ("test", "nobn") and rng.random() < 0.08:
        return _sample_mlp(rng, split, in_channels, num_classes)
    plain = rng.random() < PLAIN_SHARE
    wide_split, deep_split, nobn = split == "wide", split == "deep", split == "nobn"
    res = default_image_size(in_channels)
    # A small share of archs may reach 256-512 channels, only at <= 7x7 (the cost is width^2 * H * W).
    wide_tail = wide_split or (not deep_split and rng.random() < 0.12)
    n_stages = _pick(rng, (2, 3, 4), (0.45, 0.45, 0.1))
    depth_range = (3, 4) if deep_split else (1, 2)
    use_bn = not nobn and rng.random() < 0.75
    norm = "bn" if plain else _pick(rng, ("bn", "gn", "ln"), (0.6, 0.25, 0.15))
    bias = True if not plain and rng.random() < 0.3 else None
    width_idx = rng.randrange(5, 7) if wide_split else rng.randrange(0, 3)
    blocks, bw = tuple(_BLOCK_W), tuple(_BLOCK_W.values())
    if plain:
        blocks, bw = BLOCK_TYPES, (1.0,) * len(BLOCK_TYPES)
    stages = []
    for s in range(n_stages):
        res = math.ceil(res / 2)
        block = _pick(rng, blocks, bw)
        if nobn:
            block = _NOBN_OF.get(block, block)
        cap = len(_WIDTHS) - 1 if wide_tail and res <= 8 else _WIDTHS.index(128 if res <= 8 else 64)
        width = _WIDTHS[min(width_idx, cap)]
        if wide_tail and s == n_stages - 1 and res <= 8:
            width = _pick(rng, (256, 384, 512), (0.5, 0.3, 0.2))  # the sparse wide tail: last stage only
        if plain:
            kernel = 3 if width >= 256 else rng.choice((3, 5))
        else:
            kernel = (_pick(rng, (1, 3), (0.2, 0.8)) if width >= 256
                      else _pick(rng, (1, 3, 5, 7), (0.1, 0.55, 0.2, 0.15)))
        depth = rng.randint(*depth_range)
        if width >= 256 and not deep_split:
            depth = 1
        down = "stride" if plain else _pick(rng, ("stride", "max", "avg"), (0.5, 0.33, 0.17))
        se = not plain and rng.random() < 0.15
        stages.append(StageSpec(block, width, depth, kernel, down, se, se and rng.random() < 0.5))
        width_idx += _pick(rng, (1, 2, 3), (0.45, 0.35, 0.2)) if wide_tail else rng.choice((1, 1, 2))
    stem_width = 32 if wide_split else rng.choice((8, 16, 24, 32))
    stem_kernel = 3 if plain else _pick(rng, (3, 5, 7), (0.65, 0.2, 0.15))
    head_pool = "avg" if plain else _pick(rng, ("avg", "max", "flatten"), (0.55, 0.15, 0.3))
    if head_pool == "flatten" and not _flatten_fits(stages[-1].width, res):
        head_pool = "avg"
    head, dropout = ((), 0.0) if plain else _head(rng, wide_split)
    act = rng.choice(_PLAIN_ACTS) if plain else _pick(rng, tuple(_ACT_W), tuple(_ACT_W.values()))
    if not use_bn and not any(st.block in _NORMED_BLOCKS for st in stages):
        norm = "bn"  # no norm layer anywhere: canonical value, so equal nets get equal keys
    return ArchSpec(stem_width, tuple(stages), act, use_bn, in_channels, num_classes, norm=norm, bias=bias,
                    stem_kernel=stem_kernel, head_pool=head_pool, head=head, dropout=dropout)


def _rng(split: str, index: int) -> random.Random:
    digest = hashlib.sha256(f"torch_qinit-space/{split}/{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


@lru_cache(maxsize=None)
def _benchmark_keys(in_channels: int, num_classes: int) -> frozenset[str]:
    """Keys of the held-out splits the benchmarks report on (every sampled one but "val")."""
    return frozenset(_sample(_rng(s, i), s, in_channels, num_classes).key()
                     for s in HELD_OUT_SAMPLED if s != "val" for i in range(SPLIT_SIZES[s]))


@lru_cache(maxsize=None)
def _held_out_keys(in_channels: int, num_classes: int) -> frozenset[str]:
    val = (get_arch("val", i, in_channels, num_classes).key() for i in range(SPLIT_SIZES["val"]))
    return _benchmark_keys(in_channels, num_classes) | frozenset(val)


def _is_classic_like(spec: ArchSpec) -> bool:
    # MLPs are the one family where a draw can equal a classic net layer for layer.
    if spec.family != "mlp":
        return False
    sig = (spec.head, spec.act, spec.norm if spec.use_bn else None, spec.dropout)
    return sig in classic_mlp_signatures()


def get_arch(split: str, index: int, in_channels: int = 1, num_classes: int = 10) -> Union[ArchSpec, ClassicSpec]:
    """The architecture `index` of `split` ("train", "test", "wide", "deep", "nobn", "classic", "val").

    Training architectures that coincide with a held-out one are re-drawn, so the splits never
    collide; so are "val" draws that coincide with a benchmark split's; "classic" returns a `ClassicSpec`
    (hand-written families), a type training never draws.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if index < 0 or (split in SPLIT_SIZES and index >= SPLIT_SIZES[split]):
        raise IndexError(f"split {split!r} has {SPLIT_SIZES.get(split, 'unbounded')} architectures; got index {index}")
    if split == "classic":
        return get_classic(index, in_channels, num_classes)
    rng = _rng(split, index)
    sample_split = "test" if split in _IN_DISTRIBUTION else split  # train and val: the in-distribution family
    spec = _sample(rng, sample_split, in_channels, num_classes)
    if split in _IN_DISTRIBUTION:
        held = (_held_out_keys if split == "train" else _benchmark_keys)(in_channels, num_classes)
        while spec.key() in held or _is_classic_like(spec):
            spec = _sample(rng, sample_split, in_channels, num_classes)
    if split == "train":
        spec = _unpadded_variant(spec, _rng("train/padding", index))
        spec = _conv_head_variant(spec, _rng("train/conv-head", index))
        spec = _preact_variant(spec, _rng("train/preact", index))
    return spec


def _unpadded_variant(spec: ArchSpec, rng: random.Random) -> ArchSpec:
    """With probability VALID_SHARE, a CNN's unpadded ("valid") twin, unless that shrinks its maps away.

    Half the twins also get a flatten head where its features stay within _MAX_FLATTEN (a global pool
    hides the odd map sides the twin is for). No held-out spec is unpadded, so a twin cannot collide with one.
    """
    if spec.family != "cnn" or rng.random() >= VALID_SHARE:
        return spec
    twin = replace(spec, padding="valid")
    side = feature_resolution(twin)
    if side < 1:
        return spec
    if rng.random() < 0.5 and _flatten_fits(twin.stages[-1].width, side):
        twin = replace(twin, head_pool="flatten")
    return twin


def _conv_head_variant(spec: ArchSpec, rng: random.Random) -> ArchSpec:
    """With probability CONV_HEAD_SHARE, a CNN with a conv head (half of them "conv_act") instead of its
    pool/flatten and Linear layers. No held-out spec has one, so it cannot collide with one."""
    if spec.family != "cnn" or rng.random() >= CONV_HEAD_SHARE:
        return spec
    return replace(spec, head_pool=rng.choice(CONV_HEADS), head=())


def _preact_variant(spec: ArchSpec, rng: random.Random) -> ArchSpec:
    """With probability PREACT_SHARE, a CNN with a dense stage gets pre-activation dense blocks. No held-out
    spec has them, so it cannot collide with one."""
    if spec.family != "cnn" or not any(s.block == "dense" for s in spec.stages) or rng.random() >= PREACT_SHARE:
        return spec
    return replace(spec, preact=True)


def build_arch(split: str, index: int, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """Shortcut for ``get_arch(...).build()``."""
    return get_arch(split, index, in_channels, num_classes).build()
