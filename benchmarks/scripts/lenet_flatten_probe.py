"""Why LeNet-5 starts at chance from the GHN: the side of the maps its flatten head sees.

LeNet-5 (`torch_qinit.space.classic.lenet5`) pads its first conv and not its second, so its head reads
16x5x5 maps. Every net of the design space the shipped GHNs were trained on pads its convs (sides
28 -> 14 -> 7 -> 4 -> 2 on Fashion-MNIST). This initializes LeNet-5 variants that differ only in the
padding of their two convs (so in the side of the flattened maps) with the GHN and prints their zero-shot
float and W4A4 accuracy (`torch_qinit.evaluation.evaluate`, 1,000 fixed test images, BN-free nets so the
recalibration batches only calibrate activation ranges).

    python benchmarks/scripts/lenet_flatten_probe.py                    # the bundled ghn-qat
    TORCH_QINIT_WEIGHTS_DIR=DIR python benchmarks/scripts/lenet_flatten_probe.py   # another checkpoint
"""
from __future__ import annotations

import argparse
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torch_qinit
from torch_qinit.data import load_dataset
from torch_qinit.evaluation import evaluate

#: name -> (first conv padding, second conv padding, pooling, activation); LeNet-5 is (2, 0, max, ReLU).
VARIANTS: dict[str, tuple[int, int, type[nn.Module], type[nn.Module]]] = {
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="ghn-qat", help="GHN method (default ghn-qat)")
    parser.add_argument("--test-size", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    train, test = load_dataset("fmnist", "train"), load_dataset("fmnist", "test")
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:args.test_size]
    test_loader = DataLoader(TensorDataset(test.tensors[0][idx], test.tensors[1][idx]), batch_size=500)
    calib = DataLoader(TensorDataset(train.tensors[0][:1280], train.tensors[1][:1280]), batch_size=128)
    print(f"{'variant':42s} {'float':>7s} {'W4A4':>7s}")
    for name, (pad1, pad2, pool, act) in VARIANTS.items():
        model = lenet(pad1, pad2, pool, act)
        torch_qinit.initialize_(model, bits=4, method=args.method)
        accs = [evaluate(model, bits, test_loader, calib_loader=calib) for bits in (None, 4)]
        print(f"{name:42s} {100 * accs[0]:6.1f}% {100 * accs[1]:6.1f}%", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
