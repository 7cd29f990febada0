"""Which part of a GHN prediction slows the user's QAT?  Start W4A4 QAT from edited predictions.

    python benchmarks/scripts/qat_start_variants.py SPLIT ARCH OPTIMIZER LR STEPS VARIANT[,VARIANT...]
    python benchmarks/scripts/qat_start_variants.py classic 5 sgd 0.02 150 he,qat,qat_bnreset,qat_gamma1

Variants: `he` (He normal), `qat` / `ghn` (the GHN-QAT / float GHN prediction as is), plus edits joined
by `_`: `bnreset` (every BatchNorm scale 1, shift 0), `gamma1` / `beta0` (only the scale / only the
shift), `shrink` (scale and shift halfway to 1 / 0), `gclamp` (scales below 0.5 raised to 0.5),
`headhe` (the last conv/linear layer from He init), `headnorm` (the last layer scaled to He's std),
`norm` (every conv/linear scaled to He's std), `nobias` (conv/linear biases zeroed), `noiseX` (He
noise of X × He's std added to every conv/linear weight, then rescaled to the prediction's own std per
layer, so only the weights' diversity changes, not the signal), `logitX`
(`initialize_(..., logit_std=X)` with a real batch).  Prints the zero-shot W4A4 accuracy (`zs`: BN
statistics and activation ranges from the first training batch only, so a quick indicator, not the
`zero_shot` benchmark's protocol) and the accuracy every STEPS/5 steps on 2,000 Fashion-MNIST test
images; 10k training images, batch 128.
"""
import logging
import sys

import torch
from torch import nn

import torch_qinit
from torch_qinit.data.registry import load_dataset
from torch_qinit.evaluation import evaluate
from torch_qinit.qat import qat_accuracy, qat_finetune
from torch_qinit.space import get_arch


def batches(x: torch.Tensor, y: torch.Tensor, seed: int = 0):
    """Endless shuffled batches of 128, the same order for every variant."""
    g = torch.Generator().manual_seed(seed)
    while True:
        p = torch.randperm(len(x), generator=g)
        for i in range(0, len(p) - 127, 128):
            yield x[p[i:i + 128]], y[p[i:i + 128]]


def weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def edit(net: nn.Module, he: nn.Module, variant: str) -> None:
    """Apply the edits named in `variant` to the prediction in `net` (`he`: a He-initialized twin)."""
    layers, he_layers = weight_layers(net), weight_layers(he)
    if "headhe" in variant:
        layers[-1].load_state_dict(he_layers[-1].state_dict())
    if "headnorm" in variant:
        layers[-1].weight.mul_(he_layers[-1].weight.std() / layers[-1].weight.std())
    if "nobias" in variant:
        for layer in layers:
            if layer.bias is not None:
                layer.bias.zero_()
    noise = [float(t[5:]) for t in variant.split("_") if t.startswith("noise")]
    if noise:
        # predicted filters are low-diversity (few directions); fresh He noise breaks that up
        g = torch.Generator().manual_seed(1)
        for layer, ref in zip(layers, he_layers):
            w = layer.weight
            mixed = w + noise[0] * ref.weight.std() * torch.randn(w.shape, generator=g)
            w.copy_(mixed * (w.std() / mixed.std()))
    if "norm" in variant.replace("headnorm", ""):
        for layer, ref in zip(layers, he_layers):
            layer.weight.mul_(ref.weight.std() / layer.weight.std())
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
            if "bnreset" in variant or "gamma1" in variant:
                m.weight.fill_(1)
            if "bnreset" in variant or "beta0" in variant:
                m.bias.zero_()
            if "shrink" in variant:
                m.weight.mul_(0.5).add_(0.5)
                m.bias.mul_(0.5)
            if "gclamp" in variant:
                m.weight.clamp_(min=0.5)


def main() -> None:
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    split, arch, opt, lr, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    x, y = load_dataset("fmnist", "train").tensors
    xt, yt = load_dataset("fmnist", "test").tensors
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:10000]
    x, y = x[idx], y[idx]
    test = [(xt[i:i + 500], yt[i:i + 500]) for i in range(0, 2000, 500)]
    spec = get_arch(split, arch, 1, 10)
    for variant in sys.argv[6].split(","):
        torch.manual_seed(0)
        net, he = spec.build(), spec.build()
        torch.manual_seed(0)
        torch_qinit.initialize_(he, method="he_normal")
        if variant == "he":
            net = he
        else:
            caps = [float(t[5:]) for t in variant.split("_") if t.startswith("logit")]
            torch_qinit.initialize_(net, bits=4, method="ghn-qat" if variant.startswith("qat") else "ghn",
                                    logit_std=caps[0] if caps else None, example_input=x[:64] if caps else None)
            edit(net, he, variant)
        zero_shot = evaluate(net, 4, test, calib_loader=[next(batches(x, y))] * 5, recal_batches=5, calib_batches=3)
        res = qat_finetune(net, 4, batches(x, y), steps=steps, lr=lr, optimizer=opt,
                           eval_fn=lambda q: qat_accuracy(q, test), eval_every=steps // 5,
                           generator=torch.Generator().manual_seed(0))
        print(f"{split}{arch} {opt} lr{lr} {variant:22s} zs {zero_shot:.3f}", [round(a, 3) for _, a in res.curve],
              flush=True)


if __name__ == "__main__":
    main()
