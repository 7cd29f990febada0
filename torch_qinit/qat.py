"""Quantization-aware training (QAT) from a given initialization: the library's QAT helper.

GHN-QAT weights are meant as the *start* of the user's own QAT (ARCHITECTURE.md §1).  This module is a
small, dependable QAT loop on top of :mod:`torch_qinit.quant`, used by the demo and the
"QAT from init" benchmark, and usable as is::

    torch_qinit.initialize_(model, bits=4)
    result = qat_finetune(model, 4, train_loader, steps=500)
    acc = qat_accuracy(result.model, test_loader)

Scheme: a fake-quantized copy of the model (weights per-channel symmetric, activations per-tensor
affine over the batch range, straight-through estimator), BatchNorm kept unfolded and in training
mode, trained with Adam (or SGD) at a constant learning rate for a number of steps or epochs.
Non-finite steps are skipped; a run that ends in NaN is flagged (``QATResult.diverged``).
"""
from __future__ import annotations

import copy
import itertools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .bits import MAX_BITS, MIN_BITS, check_spec
from .evaluation import accuracy
from .modules import batch_input, device_of, preserved_modes
from .quant.modules import calibrate, quantize_model, quantized_layers

__all__ = ["QATResult", "qat_finetune", "qat_accuracy", "OPTIMIZERS"]

logger = logging.getLogger(__name__)

#: Optimizers `qat_finetune` accepts.  Adam is the default: a short QAT run from very different
#: starting points (GHN-predicted, He, Glorot, ...) needs one learning rate that works for all of
#: them, and Adam's per-parameter scaling is far less sensitive to the initial weight scale than
#: SGD's.  "sgd" is SGD with Nesterov momentum 0.9 (use lr around 0.05 for it).
OPTIMIZERS = ("adam", "sgd")


@dataclass
class QATResult:
    """What :func:`qat_finetune` returns.

    Attributes:
        model: the trained fake-quantized model (a new module, in eval mode).
        curve: ``[(step, metric)]`` from ``eval_fn``, every ``eval_every`` steps and at the end.
        losses: training loss of every step (``nan`` for a skipped non-finite step).
        steps: optimizer steps requested.
        skipped_steps: steps skipped because the loss was not finite.
        seconds: wall-clock time of the training loop, evaluations included.
        steps_run: optimizer steps actually run (< ``steps`` when `nan_patience` stopped the run).
        diverged: the run ended in NaN: its last loss was not finite, or a trained parameter is.
        clipped_steps: steps whose gradient norm exceeded `clip_grad_norm` and was scaled down to it.
    """

    model: nn.Module
    curve: list[tuple[int, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    steps: int = 0
    skipped_steps: int = 0
    seconds: float = 0.0
    steps_run: int = 0
    diverged: bool = False
    clipped_steps: int = 0

    @property
    def final_metric(self) -> float | None:
        """The last ``eval_fn`` value, or None when no ``eval_fn`` was given."""
        return self.curve[-1][1] if self.curve else None


def _check_qat_bits(bits: Any, what: str) -> None:
    """Raise ValueError unless `bits` is an int in 2..8 or a non-empty {layer: int or None} dict: QAT needs
    a bit-width (a float layer in a dict is fine).  The widths are checked by `torch_qinit.bits.check_spec`."""
    try:
        if bits is None or (isinstance(bits, Mapping) and not bits):
            raise ValueError("no bit-width")
        check_spec(bits, what)
    except (TypeError, ValueError) as exc:
        if isinstance(bits, Mapping):
            raise ValueError(f"{what}: every per-layer bit-width must be an int in {MIN_BITS}..{MAX_BITS} "
                             f"(or None for a float layer); got {bits!r}") from exc
        raise ValueError(f"{what} must be an int in {MIN_BITS}..{MAX_BITS} (or a {{layer: bits}} dict) for "
                         f"quantization-aware training, got {bits!r}") from exc


def _cycle(loader: Iterable[Any]) -> Iterator[Any]:
    """Endless batches; re-iterates `loader` (a new shuffle per epoch) instead of caching like itertools.cycle."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("qat_finetune: train_loader yielded no batches")


def _split(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(batch, (list, tuple)) and len(batch) >= 2):
        raise TypeError(f"qat_finetune needs (x, y) batches, got {type(batch).__name__}")
    return batch[0], batch[1]


def _epoch_steps(epochs: Any, loader: Iterable[Any]) -> int:
    """Optimizer steps in `epochs` passes over `loader` (which must have a length)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError("epochs needs a train_loader with a length (len(loader)); give steps instead") from None
    if n < 1:
        raise ValueError("qat_finetune: train_loader has no batches")
    return epochs * n


def _all_finite(model: nn.Module) -> bool:
    """True when every parameter and floating-point buffer of `model` is finite."""
    with torch.no_grad():
        tensors = itertools.chain(model.parameters(), (b for b in model.buffers() if b.is_floating_point()))
        return all(bool(torch.isfinite(t).all()) for t in tensors)


def _make_optimizer(name: str, params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True)


def qat_finetune(
    model: nn.Module,
    bits: int | Mapping[str, int | None],
    train_loader: Iterable[Any],
    *,
    steps: int | None = None,
    lr: float = 1e-3,
    act_bits: int | Mapping[str, int | None] | None = None,
    optimizer: str = "adam",
    lsq: bool = False,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    eval_fn: Callable[[nn.Module], float] | None = None,
    eval_every: int = 0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    desc: str = "qat",
    epochs: int | None = None,
    nan_patience: int | None = None,
    clip_grad_norm: float | None = None,
) -> QATResult:
    """Quantization-aware training of a fake-quantized copy of `model`; `model` itself is untouched.

    The copy is ``quantize_model(model, w_bits=bits, a_bits=act_bits or bits, fold_bn=False)``:
    BatchNorm stays (and trains, updating its running statistics), weights and activations are
    fake-quantized with a straight-through estimator, and activations use the current batch's
    range in training mode while an EMA of it is kept for evaluation.  The first layer's input
    (the image) keeps at least 8 bits.  Training runs `steps` optimizer steps (or `epochs`
    passes over `train_loader`), cycling `train_loader` as often as needed, with a constant
    learning rate.  A step whose loss is not finite is skipped (and counted) instead of
    corrupting the weights; ``QATResult.diverged`` says whether the run ended in NaN.

    Args:
        model: the initialized float model (e.g. after ``initialize_``).
        bits: weight bits, an int in 2..8 or ``{layer qualname: bits}`` for mixed precision.
        train_loader: iterable of ``(x, y)`` batches; re-iterated when exhausted.
        steps: number of optimizer steps (>= 1); give either `steps` or `epochs`.
        lr: learning rate; the default suits Adam.
        act_bits: activation bits, same forms as `bits`; None means the same as `bits`.
        optimizer: ``"adam"`` (default, see :data:`OPTIMIZERS` for why) or ``"sgd"``
            (Nesterov momentum 0.9).
        lsq: learn the quantizer step sizes (LSQ) instead of abs-max / min-max scales.
        loss_fn: ``loss_fn(logits, y)``; cross-entropy by default.
        eval_fn: called as ``eval_fn(qmodel)`` with the model in eval mode (train mode is
            restored afterwards) every `eval_every` steps and after the last step; its
            float result goes into ``curve``.  :func:`qat_accuracy` is a ready-made one.
        eval_every: evaluation period in steps; 0 evaluates only at the end.
        generator: seeds the training loop's global-RNG use (loader shuffling without its
            own generator, dropout) inside ``torch.random.fork_rng``, so a run is
            reproducible and the caller's global RNG state is left as it was.
        progress: show a tqdm progress bar (on stderr).
        desc: the progress bar's label.
        epochs: instead of `steps`, train ``epochs * len(train_loader)`` steps (the loader
            needs a length).
        nan_patience: stop early after this many consecutive non-finite losses (the run has
            diverged; the remaining steps would only burn time); None never stops.
        clip_grad_norm: scale each step's gradient down to this total norm when it is larger
            (``torch.nn.utils.clip_grad_norm_``); None (default) never clips.  Use it under SGD at
            lr 0.02: without it SqueezeNet-like ``classic`` nets stall at chance from GHN-QAT and He
            alike, and GHN-QAT starts with uncapped logits (``initialize_(..., logit_std=None)``) also
            diverged on the AlexNet- and VGG-11-like nets; with it no start died (README, "QAT from
            each init").

    Returns:
        A :class:`QATResult` holding the trained quantized model (in eval mode), the eval
        curve and the per-step losses.

    Examples:
        >>> torch_qinit.initialize_(net, bits=4)                                   # doctest: +SKIP
        >>> res = qat_finetune(net, 4, train_loader, steps=200, eval_every=50,
        ...                    eval_fn=lambda q: qat_accuracy(q, test_loader))     # doctest: +SKIP
        >>> res.curve                                                              # doctest: +SKIP
        [(50, 0.71), (100, 0.78), (150, 0.80), (200, 0.82)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"qat_finetune expects an nn.Module, got {type(model).__name__}")
    _check_qat_bits(bits, "bits")
    if act_bits is not None:
        _check_qat_bits(act_bits, "act_bits")
    if epochs is not None:
        if steps is not None:
            raise ValueError("give either steps or epochs, not both")
        steps = _epoch_steps(epochs, train_loader)
    if steps is None:
        raise ValueError("qat_finetune needs steps (or epochs)")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if nan_patience is not None and (isinstance(nan_patience, bool) or not isinstance(nan_patience, int)
                                     or nan_patience < 1):
        raise ValueError(f"nan_patience must be an int >= 1 or None, got {nan_patience!r}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 0:
        raise ValueError(f"eval_every must be an int >= 0, got {eval_every!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if clip_grad_norm is not None and not (isinstance(clip_grad_norm, (int, float)) and not isinstance(
            clip_grad_norm, bool) and math.isfinite(clip_grad_norm) and clip_grad_norm > 0):
        raise ValueError(f"clip_grad_norm must be a positive number or None, got {clip_grad_norm!r}")

    qmodel = quantize_model(model, w_bits=bits, a_bits=act_bits if act_bits is not None else bits,
                            fold_bn=False, lsq=lsq)
    if not quantized_layers(qmodel):
        raise ValueError(f"{type(model).__name__} has no Conv/Linear layers to quantize")
    params = [p for p in qmodel.parameters() if p.requires_grad]
    opt = _make_optimizer(optimizer, params, float(lr))
    device = params[0].device if params else torch.device("cpu")

    result = QATResult(model=qmodel, steps=steps)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # only needed for the bar

        bar = tqdm(total=steps, desc=desc, leave=False, dynamic_ncols=True)

    def run_eval(step: int) -> None:
        assert eval_fn is not None
        qmodel.eval()
        try:
            metric = float(eval_fn(qmodel))
        finally:
            qmodel.train()
        result.curve.append((step, metric))
        logger.debug("qat step %d: metric %.4f", step, metric)

    # fork_rng: a seeded run must not move the caller's global RNG (change nothing but what we own, §2 of
    # docs/ARCHITECTURE.md).
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=cuda_devices, enabled=generator is not None):
        if generator is not None:
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
        batches = _cycle(train_loader)
        qmodel.train()
        bad_run = 0  # consecutive skipped steps (non-finite loss, or gradient when clipping)
        try:
            for step in range(1, steps + 1):
                x, y = _split(next(batches))
                loss = loss_fn(qmodel(x.to(device)), y.to(device))
                value = float(loss.detach())
                norm = 0.0
                if math.isfinite(value):
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if clip_grad_norm is not None:  # a non-finite norm cannot be clipped: that step is skipped
                        norm = float(torch.nn.utils.clip_grad_norm_(params, float(clip_grad_norm)))
                        result.clipped_steps += int(norm > clip_grad_norm)
                if math.isfinite(value) and math.isfinite(norm):
                    opt.step()
                    bad_run = 0
                else:  # one bad batch (e.g. an overflow) must not turn every weight into NaN
                    result.skipped_steps += 1
                    bad_run += 1
                result.losses.append(value)
                result.steps_run = step
                stop = nan_patience is not None and bad_run >= nan_patience
                if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == steps or stop):
                    run_eval(step)
                if bar is not None:
                    post = {"loss": f"{value:.3f}"}
                    if result.curve:
                        post["metric"] = f"{result.curve[-1][1]:.3f}"
                    bar.set_postfix(post, refresh=False)
                    bar.update(1)
                if stop:
                    logger.warning("qat_finetune: stopped at step %d of %d after %d consecutive non-finite "
                                   "losses (diverged)", step, steps, bad_run)
                    break
        finally:
            if bar is not None:
                bar.close()
    result.seconds = time.perf_counter() - t0
    result.diverged = not math.isfinite(result.losses[-1]) or not _all_finite(qmodel)
    if result.skipped_steps:
        warnings.warn(f"qat_finetune: skipped {result.skipped_steps} of {steps} steps with a non-finite loss"
                      + (" or gradient" if clip_grad_norm is not None else ""),
                      stacklevel=2)
    qmodel.eval()
    logger.info("qat_finetune: %d steps in %.1f s, final loss %.4f%s", steps, result.seconds,
                result.losses[-1], f", metric {result.final_metric:.4f}" if result.curve else "")
    return result


def qat_accuracy(
    qmodel: nn.Module,
    loader: Iterable[Any],
    calib_loader: Iterable[Any] | None = None,
    *,
    calib_batches: int = 10,
    device: str | torch.device | None = None,
) -> float:
    """Top-1 accuracy in [0, 1] of a fake-quantized model (e.g. ``QATResult.model``), in eval mode.

    By default the activation ranges tracked during QAT (an EMA of the batch ranges) are used,
    as a deployed QAT model would.  With `calib_loader`, ranges are first recalibrated (min/max
    over `calib_batches` batches) on a copy, so `qmodel` is never modified either way; its
    train/eval mode is restored too.

    Args:
        qmodel: a model from :func:`qat_finetune` or ``quantize_model``.
        loader: ``(x, y)`` batches to measure accuracy on.
        calib_loader: optional batches for range recalibration (use training data).
        calib_batches: at most this many calibration batches.
        device: where to run; defaults to the model's device.
    """
    if not isinstance(qmodel, nn.Module):
        raise TypeError(f"qat_accuracy expects an nn.Module, got {type(qmodel).__name__}")
    if not quantized_layers(qmodel):
        raise ValueError("qat_accuracy: no quantized layers; pass a model from qat_finetune or quantize_model")
    if device is None:
        device = device_of(qmodel)
    net = qmodel
    if calib_loader is not None:
        net = copy.deepcopy(qmodel)
        calibrate(net, (batch_input(b) for b in itertools.islice(calib_loader, calib_batches)))
    with preserved_modes(net):
        net.eval()
        return accuracy(net, loader, device)
