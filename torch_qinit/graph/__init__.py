"""Architecture graphs: capture an `nn.Module` as an `ArchGraph` (ARCHITECTURE.md §2 "Capture").

`capture.py` picks the path (`fx.py`, then `hooks.py`, then module order); `ops.py` holds the leaf rule and
the op-kind tables; `snapshot.py` puts the model back after a traced or real forward.
"""
from .arch_graph import OP_KINDS, SERVABLE_OPS, ArchGraph, Node
from .capture import capture, capture_with_note

__all__ = ["capture", "capture_with_note", "ArchGraph", "Node", "OP_KINDS", "SERVABLE_OPS"]
