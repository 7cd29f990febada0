"""`initialize_`: one call that replaces a model's starting weights (DESIGN §2).

Predict (or draw) every new value first, then copy all of them in place, so a
failure at any point leaves the model exactly as it was.
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from .graph import capture
from .init import apply_classic_init, available_methods
from .init.registry import classic_values, owned_parameters
from .quant.fake_quant import check_bits
from .report import InitReport

logger = logging.getLogger(__name__)

GHN_METHODS = ("ghn-qat", "ghn")
#: Classic rule for parameters the GHN cannot serve.
FALLBACK_METHOD = "he_normal"
_WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
Bits = Union[None, int, Mapping[str, Union[int, None]]]
_ghn_cache: dict[tuple[str, str | None], nn.Module] = {}


def methods() -> list[str]:
    """All names `initialize_(method=...)` accepts."""
    return list(GHN_METHODS) + available_methods()


def initialize_(model: nn.Module, bits: Bits = 4, *, method: str = "ghn-qat",
                weights: str | os.PathLike[str] | nn.Module | None = None, revision: str | None = None,
                act_bits: Bits = None, strict: bool = False, example_input: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> InitReport:
    """Replace `model`'s parameters in place with GHN-predicted (or classic) values.

    Args:
        model: any nn.Module; parameter objects, dtype, device, buffers and
            train/eval mode are preserved.
        bits: target weight bits, an int in 2..8, None (float), or a dict
            {module qualname: bits} for per-layer mixed precision.
        method: "ghn-qat" (default), "ghn" (float GHN), or a classic
            initializer name (see `methods()`), e.g. "he_normal".
        weights: a bundled checkpoint name, a local directory, a Hugging Face
            Hub repo id, or a loaded GHN; defaults to the bundled checkpoint of `method`.
        revision: Hub revision to pin (with a repo id).
        act_bits: activation bits, same forms as `bits`; None means same as `bits`.
        strict: raise instead of falling back when the GHN cannot serve a parameter.
        example_input: an input for graph capture when torch.fx cannot trace the model.
        generator: RNG for the classic initializer and the fallback.

    Returns:
        An `InitReport`; print it for a summary.

    Examples:
        >>> report = torch_qinit.initialize_(model, bits=4)             # doctest: +SKIP
        >>> torch_qinit.initialize_(model, method="he_normal")           # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise TypeError(f"initialize_ expects an nn.Module, got {type(model).__name__}")
    if not any(True for _ in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no parameters to initialize")
    if method not in methods():
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(methods())}")
    bits_per_layer = _bits_per_layer(model, bits, "bits")
    act_per_layer = bits_per_layer if act_bits is None else _bits_per_layer(model, act_bits, "act_bits")

    if method not in GHN_METHODS:
        sources = apply_classic_init(model, method, generator=generator)
        return InitReport(method=method, sources=sources, bits=bits_per_layer, act_bits=act_per_layer,
                          seconds=time.perf_counter() - t0)

    ghn = _get_ghn(method if weights is None else weights, revision)
    graph = capture(model, example_input)
    ghn_bits, ghn_act, note = _bits_for_ghn(ghn, bits, act_bits if act_bits is not None else bits)
    with torch.no_grad():
        preds = ghn(graph, bits=ghn_bits, act_bits=ghn_act)

    # Decide every parameter's new value before writing any of them.
    owned = [(name, p) for name, _, _, p in owned_parameters(model)]
    fallback_values: dict[int, tuple[torch.Tensor | None, str]] | None = None
    new_values: dict[int, torch.Tensor] = {}
    served: set[int] = set()  # ids of parameters the GHN predicted (tied ones under any name)
    sources: dict[str, str] = {}
    fallback: dict[str, str] = {}
    graph_names = set(graph.param_shapes())
    for name, p in owned:
        pred = preds.get(name)
        if id(p) in served:  # tied: already predicted under another name
            sources[name] = "ghn"
            continue
        if pred is not None and id(p) not in new_values and tuple(pred.shape) == tuple(p.shape) \
                and p.dtype.is_floating_point:
            new_values[id(p)] = pred
            served.add(id(p))
            sources[name] = "ghn"
            continue
        if fallback_values is None:  # drawn only when needed: it costs a third of a fully served 25M init
            fallback_values = classic_values(model, FALLBACK_METHOD, generator)
        value, desc = fallback_values[id(p)]
        reason = "not in the captured graph" if name not in graph_names else "op not servable by the GHN"
        fallback[name] = f"{reason}; {desc}"
        sources[name] = desc
        if value is not None:
            new_values.setdefault(id(p), value)
    if not any(s == "ghn" for s in sources.values()):
        raise ValueError(f"the GHN can serve none of {type(model).__name__}'s parameters (it predicts conv, "
                         f"linear and norm layers); use a classic method, e.g. method={FALLBACK_METHOD!r}")
    if strict and fallback:
        raise ValueError(f"strict=True: the GHN cannot serve {len(fallback)} parameter(s): "
                         f"{', '.join(list(fallback)[:10])}")

    with torch.no_grad():
        for _, p in owned:
            value = new_values.pop(id(p), None)
            if value is not None:
                p.copy_(value.to(dtype=p.dtype, device=p.device))
    weights_id, sha = getattr(ghn, "source_id", "unsaved"), getattr(ghn, "weights_sha256", None)
    report = InitReport(method=method, sources=sources, fallback=fallback, capture_method=graph.method,
                        bits=bits_per_layer, act_bits=act_per_layer, ghn_bits_note=note,
                        seconds=time.perf_counter() - t0, weights_id=weights_id, weights_sha256=sha)
    logger.info("%s", report)
    return report


def _bits_per_layer(model: nn.Module, bits: Bits, what: str) -> dict[str, Any]:
    """Validate a bits spec and expand it to {weight-layer qualname: bits}."""
    layers = [n for n, m in model.named_modules() if isinstance(m, _WEIGHT_LAYERS)]
    if isinstance(bits, Mapping):
        names = {n for n, _ in model.named_modules()}
        unknown = sorted(set(bits) - names)
        if unknown:
            raise ValueError(f"{what} names modules that {type(model).__name__} does not have: {unknown[:5]}")
        for name, b in bits.items():
            check_bits(b, f"{what}[{name!r}]")
        return {n: bits.get(n) for n in layers if n in bits}
    check_bits(bits, what)
    return {n: bits for n in layers}


def _get_ghn(weights: str | os.PathLike[str] | nn.Module, revision: str | None) -> nn.Module:
    """A loaded GHN, cached per (name, revision): loading is the slow part of a repeated call."""
    if isinstance(weights, nn.Module):
        return weights.eval()
    key = (os.fspath(weights), revision)
    if key not in _ghn_cache:
        from .hub import load_ghn  # huggingface_hub is imported only when a GHN is needed

        _ghn_cache[key] = load_ghn(key[0] if key[0] != "ghn-qat" else "default", revision=revision)
    return _ghn_cache[key]


def _nearest_trained(b: int | None, trained: tuple[int, ...]) -> int | None:
    if b is None or not trained or b in trained:
        return b if trained or b is None else None
    return min(trained, key=lambda t: (abs(t - b), t))


def _bits_for_ghn(ghn: nn.Module, bits: Bits, act_bits: Bits) -> tuple[Any, Any, str]:
    """Map requested bits to widths the GHN was trained on; a float GHN is always fed float.

    Embeddings of widths never seen in training are untrained, so e.g. 5 is fed as 4.
    """
    trained = tuple(getattr(ghn.config, "bits", ()) or ())
    if not trained:
        return None, None, "float GHN: predicts the same weights for every bit width"

    def remap(spec: Bits) -> Any:
        if isinstance(spec, Mapping):
            return {k: _nearest_trained(v, trained) for k, v in spec.items()}
        return _nearest_trained(spec, trained)

    gb, ga = remap(bits), remap(act_bits)
    note = ""
    if gb != bits or ga != act_bits:
        note = f"bits not seen in GHN training (trained on {list(trained)}) were fed as the nearest trained width"
        warnings.warn(note, stacklevel=3)
    return gb, ga, note
