"""How large are the predicted weights next to He init, and how many BatchNorm channels are switched off?

    python benchmarks/scripts/prediction_scales.py

Part 1: per conv/linear layer of a few held-out nets, the predicted weight's std over He normal's, for
GHN-QAT and the float GHN (bundled Fashion-MNIST checkpoints, bits=4).  Part 2: over all BatchNorm
channels of the 12 `classic` and the first 20 `test` nets, the share of predicted scales below 0.1
and of shifts below -0.5 (channels that start nearly off: little gradient reaches their weights).
"""
import logging

import torch
from torch import nn

import torch_qinit
from torch_qinit.space import get_arch

NETS = [("classic", 0), ("classic", 5), ("classic", 6), ("test", 2)]


def predicted(split: str, index: int, method: str) -> nn.Module:
    torch.manual_seed(0)
    net = get_arch(split, index, 1, 10).build()
    if method.startswith("ghn"):
        torch_qinit.initialize_(net, bits=4, method=method)
    else:
        torch_qinit.initialize_(net, method=method)
    return net


def main() -> None:
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    for split, index in NETS:
        stds = {m: [(n, p.std().item()) for n, p in predicted(split, index, m).named_parameters() if p.dim() > 1]
                for m in ("he_normal", "ghn-qat", "ghn")}
        print(f"{split} {index}: weight std / He's std (ghn-qat, ghn)")
        for k, (name, he) in enumerate(stds["he_normal"]):
            print(f"   {name:34s} {stds['ghn-qat'][k][1] / he:5.2f} {stds['ghn'][k][1] / he:5.2f}")
    for method in ("ghn-qat", "ghn"):
        scales, shifts = [], []
        for split, count in (("classic", 12), ("test", 20)):
            for i in range(count):
                for m in predicted(split, i, method).modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
                        scales.append(m.weight.detach())
                        shifts.append(m.bias.detach())
        g, b = torch.cat(scales), torch.cat(shifts)
        print(f"{method}: {g.numel()} BN channels; scale < 0.1: {(g < 0.1).float().mean():.1%}, "
              f"shift < -0.5: {(b < -0.5).float().mean():.1%}, scale median {g.median():.2f}")


if __name__ == "__main__":
    main()
