"""Signal calibration: one forward pass that fixes the scale of predicted weights in place.

The decoder's fan-in rule (signal.py) keeps activations at scale on average, but
the GHN predicts *similar* weights for similar layers, and similar layers
compound: 50 near-identical conv+ReLU layers can amplify one direction by √2
each.  A weight followed by a normalization layer is immune (the norm rescales);
every other weight gets one data-dependent scalar, in the spirit of LSUV
(Mishkin & Matas, 2016): run the model once on a small batch with the predicted
parameters and divide each such layer's weight and bias by its output's std,
in execution order, so later layers see the corrected signal.

Only the predicted tensors change: the pass runs through `functional_call`, and
buffers (running statistics), attributes and modes are restored afterwards.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from ..graph.arch_graph import WEIGHT_OPS, ArchGraph, Node
from ..graph.capture import untouched
from .signal import signal_rules

__all__ = ["CalibrationResult", "calibrate_scales", "calibrated_layers", "first_layer", "first_layer_inputs",
           "synthetic_input", "unit_std_hook"]

logger = logging.getLogger(__name__)

#: Images per calibration batch: enough for a stable std, cheap on a CPU.
BATCH = 16


@dataclass
class CalibrationResult:
    """What calibration did: per-layer factors applied, or why it was skipped."""

    factors: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None

    def summary(self) -> str:
        if self.skipped:
            return f"skipped ({self.skipped})"
        if not self.factors:
            return "nothing to calibrate (every weight feeds a norm or the output)"
        values = sorted(self.factors.values())
        return f"{len(values)} layers rescaled, factors {values[0]:.3g}..{values[-1]:.3g}"


def first_layer(graph: ArchGraph) -> Node | None:
    """The first conv or linear layer (with a weight of known shape) the data reaches, or None.

    One rule for the two questions about a model's input: which checkpoint's training images it takes
    (``initialize_``) and what synthetic batch calibration feeds it (:func:`synthetic_input`).
    """
    return next((n for n in graph.nodes if n.op in WEIGHT_OPS and len(n.params.get("weight", ())) >= 2), None)


def first_layer_inputs(node: Node) -> int:
    """What `node` (a :func:`first_layer`) takes: input features of a linear layer, input channels of a conv."""
    w = node.params["weight"]
    return int(w[1]) if node.op == "linear" else int(w[1]) * int(node.attrs.get("groups", 1))


def synthetic_input(graph: ArchGraph, model: nn.Module, image_size: int) -> torch.Tensor | None:
    """A standard-normal batch shaped for the model's first conv/linear layer (1-D or 2-D conv), or None."""
    node = first_layer(graph)
    if node is None:
        return None
    spatial = 0 if node.op == "linear" else len(node.params["weight"]) - 2
    if spatial not in (0, 1, 2):
        return None  # a 3-D conv: no image size to guess
    mod = dict(model.named_modules()).get(node.name)
    param = next(mod.parameters(), None) if mod is not None else None
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else None
    shape = (BATCH, first_layer_inputs(node)) + (image_size,) * spatial
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)


def calibrated_layers(graph: ArchGraph) -> list[str]:
    """Qualified names of the conv/linear layers whose scale calibration fixes (no norm, not the logits)."""
    rules = signal_rules(graph)
    return [node.name for i, node in enumerate(graph.nodes)
            if node.op in WEIGHT_OPS and not rules[i].free and "weight" in node.params]


def unit_std_hook(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
    """Forward hook for GHN training: the calibration as a per-batch constant, so the GHN
    learns under the same scaling `calibrate_scales` bakes in at initialization time."""
    return out / out.detach().std().clamp_min(1e-8)


def calibrate_scales(model: nn.Module, graph: ArchGraph, preds: dict[str, torch.Tensor],
                     example_input: torch.Tensor | None = None, image_size: int = 28) -> CalibrationResult:
    """Rescale, in `preds`, every predicted weight whose output no norm layer rescales.

    `preds` maps full parameter names to predicted tensors and is updated in place.
    The output layer keeps the GHN's logit scale; its input is calibrated.
    Never raises for a model it cannot run: the result says why it skipped.
    """
    modules = dict(model.named_modules())
    targets = {name: modules[name] for name in calibrated_layers(graph)
               if f"{name}.weight" in preds and name in modules}
    if not targets:
        return CalibrationResult()
    x = example_input if example_input is not None else synthetic_input(graph, model, image_size)
    if x is None:
        return CalibrationResult(skipped="no input shape could be inferred; pass example_input")
    factors: dict[str, float] = {}

    def make_hook(name: str):
        def hook(_mod: nn.Module, _inp, out):
            if not isinstance(out, torch.Tensor) or out.numel() < 2 or name in factors:
                return None  # shared modules are calibrated at their first call
            std = out.detach().float().std()
            if not torch.isfinite(std) or std <= 0:
                return None
            factors[name] = 1.0 / std.item()
            return out * factors[name]
        return hook

    state = {k: v.detach() for k, v in model.state_dict(keep_vars=True).items()}
    state.update({k: v.detach() for k, v in preds.items()})
    handles = [mod.register_forward_hook(make_hook(name)) for name, mod in targets.items()]
    try:
        # `untouched` puts back buffers (BN statistics), attributes and train/eval flags afterwards
        with untouched(model, x):
            model.train()  # norms use batch statistics, as in the QAT loop that follows
            with torch.no_grad():
                functional_call(model, state, (x,), strict=False)
    except Exception as exc:  # noqa: BLE001 - any model we cannot run is skipped, not fatal
        logger.info("signal calibration skipped: %s", exc)
        return CalibrationResult(skipped=f"forward pass failed: {type(exc).__name__}: {exc}")
    finally:
        for h in handles:
            h.remove()
    for name, factor in factors.items():
        for local in ("weight", "bias"):
            key = f"{name}.{local}"
            if key in preds:
                preds[key] = preds[key] * factor
    return CalibrationResult(factors=factors)
