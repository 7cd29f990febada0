"""`initialize_`: one call that replaces a model's starting weights (ARCHITECTURE.md §2).

Predict (or draw) every new value first, then copy all of them in place, so a
failure at any point leaves the model exactly as it was.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from .bits import BitsSpec, act_spec, check_spec, expand_bits
from .ghn.balance import balance_checked
from .ghn.calibration import (
    calibrate_scales,
    calibrated_layers,
    check_logit_std,
    first_layer,
    first_layer_inputs,
    synthetic_input,
)
from .graph import ArchGraph, capture_with_note
from .graph.layout import to_stored_layout
from .init import apply_classic_init, available_methods
from .init.registry import as_generator, classic_values
from .modules import (
    check_materialized,
    distinct_parameters,
    owned_parameters,
    unwrap,
    weight_layer_names,
    write_values,
)
from .parametrized import refresh_legacy_weights, to_originals
from .report import InitReport

__all__ = ["initialize_", "methods", "get_ghn", "GHN_METHODS", "FALLBACK_METHOD", "AUTO_LOGIT_STD", "AUTO_LOGIT_METHOD",
           "Bits", "Weights"]

logger = logging.getLogger(__name__)

GHN_METHODS = ("ghn-qat", "ghn")
#: Classic rule for parameters the GHN cannot serve.
FALLBACK_METHOD = "he_normal"
Bits = BitsSpec  # kept for callers of the old name
Weights = Union[str, "os.PathLike[str]", nn.Module, None]
#: Bundled checkpoints per GHN method: Fashion-MNIST (1×28×28, the default) first, then CIFAR-10 (3×32×32).
_BUNDLED_BY_METHOD: dict[str, tuple[str, ...]] = {"ghn-qat": ("ghn-qat", "ghn-qat-cifar10"),
                                                  "ghn": ("ghn", "ghn-cifar10")}
_SKIPPED = "skipped (empty layer)"
_ghn_cache: dict[tuple[str, str], _CachedGHN] = {}


def methods() -> list[str]:
    """All names `initialize_(method=...)` accepts."""
    return list(GHN_METHODS) + available_methods()


#: The logit cap of ``initialize_(..., logit_std="auto")``, the default (see its docstring for the measurement).
AUTO_LOGIT_STD = 1.0
#: The one method the default cap applies to: it hurt the float GHN (a sampled test net: -18.5 points under Adam).
AUTO_LOGIT_METHOD = "ghn-qat"


def initialize_(model: nn.Module, bits: Bits | str = "auto", *, method: str = "ghn-qat",
                weights: str | os.PathLike[str] | nn.Module | None = None, revision: str | None = None,
                act_bits: Bits | str = None, strict: bool = False, example_input: torch.Tensor | None = None,
                generator: torch.Generator | int | None = None, calibrate: bool = True,
                logit_std: float | str | None = "auto", balance: bool = True) -> InitReport:
    """Replace `model`'s parameters in place with GHN-predicted (or classic) values.

    Args:
        model: any nn.Module; parameter objects, dtype, device, buffers and
            train/eval mode are preserved.  A ``torch.compile``, ``DataParallel`` or
            ``DistributedDataParallel`` wrapper is initialized through the module it wraps
            (the same parameters; the report uses that module's names and says so).
        bits: target weight bits, an int in 2..8, None (float), or a dict
            {module qualname: bits} for per-layer mixed precision. The default
            "auto" reads the widths layers declare (brevitas ``QuantConv2d(...,
            weight_bit_width=b)``, see `torch_qinit.interop.declared_bits`) and
            gives 4 to every other layer; ``report.bits`` shows the result.
        method: "ghn-qat" (default), "ghn" (float GHN), or a classic
            initializer name (see `methods()`), e.g. "he_normal".
        weights: a bundled checkpoint name, a local directory, a Hugging Face
            Hub repo id, or a loaded GHN.  By default, the bundled checkpoint of
            `method` trained on images like the model's input: the first conv
            layer's input channels (1: Fashion-MNIST, 3: CIFAR-10; a linear first
            layer: 784 or 3072 features).  The report's ``weights_note`` says which and why.
        revision: Hub revision to pin (with a repo id).
        act_bits: activation bits, same forms as `bits`; None (or "same") means the same as
            `bits`, "float" float activations (the rule of `torch_qinit.bits.act_spec`).
        strict: raise instead of falling back when the GHN cannot serve a parameter
            (or predicts a non-finite value), or when no bundled checkpoint matches
            the model's input channels.
        example_input: an input for graph capture when torch.fx cannot trace the model.
        generator: RNG for the classic initializer and the fallback: a
            ``torch.Generator``, or an int seed (a fresh CPU generator seeded with it).
        calibrate: GHN methods only: run one forward pass on `example_input` (or a
            standard-normal batch shaped for the first layer) and rescale every
            predicted conv/linear that no norm layer follows to unit output std
            (LSUV-style), so deep nets without BN keep their signal (and see `balance`).
            False keeps the raw predictions.  The report's ``calibration_note`` says
            what it did.
        logit_std: a cap on the output (logit) layer, which calibration otherwise leaves
            at the GHN's learned logit scale: the same forward pass measures that layer's
            output std (after the upstream rescaling) and, if above the cap, scales its
            predicted weight and bias down to it (never up; argmax, so zero-shot accuracy,
            is unchanged).  "auto" (the default): a cap of ``AUTO_LOGIT_STD`` (1.0) for
            method="ghn-qat" with ``calibrate=True`` and a version-2 GHN, nothing otherwise.
            None: no cap.
            A positive finite number: that cap (ValueError with a classic method or
            ``calibrate=False``; ignored with a warning for a version-1 GHN).  The std is
            measured on the calibration batch: pass a real batch as `example_input` to make it
            exact (LeNet-5 logits: std 2.1 on the synthetic standard-normal batch, 4.0 on a
            Fashion-MNIST batch, so 1.0 on the synthetic batch leaves real logits at 1.9).
            Why a default: a confident wrong start makes plain SGD's first steps too long.
            Measured (README, "QAT from each init ... the classic nets"; W4A4, 150 steps of SGD
            with Nesterov momentum at lr 0.02, no gradient clipping, seeds 0-1), the shipped
            ghn-qat without a cap ended at chance on AlexNet- and VGG-11-like nets at both
            seeds; with 1.0 they reached 77.0 / 65.6 and 72.8 / 76.6 % (LeNet-5 71.2 / 74.2 ->
            79.8 / 80.0 %), and under Adam the 12-net mean moved by less than a point.  The float
            GHN ("ghn") keeps its scale by default: with the cap, test-split net 4 fell from 63.8
            to 45.3 % after 200 Adam steps (3 seeds), where GHN-QAT went from 66.2 to 68.0 %.
        balance: with ``calibrate=True``: after calibration, move scale between layers
            joined only by ReLU / pooling (the outputs stay as they were; a second pass
            checks) so every layer of such a chain has the same fan-in-normalized weight
            scale, as under He init (``ghn/balance.py``).  It keeps plain SGD from
            diverging on an AlexNet-like net; on other norm-free nets it cost about 1 pp
            under SGD (README, "Scale balancing").  False keeps the calibrated scales.

    Raises:
        TypeError: `model` is not an nn.Module, `generator` is neither a Generator
            nor an int, `balance` is not a bool, or a GHN method is asked of a torch.jit ScriptModule.
        ValueError: bad bits/method/name/logit_std, nothing servable, parameters without
            values (lazy, or on the meta device), or `strict`.
        GHNLoadError: the checkpoint cannot be fetched or is invalid.
        RuntimeError: a parameter cannot be written (an inference tensor).
        In every case the model is left exactly as it was.

    Returns:
        An `InitReport`; print it for a summary.

    Examples:
        >>> report = torch_qinit.initialize_(model, bits=4)             # doctest: +SKIP
        >>> torch_qinit.initialize_(model, method="he_normal")           # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise TypeError(f"initialize_ expects an nn.Module, got {type(model).__name__}")
    generator = as_generator(generator)  # an int seeds a CPU generator; anything else is a TypeError
    model, prefix, model_note = unwrap(model)  # torch.compile / DataParallel: fx cannot trace them
    if prefix:
        bits, act_bits = _without_prefix(bits, prefix), _without_prefix(act_bits, prefix)
    if not any(True for _ in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no parameters to initialize")
    check_materialized(model)  # lazy layers have no shape to predict or draw for
    if method not in methods():
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(methods())}")
    auto_logit = isinstance(logit_std, str)
    if auto_logit and logit_std != "auto":
        raise ValueError(f"logit_std must be 'auto', None or a positive finite number, got {logit_std!r}")
    if auto_logit:  # the default cap where a calibration pass can apply it; no error or warning elsewhere
        logit_std = AUTO_LOGIT_STD if method == AUTO_LOGIT_METHOD and calibrate else None
    logit_std = check_logit_std(logit_std)  # a positive finite number or None, else ValueError
    if logit_std is not None and method not in GHN_METHODS:
        raise ValueError(f"logit_std caps the logits of a GHN prediction; method={method!r} is a classic "
                         "initializer: drop logit_std or use a GHN method")
    if not isinstance(balance, bool):
        raise TypeError(f"balance must be True or False, got {balance!r}")
    if logit_std is not None and not calibrate:
        raise ValueError("logit_std is applied by the calibration pass; it needs calibrate=True")
    if isinstance(bits, str) and bits == "auto":
        from .interop import auto_bits  # brevitas is only looked at if the user imported it

        bits = auto_bits(model)
    a_spec = act_spec(bits, act_bits)  # None or "same": as bits; "float": float activations
    bits_per_layer = _bits_per_layer(model, bits, "bits")
    act_per_layer = _bits_per_layer(model, a_spec, "act_bits")

    if method not in GHN_METHODS:
        sources = apply_classic_init(model, method, generator=generator)
        return InitReport(method=method, sources=sources, bits=bits_per_layer, act_bits=act_per_layer,
                          seconds=time.perf_counter() - t0, model_note=model_note)

    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError(
            f"{type(model).__name__} is a torch.jit ScriptModule, which the GHN methods do not support: TorchScript "
            "compiles the forward away, so the graph of ops the GHN reads cannot be captured (torch.fx cannot trace "
            "it, and its layers are not nn.Linear/nn.Conv modules). Call initialize_ on the nn.Module before "
            "scripting it (scripting keeps the values), or use a classic method, e.g. "
            f"method={FALLBACK_METHOD!r}, which works on scripted modules")

    graph, capture_note = capture_with_note(model, example_input)
    choice, weights_note = _choose_weights(method, weights, graph, strict)
    ghn = get_ghn(choice, revision)
    ghn_bits, ghn_act, note = _bits_for_ghn(ghn, bits, a_spec)
    with torch.no_grad():
        preds = ghn(graph, bits=ghn_bits, act_bits=ghn_act)
    to_stored_layout(graph, preds)  # transposed convs: predicted as the conv the GHN knows, stored swapped
    calibration_note = ""
    if calibrate and getattr(getattr(ghn, "config", None), "decoder_version", 1) >= 2:
        # one forward pass fixes the scale of layers no norm rescales (see ghn/calibration.py)
        calibration = calibrate_scales(model, graph, preds, example_input, image_size=ghn.config.input_shape[-1],
                                       logit_std=logit_std)
        calibration_note = calibration.summary()
        if balance and not calibration.skipped:
            # move scale between norm-free layers so they train alike; the outputs stay (see ghn/balance.py)
            x = example_input if example_input is not None else synthetic_input(graph, model,
                                                                                  ghn.config.input_shape[-1])
            balance_note = balance_checked(model, graph, preds, x).summary()
            calibration_note = "; ".join(filter(None, (calibration_note, balance_note)))
        failed = bool(calibration.skipped) and calibration.skipped.startswith("forward pass failed")
        # the default logit cap alone is no reason to warn (models a synthetic batch cannot drive, e.g. token
        # ids); the layer list is only looked up on failure, off the common path
        if failed and (not auto_logit or any(f"{name}.weight" in preds for name in calibrated_layers(graph))):
            # not silent: without it, layers no norm follows keep the GHN's raw scale (deep no-BN nets suffer)
            warnings.warn(f"initialize_: the calibration pass could not run the model ({calibration.skipped}); the "
                          "predicted layers keep the GHN's raw scale. An example_input the model accepts fixes it",
                          stacklevel=2)
    elif logit_std is not None and not auto_logit:
        calibration_note = f"logit_std {logit_std:g} ignored: a version-1 GHN has no calibration pass"
        warnings.warn(f"the GHN ({getattr(ghn, 'source_id', 'unsaved')}) is version 1, which has no calibration "
                      f"pass: {calibration_note}", stacklevel=2)

    # weight_norm / spectral_norm / pruning masks store other tensors than the weight they compute
    not_inverted = to_originals(model, preds)

    # Decide every parameter's new value before writing any of them. The first name of a
    # parameter decides for all its (tied) names.
    owned = owned_parameters(model)
    graph_names = set(graph.param_shapes())
    empty_owners = {id(mod) for _, mod, _, p in owned if p.numel() == 0}
    decided: dict[int, tuple[torch.Tensor | None, str, str]] = {}  # id -> (value, source, fallback reason)
    fallback_values: dict[int, tuple[torch.Tensor | None, str]] | None = None
    predicted: dict[int, torch.Tensor] = {}
    params: dict[int, nn.Parameter] = {}
    for name, mod, _, p in distinct_parameters(owned):
        params[id(p)] = p
        if id(mod) in empty_owners:
            decided[id(p)] = (None, _SKIPPED, "")
            continue
        pred = preds.get(name)
        if pred is not None and tuple(pred.shape) == tuple(p.shape) and p.dtype.is_floating_point:
            predicted[id(p)] = pred.to(dtype=p.dtype, device=p.device)
            continue
        inverse_failure = not_inverted.get(name.rsplit(".", 1)[0])  # keyed by "<layer>.parametrizations.<name>"
        if inverse_failure:
            reason = inverse_failure
        elif name not in graph_names:
            reason = "not in the captured graph"
        elif isinstance(mod, torch.jit.ScriptModule):
            reason = "inside a torch.jit ScriptModule, which the GHN cannot read"
        else:
            reason = "op not servable by the GHN"
        decided[id(p)] = (None, "", reason)  # value drawn below

    # A prediction must be finite in the parameter's own dtype (a NaN in a checkpoint, or overflow in float16).
    bad = _not_finite(predicted)
    if bad:
        warnings.warn(f"the GHN ({getattr(ghn, 'source_id', 'unsaved')}) predicted non-finite values for "
                      f"{len(bad)} parameter(s); they get the classic fallback (see the report)", stacklevel=2)
    for pid in bad:
        decided[pid] = (None, "", "GHN prediction not finite (NaN or inf)")
        del predicted[pid]
    for pid, (value, source, reason) in list(decided.items()):
        if reason:
            if fallback_values is None:  # drawn only when needed: it costs a third of a fully served 25M init
                fallback_values = classic_values(model, FALLBACK_METHOD, generator)
            value, desc = fallback_values[pid]
            p = params[pid]
            decided[pid] = (None if value is None else value.to(dtype=p.dtype, device=p.device), desc,
                            f"{reason}; {desc}")

    sources: dict[str, str] = {}
    fallback: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name, _, _, p in owned:
        if id(p) in predicted:
            sources[name] = "ghn"
            continue
        _, source, reason = decided[id(p)]
        sources[name] = source
        if source == _SKIPPED:
            skipped[name] = "its layer has a zero-size dimension: nothing to predict, left as it was"
        else:
            fallback[name] = reason
    if not predicted:
        if bad:
            raise ValueError(f"every prediction of the GHN ({getattr(ghn, 'source_id', 'unsaved')}) was non-finite "
                             "(NaN or inf): the checkpoint is broken; nothing was changed")
        raise ValueError(f"the GHN can serve none of {type(model).__name__}'s parameters (it predicts conv, "
                         f"linear and norm layers); use a classic method, e.g. method={FALLBACK_METHOD!r}")
    if strict and fallback:
        first = next(iter(fallback))
        raise ValueError(f"strict=True: the GHN cannot serve {len(fallback)} parameter(s): "
                         f"{', '.join(list(fallback)[:10])} ({first}: {fallback[first]})")

    new_values = dict(predicted)
    new_values.update((pid, value) for pid, (value, _, _) in decided.items() if value is not None)
    write_values(owned, new_values)  # every target checked first, then one copy_ per parameter
    refresh_legacy_weights(model)  # old-style weight_norm's `weight` attribute, else stale until a forward
    weights_id, sha = getattr(ghn, "source_id", "unsaved"), getattr(ghn, "weights_sha256", None)
    report = InitReport(method=method, sources=sources, fallback=fallback, skipped=skipped,
                        capture_method=graph.method, capture_note=capture_note, bits=bits_per_layer,
                        act_bits=act_per_layer, ghn_bits_note=note, seconds=time.perf_counter() - t0,
                        weights_id=weights_id, weights_sha256=sha, weights_note=weights_note,
                        calibration_note=calibration_note, model_note=model_note)
    logger.info("%s", report)
    return report


def _without_prefix(spec: Any, prefix: str) -> Any:
    """A per-layer bits dict written against a wrapper's names (``_orig_mod.0``), in the wrapped module's names."""
    if not isinstance(spec, Mapping):
        return spec
    return {(k[len(prefix):] if isinstance(k, str) and k.startswith(prefix) else k): v for k, v in spec.items()}


def _bits_per_layer(model: nn.Module, bits: Bits, what: str) -> dict[str, Any]:
    """Validate a bits spec and expand it to {weight-layer qualname: bits}."""
    layers = weight_layer_names(model)
    check_spec(bits, what, (n for n, _ in model.named_modules()),
               "{what} names modules that " + type(model).__name__ + " does not have: {unknown}")
    return expand_bits(bits, layers, only_named=True)


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


def _not_finite(values: dict[int, torch.Tensor]) -> list[int]:
    """Ids of the values holding a NaN or inf: one host sync per device, not one per tensor.

    min and max propagate NaN and reach ±inf, so checking them is exact, and one reduction is 50×
    cheaper than ``isfinite(v).all()`` (3 ms vs 150 ms for 19M floats on one thread).
    """
    by_device: dict[torch.device, list[int]] = {}
    for pid, v in values.items():
        if v.numel():  # (meta parameters were refused up front)
            by_device.setdefault(v.device, []).append(pid)
    bad: list[int] = []
    for ids in by_device.values():
        extremes = torch.stack([torch.stack(torch.aminmax(values[i])).double() for i in ids])
        flags = torch.isfinite(extremes).all(1).tolist()
        bad += [i for i, ok in zip(ids, flags) if not ok]
    return bad


def _checkpoint_input(name: str) -> tuple[str, tuple[int, ...], bool]:
    """(dataset, input shape, installed) of a bundled checkpoint; an installed config.json's input_shape wins."""
    from .hub import BUNDLED_INPUTS, CONFIG_NAME, WEIGHTS_NAME, bundled_checkpoint_dir

    dataset, shape = BUNDLED_INPUTS[name]
    directory = bundled_checkpoint_dir(name)
    installed = (directory / WEIGHTS_NAME).is_file()
    if installed:
        try:
            shape = tuple(int(d) for d in json.loads((directory / CONFIG_NAME).read_text())["input_shape"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # loading it will report what is wrong with the file
    return dataset, shape, installed


def _choose_weights(method: str, weights: Weights, graph: ArchGraph, strict: bool) -> tuple[Weights, str]:
    """The checkpoint to use and a note on why (issue 9: checkpoint choice).

    ``weights=`` wins.  Otherwise the bundled checkpoint of `method` whose training input matches the
    model's first conv/linear layer: a conv's input channels (1: Fashion-MNIST, 3: CIFAR-10), or a
    linear layer's input features when they are a flattened image (784 or 3072).  Any other channel
    count gets the closest checkpoint with a warning, or a ValueError under `strict`; a linear layer
    on anything else (tabular data, an embedding) is no image, so it gets the default with a note only.
    A matching checkpoint that is not installed falls back to the Fashion-MNIST one, with a warning.
    """
    if weights is not None:
        given = "a loaded GHN" if isinstance(weights, nn.Module) else repr(os.fspath(weights))
        return weights, f"weights={given} was given"
    candidates = _BUNDLED_BY_METHOD[method]
    default = candidates[0]
    inputs = {c: _checkpoint_input(c) for c in candidates}
    first = first_layer(graph)
    if first is None:
        return default, (f"{default!r} ({inputs[default][0]}), the default: the model has no conv or linear "
                         "layer to match")
    op, layer, n = first.op, first.name, first_layer_inputs(first)
    unit = "input features" if op == "linear" else "input channels"

    def size(c: str) -> int:  # what the first layer takes when fed that checkpoint's training images
        shape = inputs[c][1]
        return math.prod(shape) if op == "linear" else shape[0]

    known = ", ".join(f"{size(c)} ({inputs[c][0]})" for c in candidates)
    matches = [c for c in candidates if size(c) == n]
    if matches:
        choice = matches[0]
        note = f"{choice!r}: first layer {layer!r} takes {n} {unit}, like {inputs[choice][0]}"
    elif op == "linear":
        choice = default
        note = (f"{default!r} ({inputs[default][0]}), the default: first layer {layer!r} is linear with {n} "
                f"{unit}, not a flattened image of a known size ({known})")
    else:
        msg = (f"the first layer {layer!r} of the model takes {n} {unit}; the bundled {method} checkpoints "
               f"know {known}")
        if strict:
            raise ValueError(f"strict=True: {msg}. Pass weights= to choose a checkpoint")
        choice = min(candidates, key=lambda c: abs(size(c) - n))  # ties: the first, Fashion-MNIST
        warnings.warn(f"{msg}; using the closest, {choice!r} ({inputs[choice][0]}). Expect less benefit "
                      "than on its own data", stacklevel=3)
        note = f"{choice!r}, the closest: first layer {layer!r} takes {n} {unit}; the checkpoints know {known}"
    if not inputs[choice][2] and choice != default:
        missing = (f"the model's first layer {layer!r} takes {n} {unit}, which suits {choice!r} "
                   f"({inputs[choice][0]}), but {choice!r} is not installed")
        warnings.warn(f"{missing}; using {default!r} ({inputs[default][0]}) instead", stacklevel=3)
        note = f"{default!r} ({inputs[default][0]}) instead: {missing}"
        choice = default
    return choice, note


@dataclass
class _CachedGHN:
    ghn: nn.Module
    identity: tuple[Any, ...]  # stat of config.json and the weights when they were hashed
    verified_ns: int           # wall-clock time of the last hash check
    config_sha256: str


#: How far apart a file's timestamp and a check must be before the timestamp alone is trusted: within
#: a filesystem's timestamp granularity a rewrite can keep size, mtime and ctime (FAT: 2 s).
_RACY_NS = 2_000_000_000


def _identity(directory: Path) -> tuple[Any, ...]:
    from .hub import CONFIG_NAME, WEIGHTS_NAME

    out: list[Any] = []
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            st = (directory / name).stat()
        except OSError:
            out.append(None)
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def get_ghn(weights: Weights, revision: str | None) -> nn.Module:
    """A loaded GHN, cached per checkpoint directory while its files stay the same.

    Loading is the slow part of a repeated call.  The cache key is the files' identity (device, inode,
    size, mtime, ctime); a file touched within `_RACY_NS` of its last check is re-hashed instead, so a
    replaced or corrupted checkpoint is never served from the cache and the reported sha256 is always
    one that was checked against config.json.
    """
    if isinstance(weights, nn.Module):
        return weights.eval()
    from .hub import CONFIG_NAME, WEIGHTS_NAME, load_checkpoint_dir, resolve_checkpoint, sha256_file

    name = os.fspath(weights)
    directory, source = resolve_checkpoint("default" if name == "ghn-qat" else name, revision=revision)
    key = (source, str(directory))
    identity = _identity(directory)
    entry = _ghn_cache.get(key)
    if entry is not None and entry.identity == identity:
        stamps = [t for st in identity if st is not None for t in st[3:]]
        if max(stamps, default=0) < entry.verified_ns - _RACY_NS:
            return entry.ghn
        now = time.time_ns()
        if (sha256_file(directory / WEIGHTS_NAME) == entry.ghn.weights_sha256
                and sha256_file(directory / CONFIG_NAME) == entry.config_sha256):
            entry.verified_ns = now
            return entry.ghn
    _ghn_cache.pop(key, None)
    verified_ns = time.time_ns()
    config_sha = sha256_file(directory / CONFIG_NAME) if identity[0] is not None else ""
    ghn = load_checkpoint_dir(directory, source)
    if _identity(directory) == identity:  # unchanged while loading: what was hashed is what is keyed
        _ghn_cache[key] = _CachedGHN(ghn, identity, verified_ns, config_sha)
    return ghn
