"""Leaving the model as it was: `untouched` puts back what a traced or real forward may change.

fx tracing runs the model's Python code and the hooks path runs a whole forward, so both run inside
`untouched`: every submodule's attributes and buffers (parameters too, copy-on-write, when asked) and
the RNG state are restored afterwards.  `torch_qinit.ghn.calibration` uses it for its forward pass.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["untouched", "tensors_in"]


def tensors_in(obj: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    """The tensors in `obj` and in its nested tuples, lists and dicts (8 levels deep)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 8 and isinstance(obj, (tuple, list)):
        for o in obj:
            yield from tensors_in(o, depth + 1)
    elif depth < 8 and isinstance(obj, dict):
        for o in obj.values():
            yield from tensors_in(o, depth + 1)


# --------------------------------------------------------------------------- #
# Leaving the model as it was
# --------------------------------------------------------------------------- #
_CONTAINER_TYPES = (list, dict, set, bytearray)


class _Snapshot:
    """What a forward on real tensors may change, saved so it can be put back.

    fx tracing runs the model's Python code: buffers are real tensors there
    (only parameters and inputs are proxies) and attribute assignments really
    happen; the hooks path runs the whole forward.  So capture saves, for every
    submodule, its ``__dict__`` (and the contents of list/dict/set attributes,
    which covers ``_buffers``, ``_modules``, ``_parameters`` and hook tables),
    plus a clone of every buffer (small: BN statistics, counters).  A buffer
    is copied back only where its value differs: version counters are not
    enough, since BatchNorm updates its running statistics inside the kernel.
    Parameters are large, so they are not cloned up front; see `_CopyOnWrite`.
    """

    def __init__(self, model: nn.Module) -> None:
        modules = list(model.modules())
        self.dicts = [(m.__dict__, dict(m.__dict__)) for m in modules]
        self.containers: list[tuple[Any, Any]] = []
        for d, _ in self.dicts:
            for v in d.values():
                if isinstance(v, _CONTAINER_TYPES):
                    self.containers.append((v, v.copy()))
        seen: set[int] = set()
        self.tensors: list[tuple[torch.Tensor, torch.Tensor]] = []
        for t in (b for m in modules for b in m._buffers.values() if b is not None):
            if id(t) in seen or not _restorable(t):
                continue
            seen.add(id(t))
            self.tensors.append((t, t.detach().clone()))

    def restore(self) -> None:
        for d, saved in self.dicts:
            for key in [k for k in d if k not in saved]:
                del d[key]
            for key, value in saved.items():
                if d.get(key, _MISSING) is not value:
                    d[key] = value
        for c, saved in self.containers:
            if isinstance(c, dict):
                if c.keys() != saved.keys() or any(c[k] is not v for k, v in saved.items()):
                    c.clear()
                    c.update(saved)
            elif isinstance(c, set):
                if c != saved:
                    c.clear()
                    c.update(saved)
            elif len(c) != len(saved) or any(a is not b for a, b in zip(c, saved)):
                c[:] = saved
        with torch.no_grad():
            for t, copy in self.tensors:
                if not torch.equal(t, copy):
                    t.copy_(copy)


_MISSING = object()


def _restorable(t: torch.Tensor) -> bool:
    # inference tensors cannot be written outside inference mode; meta and lazy ones hold no data
    return not (t.is_inference() or t.is_meta or isinstance(t, nn.parameter.UninitializedTensorMixin)
                or t.numel() == 0)


class _CopyOnWrite(TorchDispatchMode):
    """Saves a tensor the first time an op is about to write into its storage.

    Used for parameters during the hooks forward: cloning every parameter up
    front cost 165 ms of a 299 ms hooks capture of a 19M-parameter CNN, while
    a forward rarely writes its own parameters (``w.data.clamp_()``).  Writes
    through ``.data`` or views share the storage, so storages are matched.
    """

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        super().__init__()
        self.owners: dict[int, list[torch.Tensor]] = {}
        for t in tensors:
            if _restorable(t) and t.layout == torch.strided:
                self.owners.setdefault(t.untyped_storage().data_ptr(), []).append(t)
        self.saved: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        schema = func._schema
        if self.owners and schema.is_mutable:
            for i, arg in enumerate(schema.arguments):
                if arg.alias_info is None or not arg.alias_info.is_write:
                    continue
                value = args[i] if i < len(args) else kwargs.get(arg.name)
                for t in value if isinstance(value, (list, tuple)) else (value,):
                    if isinstance(t, torch.Tensor) and t.layout == torch.strided and t.numel():
                        ptr = t.untyped_storage().data_ptr()
                        if ptr in self.owners and ptr not in self.saved:
                            self.saved[ptr] = [(o, o.detach().clone()) for o in self.owners[ptr]]
        return func(*args, **kwargs)

    def restore(self) -> None:
        with torch.no_grad():
            for pairs in self.saved.values():
                for t, copy in pairs:
                    t.copy_(copy)


@contextlib.contextmanager
def untouched(model: nn.Module, example: Any = None, params: bool = False) -> Iterator[None]:
    """Run the body, then put `model` back as it was (attributes, buffers, RNG; parameters if `params`)."""
    devices = sorted({t.device.index or 0 for t in (*model.parameters(), *model.buffers(),
                                                     *tensors_in(example)) if t.is_cuda})
    snapshot = _Snapshot(model)
    cow = _CopyOnWrite(list(model.parameters())) if params else None
    try:
        with torch.random.fork_rng(devices=devices), (cow if cow is not None else contextlib.nullcontext()):
            yield
    finally:
        if cow is not None:
            cow.restore()
        snapshot.restore()
