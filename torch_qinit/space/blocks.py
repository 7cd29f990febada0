"""Building blocks of the design space (the paper's block study set)."""
from __future__ import annotations

from torch import nn

#: Block types of the design space.  "_bn" variants carry BatchNorm.
BLOCK_TYPES: tuple[str, ...] = ("conv", "conv_bn", "dws", "dws_bn", "residual", "inverted")
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish}


def _norm(channels: int, use_bn: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if use_bn else nn.Identity()


def conv_unit(cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool, groups: int = 1) -> nn.Sequential:
    """conv → (BN) → activation; bias only without BN (BN makes it redundant)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=not use_bn),
        _norm(cout, use_bn),
        ACTIVATIONS[act](),
    )


class DepthwiseSeparable(nn.Sequential):
    """Depthwise k×k conv then pointwise 1×1 conv (MobileNet-v1 block)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool) -> None:
        super().__init__(
            conv_unit(cin, cin, kernel, stride, act, use_bn, groups=cin),
            conv_unit(cin, cout, 1, 1, act, use_bn),
        )


class BasicResidual(nn.Module):
    """ResNet basic block: two k×k convs and a (projected) skip connection."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=not use_bn)
        self.bn1 = _norm(cout, use_bn)
        self.act1 = ACTIVATIONS[act]()
        self.conv2 = nn.Conv2d(cout, cout, kernel, 1, kernel // 2, bias=not use_bn)
        self.bn2 = _norm(cout, use_bn)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=not use_bn), _norm(cout, use_bn))
        self.act2 = ACTIVATIONS[act]()

    def forward(self, x):
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(y + self.shortcut(x))


class InvertedBottleneck(nn.Module):
    """MobileNet-v2 block: 1×1 expand → depthwise k×k → 1×1 linear project, skip when shapes match."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool, expand: int = 3) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = conv_unit(cin, mid, 1, 1, act, use_bn)
        self.depthwise = conv_unit(mid, mid, kernel, stride, act, use_bn, groups=mid)
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=not use_bn), _norm(cout, use_bn))
        self.use_skip = stride == 1 and cin == cout

    def forward(self, x):
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.use_skip else y


def make_block(kind: str, cin: int, cout: int, kernel: int, stride: int, act: str, use_bn: bool) -> nn.Module:
    """One block of `kind` (see BLOCK_TYPES); `use_bn` only matters for residual/inverted."""
    if kind in ("conv", "conv_bn"):
        return conv_unit(cin, cout, kernel, stride, act, kind == "conv_bn")
    if kind in ("dws", "dws_bn"):
        return DepthwiseSeparable(cin, cout, kernel, stride, act, kind == "dws_bn")
    if kind == "residual":
        return BasicResidual(cin, cout, kernel, stride, act, use_bn)
    if kind == "inverted":
        return InvertedBottleneck(cin, cout, kernel, stride, act, use_bn)
    raise ValueError(f"unknown block type {kind!r}; expected one of {BLOCK_TYPES}")
