"""Moved to `torch_qinit.training.train_state`; this re-export keeps old imports working for one release."""
from ..training.train_state import *  # noqa: F401,F403
from ..training.train_state import __all__  # noqa: F401
