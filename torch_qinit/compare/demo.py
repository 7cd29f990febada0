"""The measurement behind `torch-qinit demo`: held-out architectures of the design space, each initializer
measured zero-shot and after a short QAT run by compare's loop (:func:`~torch_qinit.compare.runner.run_one`),
and the demo's tables and files. The command line (`torch_qinit.cli.demo`) only parses and prints.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..results import MAIN_METHODS, pyplot, write_csv
from .datasets import Data
from .errors import CompareError
from .runner import RunResult, parse_methods, run_one, summarize

__all__ = ["DemoConfig", "DemoData", "DemoRun", "DemoResult", "checkpoint_name", "output_stem", "load_ghns",
           "load_data", "arch_desc", "run_demo", "text_table", "summary_markdown", "write_outputs"]


@dataclass
class DemoConfig:
    """What `torch-qinit demo` measures (its command-line options); CompareError when one is out of range."""

    archs: int = 5
    qat_steps: int = 200
    eval_every: int = 0  # 0: qat_steps / 4
    bits: int = 4
    methods: list[str] = field(default_factory=lambda: list(MAIN_METHODS))
    batch_size: int = 128
    lr: float = 1e-3
    calib_batches: int = 20
    test_subset: int | None = None
    curve_subset: int | None = 2000
    seed: int = 0
    dataset: str = "fmnist"
    data_dir: str | None = None
    device: str = "cpu"  # where the models are initialized, trained and evaluated

    def __post_init__(self) -> None:
        from torch_qinit.modules import resolve_device
        from torch_qinit.space import SPLIT_SIZES

        self.methods = parse_methods(self.methods)  # CompareError naming the valid ones
        if not 1 <= self.archs <= SPLIT_SIZES["test"]:
            raise CompareError(f"--archs must be in 1..{SPLIT_SIZES['test']}")
        if not 2 <= self.bits <= 8 or self.qat_steps < 0 or self.batch_size < 1 or self.calib_batches < 1:
            raise CompareError("--bits must be in 2..8, --qat-steps >= 0, --batch-size and --calib-batches >= 1")
        try:
            self.device = str(resolve_device(self.device))
        except ValueError as exc:
            raise CompareError(f"--device: {exc}") from None

    @property
    def range_batches(self) -> int:
        """Activation-range calibration batches: the first half of the BN recalibration batches."""
        return max(1, self.calib_batches // 2)


@dataclass
class DemoData:
    """The demo's data: shuffled train batches, the test set, its curve subset and the calibration batches."""

    train: DataLoader
    test: DataLoader
    curve: DataLoader
    calib: list[tuple[torch.Tensor, torch.Tensor]]
    title: str
    seconds: float


@dataclass
class DemoRun:
    """One architecture and method: compare's record of it, plus the time its QAT took."""

    arch: int
    run: RunResult
    qat_seconds: float = 0.0


@dataclass
class DemoResult:
    """Everything one demo measured: the runs of every active method on every architecture."""

    cfg: DemoConfig
    data: DemoData
    archs: list[Any]  # the design-space ArchSpecs, test split 0..cfg.archs-1
    methods: list[str]  # as requested, missing checkpoints included
    ghns: dict[str, nn.Module]
    missing: dict[str, str]  # GHN method -> why its checkpoint could not be loaded
    runs: list[DemoRun]

    @property
    def active(self) -> list[str]:
        """The methods that ran (all but those whose checkpoint is missing)."""
        return [m for m in self.methods if m not in self.missing]

    def stats(self) -> dict[str, dict[str, Any]]:
        """compare's per-method summary (mean ± std over architectures) of the methods that ran."""
        rows = summarize([d.run for d in self.runs], self.active, [(self.cfg.bits, self.cfg.bits)],
                         trained=self.cfg.qat_steps > 0)
        return {r["method"]: r for r in rows}


def checkpoint_name(method: str, dataset: str) -> str:
    """The bundled checkpoint of a GHN method for a dataset: ``ghn-qat`` on Fashion-MNIST, ``ghn-qat-cifar10``..."""
    return method if dataset == "fmnist" else f"{method}-{dataset}"


def load_ghns(methods: list[str], dataset: str = "fmnist") -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Load the bundled GHN checkpoints the demo needs for `dataset`; a missing one is reported, not fatal.

    A checkpoint trained on other data is not substituted: it would measure the wrong thing.
    """
    from torch_qinit.hub import GHNLoadError, load_ghn
    from torch_qinit.initialize import GHN_METHODS

    ghns: dict[str, nn.Module] = {}
    missing: dict[str, str] = {}
    for m in methods:
        if m not in GHN_METHODS:
            continue
        name = checkpoint_name(m, dataset)
        try:
            ghns[m] = load_ghn(name)
        except (GHNLoadError, ValueError) as exc:
            missing[m] = f"{name}: {exc}"
    return ghns, missing


def _subset(ds: TensorDataset, n: int | None, seed: int) -> TensorDataset:
    """A seeded random subset of `n` examples; all of it for n None/<=0 (the options' "0: all")."""
    from torch_qinit.data import subset

    return subset(ds, n if n is not None and n > 0 else None, torch.Generator().manual_seed(seed))


def load_data(cfg: DemoConfig) -> DemoData:
    """Load the dataset (DatasetNotFoundError when it is missing) and fix the batches every method shares."""
    from torch_qinit.data import dataset_info, load_dataset

    t0 = time.perf_counter()
    train_ds = load_dataset(cfg.dataset, "train", cfg.data_dir)
    test_ds = _subset(load_dataset(cfg.dataset, "test", cfg.data_dir), cfg.test_subset, cfg.seed)
    # The curves only show the trend, so their many intermediate points use fewer images.
    curve_ds = _subset(test_ds, cfg.curve_subset, cfg.seed + 2)
    # One fixed list of train batches for every method's BN recalibration and range calibration.
    order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(cfg.seed + 1))
    calib = [(train_ds.tensors[0][i], train_ds.tensors[1][i])
             for i in order[:cfg.calib_batches * cfg.batch_size].split(cfg.batch_size)]
    # run_one reseeds this generator per architecture, so every method of an architecture gets the same batches.
    train = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                       generator=torch.Generator())
    return DemoData(train, DataLoader(test_ds, batch_size=512), DataLoader(curve_ds, batch_size=512), calib,
                    dataset_info(cfg.dataset).title, time.perf_counter() - t0)


def _seeded_build(spec: Any) -> Callable[[int], nn.Module]:
    def build(seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # build() draws PyTorch's default init; initialize_ replaces it
            return spec.build()
    return build


def run_demo(cfg: DemoConfig, data: DemoData, methods: list[str], ghns: dict[str, nn.Module],
             missing: dict[str, str], progress: bool = False) -> DemoResult:
    """Every method with a checkpoint on held-out architectures 0..cfg.archs-1 (seed ``cfg.seed * 1000 + arch``),
    each measured by :func:`run_one`."""
    from torch_qinit.data import dataset_info
    from torch_qinit.space import get_arch

    archs = [get_arch("test", i, dataset_info(cfg.dataset).input_shape[0]) for i in range(cfg.archs)]
    result = DemoResult(cfg, data, archs, list(methods), ghns, missing, [])
    eval_every = cfg.eval_every or max(1, cfg.qat_steps // 4)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(archs) * len(result.active), desc="demo", unit="run", dynamic_ncols=True)
    try:
        for i, spec in enumerate(archs):
            for m in result.active:
                if bar is not None:
                    bar.set_postfix_str(f"arch {i} {m}")
                run = RunResult(m, cfg.bits, cfg.bits, cfg.seed * 1000 + i)
                res = run_one(run, _seeded_build(spec), Data(data.train, data.test, data.title), data.calib,
                              steps=cfg.qat_steps, eval_every=eval_every, lr=cfg.lr, nan_patience=None,
                              weights=ghns.get(m), curve_data=data.curve, qat_seed=cfg.seed, device=cfg.device,
                              progress=progress,
                              desc=f"qat arch {i} {m}")
                result.runs.append(DemoRun(i, run, res.seconds if res is not None else 0.0))
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return result


def arch_desc(spec: Any) -> str:
    """A one-line description of a design-space architecture: stem, stages, activation, BN."""
    stages = " ".join(f"{s.block}{s.width}x{s.depth}k{s.kernel}" for s in spec.stages)
    return f"stem{spec.stem_width} {stages} {spec.act}{'' if spec.use_bn else ' noBN'}"


def _pct(mean: float, std: float) -> str:
    return "n/a" if math.isnan(mean) else f"{100 * mean:5.1f} ± {100 * std:4.1f} %"


def _qat_col(cfg: DemoConfig) -> str:
    return f"after {cfg.qat_steps}-step QAT" if cfg.qat_steps else "after QAT (skipped)"


def _arch_rows(result: DemoResult) -> list[tuple[int, int, list[str], str]]:
    """(index, parameters, zero-shot / after-QAT cells per active method, description) per architecture."""
    rows = []
    for i, spec in enumerate(result.archs):
        cells = []
        for m in result.active:
            r = next(d.run for d in result.runs if d.arch == i and d.run.method == m)
            zs_cell = f"{100 * r.zero_shot:.1f}"
            cells.append(f"{zs_cell} / {100 * r.final:.1f}" if result.cfg.qat_steps else zs_cell)
        rows.append((i, sum(p.numel() for p in spec.build().parameters()), cells, arch_desc(spec)))
    return rows


def text_table(result: DemoResult) -> str:
    """The table the demo prints: mean ± std per method, then every architecture's numbers."""
    cfg, stats = result.cfg, result.stats()
    lines = [f"W{cfg.bits}A{cfg.bits} test accuracy on {result.data.title}, mean ± std over {len(result.archs)} "
             f"held-out architectures (test split 0..{len(result.archs) - 1})", "",
             f"{'method':<16} {'zero-shot':>16}   {_qat_col(cfg):>20}"]
    for m in result.methods:
        if m not in stats:
            lines.append(f"{m:<16} {'n/a (checkpoint missing)':>38}")
            continue
        zs, qa = _pct(stats[m]["zero_shot_mean"], stats[m]["zero_shot_std"]), \
            _pct(stats[m]["final_mean"], stats[m]["final_std"])
        lines.append(f"{m:<16} {zs:>16}   {qa:>20}")
    lines += ["", "per architecture (zero-shot / after QAT, %):",
              f"  {'#':>2} {'params':>7}  " + "".join(f"{m:>16}" for m in result.active) + "   architecture"]
    lines += [f"  {i:>2} {n:>7}  " + "".join(f"{c:>16}" for c in cells) + f"   {desc}"
              for i, n, cells, desc in _arch_rows(result)]
    return "\n".join(lines)


def summary_markdown(result: DemoResult, footer: list[str]) -> str:
    """``summary.md``: the protocol, the tables, the GHN checkpoints used, then `footer` (command, machine...)."""
    cfg, data, stats = result.cfg, result.data, result.stats()
    md = ["| method | zero-shot | " + _qat_col(cfg) + " |", "|---|---|---|"]
    for m in result.methods:
        if m not in stats:
            md.append(f"| {m} | n/a (checkpoint missing) | n/a |")
            continue
        md.append(f"| {m} | {_pct(stats[m]['zero_shot_mean'], stats[m]['zero_shot_std']).strip()} | "
                  f"{_pct(stats[m]['final_mean'], stats[m]['final_std']).strip()} |")
    md += ["", "| # | params | " + " | ".join(result.active) + " | architecture |",
           "|---|---|" + "---|" * len(result.active) + "---|"]
    md += [f"| {i} | {n} | " + " | ".join(cells) + f" | {desc} |" for i, n, cells, desc in _arch_rows(result)]
    ghn_lines = [f"- {m}: `{getattr(g, 'source_id', '?')}` sha256 `{getattr(g, 'weights_sha256', '?')}`"
                 for m, g in result.ghns.items()] + [f"- {m}: checkpoint missing, not run" for m in result.missing]
    return "\n".join([
        f"# torch-qinit demo: W{cfg.bits}A{cfg.bits} on {data.title}", "",
        f"Zero-shot: initialize, recalibrate BN on {cfg.calib_batches} train batches, fold BN, fake-quantize, "
        f"calibrate ranges on {cfg.range_batches} train batches, test accuracy. QAT: {cfg.qat_steps} steps "
        f"(batch {cfg.batch_size}, Adam lr {cfg.lr:g}, BN unfolded, STE), test accuracy with the ranges "
        f"tracked in training. Test images: {len(data.test.dataset)} ({len(data.curve.dataset)} for the curve "
        "points in the _curves.csv file).", "",
        *md, "", "GHN checkpoints:", *(ghn_lines or ["- none requested"]), "",
        *footer, "",
    ])


def output_stem(dataset: str) -> str:
    """File names of a demo's outputs, as in benchmarks/results: ``demo`` (Fashion-MNIST), ``demo_cifar10``."""
    return "demo" if dataset == "fmnist" else f"demo_{dataset}"


def write_outputs(result: DemoResult, out: Path, summary_md: str, plot: bool = True) -> list[Path]:
    """Write STEM.csv, STEM_curves.csv, STEM.md and (with `plot` and matplotlib) STEM.png into `out`
    (STEM: `output_stem`, so a demo run with ``--out benchmarks/results`` writes the committed files);
    returns the written paths."""
    cfg = result.cfg
    out.mkdir(parents=True, exist_ok=True)
    stem = output_stem(cfg.dataset)
    bits = f"w{cfg.bits}a{cfg.bits}"
    written = [write_csv(out / f"{stem}.csv", [
        {"arch": d.arch, "arch_desc": arch_desc(result.archs[d.arch]), "method": d.run.method,
         f"zero_shot_{bits}": f"{d.run.zero_shot:.4f}", f"qat{cfg.qat_steps}_{bits}": f"{d.run.final:.4f}",
         "qat_seconds": f"{d.qat_seconds:.1f}", "ghn_fallback_params": d.run.fallback_params}
        for d in result.runs])]
    # Step 0 (the zero-shot accuracy, on the whole test set) is in STEM.csv; STEM_curves.csv holds the QAT points.
    written.append(write_csv(out / f"{stem}_curves.csv", [
        {"arch": d.arch, "method": d.run.method, "step": step, "accuracy": f"{acc:.4f}"}
        for d in result.runs for step, acc in d.run.curve if step > 0], columns=["arch", "method", "step", "accuracy"]))
    (out / f"{stem}.md").write_text(summary_md, encoding="utf-8")
    written.append(out / f"{stem}.md")
    if plot:
        png = _plot(out / f"{stem}.png", result)
        if png is not None:
            written.append(png)
    return written


def _plot(path: Path, result: DemoResult) -> Path | None:
    plt = pyplot()
    if plt is None:  # the caller says so (plotting is optional)
        return None
    cfg, stats = result.cfg, result.stats()
    shown = [m for m, r in stats.items() if not math.isnan(r["zero_shot_mean"])]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.38
    for k, (key, label) in enumerate((("zero_shot", "zero-shot"), ("final", f"after {cfg.qat_steps}-step QAT"))):
        means = [100 * stats[m][f"{key}_mean"] for m in shown]
        stds = [100 * stats[m][f"{key}_std"] for m in shown]
        xs = [i + (k - 0.5) * width for i in range(len(shown))]
        ax1.bar(xs, means, width, yerr=stds, capsize=3, label=label)
    ax1.set_xticks(range(len(shown)), shown)
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_ylim(0, 100)
    ax1.set_title(f"W{cfg.bits}A{cfg.bits}, mean ± std over {cfg.archs} held-out archs")
    ax1.legend(loc="upper right", fontsize=8)
    for m in shown:
        curve = stats[m]["curve"]  # step 0 is the zero-shot accuracy
        if len(curve) > 1:
            ax2.plot([s for s, _ in curve], [100 * v for _, v in curve], marker="o", ms=3, label=m)
    ax2.set_xlabel(f"QAT step (step 0: zero-shot; later points: {len(result.data.curve.dataset)} test images)")
    ax2.set_ylabel("test accuracy (%)")
    ax2.set_ylim(0, 100)
    ax2.set_title(f"W{cfg.bits}A{cfg.bits} QAT from each init (mean over archs)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
