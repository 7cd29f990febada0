"""`InitReport`: what `initialize_` did to each parameter, and how long it took."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["InitReport"]


@dataclass
class InitReport:
    """Where every parameter's new value came from.

    `sources` maps each parameter name to ``"ghn"`` or to the classic rule that
    set it (``"he_normal"``, ``"zeros"``, ``"ones"``, ``"unchanged (...)"``).
    `fallback` lists the parameters the GHN could not serve, with the reason
    (including predictions that were not finite).  `skipped` lists parameters
    left as they were on purpose (layers with a zero-size dimension).
    `capture_note` says why graph capture did not use torch.fx (empty when it
    did); `weights_note` which checkpoint was used and why; `calibration_note`
    what the signal calibration of a version-2 GHN rescaled; `model_note` what was
    initialized when it was not the object passed in (a ``torch.compile`` wrapper's module).
    """

    method: str
    sources: dict[str, str]
    fallback: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    capture_method: str | None = None
    capture_note: str = ""                                  # why fx was not used, when it was not
    bits: dict[str, Any] = field(default_factory=dict)      # layer -> requested weight bits
    act_bits: dict[str, Any] = field(default_factory=dict)  # layer -> requested activation bits
    ghn_bits_note: str = ""                                 # how requested bits were fed to the GHN
    seconds: float = 0.0
    weights_id: str | None = None
    weights_sha256: str | None = None
    weights_note: str = ""                                  # which checkpoint and why
    calibration_note: str = ""                              # what signal calibration rescaled
    model_note: str = ""                                    # e.g. a torch.compile wrapper was unwrapped

    @property
    def predicted(self) -> list[str]:
        """Names of the parameters whose values the GHN predicted."""
        return [n for n, s in self.sources.items() if s == "ghn"]

    @property
    def num_predicted(self) -> int:
        return len(self.predicted)

    @property
    def num_fallback(self) -> int:
        return len(self.fallback)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["predicted"] = self.predicted
        return d

    def __str__(self) -> str:
        lines = [f"torch_qinit.initialize_ ({self.method}) in {self.seconds * 1000:.0f} ms"]
        if self.model_note:
            lines.append(f"  model: {self.model_note}")
        if self.capture_method:
            lines.append(f"  graph capture: {self.capture_method}")
        if self.capture_note:
            lines.append(f"    why: {self.capture_note}")
        lines.append(f"  parameters: {len(self.sources)} total, {self.num_predicted} predicted by the GHN, "
                     f"{self.num_fallback} fallback")
        for name, why in list(self.fallback.items())[:8]:
            lines.append(f"    fallback {name}: {why}")
        if self.num_fallback > 8:
            lines.append(f"    ... and {self.num_fallback - 8} more (see .fallback)")
        for name, why in list(self.skipped.items())[:8]:
            lines.append(f"    skipped {name}: {why}")
        if len(self.skipped) > 8:
            lines.append(f"    ... and {len(self.skipped) - 8} more (see .skipped)")
        if self.bits:
            widths = sorted({str(b) for b in self.bits.values()})
            lines.append(f"  weight bits: {', '.join(widths)} over {len(self.bits)} layers")
        if self.ghn_bits_note:
            lines.append(f"  note: {self.ghn_bits_note}")
        if self.weights_id:
            lines.append(f"  weights: {self.weights_id} sha256={(self.weights_sha256 or '')[:16]}…")
        if self.weights_note:
            lines.append(f"    chosen: {self.weights_note}")
        if self.calibration_note:
            lines.append(f"  signal calibration: {self.calibration_note}")
        return "\n".join(lines)

    __repr__ = __str__
