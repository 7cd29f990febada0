"""QAT from each initialization (ARCHITECTURE.md §4, the headline benchmark).

The same held-out architectures (``get_arch("test", i)``) are trained with quantization-aware
training at W4A4 and W2A2 from each initializer, for a fixed step budget; the quantized test
accuracy is measured every K steps on a fixed test subset, including step 0 (zero-shot).

Reported: mean accuracy curves per method (one panel per bit-width), final accuracy mean ± std,
and steps-to-target: how many steps each init needs to reach the final accuracy of the best
classic initializer.

Outputs (``NAME.quick.*`` with ``--quick``): ``qat_from_init.csv`` (one row per run),
``qat_from_init_curves.csv`` (every evaluation), ``qat_from_init_summary.csv`` (per bits x method),
``qat_from_init.png`` and ``qat_from_init.md``; with ``--dataset cifar10`` the same as
``qat_from_init_cifar10*``.

    torch-qinit bench qat_from_init --quick
    torch-qinit bench qat_from_init                    # full run, ~40 min on 1 thread
    torch-qinit bench qat_from_init --dataset cifar10 [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import logging
import math
import statistics
import time
import warnings
from collections import defaultdict
from typing import Any

import torch

from benchmarks import results
from benchmarks.common import (
    GHN_METHODS,
    METHODS_MAIN,
    bench_context,
    classic_methods,
    common_args,
    dataset_title,
    fixed_batches,
    ghn_unavailable_reason,
    in_channels,
    init_model,
    load_data,
    mean_std,
    resolve_seeds,
    result_name,
)

__all__ = ["main", "run_one", "read_runs", "mean_curves", "first_reach", "analyse"]

NAME = "qat_from_init"
logger = logging.getLogger(__name__)

#: Defaults per mode.  Full: 10 held-out archs x 2 bit-widths x 4 methods x 2 seeds = 160 QAT runs.
MODE = {
    "quick": {"archs": [2], "bits": [4, 2], "methods": ["ghn-qat", "he_normal"], "steps": 4, "eval_every": 2,
              "recal_batches": 2, "test_size": 128},
    "full": {"archs": list(range(10)), "bits": [4, 2], "methods": METHODS_MAIN, "steps": 100, "eval_every": 20,
             "recal_batches": 10, "test_size": 500},
}


def run_one(arch: int, bits: int, method: str, seed: int, args, train_loader, test_loader,
            recal: list[Any]) -> tuple[dict, list[tuple[int, float]], list[float]]:
    """Init, BN recalibration, step-0 accuracy, then QAT; returns (row, curve, losses)."""
    from torch_qinit.evaluation import accuracy, recalibrate_bn
    from torch_qinit.qat import qat_accuracy, qat_finetune
    from torch_qinit.quant import quantize_model

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # --logit-std caps a GHN prediction's logits (initialize_'s logit_std); classic inits take no cap
        # ("none": the uncapped prediction; not given: initialize_'s default)
        cap = getattr(args, "logit_std", None)
        extra = {"logit_std": None if cap == "none" else cap} if cap is not None and method in GHN_METHODS else {}
        device = getattr(args, "device", "cpu")
        where = (getattr(args, "split", "test"), arch, in_channels(getattr(args, "dataset", "fmnist")))
        model, report = init_model(where, method, seed=seed, bits=bits, device=device, **extra)
    # Step 0 = zero-shot: BN statistics re-estimated on training batches (no gradient), activation
    # ranges calibrated, quantized exactly as QAT quantizes (BN kept, not folded).
    recalibrate_bn(model, recal)
    q0 = quantize_model(model, w_bits=bits, fold_bn=False, calib_data=recal).eval()
    acc0 = accuracy(q0, test_loader, device)
    del q0
    train_loader.generator.manual_seed(seed)  # the seed sets the data order as well as the init draw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped non-finite steps are counted in the row instead
        res = qat_finetune(model, bits, train_loader, steps=args.steps, lr=args.lr,
                           optimizer=getattr(args, "optimizer", "adam"),
                           eval_fn=lambda q: qat_accuracy(q, test_loader), eval_every=args.eval_every,
                           generator=torch.Generator().manual_seed(seed),
                           clip_grad_norm=getattr(args, "clip_grad", None))
    curve = [(0, acc0)] + [(int(s), float(a)) for s, a in res.curve]
    finite = [v for v in res.losses if math.isfinite(v)]
    row = {
        "arch": arch, "bits": bits, "method": method, "seed": seed, "steps": args.steps,
        "params": sum(p.numel() for p in model.parameters()),
        "ghn_share": round(sum(s == "ghn" for s in report.sources.values()) / max(1, len(report.sources)), 3),
        "acc_step0": acc0, "final_acc": curve[-1][1], "best_acc": max(a for _, a in curve),
        "final_loss": (sum(finite[-10:]) / len(finite[-10:])) if finite else math.nan,
        "skipped_steps": res.skipped_steps, "clipped_steps": res.clipped_steps,
        "seconds": round(time.perf_counter() - t0, 2), "device": str(device),
        "status": "ok",
    }
    return row, curve, list(res.losses)


def read_runs(paths: list[str]) -> tuple[list[dict], list[dict]]:
    """(rows, curve rows) recorded by earlier runs: each ``NAME[.quick].csv`` and ``NAME_curves[.quick].csv`` beside it,
    typed as :func:`run_one` returns them.  ValueError when two files hold the same run."""
    import csv
    from pathlib import Path

    def typed(r: dict, ints: tuple[str, ...], floats: tuple[str, ...]) -> dict:
        out = dict(r)
        for k in ints:
            if out.get(k) not in (None, ""):
                out[k] = int(out[k])
        for k in floats:
            out[k] = float(out[k]) if out.get(k) not in (None, "") else math.nan
        return out

    rows: list[dict] = []
    curve_rows: list[dict] = []
    seen: dict[tuple, str] = {}
    for p in map(Path, paths):
        stem, _, ext = p.name.partition(".")  # NAME.csv or NAME.quick.csv
        curves = p.with_name(f"{stem}_curves.{ext}")
        with p.open() as f:
            new = [typed(r, ("arch", "bits", "seed", "steps", "params", "skipped_steps", "clipped_steps"),
                         ("acc_step0", "final_acc", "best_acc", "final_loss", "seconds", "ghn_share"))
                   for r in csv.DictReader(f)]
        for r in new:
            key = (r["arch"], r["bits"], r["method"], r["seed"])
            if key in seen:
                raise ValueError(f"arch {key[0]} W{key[1]} {key[2]} seed {key[3]} is in both {seen[key]} and {p}")
            seen[key] = str(p)
        rows += new
        with curves.open() as f:
            curve_rows += [typed(r, ("arch", "bits", "seed", "step"), ("acc",)) for r in csv.DictReader(f)]
    return rows, curve_rows


# --------------------------------------------------------------------------- analysis


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def mean_curves(curve_rows: list[dict], key=("bits", "method")) -> dict[tuple, dict[int, float]]:
    """{key: {step: mean accuracy}} over every run (arch x seed) sharing `key`."""
    acc: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in curve_rows:
        acc[tuple(r[k] for k in key)][r["step"]].append(r["acc"])
    return {k: {s: statistics.fmean(v) for s, v in sorted(d.items())} for k, d in acc.items()}


def first_reach(curve: dict[int, float], target: float) -> int | None:
    """The first evaluated step whose accuracy is >= target (None: not reached)."""
    for step, a in sorted(curve.items()):
        if a >= target - 1e-12:
            return step
    return None


def analyse(rows: list[dict], curve_rows: list[dict], bits_list: list[int], methods: list[str]) -> list[dict]:
    """Per (bits, method): zero-shot and final accuracy mean ± std, steps-to-target, wins."""
    ok = [r for r in rows if r.get("status") == "ok"]
    classic = [m for m in methods if m not in GHN_METHODS]
    curves = mean_curves(curve_rows)
    arch_curves = mean_curves(curve_rows, key=("bits", "method", "arch"))  # seed-mean per arch
    archs = sorted({r["arch"] for r in ok})
    out = []
    for bits in bits_list:
        final = {m: [r["final_acc"] for r in ok if r["bits"] == bits and r["method"] == m] for m in methods}
        means = {m: mean_std(v)[0] for m, v in final.items() if v}
        best_classic = max((m for m in classic if m in means), key=lambda m: means[m], default=None)
        target = means[best_classic] if best_classic else math.nan
        # Per architecture: target = the best classic init's seed-mean final accuracy on that arch.
        arch_final = {(a, m): c[max(c)] for (b, m, a), c in arch_curves.items() if b == bits}
        arch_target = {a: max((arch_final[(a, m)] for m in classic if (a, m) in arch_final), default=math.nan)
                       for a in archs}
        winners = [max((m for m in methods if (a, m) in arch_final), key=lambda m: arch_final[(a, m)])
                   for a in archs if any((a, m) in arch_final for m in methods)]
        for m in methods:
            rs = [r for r in ok if r["bits"] == bits and r["method"] == m]
            if not rs:
                continue
            zs_mu, zs_sd = mean_std(r["acc_step0"] for r in rs)
            fi_mu, fi_sd = mean_std(r["final_acc"] for r in rs)
            reach = first_reach(curves.get((bits, m), {}), target) if not _isnan(target) else None
            per_arch = [first_reach(arch_curves[(bits, m, a)], arch_target[a]) for a in archs
                        if (bits, m, a) in arch_curves and not _isnan(arch_target[a])]
            reached = [s for s in per_arch if s is not None]
            out.append({
                "bits": bits, "method": m, "runs": len(rs),
                "zero_shot_mean": zs_mu, "zero_shot_std": zs_sd,
                "final_mean": fi_mu, "final_std": fi_sd,
                "target": target, "target_method": best_classic or "",
                "steps_to_target": reach if reach is not None else "not reached",
                "archs_reached": f"{len(reached)}/{len(per_arch)}",
                "median_steps_reached": statistics.median(reached) if reached else "",
                "wins": sum(w == m for w in winners),
                "skipped_steps": sum(r.get("skipped_steps", 0) for r in rs),
            })
    return out


def plot(curve_rows: list[dict], summary: list[dict], bits_list: list[int], methods: list[str], quick: bool,
         name: str = NAME, title: str = "Fashion-MNIST"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = mean_curves(curve_rows)
    fig, axes = plt.subplots(1, len(bits_list), figsize=(5.2 * len(bits_list), 3.8), squeeze=False, sharey=False)
    for ax, bits in zip(axes[0], bits_list):
        for m in methods:
            c = curves.get((bits, m))
            if not c:
                continue
            style = "-" if m in GHN_METHODS else "--"
            ax.plot(list(c), [a * 100 for a in c.values()], style, marker="o", ms=3, label=m)
        tgt = next((s["target"] for s in summary if s["bits"] == bits and not _isnan(s["target"])), None)
        if tgt is not None:
            ax.axhline(tgt * 100, color="grey", lw=0.8, ls=":", label="target (best classic, final)")
        ax.set_title(f"W{bits}A{bits} QAT")
        ax.set_xlabel("QAT step")
        ax.set_ylabel("quantized test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    n_runs = len({(r["arch"], r["seed"]) for r in curve_rows})
    fig.suptitle(f"QAT from each init on held-out architectures, {title} (mean over {n_runs} arch x seed runs)")
    path = results.save_figure(fig, name, quick)
    plt.close(fig)
    return path


def _pm(mu: float, sd: float) -> str:
    return "n/a" if _isnan(mu) else f"{mu * 100:.1f} ± {sd * 100:.1f}"


def _step_count(x: float | str) -> str:
    """A median step count as the table shows it: 390, or 35.0 between two evaluated steps ('' stays '')."""
    if isinstance(x, str):
        return x
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def reading(summary: list[dict], bits_list: list[int], n_archs: int) -> str:
    out = []
    for bits in bits_list:
        ss = [s for s in summary if s["bits"] == bits]
        if not ss:
            continue
        by_final = sorted(ss, key=lambda s: -s["final_mean"])
        by_zero = sorted(ss, key=lambda s: -s["zero_shot_mean"])
        top, second = by_final[0], (by_final[1] if len(by_final) > 1 else None)
        gap = f"; {(top['final_mean'] - second['final_mean']) * 100:.1f} pp ahead of {second['method']}" \
            if second else ""
        noise = f" (run-to-run std {top['final_std'] * 100:.1f} pp)"
        out.append(
            f"- **W{bits}A{bits}**: best final accuracy {top['method']} {top['final_mean'] * 100:.1f}%{gap}{noise}. "
            f"Best zero-shot (step 0): {by_zero[0]['method']} {by_zero[0]['zero_shot_mean'] * 100:.1f}%. "
            + ("Steps to the best classic init's final accuracy "
               f"({ss[0]['target'] * 100:.1f}%, {ss[0]['target_method']}): "
               + ", ".join(f"{s['method']} {s['steps_to_target']}" for s in ss) + ". "
               if not _isnan(ss[0]["target"]) else "No classic init ran, so no steps-to-target. ")
            + "Per-arch wins: "
            + ", ".join(f"{s['method']} {s['wins']}" for s in ss) + f" of {n_archs}.")
    return "\n".join(out)


def _logit_std_arg(text: str) -> float | str:
    """--logit-std: a number, or "none" (no cap)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'none', got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torch-qinit bench qat_from_init", description=__doc__.split("\n\n")[0])
    common_args(parser)
    parser.add_argument("--archs", type=int, nargs="+", default=None,
                        help="indices into the held-out 'test' split (full: 0..9; quick: 2)")
    parser.add_argument("--bits", type=int, nargs="+", default=None, help="QAT bit-widths (default 4 2)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help=f"initializers (full: {' '.join(METHODS_MAIN)}; quick: ghn-qat he_normal)")
    parser.add_argument("--steps", type=int, default=None, help="QAT steps (full 100, quick 4)")
    parser.add_argument("--eval-every", type=int, default=None, help="evaluation period K in steps (full 20)")
    parser.add_argument("--split", choices=["test", "classic"], default="test",
                        help="held-out split the --archs index: 'test' (sampled) or 'classic' (hand-written families)")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                        help="QAT optimizer: Adam, or SGD with Nesterov momentum 0.9")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: Adam 1e-3, SGD 0.02)")
    parser.add_argument("--logit-std", type=_logit_std_arg, default=None, metavar="V|none",
                        help="GHN methods only: initialize_(..., logit_std=V), which caps the predicted logits' std, "
                             "or 'none' for no cap (default: initialize_'s default, logit_std='auto'); results get "
                             "a _logitV / _logitnone suffix")
    parser.add_argument("--clip-grad", type=float, default=None, metavar="NORM",
                        help="clip every QAT step's gradient to this total norm, for every start (qat_finetune's "
                             "clip_grad_norm; default: no clipping); results get a _clipNORM suffix")
    parser.add_argument("--recal-batches", type=int, default=None, help="BN recalibration / calibration batches")
    parser.add_argument("--train-size", type=int, default=None, help="train subset (0 = all; default per mode)")
    parser.add_argument("--test-size", type=int, default=None, help="test subset for the curves (full 500)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="CSV",
                        help="report the runs recorded in these earlier results (NAME.csv, with NAME_curves.csv "
                             "beside each) instead of running: for one benchmark split across processes or "
                             "machines; give the same --split/--optimizer/--steps/--lr/--eval-every they ran with")
    args = parser.parse_args(argv)
    from torch_qinit.space import SPLIT_SIZES

    mode = MODE["quick" if args.quick else "full"]
    archs = args.archs if args.archs is not None else mode["archs"]
    bits_list = args.bits or mode["bits"]
    args.steps = args.steps if args.steps is not None else mode["steps"]
    args.eval_every = args.eval_every if args.eval_every is not None else mode["eval_every"]
    recal_n = args.recal_batches or mode["recal_batches"]
    test_size = args.test_size if args.test_size is not None else mode["test_size"]
    if args.lr is None:
        args.lr = 1e-3 if args.optimizer == "adam" else 0.02
    if args.split == "classic" and args.archs is None:
        archs = list(range(SPLIT_SIZES["classic"])) if not args.quick else [0]
    if any(not 0 <= a < SPLIT_SIZES[args.split] for a in archs):
        parser.error(f"--archs must be in 0..{SPLIT_SIZES[args.split] - 1}")
    if any(not 2 <= b <= 8 for b in bits_list):
        parser.error("--bits must be in 2..8")
    methods = args.methods or list(mode["methods"])
    known = set(classic_methods()) | set(GHN_METHODS)
    if any(m not in known for m in methods):
        parser.error(f"unknown method(s) {[m for m in methods if m not in known]}; choose from {sorted(known)}")
    seeds = resolve_seeds(args, quick=(0,), full=(0, 1))
    name, title, in_ch = result_name(NAME, args.dataset), dataset_title(args.dataset), in_channels(args.dataset)
    # other splits/optimizers get their own files, so the default run's results stay
    name += "".join(f"_{v}" for v, default in ((args.split, "test"), (args.optimizer, "adam")) if v != default)
    if args.logit_std is not None:
        from torch_qinit.ghn.calibration import check_logit_std

        if args.logit_std != "none":
            try:  # the library's one rule (positive, finite), refused before any run starts
                check_logit_std(args.logit_std)
            except ValueError as exc:
                parser.error(f"--logit-std: {exc}")
        name += f"_logit{args.logit_std:g}" if args.logit_std != "none" else "_logitnone"
    if args.clip_grad is not None:
        if not (math.isfinite(args.clip_grad) and args.clip_grad > 0):
            parser.error(f"--clip-grad must be a positive number, got {args.clip_grad}")
        name += f"_clip{args.clip_grad:g}"

    notes = []
    if args.clip_grad is not None:
        notes.append(f"- Every QAT run clips its gradient to total norm {args.clip_grad:g} "
                     "(`qat_finetune(..., clip_grad_norm=...)`); `clipped_steps` in the CSV counts the steps it cut.")
    for m in list(methods):
        why = ghn_unavailable_reason(m)
        if why:
            notes.append(f"- `{m}` skipped: its GHN weights could not be loaded ({why}).")
            print(f"[qat_from_init] skipping {m}: {why}")
            methods.remove(m)
    if args.logit_std == "none":
        notes.append("- GHN starts use `initialize_(..., logit_std=None)`: the predicted logit layer keeps the GHN's "
                     "scale (no cap; the default caps its output std at 1).")
    elif args.logit_std is not None:
        notes.append(f"- GHN starts use `initialize_(..., logit_std={args.logit_std:g})`: the calibration pass caps "
                     "the predicted logit layer's output std at that value (classic starts are unchanged).")

    rows: list[dict] = []
    curve_rows: list[dict] = []
    if args.merge:
        try:
            rows, curve_rows = read_runs(args.merge)
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"--merge: {exc}")
        archs = sorted({r["arch"] for r in rows})
        bits_list = sorted({r["bits"] for r in rows}, reverse=True)
        recorded = list(dict.fromkeys(r["method"] for r in rows))  # in the order asked for, then the rest
        methods = [m for m in methods if m in recorded] + [m for m in recorded if m not in methods]
        seeds = sorted({r["seed"] for r in rows})
        notes.append(f"- Merged from {len(args.merge)} result file(s) of separate runs (`--merge`).")
    if not [m for m in methods if m not in GHN_METHODS]:
        notes.append("- No classic initializer in the run: steps-to-target has no target.")
    with bench_context(args):
        train_loader, test_loader = load_data(args.quick, args.data_dir, dataset=args.dataset,
                                              train_size=args.train_size, test_size=test_size)
        recal = fixed_batches(train_loader, recal_n)  # the same batches for every run
        total = len(archs) * len(bits_list) * len(methods) * len(seeds)
        t_start = time.perf_counter()
        for arch in archs if not args.merge else []:
            for bits in bits_list:
                for method in methods:
                    for seed in seeds:
                        try:
                            row, curve, _ = run_one(arch, bits, method, seed, args, train_loader, test_loader, recal)
                        except Exception as exc:  # one failing run must not lose the rest
                            logger.exception("qat_from_init: arch %d W%d %s seed %d failed", arch, bits, method, seed)
                            row, curve = {"arch": arch, "bits": bits, "method": method, "seed": seed,
                                          "status": f"error: {type(exc).__name__}: {exc}"}, []
                        rows.append(row)
                        curve_rows += [{"arch": arch, "bits": bits, "method": method, "seed": seed, "step": s,
                                        "acc": a} for s, a in curve]
                        done, el = len(rows), time.perf_counter() - t_start
                        print(f"[qat_from_init {done}/{total}] arch {arch:2d} W{bits} {method:15s} seed {seed}: "
                              f"step0 {row.get('acc_step0', math.nan):.3f} final {row.get('final_acc', math.nan):.3f} "
                              f"({row.get('seconds', 0):.1f}s; ETA {el / done * (total - done) / 60:.1f} min)",
                              flush=True)

        summary = analyse(rows, curve_rows, bits_list, methods)
        results.write_csv(name, rows, args.quick)
        if curve_rows:
            results.write_csv(f"{name}_curves", curve_rows, args.quick)
        if summary:
            results.write_csv(f"{name}_summary", summary, args.quick)
        png = plot(curve_rows, summary, bits_list, methods, args.quick, name, title) if curve_rows else None
        from torch_qinit.space import get_arch

        arch_desc = [{"arch": a, "net": get_arch(args.split, a, in_ch).name,
                      "act": get_arch(args.split, a, in_ch).act, "bn": get_arch(args.split, a, in_ch).use_bn}
                     for a in archs]
        table = [{
            "bits": f"W{s['bits']}A{s['bits']}", "init": s["method"],
            "step 0 (zero-shot) %": _pm(s["zero_shot_mean"], s["zero_shot_std"]),
            f"final (step {args.steps}) %": _pm(s["final_mean"], s["final_std"]),
            "steps to target": s["steps_to_target"],
            "archs reaching own target": s["archs_reached"],
            "median steps (those reached)": _step_count(s["median_steps_reached"]),
            "wins": s["wins"],
        } for s in summary]
        errors = [r for r in rows if str(r.get("status", "")).startswith("error")]
        skipped = sum(r.get("skipped_steps", 0) for r in rows)
        setup = (
            f"{title}, {len(train_loader.dataset)} training examples; curves on a fixed subset of "
            f"{len(test_loader.dataset)} test examples. {len(archs)} held-out architectures "
            f"(`get_arch({args.split!r}, i)`, i = {', '.join(map(str, archs))}), {args.optimizer} at lr {args.lr:g}, "
            f"bit-widths {bits_list} (weights and "
            f"activations; the network input stays at 8 bits), seeds {seeds} (the seed sets the classic "
            f"initializer's draw and the data order; GHN predictions are deterministic). QAT: "
            f"`torch_qinit.qat.qat_finetune`, {args.steps} "
            f"{'SGD (Nesterov momentum 0.9)' if args.optimizer == 'sgd' else 'Adam'} steps at lr {args.lr}, batch "
            f"{train_loader.batch_size}, BN kept (not folded), per-channel symmetric weights, per-tensor "
            f"activations over the batch range (EMA of it at evaluation). Step 0 is zero-shot: BN statistics "
            f"re-estimated and activation ranges calibrated on {recal_n} training batches, no gradient step. "
            f"Accuracy every {args.eval_every} steps. Device: "
            f"{', '.join(sorted({str(r['device']) for r in rows if r.get('device')})) or args.device}. "
            + (f"Elapsed: {(time.perf_counter() - t_start) / 60:.1f} min." if not args.merge else
               "Run time, summed over the merged runs: "
               f"{math.fsum(r['seconds'] for r in rows if r.get('status') == 'ok') / 60:.1f} min.")
        )
        body = "\n\n".join(filter(None, [
            "**Quick mode: a smoke test; these numbers mean nothing.**" if args.quick else "",
            "## Setup\n\n" + setup,
            "## Results (mean ± std over architectures x seeds)\n\n" + results.markdown_table(table)
            + "\n\n*steps to target*: the first evaluated step at which the method's mean curve (over archs "
              "and seeds) reaches the best classic initializer's mean final accuracy at that bit-width. "
              "*archs reaching own target*: the same per architecture (seed-mean curve vs. the best classic "
              "final accuracy on that architecture). *wins*: architectures on which the method has the "
              "highest seed-mean final accuracy.",
            f"![curves]({png.name})" if png else "",
            "## Reading\n\n" + reading(summary, bits_list, len(archs)) + "\n\nCaveats: a short, fixed budget "
            "(differences late in the curve can shrink with longer training); steps-to-target is quantized "
            f"to the evaluation period ({args.eval_every} steps); {len(test_loader.dataset)} test examples, "
            f"so 1 pp ≈ {len(test_loader.dataset) // 100} images per run."
            + (f" {skipped} training step(s) with a non-finite loss were skipped." if skipped else ""),
            "## Architectures\n\n" + results.markdown_table(arch_desc),
            "## Notes\n\n" + "\n".join(notes + [f"- arch {r['arch']} W{r['bits']} {r['method']} seed {r['seed']}: "
                                                   f"{r['status']}" for r in errors]) if notes or errors else "",
        ]))
        md = results.write_markdown(name, "QAT from initialization: curves and steps-to-target"
                                    + ("" if name == NAME else f", {title}"), body, args.quick)
    print(f"[qat_from_init] wrote {md}")
    return 1 if rows and len(errors) == len(rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
