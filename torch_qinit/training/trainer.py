"""The GHN / GHN-QAT training loop (ARCHITECTURE.md §3).

design space ─sample─▶ nn.Module ─capture─▶ ArchGraph batch ─GHN─▶ params
  ─▶ functional_call(fake-quantized net, params, images) ─▶ cross-entropy ─▶ backward into the GHN

Every random choice of step s is drawn from a generator seeded by (seed, rank, s),
so `--resume` continues bit-exactly with nothing but weights, Adam moments and
the step counter on disk.
"""
from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call
from tqdm import tqdm

from ..data import normalization_record
from ..ghn import GHN, GHNConfig
from ..ghn.calibration import calibrated_layers
from ..graph import capture
from ..graph.arch_graph import WEIGHT_OPS
from ..modules import resolve_device
from ..quant import quantize_model, set_quant_bits
from ..space import SPLIT_SIZES, at_image_size, get_arch
from .export import training_record
from .item_grads import backward_per_item
from .lookahead import UnitStdScales, lookahead_loss
from .norm_floor import norm_channel_penalty
from .train_state import (
    has_training_state,
    load_trained_ghn,
    load_training_state,
    save_training_state,
)
from .validation import make_val_data, validate

__all__ = ["TrainConfig", "ArchCache", "fit_steps_to_budget", "train", "lr_at", "sample_bits", "step_generator",
           "upgrade_decoder"]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in its checkpoint."""

    out: str = "runs/ghn"
    stage: str = "float"                 # "float" (GHN) or "qat" (GHN-QAT)
    init_from: str | None = None         # warm start: a checkpoint dir (save_pretrained layout or training state)
    steps: int = 2000
    meta_batch: int = 4                  # architectures per step (per rank)
    batch_size: int = 64                 # images per architecture
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup: int = 50
    clip: float = 5.0
    bits: tuple[int, ...] = (2, 3, 4, 8)
    mixed_frac: float = 0.25             # QAT: share of per-layer mixed-precision draws
    float_frac: float = 0.1              # QAT: share of float draws, so the checkpoint still serves bits=None
    # QAT: weight of the same prediction's float loss next to its quantized loss.  Predictions that are
    # good only under quantization start QAT far from a float-good solution (issue: GHN-QAT lost to the
    # float GHN after QAT); the mixed objective asks for both.
    float_loss_weight: float = 0.0
    # Weight of the switched-off-channel floor on predicted norm scales/shifts (norm_floor.py); 0 disables.
    norm_floor_weight: float = 0.0
    # Loss after simulated plain-SGD steps from the prediction (lookahead.py), mixed in with this weight:
    # predictions from which a step raises the loss (where SGD diverges) cost more.  0 steps disables.
    lookahead_steps: int = 0
    lookahead_lr: tuple[float, float] = (0.01, 0.2)  # each architecture's step size, log-uniform in this range
    lookahead_weight: float = 1.0
    lookahead_first_order: bool = False   # treat each step's gradient as a constant (cheaper, blind to curvature)
    item_clip: float = 10.0             # per-architecture gradient-norm clip before the GHN backward (item_grads.py)
    arch_pool: int = 20000               # training architectures are train-split indices below this
    seed: int = 0
    ckpt_every: int = 100
    log_every: int = 10
    # Held-out validation (validation.py): every val_every steps and at the end, the zero-shot accuracy of the
    # first val_archs architectures of the "val" split on a fixed subset of the test images; 0 disables.
    val_every: int = 250
    val_archs: int = 8
    stop_after: int | None = None        # end this process at this step (a planned interruption)
    # Minutes the whole run may take (a session or a lent GPU machine ends at a fixed time).  After
    # FIT_AFTER_STEPS steps the measured pace sets `steps`, so the cosine schedule still ends at zero
    # inside the budget; a resumed run keeps the steps its checkpoint fitted.
    time_budget: float | None = None
    # "cpu" or a torch device such as "cuda": where the GHN, the sampled nets and the images live.
    # Checkpoints hold CPU tensors either way, and validation runs on a CPU copy (as users run initialize_).
    device: str = "cpu"
    data_dir: str | None = None
    ghn: dict[str, Any] = field(default_factory=lambda: {"hidden": 128, "layers": 3, "heads": 4})
    command: str = ""

    def __post_init__(self) -> None:
        if self.stage not in ("float", "qat"):
            raise ValueError(f"stage must be 'float' or 'qat', got {self.stage!r}")
        self.bits = tuple(self.bits)
        self.lookahead_lr = tuple(float(x) for x in self.lookahead_lr)
        if self.lookahead_steps < 0:
            raise ValueError(f"lookahead_steps must be >= 0 (0 disables), got {self.lookahead_steps}")
        lo_hi = self.lookahead_lr
        if self.lookahead_steps and not (len(lo_hi) == 2 and 0 < lo_hi[0] <= lo_hi[1]
                                         and all(math.isfinite(x) for x in lo_hi)):
            raise ValueError(f"lookahead_lr must be two finite numbers 0 < LO <= HI, got {self.lookahead_lr}")
        if self.lookahead_weight < 0:
            raise ValueError(f"lookahead_weight must be >= 0, got {self.lookahead_weight}")
        if self.val_every < 0:
            raise ValueError(f"val_every must be >= 0 (0 disables validation), got {self.val_every}")
        if self.time_budget is not None and not (self.time_budget > 0 and math.isfinite(self.time_budget)):
            raise ValueError(f"time_budget must be a positive number of minutes, got {self.time_budget}")
        resolve_device(self.device)  # ValueError: malformed, or a CUDA device this machine lacks
        if self.val_every and not 1 <= self.val_archs <= SPLIT_SIZES["val"]:
            raise ValueError(f"val_archs must be in 1..{SPLIT_SIZES['val']}, got {self.val_archs}")


class ArchCache:
    """Builds (fake-quantized net, graph) for a training index once, then reuses them."""

    def __init__(self, in_channels: int, num_classes: int, max_items: int = 4096, image_size: int = 0,
                 device: str | torch.device = "cpu") -> None:
        self.in_channels, self.num_classes, self.max_items = in_channels, num_classes, max_items
        self.image_size, self.device = image_size, torch.device(device)
        self._items: dict[int, tuple[torch.nn.Module, Any]] = {}
        self._scales: dict[int, UnitStdScales] = {}

    def scales(self, index: int) -> UnitStdScales:
        """The calibration hooks of index's net (built by :meth:`get`)."""
        return self._scales[index]

    def get(self, index: int) -> tuple[torch.nn.Module, Any]:
        item = self._items.get(index)
        if item is None:
            spec = get_arch("train", index, self.in_channels, self.num_classes)
            if self.image_size:
                spec = at_image_size(spec, self.image_size)  # flatten heads size to the data
            model = spec.build()
            graph = capture(model)
            qmodel = quantize_model(model, w_bits=None, a_bits=None, fold_bn=False)
            modules = dict(qmodel.named_modules())
            # train under the scaling initialize_ applies
            scales = UnitStdScales(modules[name] for name in calibrated_layers(graph))
            qmodel.train().to(self.device)
            if len(self._items) >= self.max_items:
                evicted = next(iter(self._items))
                self._items.pop(evicted)
                self._scales.pop(evicted)
            item = self._items[index] = (qmodel, graph)
            self._scales[index] = scales
        return item


FIT_AFTER_STEPS = 20   # steps timed before a time budget fits the schedule (cache misses make them slow: a safe pace)
BUDGET_MARGIN = 0.9    # share of the remaining budget planned for steps; the rest covers validation and saving


def fit_steps_to_budget(cfg: TrainConfig, step: int, elapsed: float, step_seconds: float) -> int:
    """The total step count that ends ``cfg.time_budget`` minutes after the run began.

    ``elapsed``: seconds since the run began (loading included); ``step_seconds``: measured seconds per
    step.  Never more than ``cfg.steps``, never less than ``step`` (a spent budget ends the run now).
    """
    remaining = cfg.time_budget * 60.0 - elapsed
    more = int(max(0.0, remaining) * BUDGET_MARGIN / max(step_seconds, 1e-9))
    return max(step, min(cfg.steps, step + more))


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{rank}/{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def sample_bits(cfg: TrainConfig, graph: Any, gen: torch.Generator) -> int | None | dict[str, int]:
    """Float stage: None.  QAT: float, one width for all layers, or per-layer mixed."""
    if cfg.stage == "float":
        return None
    u = torch.rand((), generator=gen).item()
    choice = lambda: cfg.bits[int(torch.randint(len(cfg.bits), (), generator=gen))]  # noqa: E731
    if u < cfg.float_frac:
        return None
    if u < cfg.float_frac + cfg.mixed_frac:
        return {n.name: choice() for n in graph.nodes if n.op in WEIGHT_OPS}
    return choice()


def _lookahead_draws(cfg: TrainConfig, n_images: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Image indices (meta_batch, steps, batch_size) and one log-uniform step size per architecture for the
    lookahead; nothing is drawn without it, so runs without keep their random stream."""
    if not cfg.lookahead_steps:
        return torch.empty(cfg.meta_batch, 0, cfg.batch_size, dtype=torch.long), torch.empty(cfg.meta_batch)
    idx = torch.randint(n_images, (cfg.meta_batch, cfg.lookahead_steps, cfg.batch_size), generator=gen)
    lo, hi = (math.log(x) for x in cfg.lookahead_lr)
    return idx, torch.exp(lo + (hi - lo) * torch.rand(cfg.meta_batch, generator=gen))


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to zero at cfg.steps."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup))
    return cfg.lr * warm * 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def upgrade_decoder(ghn: GHN) -> GHN:
    """A warm start from an older decoder version keeps the encoder and starts a current decoder.

    The graph encoder (embeddings, transformer) does not depend on the decoder, so
    it carries over; the decoder's parameters have a new layout and start fresh.
    """
    if ghn.config.decoder_version >= GHNConfig.decoder_version:
        return ghn
    config = GHNConfig.from_dict({**ghn.config.to_dict(), "decoder_version": GHNConfig.decoder_version,
                                  "decoder_hidden": GHNConfig.decoder_hidden,
                                  "block_kernel": GHNConfig.block_kernel})
    new = GHN(config)
    own = new.state_dict()
    kept = {k: v for k, v in ghn.state_dict().items()
            if not k.startswith("decoder.") and k in own and own[k].shape == v.shape}
    new.load_state_dict(kept, strict=False)
    log.info("warm start from decoder v%d: kept %d encoder tensors, decoder v%d starts fresh",
             ghn.config.decoder_version, len(kept), config.decoder_version)
    return new


_upgrade_decoder = upgrade_decoder  # the name before it was public
_load_warm_start = load_trained_ghn  # likewise (named in earlier benchmark records)


def train(cfg: TrainConfig, images: torch.Tensor, labels: torch.Tensor, resume: bool = False,
          val_data: tuple[torch.Tensor, torch.Tensor] | None = None) -> GHN:
    """Train a GHN on (images, labels); checkpoints go to cfg.out/ckpt.  Returns the GHN.

    `val_data`: the dataset's test (images, labels); with it and ``cfg.val_every``, validation
    accuracies (``val_float``, and ``val_w4``/``val_w2`` in the QAT stage) join the history rows
    every ``cfg.val_every`` steps and at the end.  It changes nothing of the training itself.
    Under torchrun (torch.distributed initialized by the caller) gradients are
    averaged by DistributedDataParallel; each rank draws its own architectures; rank 0 validates.
    """
    t_begin = time.time()
    rank, world = _dist_info()
    out = Path(cfg.out)
    ckpt_dir = out / "ckpt"
    torch.manual_seed(cfg.seed)  # the GHN's own init; overwritten on resume/warm start
    input_shape, num_classes = tuple(images.shape[1:]), int(labels.max()) + 1
    resuming = resume and has_training_state(ckpt_dir)
    # A resumed run rebuilds its GHN from its own state, so its warm-start source may be gone by then.
    warm_source = str(ckpt_dir) if resuming else cfg.init_from
    if warm_source:
        ghn = upgrade_decoder(load_trained_ghn(warm_source))
        # a warm start may come from another dataset (a Fashion-MNIST GHN continued on CIFAR-10): the
        # weights predict any shape, but the record must name the data this run trains on
        ghn.config.input_shape, ghn.config.num_classes = input_shape, num_classes
    else:
        ghn = GHN(GHNConfig(**cfg.ghn, input_shape=input_shape, num_classes=num_classes))
    ghn.config.method = "ghn-qat" if cfg.stage == "qat" else "ghn"
    # the config's default is Fashion-MNIST's; a checkpoint must name the statistics of its own data
    ghn.config.normalization = normalization_record(input_shape) or ghn.config.normalization
    ghn.config.bits = cfg.bits if cfg.stage == "qat" else ()
    device = torch.device(cfg.device)
    ghn.train().to(device)
    optimizer = torch.optim.AdamW(ghn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start, nan_steps, history = 0, 0, []
    fitted_before = False  # a resumed run whose checkpoint already fitted its steps to the time budget
    dropped_items = clipped_items = 0  # architectures left out of / clipped in their step (item_grads.py)
    lookahead_diverged = 0  # architectures whose lookahead loss was non-finite (lookahead.py)
    if resuming:
        meta = load_training_state(ckpt_dir, ghn, optimizer)
        start, nan_steps, history = meta["step"], meta["nan_steps"], meta.get("history", [])
        dropped_items, clipped_items = meta.get("dropped_items", 0), meta.get("clipped_items", 0)
        lookahead_diverged = meta.get("lookahead_diverged", 0)
        log.info("resumed from %s at step %d", ckpt_dir, start)
        saved = meta.get("train_config", {})
        if cfg.time_budget and saved.get("time_budget"):  # the schedule was fitted once; refitting would jump it
            cfg.steps, fitted_before = int(saved["steps"]), True
    model = ghn
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(ghn, find_unused_parameters=True)
    cache = ArchCache(input_shape[0], num_classes, image_size=input_shape[-1], device=device)
    val_set = None
    if cfg.val_every and val_data is not None and rank == 0:  # small CPU subsets, drawn before the data moves
        val_set = make_val_data(images, labels, *val_data, archs=cfg.val_archs)
    images, labels = images.to(device), labels.to(device)
    last_val: dict[str, float] = {}

    def counters() -> dict[str, int]:
        """What the run counted so far, as the training state and the final record store it."""
        return {"nan_steps": nan_steps, "dropped_items": dropped_items, "clipped_items": clipped_items,
                "lookahead_diverged": lookahead_diverged}

    def checkpoint(step: int) -> None:
        if rank == 0:
            meta = {"step": step, **counters(), "history": history, "train_config": asdict(cfg),
                    "ghn_config": ghn.config.to_dict(), "world_size": world}
            save_training_state(ckpt_dir, ghn, optimizer, meta)

    bar = tqdm(total=cfg.steps, initial=start, disable=rank != 0 or not cfg.log_every, desc=f"ghn-{cfg.stage}")
    postfix: dict[str, str] = {}
    window: list[tuple[float, float]] = []
    t0 = time.time()
    step = start
    fit_at = start + FIT_AFTER_STEPS if cfg.time_budget and not fitted_before else None
    while step < cfg.steps:
        if cfg.stop_after is not None and step >= cfg.stop_after:
            break
        gen = step_generator(cfg.seed, rank, step)
        # dropout in sampled nets draws from the global RNG: seed it per step so resume stays bit-exact
        torch.manual_seed(int(torch.randint(1 << 62, (), generator=gen)))
        ids = torch.randint(cfg.arch_pool, (cfg.meta_batch,), generator=gen).tolist()
        nets, graphs = zip(*(cache.get(i) for i in ids))
        bits = [sample_bits(cfg, g, gen) for g in graphs]
        batch_idx = torch.randint(images.shape[0], (cfg.meta_batch, cfg.batch_size), generator=gen).to(device)
        la_idx, la_lrs = _lookahead_draws(cfg, images.shape[0], gen)  # after the other draws: same stream without
        la_idx = la_idx.to(device)
        for g in optimizer.param_groups:
            g["lr"] = lr_at(cfg, step)
        preds = model(list(graphs), bits)
        losses, correct, floors, aheads = [], 0.0, [], []
        for i, (net, graph, b, params, idx) in enumerate(zip(nets, graphs, bits, preds, batch_idx)):
            set_quant_bits(net, b, b)
            logits = functional_call(net, params, (images[idx],))
            item_loss = F.cross_entropy(logits, labels[idx])
            if cfg.lookahead_steps and cfg.lookahead_weight:
                ahead = lookahead_loss(net, params, item_loss, [(images[j], labels[j]) for j in la_idx[i]],
                                       float(la_lrs[i]), cache.scales(ids[i]), not cfg.lookahead_first_order)
                if torch.isfinite(ahead):
                    item_loss = (item_loss + cfg.lookahead_weight * ahead) / (1.0 + cfg.lookahead_weight)
                    aheads.append(ahead.item())
                else:  # diverged within the steps: its gradient would be non-finite too; the zero-shot loss stays
                    lookahead_diverged += 1
            if cfg.float_loss_weight and b is not None:
                set_quant_bits(net, None, None)
                float_loss = F.cross_entropy(functional_call(net, params, (images[idx],)), labels[idx])
                item_loss = (item_loss + cfg.float_loss_weight * float_loss) / (1.0 + cfg.float_loss_weight)
            if cfg.norm_floor_weight:
                floor = norm_channel_penalty(graph, params)
                if floor is not None:
                    item_loss = item_loss + cfg.norm_floor_weight * floor
                    floors.append(floor.item())
            losses.append(item_loss)
            correct += (logits.argmax(1) == labels[idx]).float().mean().item()
        optimizer.zero_grad(set_to_none=True)
        # always a backward (DDP expects one after every forward), per architecture: a net whose gradient
        # explodes (2-bit nets, measured up to 1e25) is clipped or left out instead of voiding the step
        item_stats = backward_per_item(losses, preds, cfg.item_clip, 1.0 / len(losses))
        dropped_items += item_stats.dropped
        clipped_items += item_stats.clipped
        finite = [x.item() for x in losses if torch.isfinite(x)]
        loss_value = sum(finite) / len(finite) if finite else float("nan")
        grad_norm = torch.nn.utils.clip_grad_norm_(ghn.parameters(), cfg.clip)
        if torch.isfinite(grad_norm):  # grads are already averaged, so all ranks agree
            optimizer.step()
        else:
            nan_steps += 1
        step += 1
        if step == fit_at:
            fitted = fit_steps_to_budget(cfg, step, time.time() - t_begin, (time.time() - t0) / (step - start))
            if world > 1:  # every rank must end at the same step
                shared = torch.tensor([fitted])
                torch.distributed.broadcast(shared, 0)
                fitted = int(shared.item())
            log.info("time budget %.1f min: %d steps (asked %d)", cfg.time_budget, fitted, cfg.steps)
            cfg.steps = fitted
            bar.total = fitted
        window.append((loss_value, correct / len(nets), sum(floors) / len(floors) if floors else 0.0,
                       sum(aheads) / len(aheads) if aheads else float("nan")))
        if cfg.log_every and step % cfg.log_every == 0:
            l_mean = sum(w[0] for w in window) / len(window)
            a_mean = sum(w[1] for w in window) / len(window)
            history.append({"step": step, "loss": round(l_mean, 4), "acc": round(a_mean, 4),
                            "lr": lr_at(cfg, step - 1), "sec": round(time.time() - t0, 1)})
            if cfg.norm_floor_weight:  # the penalty alone (it is inside "loss" too)
                history[-1]["floor"] = round(sum(w[2] for w in window) / len(window), 4)
            if cfg.lookahead_steps:  # the mean loss after the simulated SGD steps (mixed into "loss")
                finite_ahead = [w[3] for w in window if math.isfinite(w[3])]
                history[-1]["ahead"] = round(sum(finite_ahead) / len(finite_ahead), 4) if finite_ahead else None
            window.clear()
            postfix.update(loss=f"{l_mean:.3f}", acc=f"{a_mean:.3f}", nan=str(nan_steps), clip=str(clipped_items),
                           drop=str(dropped_items))
            if cfg.lookahead_steps:
                postfix.update(ahead=str(history[-1]["ahead"]), diverged=str(lookahead_diverged))
            bar.set_postfix(postfix)
        if val_set is not None and (step % cfg.val_every == 0 or step == cfg.steps):
            t_val = time.time()
            last_val = validate(ghn if device.type == "cpu" else copy.deepcopy(ghn).cpu(), val_set)
            if not (history and history[-1]["step"] == step):
                history.append({"step": step})  # a val-only row when this step logged no training row
            history[-1].update(last_val, val_sec=round(time.time() - t_val, 1))
            postfix.update({k: f"{v:.3f}" for k, v in last_val.items()})
            bar.set_postfix(postfix)
        bar.update(1)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            checkpoint(step)
    bar.close()
    ghn.cpu()  # what callers and the Hub layout get, whichever device trained it
    if step == cfg.steps and rank == 0:
        _save_final(ghn, cfg, out / "final", last_val, counters(), step)
    return ghn


def _save_final(ghn: GHN, cfg: TrainConfig, directory: Path, val: dict[str, float] | None,
                counters: dict[str, int], step: int) -> None:
    """The finished GHN in the Hub layout, with the command that produced it."""
    from ..hub import save_pretrained
    warm_start = dict(ghn.config.training or {})  # the float run's record, when this run was warm-started
    ghn.config.training = training_record(asdict(cfg), tuple(ghn.config.input_shape), step, counters,
                                          _dist_info()[1], val=val, warm_start=warm_start, host_cpus=os.cpu_count())
    save_pretrained(ghn.eval(), directory)
