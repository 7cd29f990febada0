"""A penalty that keeps predicted normalization channels switched on (issue #8, item 6).

Measured on 32 held-out nets (benchmarks/results/qat_start_diagnosis.md): the GHN-QAT checkpoint predicts a
BatchNorm scale below 0.1 for 19.6 % of channels and a shift below -0.5 for 34.8 %.  Such a channel starts
nearly off: almost no gradient reaches the weights before it, and the user's QAT trains around it.
Resetting the predicted scales and shifts to 1 / 0 after prediction lifted a ResNet-18-like net's 150-step
SGD QAT from 71.6 % to 80.6 % (He: 83.4 %), but a reset after the fact loses the zero-shot start.

So the GHN is trained with the floor instead: for every predicted norm channel,
``relu(SCALE_FLOOR - scale)^2 + relu(SHIFT_FLOOR - shift)^2``, averaged over the net's norm channels and
added, times ``weight``, to that net's loss.  Channels above both floors cost nothing, so the GHN keeps
every other degree of freedom; the rest of the prediction can adapt to the floor, which a reset cannot.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..ghn.model import servable_targets
from ..graph.arch_graph import ArchGraph

__all__ = ["SCALE_FLOOR", "SHIFT_FLOOR", "norm_channel_penalty"]

#: Scales below this start a channel dim; a norm layer's default init is 1.
SCALE_FLOOR = 0.5
#: Shifts below this keep a channel mostly below a following ReLU's threshold; the default init is 0.
SHIFT_FLOOR = -0.5
_FLOORS = {"norm_weight": SCALE_FLOOR, "norm_bias": SHIFT_FLOOR}


def norm_channel_penalty(graph: ArchGraph, params: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """The mean floor penalty over the predicted norm channels of one net; None when it has none.

    ``params`` is the GHN's prediction for ``graph`` (parameter name -> tensor).  Which tensors are norm
    scales and shifts is the GHN's own classification (`servable_targets`), so both always agree.
    """
    terms = [torch.relu(_FLOORS[t.kind] - params[t.name].reshape(-1)).pow(2)
             for t in servable_targets(graph) if t.kind in _FLOORS and t.name in params]
    if not terms:
        return None
    return torch.cat(terms).mean()
