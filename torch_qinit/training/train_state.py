"""Training checkpoints: GHN + Adam state in safetensors, counters in JSON.

No pickle: tensors go to `state.safetensors`, everything else to `state.json`.
Per-step randomness is derived from (seed, step), so no RNG state is stored.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..ghn import GHN, GHNConfig

__all__ = ["save_training_state", "load_training_state", "has_training_state", "load_trained_ghn"]


def save_training_state(directory: Path, ghn: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        meta: dict[str, Any]) -> None:
    """Write state.safetensors + state.json atomically (tmp file, then rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    # files hold CPU tensors whatever device trained them, so a GPU run resumes on CPU and back
    tensors = {f"ghn.{k}": v.detach().cpu().contiguous() for k, v in ghn.state_dict().items()}
    names = {id(p): n for n, p in ghn.named_parameters()}
    adam_steps = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p)
            if not st:
                continue
            n = names[id(p)]
            tensors[f"adam.exp_avg.{n}"] = st["exp_avg"].cpu().contiguous()
            tensors[f"adam.exp_avg_sq.{n}"] = st["exp_avg_sq"].cpu().contiguous()
            adam_steps[n] = float(st["step"])
    tmp = directory / "state.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, directory / "state.safetensors")
    tmp_json = directory / "state.json.tmp"
    tmp_json.write_text(json.dumps({**meta, "adam_steps": adam_steps}, indent=1))
    os.replace(tmp_json, directory / "state.json")


def load_training_state(directory: Path, ghn: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore what `save_training_state` wrote; returns the JSON metadata."""
    tensors = load_file(str(directory / "state.safetensors"))
    meta = json.loads((directory / "state.json").read_text())
    ghn.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ghn.")})
    params = dict(ghn.named_parameters())
    for n, step in meta.pop("adam_steps").items():
        p = params[n]
        optimizer.state[p] = {
            "step": torch.tensor(step),
            "exp_avg": tensors[f"adam.exp_avg.{n}"].to(p.device, copy=True),
            "exp_avg_sq": tensors[f"adam.exp_avg_sq.{n}"].to(p.device, copy=True),
        }
    return meta


def has_training_state(directory: Path) -> bool:
    """Whether `directory` holds both files of a training state."""
    return (directory / "state.safetensors").exists() and (directory / "state.json").exists()


def load_trained_ghn(path: str) -> GHN:
    """The GHN alone (no optimizer) from a checkpoint directory in the Hub layout or a training state (RUN/ckpt)."""
    p = Path(path)
    if (p / "model.safetensors").exists():
        from ..hub import load_ghn  # the Hub layout's own loader checks sha256 and keys
        return load_ghn(str(p))
    meta = json.loads((p / "state.json").read_text())
    ghn = GHN(GHNConfig.from_dict(meta["ghn_config"]))
    ghn.load_state_dict({k[4:]: v for k, v in load_file(str(p / "state.safetensors")).items() if k.startswith("ghn.")})
    return ghn
