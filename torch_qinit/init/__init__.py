"""Classic initializers (ARCHITECTURE.md §2 "Other library parts"): tensor-level functions, a registry by name,
and :func:`apply_classic_init` to initialize a whole model."""
from .classic import (
    glorot_normal_,
    glorot_uniform_,
    he_normal_,
    he_uniform_,
    normal_range_,
    orthogonal_,
    pytorch_default_,
    uniform_range_,
)
from .registry import INITIALIZERS, apply_classic_init, available_methods, classic_values, get_initializer

__all__ = [
    "uniform_range_",
    "normal_range_",
    "glorot_uniform_",
    "glorot_normal_",
    "he_uniform_",
    "he_normal_",
    "orthogonal_",
    "pytorch_default_",
    "INITIALIZERS",
    "get_initializer",
    "available_methods",
    "apply_classic_init",
    "classic_values",
]
