"""The measurement loop of `compare`: every method x bit width x seed on the user's model and data."""
from __future__ import annotations

import copy
import itertools
import logging
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..modules import resolve_device
from ..results import MAIN_METHODS, machine_string, mean_std
from .datasets import Data, first_batch, resolve_data
from .errors import CompareError, DataError
from .loading import ModelFactory, one_line

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_LR",
    "RunResult",
    "CompareResult",
    "compare",
    "run_one",
    "summarize",
    "first_reach",
    "parse_int_list",
    "parse_methods",
]

if TYPE_CHECKING:
    from torch_qinit.qat import QATResult

logger = logging.getLogger(__name__)

#: Methods compared when none are given: the demo's and the benchmarks' (both GHNs, two classic inits).
DEFAULT_METHODS: tuple[str, ...] = MAIN_METHODS
#: Learning rate per optimizer when none is given (qat_finetune's SGD is Nesterov momentum 0.9).
DEFAULT_LR: dict[str, float] = {"adam": 1e-3, "sgd": 0.05}


def first_reach(curve: Mapping[int, float] | Sequence[tuple[int, float]], target: float) -> int | None:
    """The first evaluated step whose accuracy is >= `target`; None when never reached."""
    items = sorted(curve.items() if isinstance(curve, Mapping) else curve)
    return next((step for step, acc in items if acc >= target - 1e-12), None)


def parse_int_list(text: str | int | Sequence[int], what: str) -> list[int]:
    """``"4,2"`` (or an int, or a list) -> ``[4, 2]``; CompareError on anything else."""
    if isinstance(text, int) and not isinstance(text, bool):
        return [text]
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            return [int(p) for p in parts] or _empty(what)
        except ValueError:
            raise CompareError(f"{what} must be comma-separated integers like 4,2, got {text!r}") from None
    values = list(text)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise CompareError(f"{what} must be a non-empty list of integers, got {text!r}")
    return values


def _empty(what: str) -> list[int]:
    raise CompareError(f"{what} is empty")


def parse_methods(text: str | Sequence[str]) -> list[str]:
    """``"ghn-qat,he_normal"`` -> names, checked against ``torch_qinit.methods()``."""
    from torch_qinit.initialize import methods as all_methods

    names = [m.strip() for m in text.split(",")] if isinstance(text, str) else [str(m) for m in text]
    names = list(dict.fromkeys(n for n in names if n))
    unknown = [n for n in names if n not in all_methods()]
    if unknown or not names:
        raise CompareError(f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from "
                           f"{', '.join(all_methods())}")
    return names


@dataclass
class RunResult:
    """One method at one bit width and seed."""

    method: str
    bits: int
    act_bits: int
    seed: int
    status: str = "ok"  # "ok" or "failed"
    error: str = ""
    zero_shot: float = math.nan
    final: float = math.nan
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, accuracy); step 0 is zero-shot
    final_loss: float = math.nan
    skipped_steps: int = 0
    stopped_at: int | None = None  # set when the run diverged and was stopped early
    diverged: bool = False
    fallback_params: int = 0
    weights: str = ""  # the GHN checkpoint a GHN method used (id and sha256 prefix) and why
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # warnings raised during the run


@dataclass
class CompareResult:
    """Everything `compare` measured, with the summary per method and bit width."""

    config: dict[str, Any]
    runs: list[RunResult]
    summary: list[dict[str, Any]]
    seconds: float
    machine: str

    @property
    def methods(self) -> list[str]:
        return list(self.config["methods"])

    @property
    def trained(self) -> bool:
        """True when QAT ran (steps > 0), so a final accuracy exists."""
        return int(self.config["steps"]) > 0

    @property
    def diverged_runs(self) -> list[RunResult]:
        return [r for r in self.runs if r.diverged]

    def bit_configs(self) -> list[tuple[int, int]]:
        return list(zip(self.config["bits"], self.config["act_bits"]))

    def summary_row(self, method: str, bits: int) -> dict[str, Any] | None:
        """The summary of `method` at weight bits `bits`, or None when it was not requested."""
        return next((r for r in self.summary if r["method"] == method and r["bits"] == bits), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""
        return _json_safe({"config": self.config, "machine": self.machine, "seconds": self.seconds,
                           "summary": self.summary, "runs": [asdict(r) for r in self.runs]})


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _reseed(loader: Any, seed: int) -> None:
    """Reset a DataLoader's shuffling generator so every method sees the same batch order for a seed."""
    g = getattr(loader, "generator", None)
    if isinstance(g, torch.Generator):
        g.manual_seed(seed)


def _check_fit(factory: ModelFactory, data: Data, seed: int) -> int:
    """Run the model on one training batch; DataError in one line when shapes or classes do not fit."""
    x, y = first_batch(data.train)
    model = factory.build(seed)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            out = model(x[:2])
    except Exception as exc:
        raise DataError(f"a {list(x.shape[1:])} input from {data.name} does not fit {factory.spec}: "
                        f"{one_line(exc)}") from exc
    finally:
        model.train(was_training)
    if not (isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[0] == min(2, len(x))):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(f"{factory.spec} returned {shape} for a batch of {min(2, len(x))}; compare needs logits "
                        "of shape [batch, classes]")
    classes = int(out.shape[1])
    if len(y) and int(y.max()) >= classes:
        raise DataError(f"labels go up to {int(y.max())} but {factory.spec} outputs {classes} classes "
                        "(set the class count, e.g. --model-kwargs '{\"num_classes\": 10}')")
    return classes


def _zero_shot(model: nn.Module, w_bits: int, a_bits: int, test: Iterable[Any], calib: list[Any],
               device: torch.device) -> float:
    """docs/ARCHITECTURE.md §4 zero-shot accuracy: BN recalibration, BN folding, range calibration, fake
    quantization."""
    from torch_qinit.evaluation import accuracy, evaluate, recalibrate_bn
    from torch_qinit.quant import quantize_model

    n_range = max(1, len(calib) // 2)
    if w_bits == a_bits:
        return evaluate(model, w_bits, test, calib_loader=calib, recal_batches=len(calib), calib_batches=n_range,
                        device=device)
    # evaluate() quantizes activations at the weight width; the same steps with separate activation bits:
    net = recalibrate_bn(copy.deepcopy(model).to(device), calib, len(calib))
    net = quantize_model(net, w_bits=w_bits, a_bits=a_bits, fold_bn=True, calib_data=itertools.islice(calib, n_range))
    return accuracy(net.eval(), test, device)


def run_one(run: RunResult, build: Callable[[int], nn.Module], data: Data, calib: list[Any], *,
            steps: int, eval_every: int, lr: float, optimizer: str = "adam", nan_patience: int | None = 20,
            weights: Any = None, example: torch.Tensor | None = None, curve_data: Iterable[Any] | None = None,
            qat_seed: int | None = None, device: torch.device | str = "cpu", progress: bool = False,
            desc: str | None = None) -> QATResult | None:
    """Measure one method at one bit width and seed, filling `run` in place; returns the QATResult (or None).

    The one measurement loop of `compare` and `torch-qinit demo`: ``build(run.seed)``, initialize with
    ``run.method`` (generator seeded with ``run.seed``), zero-shot accuracy on ``data.test``
    (:func:`_zero_shot`), then `steps` QAT steps on ``data.train`` (its shuffling reseeded with ``run.seed``,
    so every method sees the same batches). Any failure marks `run` failed with the stage and reason
    instead of raising, so the other methods still run.

    Args:
        weights: the GHN checkpoint for a GHN method; None lets ``initialize_`` pick the bundled one.
        example: an input batch for initialize_'s calibration (None: a synthetic one).
        curve_data: where the intermediate curve points are measured (default ``data.test``); when given,
            the final accuracy is measured on ``data.test`` separately.
        qat_seed: seed of the QAT loop's generator (default ``run.seed``).
    """
    import torch_qinit
    from torch_qinit.qat import qat_accuracy, qat_finetune

    t0 = time.perf_counter()
    stage = "build"
    res = None
    device = torch.device(device)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = build(run.seed).to(device)
            stage = "init"
            report = torch_qinit.initialize_(model, bits=run.bits, act_bits=run.act_bits, method=run.method,
                                             weights=weights,
                                             example_input=None if example is None else example.to(device),
                                             generator=torch.Generator().manual_seed(run.seed))
            run.fallback_params = int(getattr(report, "num_fallback", 0))
            if getattr(report, "weights_id", None):
                run.weights = (f"{report.weights_id} sha256 {str(report.weights_sha256 or '')[:12]}"
                               + (f" ({report.weights_note})" if getattr(report, "weights_note", "") else ""))
            stage = "zero-shot"
            run.zero_shot = _zero_shot(model, run.bits, run.act_bits, data.test, calib, device)
            run.curve = [(0, run.zero_shot)]
            if steps:
                stage = "QAT"
                _reseed(data.train, run.seed)  # same batch order for every method of a seed
                curve = data.test if curve_data is None else curve_data
                res = qat_finetune(model, run.bits, data.train, steps=steps, act_bits=run.act_bits, lr=lr,
                                   optimizer=optimizer, eval_fn=lambda q: qat_accuracy(q, curve),
                                   eval_every=eval_every,
                                   generator=torch.Generator().manual_seed(run.seed if qat_seed is None else qat_seed),
                                   nan_patience=nan_patience, progress=progress,
                                   desc=desc or f"{run.method} W{run.bits}A{run.act_bits} seed {run.seed}")
                run.curve += [(int(s), float(a)) for s, a in res.curve]
                run.skipped_steps, run.diverged = res.skipped_steps, res.diverged
                run.final_loss = res.losses[-1] if res.losses else math.nan
                if res.steps_run < steps:  # stopped early: it stays where it ended for the rest of the curve
                    run.stopped_at = res.steps_run
                    last = run.curve[-1][1]
                    run.curve += [(s, last) for s in _eval_steps(steps, eval_every) if s > res.steps_run]
                # A curve on a test subset only shows the trend; the final number uses the whole test data.
                run.final = run.curve[-1][1] if curve_data is None else qat_accuracy(res.model, data.test)
        run.notes = list(dict.fromkeys(str(w.message) for w in caught))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a method that fails on this model is reported; the others still run
        run.status, run.error = "failed", f"{stage}: {one_line(exc)}"
        logger.warning("%s W%dA%d seed %d failed: %s", run.method, run.bits, run.act_bits, run.seed, run.error)
    run.seconds = time.perf_counter() - t0
    return res


def _eval_steps(steps: int, eval_every: int) -> list[int]:
    return sorted(set(range(eval_every, steps + 1, eval_every)) | {steps})


def summarize(runs: list[RunResult], methods: Sequence[str], configs: Sequence[tuple[int, int]],
              trained: bool) -> list[dict[str, Any]]:
    """Per bit width and method: means ± std over seeds, steps to the best classic's final accuracy, time."""
    from torch_qinit.initialize import GHN_METHODS

    out: list[dict[str, Any]] = []
    for w, a in configs:
        rows = []
        for m in methods:
            rs = [r for r in runs if r.method == m and r.bits == w and r.act_bits == a]
            ok = [r for r in rs if r.status == "ok"]
            # failed runs hold NaN: left out, as are the runs that were not ok
            zs = mean_std((r.zero_shot for r in ok), skip_nan=True)
            fi = mean_std((r.final for r in ok), skip_nan=True)
            curve: dict[int, list[float]] = {}
            for r in ok:
                for s, acc in r.curve:
                    curve.setdefault(s, []).append(acc)
            rows.append({
                "bits": w, "act_bits": a, "method": m, "runs": len(rs), "runs_ok": len(ok),
                "failed": len(rs) - len(ok), "error": next((r.error for r in rs if r.error), ""),
                "zero_shot_mean": zs[0], "zero_shot_std": zs[1], "final_mean": fi[0], "final_std": fi[1],
                "curve": sorted((s, statistics.fmean(v)) for s, v in curve.items() if len(v) == len(ok)),
                "target": math.nan, "target_method": "", "steps_to_target": None,
                "diverged": sum(r.diverged for r in rs), "skipped_steps": sum(r.skipped_steps for r in rs),
                "fallback_params": max((r.fallback_params for r in ok), default=0),
                "seconds_mean": mean_std((r.seconds for r in rs), skip_nan=True)[0],
                "seconds_total": sum(r.seconds for r in rs),
            })
        classic = [r for r in rows if r["method"] not in GHN_METHODS and r["runs_ok"] and trained]
        best = max(classic, key=lambda r: r["final_mean"], default=None)
        if best is not None:
            for r in rows:
                r["target"], r["target_method"] = best["final_mean"], best["method"]
                if r["runs_ok"]:
                    r["steps_to_target"] = first_reach(r["curve"], best["final_mean"])
        out += rows
    return out


def compare(
    model: str | Callable[..., nn.Module],
    data: str | Callable[..., Any] | Sequence[Iterable[Any]] | None = None,
    *,
    dataset: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    methods: str | Sequence[str] = DEFAULT_METHODS,
    bits: str | int | Sequence[int] = (4, 2),
    act_bits: str | int | Sequence[int] | None = None,
    steps: int | None = None,
    epochs: int | None = None,
    optimizer: str = "adam",
    lr: float | None = None,
    seeds: str | int | Sequence[int] = (0,),
    eval_every: int | None = None,
    batch_size: int = 128,
    train_size: int | None = None,
    test_size: int | None = None,
    calib_batches: int = 10,
    nan_patience: int = 20,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> CompareResult:
    """Compare initializers on your model: zero-shot quantized accuracy and QAT from each init.

    For every bit width in `bits` (activations at `act_bits`, default the same), every seed and
    every method: build the model from `model`, initialize it with the method, measure zero-shot
    WbAa accuracy (docs/ARCHITECTURE.md §4: BN recalibration on `calib_batches` training batches, BN folding,
    range calibration, fake quantization), then run QAT (:func:`torch_qinit.qat.qat_finetune`) for
    `steps` steps or `epochs` epochs, evaluating test accuracy every `eval_every` steps.  A seed
    fixes the model build, the init draw and the training batch order, identically for every method.
    A method that fails on this model is recorded as failed; the others still run.

    Args:
        model: ``package.module:factory``, ``path/to/file.py:factory``, or a callable returning an nn.Module.
        data: ``(train_loader, test_loader)``, a callable returning them, or a ``module:loaders`` spec
            (give this or `dataset`).
        dataset: ``"fmnist"``, ``"cifar10"`` or ``"imagefolder"`` (with `data_dir`).
        model_kwargs: keyword arguments for the factory.
        methods: names from ``torch_qinit.methods()`` (a list or a comma-separated string).
        bits, act_bits: weight and activation bit widths, 2..8; `act_bits` is one value or one per `bits`.
        steps, epochs: the QAT budget (at most one; default 100 steps; ``steps=0`` measures zero-shot only).
        optimizer, lr: ``"adam"`` or ``"sgd"``; `lr` defaults to :data:`DEFAULT_LR`.
        seeds: seeds to repeat everything with (mean ± std over them).
        eval_every: curve resolution in steps (default: a tenth of the budget).
        batch_size, train_size, test_size: loaders and seeded subsets of the built-in datasets.
        calib_batches: training batches for BN recalibration (half of them for activation ranges).
        nan_patience: stop a QAT run after this many consecutive non-finite losses (diverged).
        device: where to run.
        progress: tqdm progress bars on stderr.

    Raises:
        CompareError: bad arguments; ModelLoadError / DataError: the model or the data cannot be used.

    Examples:
        >>> res = compare("mymodels.py:lenet", dataset="fmnist", bits="4,2", steps=200)  # doctest: +SKIP
        >>> print(markdown(res))                                                        # doctest: +SKIP
    """
    from torch_qinit.qat import OPTIMIZERS

    t_start = time.perf_counter()
    methods = parse_methods(methods)
    bits_l = parse_int_list(bits, "--bits")
    act_l = bits_l if act_bits is None else parse_int_list(act_bits, "--act-bits")
    if len(act_l) == 1 and len(bits_l) > 1:
        act_l = act_l * len(bits_l)
    seeds_l = parse_int_list(seeds, "--seeds")
    if len(act_l) != len(bits_l):
        raise CompareError(f"--act-bits needs one value or one per --bits value ({len(bits_l)}), got {len(act_l)}")
    bad = [b for b in bits_l + act_l if not 2 <= b <= 8]
    if bad:
        raise CompareError(f"bit widths must be in 2..8, got {bad}")
    if optimizer not in OPTIMIZERS:
        raise CompareError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if epochs is not None and steps is not None:
        raise CompareError("give --steps or --epochs, not both")
    lr = DEFAULT_LR[optimizer] if lr is None else float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise CompareError(f"--lr must be a positive number, got {lr}")
    if batch_size < 1 or calib_batches < 1 or nan_patience < 1:
        raise CompareError("--batch-size, --calib-batches and nan_patience must be >= 1")
    if (dataset is None) == (data is None):  # before loading anything: the cheapest mistake to report
        raise CompareError("give exactly one of --dataset NAME or --data module:loaders")
    try:  # the same up-front check as the demo, the benchmarks and the trainer
        device = resolve_device(device)
    except ValueError as exc:
        raise CompareError(f"--device: {exc}") from None

    factory = ModelFactory(model, model_kwargs)
    loaded = resolve_data(dataset, data, data_dir=data_dir, batch_size=batch_size, train_size=train_size,
                          test_size=test_size, seed=0)
    classes = _check_fit(factory, loaded, seeds_l[0])
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise CompareError(f"--epochs must be an int >= 1, got {epochs!r}")
        try:
            steps = epochs * len(loaded.train)  # type: ignore[arg-type]
        except TypeError:
            raise CompareError("--epochs needs a train loader with a length; use --steps") from None
    steps = 100 if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise CompareError(f"--steps must be >= 0, got {steps}")
    eval_every = int(eval_every) if eval_every else max(1, steps // 10)

    # The same calibration batches for every method, bit width and seed.
    _reseed(loaded.train, 12345)
    calib = list(itertools.islice(loaded.train, calib_batches))
    example = first_batch(loaded.train)[0][:1]

    runs = [RunResult(m, w, a, s) for (w, a) in zip(bits_l, act_l) for s in seeds_l for m in methods]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(runs), desc="compare", unit="run", dynamic_ncols=True)
    try:
        for run in runs:
            if bar is not None:
                bar.set_postfix_str(f"{run.method} W{run.bits}A{run.act_bits} seed {run.seed}")
            # Per-step bars only on a terminal: in a CI log every refresh becomes a line; the run bar is enough.
            run_one(run, factory.build, loaded, calib, example=example, steps=steps, eval_every=eval_every,
                    optimizer=optimizer, lr=lr, nan_patience=nan_patience, device=device,
                    progress=progress and sys.stderr.isatty())
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    configs = list(zip(bits_l, act_l))
    config = {
        "model": factory.spec, "model_kwargs": factory.kwargs, "data": loaded.name, "classes": classes,
        "methods": methods, "bits": bits_l, "act_bits": act_l, "seeds": seeds_l, "steps": steps, "epochs": epochs,
        "optimizer": optimizer, "lr": lr, "batch_size": batch_size, "eval_every": eval_every,
        "calib_batches": calib_batches, "device": str(device),
        "ghn_weights": {m: next(r.weights for r in runs if r.method == m and r.weights)
                        for m in methods if any(r.method == m and r.weights for r in runs)},
    }
    return CompareResult(config=config, runs=runs, summary=summarize(runs, methods, configs, steps > 0),
                         seconds=time.perf_counter() - t_start, machine=machine_string())
