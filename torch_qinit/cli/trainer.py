"""Moved to `torch_qinit.training.trainer`; this re-export keeps old imports working for one release."""
from ..training.trainer import *  # noqa: F401,F403
from ..training.trainer import (  # noqa: F401
    __all__,
    _dist_info,
    _load_warm_start,
    _save_final,
    _upgrade_decoder,
)
