"""Packaging: metadata lives in setup.cfg; this file maps the top-level weights/ folder into the package.

The bundled GHN checkpoints sit in the repository's ``weights/`` folder (``ghn-qat/`` and ``ghn/``, each
``model.safetensors`` + ``config.json`` + ``README.md``) and install as package data of
``torch_qinit.weights``, so a non-editable ``pip install .`` can load them offline.
"""
from setuptools import find_packages, setup

_CHECKPOINT_FILES = ["*.safetensors", "*.json", "*.md"]

setup(
    # benchmarks/ is not installed: it belongs to the source tree (torch-qinit bench finds it there)
    packages=find_packages(include=["torch_qinit", "torch_qinit.*"]) + ["torch_qinit.weights"],
    package_dir={"torch_qinit.weights": "weights"},
    package_data={
        # checkpoint folders are named like the bundled names ("ghn-qat"), not importable packages
        "torch_qinit.weights": _CHECKPOINT_FILES + [f"*/{pattern}" for pattern in _CHECKPOINT_FILES],
    },
)
