"""Does serving ConvTranspose2d layers (predicted as the conv with the same channels) help an encoder-decoder?

The GHNs never saw a transposed conv, nor a dense-prediction task. This probe turns Fashion-MNIST into
per-pixel segmentation: every pixel brighter than 0.2 (in [0, 1]) is labelled with its image's garment class
(1-10), every other pixel background (0). A small encoder-decoder (three 3×3 convs, two of them strided,
then two stride-2 ConvTranspose2d back to 28×28 and a 1×1 conv to 11 classes), with BatchNorm and without,
gets W4A4 QAT with Adam (`torch_qinit.qat.qat_finetune`, lr 1e-3, batch 128, 10k training images; the
transposed convs are quantized too, per output channel). Reported: accuracy over the garment pixels of
2,000 fixed test images (background pixels are easy and would hide the difference), before QAT (BN
statistics and activation ranges calibrated on training batches) and after the last step.

    python benchmarks/scripts/convtranspose_probe.py                      # 150 steps, seeds 0 1 2
    python benchmarks/scripts/convtranspose_probe.py --steps 50 --seeds 0 # quicker
    python benchmarks/scripts/convtranspose_probe.py --methods ghn-qat+he_transposed  # the fallback they had before
"""
from __future__ import annotations

import argparse
import copy
import warnings

import torch
import torch.nn.functional as F
from conv1d_probe import bn_grid  # this folder: a script's own folder is on its import path
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import torch_qinit
from torch_qinit.data import load_dataset
from torch_qinit.evaluation import recalibrate_bn
from torch_qinit.qat import qat_finetune
from torch_qinit.quant import quantize_model

FOREGROUND = 0.2  # pixel value in [0, 1] above which a pixel belongs to the garment
CLASSES = 11  # background + 10 garments


#: Method suffix: after the GHN, redraw the transposed convs as the library did before it served them
#: (the He normal fallback, zero bias), to measure what serving them adds.
OLD_FALLBACK = "+he_transposed"


def he_transposed_(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.ConvTranspose2d):
            torch_qinit.init.he_normal_(m.weight, generator=g)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def seg_net(bn: bool, width: int = 16) -> nn.Module:
    """28 → 28 → 14 → 7 (convs) → 14 → 28 (transposed convs) → 1×1 conv to 11 classes."""
    def norm_act(c: int) -> list[nn.Module]:
        return [*([nn.BatchNorm2d(c)] if bn else []), nn.ReLU()]
    w = width
    return nn.Sequential(
        nn.Conv2d(1, w, 3, 1, 1, bias=not bn), *norm_act(w),
        nn.Conv2d(w, 2 * w, 3, 2, 1, bias=not bn), *norm_act(2 * w),
        nn.Conv2d(2 * w, 4 * w, 3, 2, 1, bias=not bn), *norm_act(4 * w),
        nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=not bn), *norm_act(2 * w),
        nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=not bn), *norm_act(w),
        nn.Conv2d(w, CLASSES, 1))


def segmentation(split: str, n: int, seed: int) -> TensorDataset:
    """(normalized image, per-pixel label) pairs: the garment class + 1 where the pixel is bright, else 0."""
    ds = load_dataset("fmnist", split)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    x, y = ds.tensors[0][idx], ds.tensors[1][idx]
    raw = x * 0.3530 + 0.2860  # undo load_dataset's normalization to threshold in pixel units
    labels = torch.where(raw[:, 0] > FOREGROUND, y[:, None, None] + 1, torch.zeros_like(raw[:, 0], dtype=y.dtype))
    return TensorDataset(x, labels.long())


@torch.no_grad()
def garment_pixel_accuracy(qmodel: nn.Module, loader: DataLoader) -> float:
    """Share of garment pixels (label > 0) whose predicted class is their label; eval mode."""
    was_training = qmodel.training
    qmodel.eval()
    correct = total = 0
    for x, y in loader:
        pred = qmodel(x).argmax(dim=1)
        mask = y > 0
        correct += int((pred[mask] == y[mask]).sum())
        total += int(mask.sum())
    qmodel.train(was_training)
    return correct / max(total, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["ghn-qat", "he_normal", "pytorch_default"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    train, test = segmentation("train", 10_000, 0), segmentation("test", 2_000, 1)
    test_loader = DataLoader(test, batch_size=500)
    calib = [x for x, _ in DataLoader(TensorDataset(*(t[:1280] for t in train.tensors)), batch_size=128)]
    def start_model(bn: bool, method: str, seed: int) -> nn.Module:
        model = seg_net(bn)
        report = torch_qinit.initialize_(model, bits=4, method=method.removesuffix(OLD_FALLBACK), generator=seed)
        assert not report.fallback, report.fallback
        if method.endswith(OLD_FALLBACK):
            he_transposed_(model, seed)
        return model

    def measure(model: nn.Module, seed: int) -> tuple[float, float]:
        # zero-shot protocol (torch_qinit.evaluation): BN statistics, then activation ranges, from training batches
        zero_shot = recalibrate_bn(copy.deepcopy(model), calib)
        start = garment_pixel_accuracy(quantize_model(zero_shot, 4, calib_data=calib), test_loader)
        loader = DataLoader(train, batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(seed))
        result = qat_finetune(model, 4, loader, steps=args.steps, lr=1e-3, loss_fn=F.cross_entropy)
        return start, garment_pixel_accuracy(result.model, test_loader)  # the EMA ranges QAT tracked

    bn_grid(args.methods, args.seeds, start_model, measure, "% of garment pixels classified right")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
