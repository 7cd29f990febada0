"""Where a study net loses its 4-bit PTQ accuracy: weights or activations, which layer, and why.

The initializer study (`benchmarks/init_study.py`) trains each block's net for 120 Adam steps and then
quantizes it post-training.  Its `dws_bn` net is the one whose W4A4 accuracy swings by tens of points
from seed to seed, for every initializer.  This probe repeats a study cell (same data, same training)
and then splits the W4A4 loss:

- W4A8 and W8A4: weights at 4 bits with 8-bit activations, and the other way round;
- one layer at a time at W4A4, every other layer at W8A8, and W4A4 with only the first layer at W8A8;
- one output channel of the first conv at a time (the worst one kept, with its response to a blank pixel
  before and after rounding);
- the spread of the BN fold scales `|gamma| / sqrt(running_var)` per BN layer (max / median): a channel
  whose variance collapsed in training is scaled up by folding, and so is the quantization error its
  input carries.

One CSV row per seed (`--out`), and a per-seed line on stdout.

    python benchmarks/scripts/ptq_sensitivity.py --seeds 0 1 2 3 4 5 6 7 8 9 --out DIR
    python benchmarks/scripts/ptq_sensitivity.py --method he_normal --block dws_bn --seeds 0 1
    TORCH_QINIT_WEIGHTS_DIR=DIR python benchmarks/scripts/ptq_sensitivity.py   # another checkpoint
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: `benchmarks` is not installed
from benchmarks.common import fixed_batches, load_data  # noqa: E402
from benchmarks.init_study import init_and_train  # noqa: E402
from torch_qinit.evaluation import accuracy  # noqa: E402
from torch_qinit.quant import fold_bn, quantize_model, set_quant_bits  # noqa: E402
from torch_qinit.quant.fake_quant import fake_quant_weight  # noqa: E402
from torch_qinit.quant.modules import quantized_layers  # noqa: E402


def fold_scale_spread(model: nn.Module) -> dict[str, float]:
    """{BN layer: max / median of |gamma| / sqrt(running_var + eps)} (how unevenly folding scales channels)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and m.affine and m.running_var is not None:
            s = (m.weight.detach().abs() / (m.running_var + m.eps).sqrt())
            out[name] = float(s.max() / s.median())
    return out


@torch.no_grad()
def first_conv_channels(model: nn.Module, test, background: float) -> list[tuple[float, int, float, float]]:
    """Quantize one output channel of the folded net's first conv at a time (4-bit weights, all else float).

    Returns (accuracy, channel, response to a constant `background` input in float, the same quantized),
    worst first.  Fashion-MNIST images are mostly background (pixel 0, about -0.81 once normalized), so
    a rounding error in a kernel's sum shifts that channel over most of every image.
    """
    folded = fold_bn(model).eval()
    conv = next(m for m in folded.modules() if isinstance(m, nn.Conv2d))
    w = conv.weight.detach().clone()
    q = fake_quant_weight(w, 4)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0])
    out = []
    for c in range(w.shape[0]):
        conv.weight.copy_(torch.cat([w[:c], q[c:c + 1], w[c + 1:]]))
        out.append((accuracy(folded, test, "cpu"), c, float(background * w[c].sum() + bias[c]),
                    float(background * q[c].sum() + bias[c])))
    return sorted(out)


def probe(block: str, method: str, seed: int, steps: int, lr: float, train, test, calib,
          background: float) -> dict[str, Any]:
    """One study cell, started and trained by the study's own `init_and_train`, then the W4A4 loss taken apart."""
    model, *_ = init_and_train(block, method, seed, steps, lr, train)
    row: dict[str, Any] = {"block": block, "method": method, "seed": seed, "float": accuracy(model, test, "cpu")}
    q = quantize_model(model, w_bits=4, fold_bn=True, calib_data=calib)
    q.eval()
    for name, (w, a) in {"w4a4": (4, 4), "w4a8": (4, 8), "w8a4": (8, 4)}.items():
        set_quant_bits(q, w, a)
        row[name] = accuracy(q, test, "cpu")
    names = list(quantized_layers(q))
    # The usual deployment remedy: the first layer (here the stem conv, 9 weights per channel) at 8 bits.
    set_quant_bits(q, {n: (8 if n == names[0] else 4) for n in names})
    row["w4a4, first layer 8"] = accuracy(q, test, "cpu")
    for layer in names:
        set_quant_bits(q, {n: (4 if n == layer else 8) for n in names})
        row[f"only {layer}"] = accuracy(q, test, "cpu")
    for layer, spread in fold_scale_spread(model).items():
        row[f"fold spread {layer}"] = spread
    acc, channel, before, after = first_conv_channels(model, test, background)[0]
    row.update({"worst first-conv channel": channel, "only that channel at 4": acc,
                "its background response": before, "quantized": after})
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--block", default="dws_bn")
    parser.add_argument("--method", default="ghn-qat")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=120, help="float Adam steps (the study's 120)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", default=None, help="folder for ptq_sensitivity_BLOCK_METHOD.csv")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train, test = load_data(False)
    calib = fixed_batches(train, 4)  # the study's calibration batches
    background = float(train.dataset[0][0].amin())  # a blank pixel, normalized
    rows = []
    for seed in args.seeds:
        row = probe(args.block, args.method, seed, args.steps, args.lr, train, test, calib, background)
        rows.append(row)
        worst = min((k for k in row if k.startswith("only ")), key=row.get)
        widest = max((k for k in row if k.startswith("fold spread ")), key=row.get)
        print(f"seed {seed}: float {100 * row['float']:.1f}  W4A4 {100 * row['w4a4']:.1f}"
              f"  W4A8 {100 * row['w4a8']:.1f}  W8A4 {100 * row['w8a4']:.1f}"
              f"  first layer 8-bit {100 * row['w4a4, first layer 8']:.1f}"
              f"  worst single layer {worst[5:]} {100 * row[worst]:.1f}  widest fold {widest[12:]} {row[widest]:.1f}x"
              f"  first conv channel {row['worst first-conv channel']} alone {100 * row['only that channel at 4']:.1f}"
              f" (background response {row['its background response']:.2f} -> {row['quantized']:.2f})", flush=True)
    for key in ("float", "w4a4", "w4a8", "w8a4", "w4a4, first layer 8",
                *(k for k in rows[0] if k.startswith("only "))):
        print(f"median {key}: {100 * statistics.median(r[key] for r in rows):.1f} %")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"ptq_sensitivity_{args.block}_{args.method}.csv")
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
