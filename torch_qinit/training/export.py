"""A trained GHN as a shippable checkpoint: the Hub layout plus a record of how it was trained.

Two ways in, one record:
- `torch-qinit train` writes OUT/final when its schedule completes (`trainer._save_final`);
- `torch-qinit export OUT DIR` (`export_run`) writes the GHN of a run's resumable state OUT/ckpt,
  also one that stopped early (a session ended, a time budget ran out), saying where it stopped.
Both build the record with `training_record`, so a shipped `config.json` reads the same either way.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..data import describe_training_data
from .train_state import has_training_state, load_trained_ghn
from .validation import VAL_IMAGES

__all__ = ["training_record", "export_run"]

#: The run's counters, in the training state (state.json) and the record alike.
COUNTER_KEYS = ("nan_steps", "dropped_items", "clipped_items", "lookahead_diverged")

#: What a warm-started checkpoint keeps of its parent's record (the full chain would nest without end).
WARM_START_KEYS = ("command", "steps", "stage", "nan_steps")


def training_record(train_config: dict[str, Any], input_shape: tuple[int, ...], step: int, counters: dict[str, int],
                    world_size: int, val: dict[str, float] | None = None, val_step: int | None = None,
                    warm_start: dict[str, Any] | None = None, host_cpus: int | None = None) -> dict[str, Any]:
    """The `config.json` "training" entry of a checkpoint trained by `train_config` (a TrainConfig as a dict).

    `counters`: the `COUNTER_KEYS` (missing ones count 0). A `step` short of the schedule's steps adds
    `scheduled_steps` and `stopped_at`, so a checkpoint from an interrupted run never passes for a finished one.
    """
    cfg = train_config
    record: dict[str, Any] = {
        "command": cfg["command"], "steps": step,
        "nan_steps": counters.get("nan_steps", 0), "dropped_items": counters.get("dropped_items", 0),
        "clipped_items": counters.get("clipped_items", 0),
        "stage": cfg["stage"], "init_from": cfg.get("init_from"),
        "meta_batch": cfg["meta_batch"], "batch_size": cfg["batch_size"],
        "norm_floor_weight": cfg.get("norm_floor_weight", 0.0),
        "data": describe_training_data(tuple(input_shape), cfg.get("data_dir")),
        "world_size": world_size,
    }
    if cfg.get("lookahead_steps"):
        record["lookahead"] = {"steps": cfg["lookahead_steps"], "lr": list(cfg["lookahead_lr"]),
                               "weight": cfg["lookahead_weight"], "first_order": cfg["lookahead_first_order"],
                               "diverged": counters.get("lookahead_diverged", 0)}
    if host_cpus is not None:
        record["host_cpus"] = host_cpus
    if step < cfg["steps"]:
        record.update(scheduled_steps=cfg["steps"], stopped_at=f"step {step} of {cfg['steps']}; resumable")
    if val:
        record["val"] = {k: v for k, v in val.items() if k.startswith("val_") and k != "val_sec"}
        if val_step is not None and val_step != step:
            record["val"]["step"] = val_step
        record["val"].update(archs=cfg["val_archs"], images=VAL_IMAGES)
    if warm_start:
        record["warm_start"] = {k: warm_start.get(k) for k in WARM_START_KEYS}
    return record


def export_run(run_dir: str | Path, dest: str | Path, dtype: torch.dtype | None = torch.float16) -> dict[str, Any]:
    """Write the GHN of training run `run_dir` (its OUT/ckpt state) to `dest` in the Hub layout.

    float16 by default, as the bundled checkpoints are; `dtype=None` keeps float32. Returns the
    training record written into `dest/config.json`. Raises FileNotFoundError without a training state.
    """
    from ..hub import save_pretrained

    ckpt = Path(run_dir) / "ckpt"
    if not has_training_state(ckpt):
        raise FileNotFoundError(f"{run_dir}: no training state (expected {ckpt}/state.json and state.safetensors, "
                                f"written by `torch-qinit train --out {run_dir}`)")
    meta = json.loads((ckpt / "state.json").read_text())
    cfg = meta["train_config"]
    ghn = load_trained_ghn(str(ckpt))  # its config already names the method and bits: train() set them before saving
    vals = [row for row in meta.get("history", []) if "val_float" in row]
    # a training state keeps the GHN config it was saved with, whose "training" is the warm start's record
    parent = meta["ghn_config"].get("training")
    ghn.config.training = training_record(
        cfg, tuple(ghn.config.input_shape), meta["step"],
        {k: meta.get(k, 0) for k in COUNTER_KEYS}, meta.get("world_size", 1),
        val=vals[-1] if vals else None, val_step=vals[-1]["step"] if vals else None, warm_start=parent)
    save_pretrained(ghn.eval(), dest, dtype=dtype)
    return ghn.config.training
