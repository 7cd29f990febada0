"""The architecture design space: a seeded sampler of small CNNs and MLPs with held-out splits,
plus a held-out split of hand-written classic families."""
from .blocks import ACTIVATIONS, ALL_BLOCK_TYPES, BLOCK_TYPES, EXTRA_BLOCK_TYPES, NORMS, make_block
from .classic import CLASSIC_NAMES, ClassicSpec, classic_names
from .sampler import (
                      HELD_OUT_SAMPLED,
                      SPLIT_SIZES,
                      SPLITS,
                      ArchSpec,
                      SpaceNet,
                      StageSpec,
                      at_image_size,
                      build_arch,
                      default_image_size,
                      feature_resolution,
                      get_arch,
)

__all__ = ["ACTIVATIONS", "ALL_BLOCK_TYPES", "BLOCK_TYPES", "CLASSIC_NAMES", "EXTRA_BLOCK_TYPES", "HELD_OUT_SAMPLED",
           "NORMS", "SPLITS", "SPLIT_SIZES", "ArchSpec", "ClassicSpec", "SpaceNet", "StageSpec", "at_image_size",
           "build_arch", "classic_names", "default_image_size", "feature_resolution", "get_arch", "make_block"]
