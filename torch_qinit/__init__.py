"""torch_qinit: a drop-in PyTorch initializer for quantization-aware training.

    import torch_qinit
    report = torch_qinit.initialize_(model, bits=4)          # GHN-QAT predicted weights
    torch_qinit.initialize_(model, method="he_normal")       # a classic initializer, same call
"""
from .graph import ArchGraph, capture
from .initialize import initialize_, methods
from .report import InitReport

__version__ = "0.1.0"
__all__ = ["initialize_", "methods", "InitReport", "capture", "ArchGraph", "__version__"]
