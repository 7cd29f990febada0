"""The "classic" held-out split: hand-written versions of well-known families, scaled to small inputs.

These are a separate spec type (`ClassicSpec`), never produced by the training sampler, so the
GHN is evaluated on layouts it has not been trained on: LeNet-5, an AlexNet-like, VGG-11 (with and
without BN), a ResNet-18 (base width 16), a MobileNetV2 (width 0.5), a small DenseNet-BC, a
SqueezeNet 1.1 and three MLPs.  Each is sized for 1×28×28 (Fashion-MNIST) or 3×32×32 (CIFAR-10)
and is small enough to train on a CPU (≤ ~3M parameters).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, ClassVar

import torch
from torch import nn

from .blocks import BasicResidual

__all__ = ["CLASSIC_NAMES", "ClassicSpec", "classic_mlp_signatures", "classic_names", "get_classic"]


def _out(res: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (res + 2 * padding - kernel) // stride + 1


# --------------------------------------------------------------------------- the nets

def lenet5(cin: int, classes: int, res: int, tanh: bool = False) -> nn.Module:
    """LeNet-5: the 28×28 input is padded by 2 so both inputs reach 16×5×5 before the 120-84 head."""
    act = nn.Tanh if tanh else nn.ReLU
    pool = nn.AvgPool2d if tanh else nn.MaxPool2d  # the 1998 original averages; modern copies max-pool
    pad = 2 if res == 28 else 0
    r = _out(_out(_out(_out(res, 5, 1, pad), 2, 2), 5), 2, 2)
    return nn.Sequential(
        nn.Conv2d(cin, 6, 5, padding=pad), act(), pool(2),
        nn.Conv2d(6, 16, 5), act(), pool(2),
        nn.Flatten(),
        nn.Linear(16 * r * r, 120), act(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, classes),
    )


class AlexNet(nn.Module):
    """AlexNet layout (5 convs, 3 overlapping max pools, dropout 3-Linear head), scaled down."""

    def __init__(self, cin: int, classes: int, res: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(cin, 48, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(48, 96, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 192, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(192, 128, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        )
        r = _out(_out(_out(res, 3, 2), 3, 2), 3, 2)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(128 * r * r, 512), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(512, 256), nn.ReLU(inplace=True),
            nn.Linear(256, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class VGG(nn.Module):
    """VGG-11 ("A") at half width, with four of the five pools (a 28×28 input would vanish)."""

    CFG = (32, "M", 64, "M", 128, 128, "M", 256, 256, "M", 256, 256)

    def __init__(self, cin: int, classes: int, res: int, batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                res //= 2
                continue
            assert isinstance(v, int)
            layers.append(nn.Conv2d(cin, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            cin = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(cin * res * res, 256), nn.ReLU(True), nn.Dropout(),
            nn.Linear(256, 256), nn.ReLU(True), nn.Dropout(),
            nn.Linear(256, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18: 3×3 stem, four stages of two basic blocks (16/32/64/128), GAP, fc.

    Base width 16 (a quarter of torchvision's) keeps one training step on a CPU core well under a second.
    """

    def __init__(self, cin: int, classes: int, base: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, base, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        layers, c = [], base
        for i, mult in enumerate((1, 2, 4, 8)):
            w = base * mult
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicResidual(c, w, 3, stride, "relu", True),
                                        BasicResidual(w, w, 3, 1, "relu", True)))
            c = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:  # MobileNetV2 drops the expansion conv at t=1
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.ReLU6(inplace=True),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 at width 0.5 with CIFAR strides (stride-1 stem, three stride-2 stages)."""

    SETTINGS = ((1, 8, 1, 1), (6, 16, 2, 2), (6, 24, 3, 2), (6, 48, 3, 2), (6, 64, 2, 1))

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True)]
        c = 16
        for t, w, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(_InvertedResidual(c, w, s if i == 0 else 1, t))
                c = w
        layers += [nn.Conv2d(c, 256, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(256, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class _DenseLayer(nn.Module):
    """DenseNet-BC layer: BN-ReLU-1×1 (4k) - BN-ReLU-3×3 (k), concatenated to its input."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))
        return torch.cat([x, y], 1)


class DenseNet(nn.Module):
    """A small DenseNet-BC: stride-2 3×3 stem, growth 12, three dense blocks of 4 layers, compression 0.5.

    The strided stem (as in ImageNet DenseNets) keeps the concatenations off the full-resolution map,
    which cost 4x the time on a CPU.
    """

    def __init__(self, cin: int, classes: int, growth: int = 12, block: int = 4) -> None:
        super().__init__()
        c = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(cin, c, 3, stride=2, padding=1, bias=False)]
        for b in range(3):
            for _ in range(block):
                layers.append(_DenseLayer(c, growth))
                c += growth
            if b < 2:  # transition: BN-ReLU-1×1 conv (halve channels) - 2×2 avg pool
                layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c // 2, 1, bias=False),
                           nn.AvgPool2d(2)]
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class _Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze, self.squeeze_activation = nn.Conv2d(cin, squeeze, 1), nn.ReLU(inplace=True)
        self.expand1x1, self.expand1x1_activation = nn.Conv2d(squeeze, e1, 1), nn.ReLU(inplace=True)
        self.expand3x3, self.expand3x3_activation = nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1 with a 3×3 stride-1 stem; the classifier is a 1×1 conv + global average pool."""

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(cin, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(64, 16, 64, 64), _Fire(128, 16, 64, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(128, 32, 128, 128), _Fire(256, 32, 128, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
            _Fire(256, 48, 192, 192), _Fire(384, 48, 192, 192), _Fire(384, 64, 256, 256), _Fire(512, 64, 256, 256),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Conv2d(512, classes, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


#: Classic MLPs: name -> (hidden widths, activation, norm or None, dropout).  The training sampler
#: re-draws any MLP with one of these signatures (see `classic_mlp_signatures`).
_MLPS: dict[str, tuple[tuple[int, ...], str, str | None, float]] = {
    "mlp2": ((512,), "relu", None, 0.0),
    "mlp3": ((256, 128), "relu", None, 0.2),
    "mlp4_bn": ((512, 256, 128), "relu", "bn", 0.0),
}


def mlp(cin: int, classes: int, res: int, name: str) -> nn.Module:
    """flatten → [Linear → (BatchNorm1d) → ReLU → (Dropout)]* → Linear."""
    hidden, _, norm, dropout = _MLPS[name]
    layers: list[nn.Module] = [nn.Flatten()]
    d = cin * res * res
    for h in hidden:
        layers.append(nn.Linear(d, h))
        if norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(nn.ReLU())
        if dropout:
            layers.append(nn.Dropout(dropout))
        d = h
    layers.append(nn.Linear(d, classes))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- the split

_Builder = Callable[[int, int, int], nn.Module]
#: name -> (builder(in_channels, num_classes, image_size), uses BN, main activation), in split order.
_CLASSICS: dict[str, tuple[_Builder, bool, str]] = {
    "lenet5": (lambda c, k, r: lenet5(c, k, r), False, "relu"),
    "lenet5_tanh": (lambda c, k, r: lenet5(c, k, r, tanh=True), False, "tanh"),
    "alexnet": (lambda c, k, r: AlexNet(c, k, r), False, "relu"),
    "vgg11": (lambda c, k, r: VGG(c, k, r), False, "relu"),
    "vgg11_bn": (lambda c, k, r: VGG(c, k, r, batch_norm=True), True, "relu"),
    "resnet18": (lambda c, k, r: ResNet18(c, k), True, "relu"),
    "mobilenetv2": (lambda c, k, r: MobileNetV2(c, k), True, "relu6"),
    "densenet": (lambda c, k, r: DenseNet(c, k), True, "relu"),
    "squeezenet": (lambda c, k, r: SqueezeNet(c, k), False, "relu"),
    **{n: ((lambda c, k, r, n=n: mlp(c, k, r, n)), sig[2] is not None, sig[1]) for n, sig in _MLPS.items()},
}
CLASSIC_NAMES: tuple[str, ...] = tuple(_CLASSICS)


def classic_names() -> tuple[str, ...]:
    """Names of the classic split, in index order."""
    return CLASSIC_NAMES


@lru_cache(maxsize=None)
def classic_mlp_signatures() -> frozenset[tuple[tuple[int, ...], str, str | None, float]]:
    """(hidden widths, activation, norm or None, dropout) of the classic MLPs."""
    return frozenset(_MLPS.values())


@dataclass(frozen=True)
class ClassicSpec:
    """One hand-written classic net; same interface as `ArchSpec` (``build``, ``key``, ``name``)."""

    name: str
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 0  # 0: 28 for one channel, else 32

    family: ClassVar[str] = "classic"
    stages: ClassVar[tuple] = ()  # no sampled stages: keeps code that lists ArchSpec stages working
    stem_width: ClassVar[int] = 0

    @property
    def resolution(self) -> int:
        return self.image_size or (28 if self.in_channels == 1 else 32)

    @property
    def use_bn(self) -> bool:
        return _CLASSICS[self.name][1]

    @property
    def act(self) -> str:
        return _CLASSICS[self.name][2]

    def describe(self) -> str:
        return self.name

    def key(self) -> str:
        """Canonical identity; the "classic/" prefix cannot match an `ArchSpec` key."""
        return f"classic/{self.name}/{self.in_channels}/{self.num_classes}/{self.resolution}"

    def build(self) -> nn.Module:
        return _CLASSICS[self.name][0](self.in_channels, self.num_classes, self.resolution)


def get_classic(index: int, in_channels: int = 1, num_classes: int = 10) -> ClassicSpec:
    """The classic net `index` (see CLASSIC_NAMES)."""
    return ClassicSpec(CLASSIC_NAMES[index], in_channels, num_classes)
