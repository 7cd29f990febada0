"""Signal calibration: one forward pass that fixes the scale of predicted weights in place.

The decoder's fan-in rule (signal.py) keeps activations at scale on average, but
the GHN predicts *similar* weights for similar layers, and similar layers
compound: 50 near-identical conv+ReLU layers can amplify one direction by √2
each.  A weight followed by a normalization layer is immune (the norm rescales);
every other weight gets one data-dependent scalar, in the spirit of LSUV
(Mishkin & Matas, 2016): run the model once on a small batch with the predicted
parameters and divide each such layer's weight and bias by its output's std,
in execution order, so later layers see the corrected signal.

The output (logit) layer keeps the GHN's learned logit scale.  On request
(``logit_std``) the same pass also caps it: if the output layer's output std,
measured after the upstream rescaling, exceeds ``logit_std``, its weight and bias
are scaled down to that std (never up), which leaves every argmax unchanged.

Only the predicted tensors change: the pass runs through `functional_call`, and
buffers (running statistics), attributes and modes are restored afterwards.
"""
from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from ..graph.arch_graph import WEIGHT_OPS, ArchGraph, Node
from ..graph.capture import untouched
from ..parametrized import to_originals
from .signal import signal_rules

__all__ = ["CalibrationResult", "calibrate_scales", "calibrated_layers", "check_logit_std", "first_layer",
           "first_layer_inputs", "output_layers", "synthetic_input", "output_divisor", "untied_state"]

logger = logging.getLogger(__name__)

#: Images per calibration batch: enough for a stable std, cheap on a CPU.
BATCH = 16


@dataclass
class CalibrationResult:
    """What calibration did: per-layer factors applied, or why it was skipped.

    With a ``logit_std`` cap, `logit_stds` holds each output layer's measured output std
    (after the upstream rescaling) and `logit_factors` the factor applied to those above the cap.
    """

    factors: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    logit_std: float | None = None
    logit_stds: dict[str, float] = field(default_factory=dict)
    logit_factors: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        if self.skipped:
            return f"skipped ({self.skipped})"
        if not self.factors:
            text = "nothing to calibrate (every weight feeds a norm or the output)"
        else:
            values = sorted(self.factors.values())
            text = f"{len(values)} layers rescaled, factors {values[0]:.3g}..{values[-1]:.3g}"
        if self.logit_std is None:
            return text
        if not self.logit_stds:
            return f"{text}; logit_std {self.logit_std:g}: no output layer measured"
        if self.logit_factors:
            f = sorted(self.logit_factors.values())
            fs = f"{f[0]:.3g}" if len(f) == 1 else f"{f[0]:.3g}..{f[-1]:.3g}"
            return f"{text}; logits scaled by {fs} to std {self.logit_std:g}"
        top = max(self.logit_stds.values())
        return f"{text}; logits std {top:.3g} <= {self.logit_std:g}, kept"


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
            if node.op in WEIGHT_OPS and not (rules[i].free or rules[i].normed) and "weight" in node.params]


def output_layers(graph: ArchGraph) -> list[str]:
    """Qualified names of the conv/linear layers whose result is the network's output (the logits)."""
    rules = signal_rules(graph)
    return [node.name for i, node in enumerate(graph.nodes)
            if node.op in WEIGHT_OPS and rules[i].output and "weight" in node.params]


def check_logit_std(logit_std: Any) -> float | None:
    """`logit_std` as a float (None stays None); a ValueError unless it is a positive finite number."""
    if logit_std is None:
        return None
    if isinstance(logit_std, bool) or not isinstance(logit_std, numbers.Real) or not math.isfinite(logit_std) \
            or logit_std <= 0:
        raise ValueError(f"logit_std must be a positive finite number or None, got {logit_std!r}")
    return float(logit_std)


def output_divisor(out: torch.Tensor) -> torch.Tensor:
    """What GHN training divides a calibrated layer's output by: its std as a constant (no gradient), so
    the GHN learns under the scaling `calibrate_scales` bakes in at initialization time."""
    return out.detach().std().clamp_min(1e-8)


def untied_state(model: nn.Module, preds: dict[str, torch.Tensor],
                 float_dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The model's state with `preds` put in (on each replaced tensor's device and dtype), each tensor under
    one name only; with `float_dtype`, every floating tensor in that dtype instead.

    A module registered under two names (``nn.Sequential(lin, act, lin)``) lists its tensors twice, and
    `functional_call` refuses two values for tied names; it ties them itself from the first one.
    """
    # A parametrized layer (weight_norm...) runs from its stored tensors: passing "conv.weight" itself would
    # assign it through the parametrization's setter, writing into the model's stored tensors.
    preds = dict(preds)
    to_originals(model, preds)
    state: dict[str, torch.Tensor] = {}
    first_name: dict[int, str] = {}
    alias: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first_name:
            alias[name] = first_name[id(tensor)]
            continue
        first_name[id(tensor)] = name
        state[name] = tensor.detach()
    for name, value in preds.items():
        key = alias.get(name, name)
        if key == name or key not in preds:  # the first name's prediction decides for its aliases
            # The GHN predicts float32 on the CPU; the forward runs where the model lives and in its dtype
            # (a CUDA or float64 model given CPU float32 weights fails, and calibration would be skipped).
            like = state.get(key)
            state[key] = value.detach() if like is None else value.detach().to(
                device=like.device, dtype=float_dtype or like.dtype)  # never through a narrower dtype first
    if float_dtype is not None:
        state = {k: v.to(float_dtype) if v.is_floating_point() else v for k, v in state.items()}
    return state


def calibrate_scales(model: nn.Module, graph: ArchGraph, preds: dict[str, torch.Tensor],
                     example_input: torch.Tensor | None = None, image_size: int = 28,
                     logit_std: float | None = None) -> CalibrationResult:
    """Rescale, in `preds`, every predicted weight whose output no norm layer rescales.

    `preds` maps full parameter names to predicted tensors and is updated in place.
    The output layer keeps the GHN's logit scale; its input is calibrated.  With
    `logit_std` (a positive float), the same pass measures each predicted output
    layer's output std on the calibration input, after the upstream rescaling, and
    scales that layer's weight and bias down to `logit_std` when it is above (never
    up).  The std is that of the batch used: pass a real batch as `example_input` to
    cap the logits of real data exactly (on the synthetic batch they differ).
    A bad `logit_std` raises ValueError before anything is run or changed; otherwise
    this never raises for a model it cannot run: the result says why it skipped.
    """
    logit_std = check_logit_std(logit_std)
    modules = dict(model.named_modules())
    targets = {name: modules[name] for name in calibrated_layers(graph)
               if f"{name}.weight" in preds and name in modules}
    outputs = {} if logit_std is None else {name: modules[name] for name in output_layers(graph)
                                            if f"{name}.weight" in preds and name in modules and name not in targets}
    if not targets and not outputs:
        return CalibrationResult(logit_std=logit_std)
    x = example_input if example_input is not None else synthetic_input(graph, model, image_size)
    if x is None:
        return CalibrationResult(skipped="no input shape could be inferred; pass example_input", logit_std=logit_std)
    stds: dict[str, float] = {}  # each hooked layer's output std at its first call, in execution order

    def make_hook(name: str, rescale: bool):
        """Measure the layer's output std; a calibrated layer (rescale) also passes its output on at unit std."""
        def hook(_mod: nn.Module, _inp, out):
            if not isinstance(out, torch.Tensor) or out.numel() < 2 or name in stds:
                return None  # shared modules are measured at their first call
            std = out.detach().float().std()
            if not torch.isfinite(std) or std <= 0:
                return None
            stds[name] = std.item()
            return out * (1.0 / stds[name]) if rescale else None
        return hook

    state = untied_state(model, preds)
    handles = [mod.register_forward_hook(make_hook(name, rescale=True)) for name, mod in targets.items()]
    handles += [mod.register_forward_hook(make_hook(name, rescale=False)) for name, mod in outputs.items()]
    try:
        # `untouched` puts back buffers (BN statistics), attributes and train/eval flags afterwards
        with untouched(model, x):
            model.train()  # norms use batch statistics, as in the QAT loop that follows
            # dropout draws from the global RNG (restored by `untouched`): a fixed seed makes the measured
            # stds, and so the weights, the same on every call, whatever ran before (a GHN's first load draws)
            torch.manual_seed(0)
            with torch.no_grad():
                functional_call(model, state, (x,), strict=False)
    except Exception as exc:  # noqa: BLE001 - any model we cannot run is skipped, not fatal
        logger.info("signal calibration skipped: %s", exc)
        return CalibrationResult(skipped=f"forward pass failed: {type(exc).__name__}: {exc}", logit_std=logit_std)
    finally:
        for h in handles:
            h.remove()
    factors = {name: 1.0 / std for name, std in stds.items() if name in targets}
    logit_stds = {name: std for name, std in stds.items() if name in outputs}
    logit_factors = {name: logit_std / std for name, std in logit_stds.items() if std > logit_std}
    for name, factor in [*factors.items(), *logit_factors.items()]:
        for local in ("weight", "bias"):
            key = f"{name}.{local}"
            if key in preds:
                preds[key] = preds[key] * factor
    return CalibrationResult(factors=factors, logit_std=logit_std, logit_stds=logit_stds,
                             logit_factors=logit_factors)
