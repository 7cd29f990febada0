"""Zero-shot accuracy with and without the BN-scale rule (`norm_absorbs_scale`), same nets, same data.

    python benchmarks/scripts/bn_scale_ab.py

"old" patches `norm_absorbs_scale` to always say no (the learned factor stays free before every norm,
as before 2026-11-27); "new" is the library as it is.  The function should not change (a BatchNorm
cancels the weight's scale), so the two columns should agree up to BatchNorm's eps.  Bundled GHN-QAT,
1,000 Fashion-MNIST test images, BN recalibration on 10 training batches; float / W4A4 / W2A2.
"""
import logging

import torch

import torch_qinit
from torch_qinit.data.registry import load_dataset
from torch_qinit.evaluation import evaluate
from torch_qinit.ghn import signal
from torch_qinit.space import get_arch

NETS = [("classic", 5), ("classic", 6), ("classic", 11), ("test", 2), ("test", 8)]


def main() -> None:
    logging.disable(logging.INFO)
    torch.set_num_threads(1)
    x, y = load_dataset("fmnist", "train").tensors
    xt, yt = load_dataset("fmnist", "test").tensors
    calib = [(x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64]) for i in range(10)]
    test = [(xt[:1000], yt[:1000])]
    rule = signal.norm_absorbs_scale
    for split, index in NETS:
        spec, accs = get_arch(split, index, 1, 10), {}
        for mode in ("old", "new"):
            signal.norm_absorbs_scale = rule if mode == "new" else (lambda *a: False)
            torch.manual_seed(0)
            net = spec.build()
            torch_qinit.initialize_(net, bits=4, method="ghn-qat")
            accs[mode] = [round(evaluate(net, b, test, calib_loader=calib, recal_batches=10, calib_batches=5), 4)
                          for b in (None, 4, 2)]
        signal.norm_absorbs_scale = rule
        print(split, index, accs, flush=True)


if __name__ == "__main__":
    main()
