"""`torch-qinit export RUN DIR`: a training run's GHN as a checkpoint you can load, ship or push.

    torch-qinit export training_state/ghn-qat /tmp/ghn-qat
    TORCH_QINIT_WEIGHTS_DIR=/tmp torch-qinit bench zero_shot --methods ghn-qat   # try it without touching weights/

`torch-qinit train` writes RUN/final only when its schedule completes. This reads the resumable state
RUN/ckpt instead, so a run that a session or a time budget cut short can be measured and shipped; the
record in DIR/config.json says at which step it stopped. Weights are float16 (the bundled format)
unless --float32.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torch-qinit export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="a training run directory (the --out of torch-qinit train)")
    p.add_argument("directory", metavar="DIR", help="where to write config.json + model.safetensors + README.md")
    p.add_argument("--float32", action="store_true", help="keep float32 weights (default float16)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from torch_qinit.training.export import export_run

    try:
        record = export_run(args.run, args.directory, dtype=None if args.float32 else torch.float16)
    except FileNotFoundError as exc:
        print(f"torch-qinit export: error: {exc}", file=sys.stderr)
        return 1
    where = record.get("stopped_at", f"completed schedule, step {record['steps']}")
    val = record.get("val")
    print(f"wrote {args.directory}: {record['stage']} GHN, {where}")
    if val:
        print("  last validation: " + ", ".join(f"{k} {v:.3f}" for k, v in val.items() if k.startswith("val_")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
