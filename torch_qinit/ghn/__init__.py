"""The graph hypernetwork (GHN) that predicts quantization-robust parameters (ARCHITECTURE.md §2 "The GHN")."""
from .bits import BitsSpec, node_bits
from .config import GHNConfig
from .model import GHN, servable_targets

__all__ = ["GHN", "GHNConfig", "BitsSpec", "node_bits", "servable_targets"]
