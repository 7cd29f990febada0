"""Bit widths: the one place that says what a bits spec is, how it is checked and how it expands.

A *bits spec* is ``None`` (float), an int in 2..8 for every layer, or ``{module qualname: int | None}``
for per-layer mixed precision.  Every entry point of the library takes weight bits as ``bits`` (or
``w_bits`` in `torch_qinit.quant`, whose layers hold ``w_bits``/``a_bits``) and activation bits as
``act_bits`` (``a_bits`` there), by one rule (:func:`act_spec`):

- ``act_bits=None`` (the default) or ``"same"``: the same spec as the weights;
- ``act_bits="float"``: float activations;
- anything else: a bits spec of its own.

Once resolved, ``None`` in a spec always means float.  The GHN (`torch_qinit.ghn.node_bits`) takes
resolved specs, with ``"same"`` as its default.  See ARCHITECTURE.md §5 "Bits" (docs/).
"""
from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import Any, Union

__all__ = ["MIN_BITS", "MAX_BITS", "FLOAT", "SAME", "BitsSpec", "check_bits", "check_spec", "expand_bits",
           "act_spec"]

MIN_BITS = 2
MAX_BITS = 8
#: ``act_bits="float"``: float activations whatever the weights get.
FLOAT = "float"
#: ``act_bits="same"``: the weights' spec (what ``None`` means at the library's entry points).
SAME = "same"

#: None (float), an int in 2..8 for every layer, or {module qualname: int or None}.
BitsSpec = Union[None, int, Mapping[str, Union[int, None]]]


def check_bits(bits: int | None, what: str = "bits") -> int | None:
    """Validate one bit width: an int in 2..8, or None for float.  Returns it as int/None.

    `what` names the value in the error message (e.g. "act_bits['conv1']").

    Raises:
        TypeError: not an int (a bool or a float included).
        ValueError: outside 2..8.
    """
    if bits is None:
        return None
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise TypeError(f"{what} must be an int in {MIN_BITS}..{MAX_BITS} or None, got {type(bits).__name__} {bits!r}")
    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise ValueError(f"{what} must be an int in {MIN_BITS}..{MAX_BITS} or None, got {bits}")
    return int(bits)


def check_spec(spec: Any, what: str = "bits", known: Iterable[str] | None = None,
               unknown_message: str = "{what}: unknown layer names {unknown}") -> None:
    """Validate a bits spec: every width by :func:`check_bits`, and a dict's keys against `known`.

    `unknown_message` is formatted with ``unknown`` (the sorted unknown names, at most 5) and ``what``.
    """
    if isinstance(spec, Mapping):
        if known is not None:
            unknown = sorted(set(spec) - set(known))
            if unknown:
                raise ValueError(unknown_message.format(unknown=unknown[:5], what=what))
        for name, b in spec.items():
            check_bits(b, f"{what}[{name!r}]")
    else:
        check_bits(spec, what)


def expand_bits(spec: BitsSpec, layers: Iterable[str], default: int | None = None, *,
                only_named: bool = False) -> dict[str, int | None]:
    """{layer: bits} for `layers` under a (validated) spec.

    A dict gives its layers their widths and the others `default`; with ``only_named=True`` the layers a
    dict does not name are left out instead.  An int or None applies to every layer.
    """
    if isinstance(spec, Mapping):
        if only_named:
            return {n: check_bits(spec[n]) for n in layers if n in spec}
        return {n: check_bits(spec.get(n, default)) for n in layers}
    return dict.fromkeys(layers, check_bits(spec))


def act_spec(bits: Any, act_bits: Any, what: str = "act_bits") -> Any:
    """The activation spec that `act_bits` means next to weight spec `bits` (the rule in the module doc).

    Returns a spec in which None means float.
    """
    if act_bits is None:
        return bits
    if isinstance(act_bits, str):
        if act_bits == SAME:
            return bits
        if act_bits == FLOAT:
            return None
        raise ValueError(f"{what} must be an int, None, a dict, {SAME!r} or {FLOAT!r}, got {act_bits!r}")
    return act_bits
