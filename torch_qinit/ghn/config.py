"""Hyperparameters of a GHN, stored as config.json beside the weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["GHNConfig"]


@dataclass
class GHNConfig:
    """Architecture hyperparameters of `torch_qinit.ghn.GHN` (and provenance)."""

    hidden: int = 128            # node embedding width
    layers: int = 3              # transformer layers
    heads: int = 4
    block_out: int = 64          # decoder block: (block_out, block_in, kernel, kernel)
    block_in: int = 64
    block_kernel: int = 7          # kernels up to 7×7 are decoded; larger ones are zero-padded
    decoder_rank: int = 32       # inner width of the factorized decoder
    decoder_hidden: int = 128    # width of the per-row MLP (0: same as hidden, as in version 1)
    decoder_version: int = 2     # 2: tile-position decoder + signal rule; 1: the first checkpoints (tiled copies)
    # provenance, not architecture: filled by the trainer
    method: str = "ghn-qat"      # "ghn" (float) or "ghn-qat"
    bits: tuple[int, ...] = (2, 3, 4, 8)
    input_shape: tuple[int, ...] = (1, 28, 28)
    num_classes: int = 10
    normalization: dict[str, float] = field(default_factory=lambda: {"mean": 0.2860, "std": 0.3530})
    training: dict[str, Any] = field(default_factory=dict)
    version: str = "0.1.0"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bits"] = list(self.bits)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GHNConfig":
        """Build from a config.json dict; unknown keys raise, so a mismatched file is caught."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"config.json has keys this GHN does not know: {unknown}")
        d = dict(d)
        d.setdefault("decoder_hidden", 0)
        d.setdefault("decoder_version", 1)  # configs written before the field existed are version 1
        for key in ("bits", "input_shape"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)
