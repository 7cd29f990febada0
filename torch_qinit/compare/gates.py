"""CI gates: ``--require "ghn-qat >= he_normal + 2"``, parsed by a small tokenizer (never ``eval``).

Grammar (accuracies in percent, offsets in percentage points)::

    requirement := side OP side            OP := >= | > | <= | < | ==
    side        := term (("+" | "-") term)*
    term        := NUMBER ["%" | "pp"] | METHOD ["@" BITS] [":" METRIC]

``METHOD`` is a method name (``ghn-qat``, ``he_normal``, ...); ``@BITS`` pins a weight bit width (by
default the requirement must hold at every measured bit width); ``METRIC`` is ``final`` (accuracy
after QAT, the default when QAT ran) or ``zero_shot`` (the default when it did not).  Values are the
means over seeds.
"""
from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import CompareError

if TYPE_CHECKING:
    from .runner import CompareResult

__all__ = ["METRICS", "Term", "Requirement", "GateOutcome", "parse_requirement", "check_requirements"]

#: metric name -> summary key (both in [0, 1]; shown and compared in percent).
METRICS = {"final": "final_mean", "zero_shot": "zero_shot_mean"}
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": lambda a, b: abs(a - b) < 1e-9,
}
_OP_RE = re.compile(r">=|<=|==|>|<")
_NUM_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(%|pp)?")
_WORD_RE = re.compile(r"[A-Za-z_][\w.\-]*")
_SUFFIX_RE = re.compile(r"(?:@(\d+))?(?::([A-Za-z_\-]+))?")


@dataclass(frozen=True)
class Term:
    """One signed addend: a constant (``method`` None) or a method's metric at some bit width."""

    sign: float
    value: float = 0.0
    method: str | None = None
    bits: int | None = None
    metric: str | None = None

    def text(self) -> str:
        if self.method is None:
            return f"{self.value:g}"
        return self.method + (f"@{self.bits}" if self.bits else "") + (f":{self.metric}" if self.metric else "")


@dataclass(frozen=True)
class GateOutcome:
    """A requirement checked at one bit width."""

    requirement: str
    bits: str
    passed: bool
    detail: str


@dataclass
class Requirement:
    """A parsed ``--require`` expression; :meth:`check` evaluates it on a :class:`CompareResult`."""

    text: str
    lhs: list[Term]
    op: str
    rhs: list[Term]
    methods: list[str] = field(default_factory=list)

    def check(self, result: CompareResult) -> list[GateOutcome]:
        """One outcome per measured bit width (one in total when every method term pins ``@BITS``)."""
        terms = [t for t in self.lhs + self.rhs if t.method]
        configs = result.bit_configs()
        if terms and all(t.bits for t in terms):
            configs = configs[:1]
        out = []
        for w_bits, a_bits in configs:
            label = "as pinned" if terms and all(t.bits for t in terms) else f"W{w_bits}A{a_bits}"
            try:
                lv, lt = self._side(self.lhs, result, w_bits)
                rv, rt = self._side(self.rhs, result, w_bits)
            except _Missing as miss:
                out.append(GateOutcome(self.text, label, False, f"{label}: {miss}"))
                continue
            ok = _OPS[self.op](lv, rv) and math.isfinite(lv) and math.isfinite(rv)
            out.append(GateOutcome(self.text, label, ok, f"{label}: {lt} {self.op} {rt}"))
        return out

    @staticmethod
    def _side(terms: list[Term], result: CompareResult, w_bits: int) -> tuple[float, str]:
        total, parts = 0.0, []
        for t in terms:
            if t.method is None:
                v, shown = t.value, f"{t.value:g}"
            else:
                bits = t.bits or w_bits
                metric = t.metric or ("final" if result.trained else "zero_shot")
                row = result.summary_row(t.method, bits)
                if row is None or not row.get("runs_ok"):
                    why = f" ({row['error']})" if row and row.get("error") else ""
                    raise _Missing(f"{t.method} at {bits} bits was not measured{why}")
                v = 100 * row[METRICS[metric]]
                if not math.isfinite(v):
                    raise _Missing(f"{t.method} at {bits} bits has no {metric} accuracy")
                shown = f"{t.text()} {v:.2f}"
            total += t.sign * v
            parts.append(("- " if t.sign < 0 else "+ ") + shown if parts else ("-" if t.sign < 0 else "") + shown)
        text = " ".join(parts)
        return total, (f"({text} = {total:.2f})" if len(terms) > 1 else text)


class _Missing(Exception):
    pass


def _tokens(text: str, methods: Sequence[str]) -> list[tuple[str, Any]]:
    names = sorted(set(methods), key=len, reverse=True)  # longest first: "ghn-qat" before "ghn"
    toks: list[tuple[str, Any]] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        if m := _OP_RE.match(text, i):
            toks.append(("op", m.group()))
        elif text[i] in "+-":
            toks.append(("sign", text[i]))
            i += 1
            continue
        elif m := _NUM_RE.match(text, i):
            toks.append(("num", float(m.group(1))))
        else:
            name = next((n for n in names if text.startswith(n, i)
                         and not re.match(r"[\w.]", text[i + len(n):i + len(n) + 1])), None)
            if name is None:
                word = _WORD_RE.match(text, i)
                bad = word.group() if word else text[i]
                raise CompareError(f"--require {text!r}: unknown name {bad!r}; use one of {', '.join(methods)}")
            sfx = _SUFFIX_RE.match(text, i + len(name))
            assert sfx is not None  # the pattern matches the empty string
            bits = int(sfx.group(1)) if sfx.group(1) else None
            metric = sfx.group(2).replace("-", "_") if sfx.group(2) else None
            if metric is not None and metric not in METRICS:
                raise CompareError(f"--require {text!r}: unknown metric {metric!r}; use one of {', '.join(METRICS)}")
            toks.append(("ref", (name, bits, metric)))
            i = sfx.end()
            continue
        i = m.end()
    return toks


def parse_requirement(text: str, methods: Iterable[str]) -> Requirement:
    """Parse ``--require`` `text` against the `methods` being compared; CompareError on any mistake."""
    methods = list(methods)
    if not isinstance(text, str) or not text.strip():
        raise CompareError("--require needs an expression like \"ghn-qat >= he_normal + 2\"")
    toks = _tokens(text, methods)
    ops = [k for k, (kind, _) in enumerate(toks) if kind == "op"]
    if len(ops) != 1:
        raise CompareError(f"--require {text!r}: needs exactly one comparison (>=, >, <=, <, ==), "
                           f"e.g. \"ghn-qat >= he_normal + 2\"")
    k = ops[0]
    sides = [_side(toks[:k], text), _side(toks[k + 1:], text)]
    used = sorted({t.method for s in sides for t in s if t.method})
    return Requirement(text=text.strip(), lhs=sides[0], op=toks[k][1], rhs=sides[1], methods=used)


def _side(toks: list[tuple[str, Any]], text: str) -> list[Term]:
    if not toks:
        raise CompareError(f"--require {text!r}: a side of the comparison is empty")
    terms: list[Term] = []
    sign = 1.0
    expect_term = True
    for kind, val in toks:
        if expect_term and kind == "sign" and not terms and val == "-":
            sign = -sign  # a leading minus
            continue
        if expect_term and kind in ("num", "ref"):
            terms.append(Term(sign, value=val) if kind == "num" else Term(sign, method=val[0], bits=val[1],
                                                                              metric=val[2]))
            expect_term = False
        elif not expect_term and kind == "sign":
            sign = 1.0 if val == "+" else -1.0
            expect_term = True
        else:
            raise CompareError(f"--require {text!r}: unexpected {val!r}; write e.g. \"ghn-qat >= he_normal + 2\"")
    if expect_term:
        raise CompareError(f"--require {text!r}: ends with an operator")
    return terms


def check_requirements(result: CompareResult, requirements: Iterable[Requirement | str]) -> list[GateOutcome]:
    """Check each requirement (parsed or text) on `result`; one :class:`GateOutcome` per bit width."""
    out: list[GateOutcome] = []
    for req in requirements:
        if isinstance(req, str):
            req = parse_requirement(req, result.methods)
        out += req.check(result)
    return out
