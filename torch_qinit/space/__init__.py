"""The architecture design space: a seeded sampler of small CNNs with held-out splits."""
from .blocks import ACTIVATIONS, BLOCK_TYPES, make_block
from .sampler import SPLIT_SIZES, SPLITS, ArchSpec, SpaceNet, StageSpec, build_arch, get_arch

__all__ = ["ACTIVATIONS", "BLOCK_TYPES", "SPLITS", "SPLIT_SIZES", "ArchSpec", "SpaceNet", "StageSpec",
           "build_arch", "get_arch", "make_block"]
