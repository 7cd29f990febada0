"""Architecture graphs: capture an `nn.Module` as an `ArchGraph` (DESIGN §2)."""
from .arch_graph import OP_KINDS, SERVABLE_OPS, ArchGraph, Node
from .capture import capture, capture_with_note

__all__ = ["capture", "capture_with_note", "ArchGraph", "Node", "OP_KINDS", "SERVABLE_OPS"]
