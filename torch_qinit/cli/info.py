"""`torch-qinit info`: versions, the bundled GHN checkpoints, the dataset location and the methods.

    torch-qinit info
    torch-qinit info --weights-dir /path/to/weights --data-dir /path/to/fashion-mnist
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torch-qinit info", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights-dir", default=None,
                   help="folder holding ghn-qat/ and ghn/ (sets TORCH_QINIT_WEIGHTS_DIR; default: bundled)")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder to check")
    return p


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _checkpoint_lines(name: str, directory: Path) -> list[str]:
    """What a bundled checkpoint folder holds, read from its files (no GHN is built)."""
    from torch_qinit.hub import CONFIG_NAME, WEIGHTS_NAME, sha256_file

    weights, config = directory / WEIGHTS_NAME, directory / CONFIG_NAME
    if not weights.is_file():
        return [f"  {name:<8} MISSING: no {WEIGHTS_NAME} in {directory}"]
    sha = sha256_file(weights)
    lines = [f"  {name:<8} {directory}", f"           {WEIGHTS_NAME}: {weights.stat().st_size / 2**20:.2f} MB, "
             f"sha256 {sha}"]
    cfg: dict[str, Any] = {}
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        lines.append(f"           {CONFIG_NAME}: unreadable ({exc})")
    if cfg:
        recorded = cfg.get("weights_sha256")
        if recorded and recorded != sha:
            lines.append(f"           WARNING: {CONFIG_NAME} records sha256 {recorded}; the file does not match")
        bits = cfg.get("bits") or []
        lines.append(f"           GHN: hidden {cfg.get('hidden')}, layers {cfg.get('layers')}, "
                     f"heads {cfg.get('heads')}; method {cfg.get('method')}; "
                     f"bits {', '.join(map(str, bits)) if bits else 'float'}")
        training = cfg.get("training") or {}
        if training:
            lines.append(f"           training: {training.get('steps', '?')} steps "
                         f"({training.get('stage', '?')} stage)")
            if training.get("command"):
                lines.append(f"           command: {training['command']}")
        else:
            lines.append("           training: not recorded in config.json")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.weights_dir:
        os.environ["TORCH_QINIT_WEIGHTS_DIR"] = str(Path(args.weights_dir).expanduser())

    import torch

    import torch_qinit
    from torch_qinit.data import resolve_data_dir
    from torch_qinit.data.fashion_mnist import SPLIT_FILES
    from torch_qinit.hub import WEIGHTS_DIR_ENV, bundled_weights_dir

    print("versions:")
    print(f"  torch_qinit      {torch_qinit.__version__}")
    print(f"  torch            {torch.__version__}")
    print(f"  huggingface_hub  {_version('huggingface_hub')}")
    print(f"  safetensors      {_version('safetensors')}")
    print(f"  python           {platform.python_version()} ({platform.machine()}, {os.cpu_count()} CPUs)")

    wdir = bundled_weights_dir()
    source = f"from ${WEIGHTS_DIR_ENV}" if os.environ.get(WEIGHTS_DIR_ENV) else "bundled"
    print(f"\nGHN checkpoints ({source}: {wdir}):")
    for name in ("ghn-qat", "ghn"):
        print("\n".join(_checkpoint_lines(name, wdir / name)))

    ddir = resolve_data_dir(args.data_dir)
    files = [f for pair in SPLIT_FILES.values() for f in pair]
    have = [f for f in files if (ddir / f).is_file() or (ddir / f.removesuffix(".gz")).is_file()]
    print(f"\ndataset: Fashion-MNIST at {ddir}")
    if len(have) == len(files):
        print("  present (train and test IDX files)")
    else:
        missing = sorted(set(files) - set(have))
        print(f"  MISSING {', '.join(missing)}: install with `sudo apt-get install dataset-fashion-mnist`, "
              "or pass --data-dir / set TORCH_QINIT_DATA_DIR")

    ms = torch_qinit.methods()
    print(f"\nmethods ({len(ms)}): {', '.join(ms)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
