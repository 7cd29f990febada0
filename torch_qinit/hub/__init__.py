"""GHN checkpoints: bundled weights, local directories and the Hugging Face Hub (safetensors only)."""
from torch_qinit.hub._hub import (
    BUNDLED_CHECKPOINTS,
    CONFIG_NAME,
    MAX_SHIPPED_BYTES,
    MODEL_CARD_NAME,
    WEIGHTS_DIR_ENV,
    WEIGHTS_NAME,
    GHNLoadError,
    bundled_checkpoint_dir,
    bundled_weights_dir,
    default_model_card,
    ghn_fingerprint,
    load_ghn,
    save_pretrained,
    sha256_file,
)

__all__ = [
    "BUNDLED_CHECKPOINTS",
    "CONFIG_NAME",
    "MAX_SHIPPED_BYTES",
    "MODEL_CARD_NAME",
    "WEIGHTS_DIR_ENV",
    "WEIGHTS_NAME",
    "GHNLoadError",
    "bundled_checkpoint_dir",
    "bundled_weights_dir",
    "default_model_card",
    "ghn_fingerprint",
    "load_ghn",
    "sha256_file",
    "save_pretrained",
]
