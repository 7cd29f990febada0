"""Benchmarks (ARCHITECTURE.md §4).  Each module NAME here has ``main(argv) -> int`` and a
``--quick`` mode; run one with ``torch-qinit bench NAME [--quick]``."""
from __future__ import annotations

import importlib
import sys

__all__ = ["BENCHMARKS", "main"]

BENCHMARKS: dict[str, str] = {
    "zero_shot": "zero-shot quantized accuracy of each init on the held-out splits",
    "qat_from_init": "4-bit and 2-bit QAT from each init: curves, final accuracy, steps-to-target",
    "init_study": "the paper's initializer study: float train, PTQ at W8A8/W4A4, QMSE, activation ranges",
    "speed_coverage": "initialize_ latency vs model size, torchvision coverage, GHN forward vs node count",
    "timm_coverage": "timm classification models (optional timm): share initialized, capture path, fallbacks, time",
    "duplicates": "duplicate filters and numerical rank of predicted weights on torchvision models (v1 vs v2 GHN)",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BENCHMARKS:
        print("usage: torch-qinit bench NAME [--quick] [options]\n\nbenchmarks:")
        for name, help_ in BENCHMARKS.items():
            print(f"  {name:<15} {help_}")
        return 0 if not argv or argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(f"benchmarks.{argv[0]}")
    return int(module.main(argv[1:]) or 0)
