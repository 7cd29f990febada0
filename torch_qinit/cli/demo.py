"""`torch-qinit demo` (`make demo`): does the starting point matter for 4-bit QAT?

On Fashion-MNIST (or CIFAR-10 with --dataset cifar10), for a few held-out architectures of the
design space (`get_arch("test", i)`), each initializer (GHN-QAT, float GHN, He normal, Glorot
uniform) is measured twice at WbAb:

* zero-shot: initialize, recalibrate BN, fold BN, fake-quantize, test accuracy (ARCHITECTURE.md §4);
* after a short QAT run from that init (`torch_qinit.qat.qat_finetune`, same batches for every method).

It prints a table (mean ± std over architectures) and writes CSV, Markdown and a PNG to --out.
Defaults fit in a few minutes on 2 CPU cores.

    torch-qinit demo
    torch-qinit demo --archs 3 --qat-steps 100 --out /tmp/demo
    torch-qinit demo --dataset cifar10 --data-dir ~/data/cifar-10-batches-py
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from torch_qinit.data.registry import DATASET_NAMES
from torch_qinit.initialize import GHN_METHODS
from torch_qinit.results import MAIN_METHODS, machine_string, mean_std, write_csv

__all__ = ["main", "build_parser", "checkpoint_name", "DEFAULT_METHODS"]

DEFAULT_METHODS = MAIN_METHODS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torch-qinit demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", type=int, default=5, help="held-out test-split architectures 0..N-1 (default 5)")
    p.add_argument("--qat-steps", type=int, default=200, help="QAT steps from each init (default 200)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="test accuracy every N QAT steps for the curves (default: qat-steps / 4)")
    p.add_argument("--bits", type=int, default=4, help="weight and activation bits, 2..8 (default 4)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated initializers (default {','.join(DEFAULT_METHODS)}; "
                        "see `torch-qinit info` for all)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the QAT runs")
    p.add_argument("--calib-batches", type=int, default=20,
                   help="train batches for zero-shot BN recalibration; the first half also calibrates "
                        "activation ranges (default 20)")
    p.add_argument("--test-subset", type=int, default=None,
                   help="evaluate on a seeded random subset of this many test images (default: all 10000)")
    p.add_argument("--curve-subset", type=int, default=2000,
                   help="test images for the intermediate points of the QAT curves (default 2000; 0: the full "
                        "test set); zero-shot and final accuracies always use the whole test set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", choices=DATASET_NAMES, default="fmnist",
                   help="fmnist (1x28x28, default) or cifar10 (3x32x32; uses the ghn-qat-cifar10/ghn-cifar10 "
                        "checkpoints)")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder: Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist); "
                        "CIFAR-10 python/binary batches, image folder or .tar.gz (default "
                        "$TORCH_QINIT_CIFAR10_DIR, then what `make cifar10` prepared)")
    p.add_argument("--weights-dir", default=None,
                   help="folder holding the ghn-qat/ and ghn/ checkpoints (ghn-qat-cifar10/ and ghn-cifar10/ "
                        "for CIFAR-10; sets TORCH_QINIT_WEIGHTS_DIR; default: the bundled weights)")
    p.add_argument("--out", default="demo_results", help="output folder (default ./demo_results)")
    # One thread by default: the demo's nets are tiny (<= 0.1M parameters, 28x28 inputs), so intra-op
    # threads gain little, while oversubscribed cores (any other busy process) made 2 threads 3-4x slower.
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch's default)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


@dataclass
class Run:
    arch: int
    method: str
    zero_shot: float = math.nan
    qat: float = math.nan
    curve: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    fallback: int = 0


def _arch_desc(spec: Any) -> str:
    stages = " ".join(f"{s.block}{s.width}x{s.depth}k{s.kernel}" for s in spec.stages)
    return f"stem{spec.stem_width} {stages} {spec.act}{'' if spec.use_bn else ' noBN'}"


def _pct(mean: float, std: float) -> str:
    return "n/a" if math.isnan(mean) else f"{100 * mean:5.1f} ± {100 * std:4.1f} %"


def _subset(ds: Any, n: int | None, seed: int) -> Any:
    """A seeded random subset of `n` examples (`torch_qinit.data.subset`); all of it for n None/<=0."""
    from torch_qinit.data import subset

    return subset(ds, n if n is not None and n > 0 else None, torch.Generator().manual_seed(seed))


def checkpoint_name(method: str, dataset: str) -> str:
    """The bundled checkpoint of a GHN method for a dataset: ``ghn-qat`` on Fashion-MNIST, ``ghn-qat-cifar10``..."""
    return method if dataset == "fmnist" else f"{method}-{dataset}"


def _load_ghns(methods: list[str], dataset: str = "fmnist") -> tuple[dict[str, torch.nn.Module], dict[str, str]]:
    """Load the bundled GHN checkpoints the demo needs for `dataset`; a missing one is reported, not fatal.

    A checkpoint trained on other data is not substituted: it would measure the wrong thing.
    """
    from torch_qinit.hub import GHNLoadError, load_ghn

    ghns: dict[str, torch.nn.Module] = {}
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


def _write_outputs(out: Path, runs: list[Run], methods: list[str], archs: list[Any], args: argparse.Namespace,
                   summary_md: str, plot: bool, curve_images: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    bits = f"w{args.bits}a{args.bits}"
    written.append(write_csv(out / "results.csv", [
        {"arch": r.arch, "arch_desc": _arch_desc(archs[r.arch]), "method": r.method,
         f"zero_shot_{bits}": f"{r.zero_shot:.4f}", f"qat{args.qat_steps}_{bits}": f"{r.qat:.4f}",
         "qat_seconds": f"{r.seconds:.1f}", "ghn_fallback_params": r.fallback} for r in runs]))
    written.append(write_csv(out / "curves.csv", [
        {"arch": r.arch, "method": r.method, "step": step, "accuracy": f"{acc:.4f}"}
        for r in runs for step, acc in r.curve], columns=["arch", "method", "step", "accuracy"]))
    (out / "summary.md").write_text(summary_md, encoding="utf-8")
    written.append(out / "summary.md")
    if plot:
        png = _plot(out / "demo.png", runs, methods, args, curve_images)
        if png is not None:
            written.append(png)
    return written


def _plot(path: Path, runs: list[Run], methods: list[str], args: argparse.Namespace,
          curve_images: int) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the PNG (pip install 'torch_qinit[plot]')")
        return None
    shown = [m for m in methods if any(r.method == m and not math.isnan(r.zero_shot) for r in runs)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.38
    for k, (key, label) in enumerate((("zero_shot", "zero-shot"), ("qat", f"after {args.qat_steps}-step QAT"))):
        stats = [mean_std([getattr(r, key) for r in runs if r.method == m], skip_nan=True) for m in shown]
        xs = [i + (k - 0.5) * width for i in range(len(shown))]
        ax1.bar(xs, [100 * s[0] for s in stats], width, yerr=[100 * s[1] for s in stats], capsize=3, label=label)
    ax1.set_xticks(range(len(shown)), shown)
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_ylim(0, 100)
    ax1.set_title(f"W{args.bits}A{args.bits}, mean ± std over {args.archs} held-out archs")
    ax1.legend(loc="upper right", fontsize=8)
    for m in shown:
        curves = [r.curve for r in runs if r.method == m and r.curve]
        if not curves:
            continue
        zs = mean_std([r.zero_shot for r in runs if r.method == m], skip_nan=True)[0]
        steps = [s for s, _ in curves[0]]
        mean = [sum(c[i][1] for c in curves) / len(curves) for i in range(len(steps))]
        ax2.plot([0] + steps, [100 * zs] + [100 * v for v in mean], marker="o", ms=3, label=m)
    ax2.set_xlabel(f"QAT step (step 0: zero-shot; later points: {curve_images} test images)")
    ax2.set_ylabel("test accuracy (%)")
    ax2.set_ylim(0, 100)
    ax2.set_title(f"W{args.bits}A{args.bits} QAT from each init (mean over archs)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t_start = time.perf_counter()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.weights_dir:
        os.environ["TORCH_QINIT_WEIGHTS_DIR"] = str(Path(args.weights_dir).expanduser())

    import torch_qinit
    from torch_qinit.data import DatasetNotFoundError, dataset_info, load_dataset
    from torch_qinit.evaluation import evaluate
    from torch_qinit.hub import bundled_weights_dir
    from torch_qinit.initialize import FALLBACK_METHOD
    from torch_qinit.qat import qat_accuracy, qat_finetune
    from torch_qinit.space import SPLIT_SIZES, get_arch
    from torch.utils.data import DataLoader

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in torch_qinit.methods()]
    if unknown or not methods:
        print(f"error: unknown method(s) {unknown}; choose from {', '.join(torch_qinit.methods())}",
              file=sys.stderr)
        return 2
    if not 1 <= args.archs <= SPLIT_SIZES["test"]:
        print(f"error: --archs must be in 1..{SPLIT_SIZES['test']}", file=sys.stderr)
        return 2
    if not 2 <= args.bits <= 8 or args.qat_steps < 0 or args.batch_size < 1 or args.calib_batches < 1:
        print("error: --bits must be in 2..8, --qat-steps >= 0, --batch-size and --calib-batches >= 1",
              file=sys.stderr)
        return 2
    eval_every = args.eval_every or max(1, args.qat_steps // 4)
    n_range = max(1, args.calib_batches // 2)  # activation-range calibration batches
    progress = not args.no_progress
    info = dataset_info(args.dataset)
    title = info.title

    # --- data
    t0 = time.perf_counter()
    try:
        train_ds = load_dataset(args.dataset, "train", args.data_dir)
        test_ds = load_dataset(args.dataset, "test", args.data_dir)
    except DatasetNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    test_ds = _subset(test_ds, args.test_subset, args.seed)
    test_loader = DataLoader(test_ds, batch_size=512)
    # The curves only show the trend, so their many intermediate points use fewer images.
    curve_ds = _subset(test_ds, args.curve_subset, args.seed + 2)
    curve_loader = DataLoader(curve_ds, batch_size=512)
    # One fixed list of train batches for every method's BN recalibration and range calibration.
    calib_order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(args.seed + 1))
    calib = [(train_ds.tensors[0][i], train_ds.tensors[1][i])
             for i in calib_order[:args.calib_batches * args.batch_size].split(args.batch_size)]
    t_data = time.perf_counter() - t0

    # --- GHN checkpoints
    ghns, missing = _load_ghns(methods, args.dataset)
    print(f"torch_qinit demo: W{args.bits}A{args.bits} on {title} ({len(train_ds)} train / {len(test_ds)} "
          f"test images, loaded in {t_data:.1f} s), {args.archs} held-out architectures, "
          f"{args.qat_steps}-step QAT (batch {args.batch_size}, Adam lr {args.lr:g}), torch threads "
          f"{torch.get_num_threads()}")
    for m, ghn in ghns.items():
        steps = (ghn.config.training or {}).get("steps")
        trained = f"{steps} training steps" if steps else "training not recorded"
        shape = "x".join(map(str, ghn.config.input_shape))
        print(f"  {m}: {getattr(ghn, 'source_id', '?')} (sha256 {str(getattr(ghn, 'weights_sha256', ''))[:12]}, "
              f"{trained}, trained on {shape} input)")
    for m, why in missing.items():
        print(f"  {m}: MISSING, skipped ({why})")
    if missing:
        folders = " and ".join(f"{checkpoint_name(m, args.dataset)}/" for m in GHN_METHODS)
        print(f"  -> {', '.join(missing)} not run; the other methods still run. Bundled checkpoints live in "
              f"{bundled_weights_dir()}; --weights-dir DIR uses a folder holding {folders} instead.")
    active = [m for m in methods if m not in missing]
    if not active:
        print("error: no method left to run", file=sys.stderr)
        return 1

    archs = [get_arch("test", i, info.input_shape[0]) for i in range(args.archs)]
    runs: list[Run] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(archs) * len(active), desc="demo", unit="run", dynamic_ncols=True)
    try:
        for i, spec in enumerate(archs):
            for m in active:
                if bar is not None:
                    bar.set_postfix_str(f"arch {i} {m}")
                run = Run(i, m)
                torch.manual_seed(args.seed * 1000 + i)  # build() draws PyTorch's default init; then replaced
                model = spec.build()
                g = torch.Generator().manual_seed(args.seed * 1000 + i)
                report = torch_qinit.initialize_(model, bits=args.bits, method=m, weights=ghns.get(m), generator=g)
                run.fallback = report.num_fallback
                run.zero_shot = evaluate(model, args.bits, test_loader, calib_loader=calib,
                                         recal_batches=args.calib_batches, calib_batches=n_range)
                if args.qat_steps:
                    # Same seeded batch order for every method of an architecture.
                    loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                        generator=torch.Generator().manual_seed(args.seed * 1000 + i))
                    res = qat_finetune(model, args.bits, loader, steps=args.qat_steps, lr=args.lr,
                                       eval_fn=lambda q: qat_accuracy(q, curve_loader), eval_every=eval_every,
                                       generator=torch.Generator().manual_seed(args.seed), progress=progress,
                                       desc=f"qat arch {i} {m}")
                    run.curve, run.seconds = res.curve, res.seconds
                    run.qat = qat_accuracy(res.model, test_loader)  # ranges and BN stats tracked in training
                runs.append(run)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    # --- report
    total = time.perf_counter() - t_start
    qat_col = f"after {args.qat_steps}-step QAT" if args.qat_steps else "after QAT (skipped)"
    lines = [f"W{args.bits}A{args.bits} test accuracy on {title}, mean ± std over {len(archs)} held-out "
             f"architectures (test split 0..{len(archs) - 1})", "",
             f"{'method':<16} {'zero-shot':>16}   {qat_col:>20}"]
    md = ["| method | zero-shot | " + qat_col + " |", "|---|---|---|"]
    for m in methods:
        if m in missing:
            lines.append(f"{m:<16} {'n/a (checkpoint missing)':>38}")
            md.append(f"| {m} | n/a (checkpoint missing) | n/a |")
            continue
        zs = mean_std([r.zero_shot for r in runs if r.method == m], skip_nan=True)
        qa = mean_std([r.qat for r in runs if r.method == m], skip_nan=True)
        lines.append(f"{m:<16} {_pct(*zs):>16}   {_pct(*qa):>20}")
        md.append(f"| {m} | {_pct(*zs).strip()} | {_pct(*qa).strip()} |")
    lines += ["", "per architecture (zero-shot / after QAT, %):"]
    header = f"  {'#':>2} {'params':>7}  " + "".join(f"{m:>16}" for m in active) + "   architecture"
    lines.append(header)
    md_arch = ["| # | params | " + " | ".join(active) + " | architecture |",
               "|---|---|" + "---|" * len(active) + "---|"]
    for i, spec in enumerate(archs):
        n_params = sum(p.numel() for p in spec.build().parameters())
        cells = []
        for m in active:
            r = next(r for r in runs if r.arch == i and r.method == m)
            zs_cell = f"{100 * r.zero_shot:.1f}"
            cells.append(f"{zs_cell} / {100 * r.qat:.1f}" if args.qat_steps else zs_cell)
        lines.append(f"  {i:>2} {n_params:>7}  " + "".join(f"{c:>16}" for c in cells) + f"   {_arch_desc(spec)}")
        md_arch.append(f"| {i} | {n_params} | " + " | ".join(cells) + f" | {_arch_desc(spec)} |")
    fallbacks = {r.method: r.fallback for r in runs if r.method in GHN_METHODS and r.fallback}
    if fallbacks:
        lines.append(f"  note: parameters the GHN could not serve got the {FALLBACK_METHOD} "
                     f"fallback: {fallbacks}")
    table = "\n".join(lines)
    print()
    print(table)

    command = "torch-qinit demo " + " ".join(shlex.quote(a) for a in argv)
    machine = machine_string()
    ghn_lines = [f"- {m}: `{getattr(g, 'source_id', '?')}` sha256 `{getattr(g, 'weights_sha256', '?')}`"
                 for m, g in ghns.items()] + [f"- {m}: checkpoint missing, not run" for m in missing]
    summary_md = "\n".join([
        f"# torch-qinit demo: W{args.bits}A{args.bits} on {title}", "",
        f"Zero-shot: initialize, recalibrate BN on {args.calib_batches} train batches, fold BN, fake-quantize, "
        f"calibrate ranges on {n_range} train batches, test accuracy. QAT: {args.qat_steps} steps "
        f"(batch {args.batch_size}, Adam lr {args.lr:g}, BN unfolded, STE), test accuracy with the ranges "
        f"tracked in training. Test images: {len(test_ds)} ({len(curve_ds)} for the curve "
        "points in curves.csv).", "",
        *md, "", *md_arch, "", "GHN checkpoints:", *(ghn_lines or ["- none requested"]), "",
        f"- command: `{command}`", f"- machine: {machine}", f"- total time: {total:.0f} s",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
    ])
    written = _write_outputs(Path(args.out), runs, methods, archs, args, summary_md,
                             plot=not args.no_plot, curve_images=len(curve_ds))
    print("wrote " + ", ".join(str(p) for p in written))
    total = time.perf_counter() - t_start
    print(f"total time {total / 60:.1f} min ({total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
