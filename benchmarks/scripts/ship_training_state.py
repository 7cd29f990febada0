"""Ship a GHN from a training state that was stopped before its schedule ended (OUT/ckpt, not OUT/final).

    python benchmarks/scripts/ship_training_state.py training_state/RUN weights/ghn-qat

`torch-qinit train` writes OUT/final (with its training record) only when the schedule completes.
A session can end first; this writes the state's GHN in the Hub layout, float16, with the same kind
of record (`config.json` "training") plus `stopped_at` / `scheduled_steps`, and the record of the
checkpoint it was warm-started from, so the shipped file says exactly what it is.
"""
import json
import sys
from pathlib import Path

import torch

from torch_qinit.data import describe_training_data
from torch_qinit.hub import load_ghn, save_pretrained
from torch_qinit.training.trainer import _load_warm_start


def main() -> None:
    run, dest = Path(sys.argv[1]), Path(sys.argv[2])
    meta = json.loads((run / "ckpt" / "state.json").read_text())
    cfg = meta["train_config"]
    ghn = _load_warm_start(str(run / "ckpt"))
    ghn.config.method = "ghn-qat" if cfg["stage"] == "qat" else "ghn"
    ghn.config.bits = tuple(cfg["bits"]) if cfg["stage"] == "qat" else ()
    parent = load_ghn(cfg["init_from"]).config.training if cfg.get("init_from") else None
    val = [row for row in meta["history"] if "val_float" in row]
    ghn.config.training = {
        "command": cfg["command"], "steps": meta["step"], "scheduled_steps": cfg["steps"],
        "stopped_at": f"step {meta['step']} of {cfg['steps']} (lr {meta['history'][-1]['lr']:.2e}); resumable",
        "nan_steps": meta["nan_steps"], "dropped_items": meta["dropped_items"],
        "clipped_items": meta["clipped_items"], "stage": cfg["stage"], "init_from": cfg["init_from"],
        "meta_batch": cfg["meta_batch"], "batch_size": cfg["batch_size"],
        "norm_floor_weight": cfg.get("norm_floor_weight", 0.0),
        "data": describe_training_data(tuple(ghn.config.input_shape), cfg.get("data_dir")),
        "world_size": meta["world_size"],
    }
    if val:
        last = val[-1]
        ghn.config.training["val"] = {k: last[k] for k in last if k.startswith("val_") and k != "val_sec"}
        ghn.config.training["val"].update(step=last["step"], archs=cfg["val_archs"], images=1000)
    if parent:
        ghn.config.training["warm_start"] = {k: parent.get(k) for k in ("command", "steps", "stage", "nan_steps")}
    save_pretrained(ghn.eval(), dest, dtype=torch.float16)
    print("wrote", dest)


if __name__ == "__main__":
    main()
