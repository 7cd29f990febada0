"""Why two classic nets start near chance from the GHN: what their classifier head reads.

- LeNet-5 (`torch_qinit.space.classic.lenet5`) pads its first conv and not its second, so its flatten head
  reads 16x5x5 maps; every padded net of the design space gives sides 28 -> 14 -> 7 -> 4 -> 2 on
  Fashion-MNIST. The LeNet variants differ only in the padding of their two convs (the flattened side).
- SqueezeNet (`torch_qinit.space.classic.SqueezeNet`) ends in a 1x1 conv to the classes, a ReLU and a
  global average pool, a head no net of the first design space had. Its variants differ only in the head.

Each variant is initialized with the GHN and its zero-shot float and W4A4 accuracy printed
(`torch_qinit.evaluation.evaluate`, 1,000 fixed test images, BN-free nets so the recalibration batches
only calibrate activation ranges).

    python benchmarks/scripts/head_probe.py                    # the bundled ghn-qat, both families
    python benchmarks/scripts/head_probe.py --nets lenet       # one family
    TORCH_QINIT_WEIGHTS_DIR=DIR python benchmarks/scripts/head_probe.py   # another checkpoint
"""
from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torch_qinit
from torch_qinit.data import load_dataset
from torch_qinit.evaluation import evaluate
from torch_qinit.space.classic import SqueezeNet

#: name -> (first conv padding, second conv padding, pooling, activation); LeNet-5 is (2, 0, max, ReLU).
LENET_VARIANTS: dict[str, tuple[int, int, type[nn.Module], type[nn.Module]]] = {
    "LeNet-5 (5x5 head)": (2, 0, nn.MaxPool2d, nn.ReLU),
    "second conv padded (7x7)": (2, 2, nn.MaxPool2d, nn.ReLU),
    "second conv padded by 1 (6x6)": (2, 1, nn.MaxPool2d, nn.ReLU),
    "no padding at all (4x4)": (0, 0, nn.MaxPool2d, nn.ReLU),
    "first unpadded, second padded (6x6)": (0, 2, nn.MaxPool2d, nn.ReLU),
    "LeNet-5 tanh, avg pool (5x5)": (2, 0, nn.AvgPool2d, nn.Tanh),
    "tanh, avg pool, second conv padded (7x7)": (2, 2, nn.AvgPool2d, nn.Tanh),
}


def lenet(pad1: int, pad2: int, pool: type[nn.Module], act: type[nn.Module]) -> nn.Module:
    """LeNet-5's layers (6 and 16 channels of 5x5, 120-84 head) for 1x28x28 inputs, with the given paddings."""
    side = ((28 + 2 * pad1 - 4) // 2 + 2 * pad2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=pad1), act(), pool(2),
        nn.Conv2d(6, 16, 5, padding=pad2), act(), pool(2),
        nn.Flatten(), nn.Linear(16 * side * side, 120), act(), nn.Linear(120, 84), act(), nn.Linear(84, 10),
    )


def squeezenet(head: str) -> nn.Module:
    """The classic split's SqueezeNet with its head as is ("conv-relu") or swapped ("conv", "linear")."""
    model = SqueezeNet(1, 10)
    if head == "conv":
        model.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, 10, 1), nn.AdaptiveAvgPool2d(1))
    elif head == "linear":
        model.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(512, 10),
                                         nn.Unflatten(1, (10, 1, 1)))  # the forward flattens after the classifier
    return model


FAMILIES: dict[str, dict[str, Callable[[], nn.Module]]] = {
    "lenet": {name: (lambda v=v: lenet(*v)) for name, v in LENET_VARIANTS.items()},
    "squeezenet": {
        "SqueezeNet (1x1 conv, ReLU, avg pool)": lambda: squeezenet("conv-relu"),
        "1x1 conv, avg pool (no ReLU)": lambda: squeezenet("conv"),
        "avg pool, Linear": lambda: squeezenet("linear"),
    },
}


def probe_loaders(test_size: int) -> tuple[DataLoader, DataLoader]:
    """(a fixed random `test_size` subset of Fashion-MNIST test, the first 10 train batches of 128 to calibrate)."""
    train, test = load_dataset("fmnist", "train"), load_dataset("fmnist", "test")
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:test_size]
    test_loader = DataLoader(TensorDataset(test.tensors[0][idx], test.tensors[1][idx]), batch_size=500)
    calib = DataLoader(TensorDataset(train.tensors[0][:1280], train.tensors[1][:1280]), batch_size=128)
    return test_loader, calib


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="ghn-qat", help="GHN method (default ghn-qat)")
    parser.add_argument("--nets", nargs="+", choices=tuple(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--test-size", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    test_loader, calib = probe_loaders(args.test_size)
    print(f"{'variant':42s} {'float':>7s} {'W4A4':>7s}")
    for family in args.nets:
        for name, build in FAMILIES[family].items():
            model = build()
            torch_qinit.initialize_(model, bits=4, method=args.method)
            accs = [evaluate(model, bits, test_loader, calib_loader=calib) for bits in (None, 4)]
            print(f"{name:42s} {100 * accs[0]:6.1f}% {100 * accs[1]:6.1f}%", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
