"""The first SGD steps of W4A4 QAT from each start on `classic` nets: loss, total gradient norm, largest weight.

Shows why plain SGD at lr 0.02 diverges from GHN starts on the nets without a norm layer (README,
"QAT from each init on Fashion-MNIST: the `classic` nets"): the gradient norm spikes within a few steps.

    python benchmarks/scripts/sgd_gradient_trace.py --archs 0 2 3 8 --methods ghn-qat he_normal --lr 0.02
"""
from __future__ import annotations

import argparse
import math
import warnings

import torch

import torch_qinit
from torch_qinit.data import dataset_loaders
from torch_qinit.initialize import GHN_METHODS
from torch_qinit.quant import quantize_model
from torch_qinit.space import get_arch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", type=int, nargs="+", default=[0, 2, 3, 8])
    p.add_argument("--methods", nargs="+", default=["ghn-qat", "he_normal"])
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--logit-std", type=float, default=None,
                   help="GHN methods: initialize_(..., logit_std=V), which caps the predicted logits' std")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    train, _ = dataset_loaders("fmnist", batch_size=128, train_subset=10000, test_subset=500, seed=0)
    batches = [b for _, b in zip(range(args.steps), train)]
    print("per step: loss / total gradient norm / largest |weight| (nan: a non-finite loss, step skipped)")
    for a in args.archs:
        spec = get_arch("classic", a)
        for method in args.methods:
            torch.manual_seed(0)
            net = spec.build()
            extra = {"logit_std": args.logit_std} if args.logit_std and method in GHN_METHODS else {}
            torch_qinit.initialize_(net, bits=4, method=method, generator=0, **extra)
            q = quantize_model(net, w_bits=4, a_bits=4, fold_bn=False).train()
            opt = torch.optim.SGD(q.parameters(), lr=args.lr, momentum=0.9, nesterov=True)
            cells = []
            for x, y in batches:
                loss = torch.nn.functional.cross_entropy(q(x), y)
                if not torch.isfinite(loss):
                    cells.append("nan")
                    continue
                opt.zero_grad()
                loss.backward()
                grad = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in q.parameters() if p.grad is not None))
                opt.step()
                big = max(float(p.abs().max()) for p in q.parameters())
                cells.append(f"{loss.item():.3g}/{grad:.3g}/{big:.3g}")
            print(f"{spec.name:12s} {method:10s}", " ".join(cells))


if __name__ == "__main__":
    main()
