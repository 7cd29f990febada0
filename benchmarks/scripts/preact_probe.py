"""How a GHN serves pre-activation dense blocks (DenseNet-BC's norm → act → conv) against post-activation ones.

Takes the first training nets the sampler draws with `ArchSpec.preact` (half of those with a dense stage)
and initializes each twice, as drawn and with `preact=False`, then prints zero-shot float and W4A4
accuracy (`torch_qinit.evaluation.evaluate` on `head_probe.probe_loaders`: 1,000 fixed test images, BN
recalibrated on 10 train batches).

    python benchmarks/scripts/preact_probe.py                        # the bundled ghn-qat, 8 nets
    TORCH_QINIT_WEIGHTS_DIR=DIR python benchmarks/scripts/preact_probe.py --nets 16
"""
from __future__ import annotations

import argparse
import statistics
import warnings
from dataclasses import replace

import torch
from head_probe import probe_loaders  # this folder: a script's own folder is on its import path

import torch_qinit
from torch_qinit.evaluation import evaluate
from torch_qinit.space import get_arch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="ghn-qat", help="GHN method (default ghn-qat)")
    parser.add_argument("--nets", type=int, default=8, help="pre-activation training nets to probe")
    parser.add_argument("--test-size", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    test_loader, calib = probe_loaders(args.test_size)
    specs, i = [], 0
    while len(specs) < args.nets:
        spec = get_arch("train", i)
        if spec.preact:
            specs.append(spec)
        i += 1
    print(f"{'training net (post-activation twin)':72s} {'post float/W4A4':>16s} {'pre float/W4A4':>16s}")
    means: dict[str, list[float]] = {"post": [], "pre": []}
    for spec in specs:
        cells = []
        for label, variant in (("post", replace(spec, preact=False)), ("pre", spec)):
            model = variant.build()
            torch_qinit.initialize_(model, bits=4, method=args.method)
            float_acc, w4 = (evaluate(model, bits, test_loader, calib_loader=calib) for bits in (None, 4))
            means[label].append(w4)
            cells.append(f"{100 * float_acc:6.1f} / {100 * w4:5.1f}")
        print(f"{spec.describe().removesuffix(' | preact')[:72]:72s} {cells[0]:>16s} {cells[1]:>16s}", flush=True)
    print(f"mean W4A4: post-activation {100 * statistics.mean(means['post']):.1f} %, "
          f"pre-activation {100 * statistics.mean(means['pre']):.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
