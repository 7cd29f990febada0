"""The loss after simulated SGD steps from the predicted parameters (issue #8, item 6).

The GHN objective scores a prediction by its zero-shot loss only.  Measured on the `classic` split
(README, "QAT from each init"): GHN-QAT's starts sit where plain SGD's step is too long.  Under SGD with
momentum at lr 0.02 an AlexNet-like net's gradient norm grows 29 -> 533 -> 797 and overflows by step 12,
where He's settles below 5; 5 of 8 unclipped runs ended at chance.  Zero-shot loss cannot see that: a
sharp minimum and a flat one can score the same.

So a run can add the loss *after* ``k`` plain SGD steps (lr drawn log-uniformly per architecture, the
usual QAT range) on fresh batches, differentiated through the steps (second order, as in MAML; first order
on request).  A prediction from which a step raises the loss, the start of a divergence, costs more than
one from which the steps descend.

The steps run under the scaling ``initialize_`` bakes in: calibration divides each norm-free layer by its
output std *once*, so inside the steps those divisors stay at the values the first forward measured
(:class:`UnitStdScales`); re-measuring them per step would hide exactly the signal growth we look for.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..ghn.calibration import output_divisor

__all__ = ["UnitStdScales", "lookahead_loss"]


class UnitStdScales:
    """The calibration hooks of one training net.

    Outside :meth:`frozen` each hooked layer's output is divided by its own std, a per-batch constant
    (:func:`~torch_qinit.ghn.calibration.output_divisor`); inside, by the std its last forward outside
    measured, as calibration fixes it once at initialization.
    """

    def __init__(self, modules: Iterable[nn.Module]) -> None:
        self._stds: dict[int, torch.Tensor] = {}
        self._frozen = False
        for module in modules:
            module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, _inputs: object, out: torch.Tensor) -> torch.Tensor:
        key = id(module)
        if not (self._frozen and key in self._stds):
            self._stds[key] = output_divisor(out)
        return out / self._stds[key]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self._frozen = True
        try:
            yield
        finally:
            self._frozen = False


def lookahead_loss(net: nn.Module, params: Mapping[str, torch.Tensor], first_loss: torch.Tensor,
                   batches: Sequence[tuple[torch.Tensor, torch.Tensor]], lr: float,
                   scales: UnitStdScales | None = None, second_order: bool = True) -> torch.Tensor:
    """Cross-entropy of `net` after ``len(batches)`` plain SGD steps of size `lr` from `params`.

    `first_loss` is the loss at `params` itself (the trainer's quantized loss; step 1 is its gradient);
    step ``i`` takes its gradient on ``batches[i - 1]``, and the result is the loss on the last batch
    after the last step.  With `second_order` the result is differentiable through the steps (the GHN
    learns how its prediction's own gradient moves it); without, each step's gradient is a constant.
    Non-finite values pass through: the caller decides what a diverged lookahead means.
    """
    if not batches:
        raise ValueError("lookahead_loss needs at least one batch")
    names = [n for n, t in params.items() if t.requires_grad]
    current = dict(params)
    loss = first_loss
    with scales.frozen() if scales is not None else contextlib.nullcontext():
        for images, labels in batches:
            grads = torch.autograd.grad(loss, [current[n] for n in names], create_graph=second_order,
                                        retain_graph=True, allow_unused=True)  # the caller backprops first_loss too
            for name, grad in zip(names, grads):
                if grad is not None:
                    current[name] = current[name] - lr * (grad if second_order else grad.detach())
            loss = F.cross_entropy(functional_call(net, current, (images,)), labels)
    return loss
