"""Small helpers on a model that several parts of the library need: one definition each.

- :func:`device_of`: where a model's parameters live;
- :func:`resolve_device`: a device name from a user (``--device``) checked against this machine;
- :func:`preserved_modes`: run a body that switches train/eval modes, then put every module's mode back;
- :func:`batch_input`: the input tensor of a batch (a tensor, or the first item of ``(x, y)``);
- :func:`unwrap`: the module a ``torch.compile`` or ``DataParallel`` wrapper holds;
- :func:`check_materialized`: refuse lazy parameters that have no shape yet;
- :func:`owned_parameters`: the model walk, every parameter under every name (tied ones included);
- :func:`distinct_parameters`: that walk with each (tied) parameter once, under the name that decides for it;
- :func:`write_values`: the write: check every target, then ``copy_`` each new value in once.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["device_of", "resolve_device", "preserved_modes", "batch_input", "unwrap", "check_materialized",
           "weight_layer_names", "owned_parameters", "distinct_parameters", "check_writable", "write_values"]

#: Wrappers whose forward only hands the input to one inner module holding the very same parameters:
#: type name -> (attribute of the inner module, what users call the wrapper).  Matched by name, so no torch
#: submodule has to be imported to check.
WRAPPERS = {"OptimizedModule": ("_orig_mod", "torch.compile"),
            "DataParallel": ("module", "DataParallel"),
            "DistributedDataParallel": ("module", "DistributedDataParallel")}

def weight_layer_names(model: nn.Module) -> list[str]:
    """Qualified names of `model`'s conv (any rank, transposed too) and linear layers: what bits apply to."""
    return [n for n, m in model.named_modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]


#: One entry of :func:`owned_parameters`: (full name, owning module, local name, parameter).
Owned = tuple[str, nn.Module, str, nn.Parameter]


def device_of(model: nn.Module) -> torch.device:
    """The device of `model`'s first parameter; CPU for a model without parameters."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def resolve_device(name: str | torch.device) -> torch.device:
    """`name` as a torch.device, refused up front (ValueError) when it is malformed or names a CUDA device
    this machine does not have, so a run fails before its data loads rather than at its first batch."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {name!r} is not a device name (cpu, cuda, cuda:1...): {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: torch sees no CUDA device on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


@contextlib.contextmanager
def preserved_modes(model: nn.Module) -> Iterator[None]:
    """Run the body, then restore each submodule's ``training`` flag as it was (also after an error).

    Per module, not ``model.train(mode)``: a model may hold an eval-mode part inside a training-mode whole.
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def batch_input(batch: Any) -> Tensor:
    """The input tensor of a batch: the tensor itself or the first item of (x, y)."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise TypeError(f"a batch must be a tensor or an (x, y) sequence, got {type(batch).__name__}")


def unwrap(model: nn.Module) -> tuple[nn.Module, str, str]:
    """The module under ``torch.compile`` / ``DataParallel`` / ``DistributedDataParallel`` wrappers (it holds the
    very same parameter objects), the name prefix the wrappers add (``"_orig_mod."``), and a note.

    Why: torch.fx cannot trace a wrapper's forward (graph capture fell back to module order); a
    calibration pass through ``torch.compile``'s wrapper recompiled (24 s on a 6-layer net) and one through
    ``DataParallel`` failed (it refuses ``functional_call``). Writing into the wrapped module's parameters
    is writing into the wrapper's. A model that is not a wrapper comes back as it is, with "" and "".
    """
    inner, prefix, kinds = model, "", []
    while type(inner).__name__ in WRAPPERS:
        attr, kind = WRAPPERS[type(inner).__name__]
        child = getattr(inner, attr, None)
        if not isinstance(child, nn.Module):
            break
        kinds.append(kind)
        inner, prefix = child, f"{prefix}{attr}."
    if inner is model:
        return model, "", ""
    return inner, prefix, (f"{' in '.join(kinds)} wrapper: initialized the {type(inner).__name__} it wraps (the "
                           f"same parameters); names are that module's, without the '{prefix}' prefix")


def check_materialized(model: nn.Module) -> None:
    """Raise ValueError naming parameters that hold no values yet: lazy ones (``nn.LazyLinear`` before its
    first forward) and ones on the ``meta`` device.

    Nothing can be predicted or drawn for a lazy parameter (no shape), a forward pass to shape it would
    change the model before the call could fail, and a write to a meta tensor is silently dropped.
    """
    lazy = [name for name, p in model.named_parameters() if isinstance(p, nn.parameter.UninitializedParameter)]
    if lazy:
        raise ValueError(f"lazy parameters are not materialized yet: {lazy}; run one forward pass with a batch "
                         "first (it gives them their shapes); nothing was changed")
    meta = [name for name, p in model.named_parameters() if p.is_meta]
    if meta:
        raise ValueError(f"{len(meta)} parameter(s) are on the meta device, which holds no values ({meta[0]!r} "
                         "first): allocate them first, e.g. model.to_empty(device='cpu'), then initialize; "
                         "nothing was changed")


def owned_parameters(model: nn.Module) -> list[Owned]:
    """(full name, owning module, local name, param) for every parameter name, tied ones included.

    The one walk over a model's parameters that initializing uses: a parameter tied under several names
    appears once per name (callers decide once per ``id(param)`` and report every name).
    """
    out = []
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        for local, p in mod.named_parameters(recurse=False):
            out.append((f"{mod_name}.{local}" if mod_name else local, mod, local, p))
    return out


def distinct_parameters(owned: list[Owned]) -> list[Owned]:
    """The entries of `owned` with each parameter once, under its first name.

    The one rule for tied parameters: the first name decides a parameter's new value for all its names
    (every initializer computes it once, and each name reports the same source).
    """
    seen: set[int] = set()
    out = []
    for entry in owned:
        if id(entry[3]) not in seen:
            seen.add(id(entry[3]))
            out.append(entry)
    return out


def check_writable(params: Iterable[tuple[str, Tensor]]) -> None:
    """Raise RuntimeError naming the first parameter that ``copy_`` could not write, before any write.

    So a model is either fully initialized or untouched: without this check, a ``Linear`` built
    under ``torch.inference_mode()`` failed only after the layers before it were overwritten.
    """
    in_inference_mode = torch.is_inference_mode_enabled()
    for name, p in params:
        if p.is_inference() and not in_inference_mode:
            raise RuntimeError(
                f"parameter {name!r} is an inference tensor (created under torch.inference_mode()) and cannot "
                "be updated in place outside inference mode; nothing was changed. Build the model outside "
                "inference mode, or replace it with a normal tensor first (module.weight = "
                "nn.Parameter(module.weight.clone()) outside inference mode)")
        if p.numel() > 1 and any(st == 0 and n > 1 for st, n in zip(p.stride(), p.shape)):
            raise RuntimeError(f"parameter {name!r} is an expanded view (a zero stride): its elements share "
                               "memory, so it cannot hold distinct values; nothing was changed")


def write_values(owned: list[Owned], values: Mapping[int, Tensor]) -> int:
    """Copy ``values[id(p)]`` into each parameter `p` of `owned` that has one; returns how many were written.

    The compute-then-write half of initializing: every target is checked by :func:`check_writable`
    first, then each is written once (a tied parameter under several names too) with ``copy_`` under
    ``no_grad``, which casts dtype and device and keeps the ``Parameter`` object.
    """
    check_writable((name, p) for name, _, _, p in owned if id(p) in values)
    targets = [p for _, _, _, p in distinct_parameters(owned) if id(p) in values]
    with torch.no_grad():
        for p in targets:
            p.copy_(values[id(p)])
    return len(targets)
