"""Building blocks of the design space (the paper's block study set, plus what people write by hand).

Every block is made of standard ``torch.nn`` modules joined by ``+``, ``*`` and
``torch.cat`` only, so `torch.fx` traces it and the GHN sees every parameter.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS", "BLOCK_TYPES", "EXTRA_BLOCK_TYPES", "ALL_BLOCK_TYPES", "NORMS", "VALID_BLOCKS",
    "BasicResidual", "DenseBlock", "DepthwiseSeparable", "FireBlock", "InvertedBottleneck", "SqueezeExcite",
    "conv_unit", "make_block", "make_norm", "make_norm1d", "preact_unit",
]

#: The six block types of the paper's study.  "_bn" variants carry a norm layer.
BLOCK_TYPES: tuple[str, ...] = ("conv", "conv_bn", "dws", "dws_bn", "residual", "inverted")
#: Concatenating blocks the training space adds (dense-block and SqueezeNet fire style).
EXTRA_BLOCK_TYPES: tuple[str, ...] = ("dense", "fire")
ALL_BLOCK_TYPES: tuple[str, ...] = BLOCK_TYPES + EXTRA_BLOCK_TYPES
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "gelu": nn.GELU,
    "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh,
}
#: Normalization kinds: BatchNorm, GroupNorm with several groups, and GroupNorm(1, C) (LayerNorm over C×H×W).
NORMS: tuple[str, ...] = ("bn", "gn", "ln")


def _gn_groups(channels: int) -> int:
    # The largest of 8/4/2 groups that divides C and leaves >= 2 channels per group.
    for g in (8, 4, 2):
        if channels % g == 0 and channels // g >= 2:
            return g
    return 1


def make_norm(channels: int, use_norm: bool, norm: str = "bn") -> nn.Module:
    """A 2-d norm layer of kind `norm` (see NORMS), or Identity when `use_norm` is false."""
    if not use_norm:
        return nn.Identity()
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "gn":
        return nn.GroupNorm(_gn_groups(channels), channels)
    if norm == "ln":
        return nn.GroupNorm(1, channels)
    raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")


def make_norm1d(features: int, norm: str) -> nn.Module:
    """A norm layer for [B, F] features (MLPs): BatchNorm1d, GroupNorm or LayerNorm."""
    if norm == "bn":
        return nn.BatchNorm1d(features)
    if norm == "gn":
        return nn.GroupNorm(_gn_groups(features), features)
    if norm == "ln":
        return nn.LayerNorm(features)
    raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")


def _bias(use_norm: bool, bias: bool | None) -> bool:
    # Default: bias only where no norm follows (a norm makes it redundant); True keeps it anyway,
    # as nn.Conv2d's default does in much hand-written code.
    return (not use_norm) if bias is None else bias


def conv_unit(cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool, groups: int = 1, *,
              norm: str = "bn", bias: bool | None = None, valid: bool = False) -> nn.Sequential:
    """conv → (norm) → activation; zero padding keeps the size ("same"), or none with `valid` (LeNet's convs)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, 0 if valid else kernel // 2, groups=groups, bias=_bias(use_bn, bias)),
        make_norm(cout, use_bn, norm),
        ACTIVATIONS[act](),
    )


def preact_unit(cin: int, cout: int, kernel: int, act: str, use_bn: bool, *, norm: str = "bn",
                bias: bool | None = None) -> nn.Sequential:
    """(norm →) activation → conv, the pre-activation order of DenseNet and ResNet-v2 (stride 1, "same")."""
    return nn.Sequential(
        make_norm(cin, use_bn, norm),
        ACTIVATIONS[act](),
        nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=_bias(use_bn, bias)),
    )


class DepthwiseSeparable(nn.Sequential):
    """Depthwise k×k conv then pointwise 1×1 conv (MobileNet-v1 block)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool, *,
                 norm: str = "bn", bias: bool | None = None) -> None:
        super().__init__(
            conv_unit(cin, cin, kernel, stride, act, use_bn, groups=cin, norm=norm, bias=bias),
            conv_unit(cin, cout, 1, 1, act, use_bn, norm=norm, bias=bias),
        )


class BasicResidual(nn.Module):
    """ResNet basic block: two k×k convs and a (projected) skip connection."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool, *,
                 norm: str = "bn", bias: bool | None = None) -> None:
        super().__init__()
        b = _bias(use_bn, bias)
        self.conv1 = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=b)
        self.bn1 = make_norm(cout, use_bn, norm)
        self.act1 = ACTIVATIONS[act]()
        self.conv2 = nn.Conv2d(cout, cout, kernel, 1, kernel // 2, bias=b)
        self.bn2 = make_norm(cout, use_bn, norm)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=b), make_norm(cout, use_bn, norm))
        self.act2 = ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(y + self.shortcut(x))


class InvertedBottleneck(nn.Module):
    """MobileNet-v2 block: 1×1 expand → depthwise k×k → 1×1 linear project, skip when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool, expand: int = 3, *,
                 norm: str = "bn", bias: bool | None = None) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = conv_unit(cin, mid, 1, 1, act, use_bn, norm=norm, bias=bias)
        self.depthwise = conv_unit(mid, mid, kernel, stride, act, use_bn, groups=mid, norm=norm, bias=bias)
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=_bias(use_bn, bias)), make_norm(cout, use_bn, norm))
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.use_skip else y


class DenseBlock(nn.Module):
    """Dense-block style: each unit's output is concatenated to its input, then a 1×1 transition to `cout`.

    With stride 2 the transition ends in a 2×2 average pool (as in DenseNet); ``ceil_mode`` makes the
    output size ceil(H/2), like a padded stride-2 conv. `preact` builds DenseNet-BC's form instead: every
    unit is norm → act → 1×1 conv (4 × growth) → norm → act → k×k conv, and the transition norm → act → 1×1
    conv, so the block's output is a conv's, not an activation's.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool, *,
                 norm: str = "bn", bias: bool | None = None, layers: int = 2, growth: int | None = None,
                 preact: bool = False) -> None:
        super().__init__()
        growth = growth or max(4, cout // 4)
        kw = {"norm": norm, "bias": bias}
        units, c = [], cin
        for _ in range(layers):
            if preact:
                units.append(nn.Sequential(preact_unit(c, 4 * growth, 1, act, use_bn, **kw),
                                           preact_unit(4 * growth, growth, kernel, act, use_bn, **kw)))
            else:
                units.append(conv_unit(c, growth, kernel, 1, act, use_bn, **kw))
            c += growth
        self.units = nn.ModuleList(units)
        self.transition = (preact_unit(c, cout, 1, act, use_bn, **kw) if preact
                           else conv_unit(c, cout, 1, 1, act, use_bn, **kw))
        self.pool: nn.Module = nn.AvgPool2d(2, ceil_mode=True) if stride != 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            x = torch.cat([x, unit(x)], 1)
        return self.pool(self.transition(x))


class FireBlock(nn.Module):
    """SqueezeNet fire module: 1×1 squeeze, then 1×1 and k×k expand branches concatenated.

    With stride 2 a 3×3 max pool (stride 2, padding 1) comes first.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool, *,
                 norm: str = "bn", bias: bool | None = None, squeeze: int | None = None) -> None:
        super().__init__()
        squeeze = squeeze or max(4, cout // 8)
        e1 = cout // 2
        self.pool: nn.Module = nn.MaxPool2d(3, 2, 1) if stride != 1 else nn.Identity()
        self.squeeze = conv_unit(cin, squeeze, 1, 1, act, use_bn, norm=norm, bias=bias)
        self.expand1 = conv_unit(squeeze, e1, 1, 1, act, use_bn, norm=norm, bias=bias)
        self.expand3 = conv_unit(squeeze, cout - e1, kernel, 1, act, use_bn, norm=norm, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.squeeze(self.pool(x))
        return torch.cat([self.expand1(z), self.expand3(z)], 1)


class SqueezeExcite(nn.Module):
    """Squeeze-excite: global pool → reduce → act → expand → sigmoid → scale the input channels.

    `linear` picks Linear layers on flattened features instead of 1×1 convs (both are common).
    """

    def __init__(self, channels: int, act: str, reduction: int = 4, linear: bool = False) -> None:
        super().__init__()
        mid = max(4, channels // reduction)
        self.linear = linear
        self.pool = nn.AdaptiveAvgPool2d(1)
        layer = nn.Linear if linear else (lambda i, o: nn.Conv2d(i, o, 1))
        self.fc1 = layer(channels, mid)
        self.act = ACTIVATIONS[act]()
        self.fc2 = layer(mid, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x)
        if self.linear:
            s = torch.flatten(s, 1)
        s = self.gate(self.fc2(self.act(self.fc1(s))))
        if self.linear:
            s = s[:, :, None, None]
        return x * s


#: Block kinds that can run without zero padding (`make_block(..., valid=True)`): a plain conv shrinks
#: the map by kernel - 1; the other blocks add or concatenate branches that must keep their sizes equal.
VALID_BLOCKS = frozenset({"conv", "conv_bn"})


def make_block(kind: str, cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool, *,
               norm: str = "bn", bias: bool | None = None, valid: bool = False, preact: bool = False) -> nn.Module:
    """One block of `kind` (see ALL_BLOCK_TYPES).

    `use_bn` only matters for residual/inverted/dense/fire ("_bn" kinds always normalize, the plain
    conv/dws kinds never do); `norm` picks the norm kind, `bias` the conv bias policy (None: only
    without a norm); `valid` drops the zero padding of a plain conv (a kind in VALID_BLOCKS); `preact`
    builds a dense block in DenseNet-BC's pre-activation form (other kinds have none).
    """
    kw = {"norm": norm, "bias": bias}
    if valid and kind not in VALID_BLOCKS:
        raise ValueError(f"block type {kind!r} has no unpadded form; only {sorted(VALID_BLOCKS)} do")
    if preact and kind != "dense":
        raise ValueError(f"block type {kind!r} has no pre-activation form; only 'dense' does")
    if kind in ("conv", "conv_bn"):
        return conv_unit(cin, cout, kernel, stride, act, kind == "conv_bn", valid=valid, **kw)
    if kind in ("dws", "dws_bn"):
        return DepthwiseSeparable(cin, cout, kernel, stride, act, kind == "dws_bn", **kw)
    if kind == "residual":
        return BasicResidual(cin, cout, kernel, stride, act, use_bn, **kw)
    if kind == "inverted":
        return InvertedBottleneck(cin, cout, kernel, stride, act, use_bn, **kw)
    if kind == "dense":
        return DenseBlock(cin, cout, kernel, stride, act, use_bn, preact=preact, **kw)
    if kind == "fire":
        return FireBlock(cin, cout, kernel, stride, act, use_bn, **kw)
    raise ValueError(f"unknown block type {kind!r}; expected one of {ALL_BLOCK_TYPES}")
