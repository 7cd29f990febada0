"""Does serving Conv1d layers (decoded as 1×k Conv2d kernels) help a 1-D model, against He init?

The GHNs never saw a 1-D net. This probe reads each Fashion-MNIST image as a 1×784 sequence (row by row,
a stand-in for an audio clip) and trains small keyword-spotting-style Conv1d nets on it: a strided stem,
three conv blocks with pooling, a global pool and a Linear head, with BatchNorm and without. Each start
(GHN-QAT, He normal) gets W4A4 QAT with Adam (`torch_qinit.qat.qat_finetune`, lr 1e-3, batch 128, 10k
training images); accuracy on 2,000 fixed test images at step 0 (zero-shot, BN statistics and activation
ranges calibrated on training batches) and after the last step.

    python benchmarks/scripts/conv1d_probe.py                      # 150 steps, seeds 0 1 2
    python benchmarks/scripts/conv1d_probe.py --steps 50 --seeds 0 # quicker
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torch_qinit
from torch_qinit.data import load_dataset
from torch_qinit.evaluation import evaluate
from torch_qinit.qat import qat_accuracy, qat_finetune


def kws_net(bn: bool, width: int = 32) -> nn.Module:
    """Strided stem (k 9, stride 4) + three conv-k3 blocks (max pool 4, 4, global) + Linear(width*2, 10)."""
    def block(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, bias=not bn),
                *([nn.BatchNorm1d(cout)] if bn else []), nn.ReLU()]
    return nn.Sequential(*block(1, width, 9, 4), nn.MaxPool1d(4),
                         *block(width, width, 3), nn.MaxPool1d(4),
                         *block(width, 2 * width, 3), *block(2 * width, 2 * width, 3),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(2 * width, 10))


def sequences(split: str, n: int, seed: int) -> TensorDataset:
    ds = load_dataset("fmnist", split)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return TensorDataset(ds.tensors[0][idx].reshape(len(idx), 1, 784), ds.tensors[1][idx])


def bn_grid(methods: list[str], seeds: list[int], start_model: Callable[[bool, str, int], nn.Module],
            measure: Callable[[nn.Module, int], tuple[float, float]], unit: str) -> list[tuple]:
    """Every (BN or not, method, seed): `start_model` (after torch.manual_seed(seed)), then `measure` (timed) gives
    (before QAT, after QAT); prints a line per run and the medians over seeds; returns the rows. Shared by the
    probes in this folder (a script's own folder is on its import path)."""
    width = max(10, *map(len, methods))
    rows = []
    print(f"{'net':8s} {'method':{width}s} {'seed':>4s} {'step 0':>7s} {'final':>7s} {'s':>5s}", flush=True)
    for bn in (True, False):
        for method in methods:
            for seed in seeds:
                torch.manual_seed(seed)
                model = start_model(bn, method, seed)
                t0 = time.perf_counter()
                start, final = measure(model, seed)
                rows.append((bn, method, seed, start, final))
                net = "BN" if bn else "no BN"
                print(f"{net:8s} {method:{width}s} {seed:4d} {100 * start:6.1f}% {100 * final:6.1f}% "
                      f"{time.perf_counter() - t0:5.0f}", flush=True)
    print(f"\nmedian over seeds, {unit} (step 0 -> after QAT):")
    for bn in (True, False):
        for method in methods:
            sel = [r for r in rows if r[0] == bn and r[1] == method]
            net = "BN" if bn else "no BN"
            print(f"  {net:6s} {method:{width}s} {100 * statistics.median(r[3] for r in sel):5.1f} -> "
                  f"{100 * statistics.median(r[4] for r in sel):5.1f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["ghn-qat", "he_normal"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    train, test = sequences("train", 10_000, 0), sequences("test", 2_000, 1)
    test_loader = DataLoader(test, batch_size=500)
    calib = DataLoader(TensorDataset(*(t[:1280] for t in train.tensors)), batch_size=128)
    def start_model(bn: bool, method: str, seed: int) -> nn.Module:
        model = kws_net(bn)
        report = torch_qinit.initialize_(model, bits=4, method=method, generator=seed)
        assert not report.fallback, report.fallback
        return model

    def measure(model: nn.Module, seed: int) -> tuple[float, float]:
        start = evaluate(model, 4, test_loader, calib_loader=calib)
        loader = DataLoader(train, batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(seed))
        result = qat_finetune(model, 4, loader, steps=args.steps, lr=1e-3)
        return start, qat_accuracy(result.model, test_loader)  # the EMA ranges QAT tracked, as deployed

    bn_grid(args.methods, args.seeds, start_model, measure, "%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
