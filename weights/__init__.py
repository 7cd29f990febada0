"""Bundled GHN checkpoints (package data; see torch_qinit.hub). Installed as ``torch_qinit.weights``."""
