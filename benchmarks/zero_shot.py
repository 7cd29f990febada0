"""Zero-shot quantized accuracy of each initializer on the held-out splits (ARCHITECTURE.md §4).

For every (split, architecture, method, seed): initialize, recalibrate BN statistics on training
batches, then for each bit width fold BN, fake-quantize weights and activations at WbAb (activation
ranges calibrated on training batches) and measure accuracy on a fixed test subset.  Also the weight
quantization error (QMSE, SQNR) of the initial weights.

    torch-qinit bench zero_shot [--quick] [--splits test wide] [--archs 20] [--methods ...] [--seeds 0 1]

Writes benchmarks/results/zero_shot.{csv,md,png} (raw rows, tables, figure), zero_shot_summary.csv
and, with many methods, zero_shot_heatmap.png; ``--quick`` writes the ``.quick.`` variants and
``--dataset cifar10`` the ``zero_shot_cifar10.*`` ones.
"""
from __future__ import annotations

import argparse
import math
import random
import time
from typing import Any

import torch

from benchmarks import results
from benchmarks.common import (
    GHN_METHODS,
    METHODS_MAIN,
    bench_context,
    build_model,
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

__all__ = ["main", "run", "summarize"]

NAME = "zero_shot"
ALL_BITS: list[int | None] = [None, 8, 4, 3, 2]

#: Sizes of a full run, chosen to fit about 25 minutes on one CPU thread: measured CPU time per
#: (arch, method, seed) at 5 widths with 500 test images is ~1.1 s on a test-split arch, ~5 s wide,
#: ~2.5 s deep and ~0.9 s nobn, times 30 (method, seed) pairs per arch (14 classic x 2 seeds + 2 GHNs).
FULL = {
    "splits": ["test", "wide", "deep", "nobn", "classic"],
    "archs": {"test": 20, "wide": 2, "deep": 2, "nobn": 4, "classic": 12},
    "train_size": 2048,
    "test_size": 500,
    "batch_size": 128,
    "recal_batches": 4,
    "calib_batches": 2,
}
QUICK = {
    "splits": ["test"],
    "archs": {"test": 2, "wide": 1, "deep": 1, "nobn": 1, "classic": 1},
    "train_size": 256,
    "test_size": 128,
    "batch_size": 64,
    "recal_batches": 2,
    "calib_batches": 1,
}
_TEST_BATCH = 500  # test-set batch size (inference only; larger is faster on CPU)


def bits_label(b: int | None) -> str:
    return "float" if b is None else f"W{b}A{b}"


def _parse_bits(values: list[str]) -> list[int | None]:
    out: list[int | None] = []
    for v in values:
        out.append(None if v.lower() in {"float", "fp32", "none"} else int(v))
    return out


def _mean_layers(errors: dict[str, dict[str, float]], key: str) -> float:
    vals = [e[key] for e in errors.values() if math.isfinite(e[key])]
    return sum(vals) / len(vals) if vals else math.nan


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="torch-qinit bench zero_shot", description=__doc__.split("\n\n")[0])
    common_args(parser)
    parser.add_argument("--splits", nargs="+", choices=["test", "wide", "deep", "nobn", "classic"], default=None,
                        help="held-out splits; 'classic' is the hand-written families (LeNet, VGG, ResNet, ...)")
    parser.add_argument("--archs", type=int, default=None,
                        help="architectures per split (default: quick 2; full test 20, wide 2, deep 2, nobn 4)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="methods (default: ghn-qat, ghn and every classic initializer; quick: "
                             "he_normal, glorot_uniform and the GHNs whose weights are installed)")
    parser.add_argument("--bits", nargs="+", default=None, help="bit widths, 'float' for none (default float 8 4 3 2)")
    parser.add_argument("--test-size", type=int, default=None, help="fixed test subset size (0 = all 10000)")
    parser.add_argument("--recal-batches", type=int, default=None, help="BN recalibration batches")
    parser.add_argument("--calib-batches", type=int, default=None, help="activation-range calibration batches")
    return parser.parse_args(argv)


def _config(args: argparse.Namespace) -> dict[str, Any]:
    base = QUICK if args.quick else FULL
    cfg = {k: (dict(v) if isinstance(v, dict) else (list(v) if isinstance(v, list) else v)) for k, v in base.items()}
    if args.splits:
        cfg["splits"] = list(args.splits)
    if args.archs is not None:
        cfg["archs"] = {s: args.archs for s in cfg["splits"]}
    if args.test_size is not None:
        cfg["test_size"] = args.test_size
    if args.recal_batches is not None:
        cfg["recal_batches"] = args.recal_batches
    if args.calib_batches is not None:
        cfg["calib_batches"] = args.calib_batches
    cfg["bits"] = _parse_bits(args.bits) if args.bits else ([None, 4] if args.quick else list(ALL_BITS))
    if args.methods:
        cfg["methods"] = list(args.methods)
    elif args.quick:
        cfg["methods"] = ["ghn-qat", "ghn", "he_normal", "glorot_uniform"]
    else:
        cfg["methods"] = list(GHN_METHODS) + classic_methods()
    cfg["seeds"] = resolve_seeds(args, quick=(0,), full=(0, 1))
    cfg["dataset"] = args.dataset
    cfg["device"] = str(args.device)
    cfg["name"] = result_name(NAME, args.dataset)
    return cfg


def run(cfg: dict[str, Any], data_dir: str | None, log: Any = print) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """All raw rows, and {skipped method: reason}."""
    from torch_qinit.evaluation import evaluate, recalibrate_bn
    from torch_qinit.quant import weight_quant_error
    from torch_qinit.space import SPLIT_SIZES, get_arch

    skipped = {m: r for m in cfg["methods"] if (r := ghn_unavailable_reason(m))}
    methods = [m for m in cfg["methods"] if m not in skipped]
    for m, why in skipped.items():
        log(f"zero_shot: skipping {m}: {why}")

    train_loader, test_loader = load_data(False, data_dir, dataset=cfg.get("dataset", "fmnist"),
                                          train_size=cfg["train_size"], test_size=cfg["test_size"],
                                          batch_size=cfg["batch_size"])
    in_ch = in_channels(cfg.get("dataset", "fmnist"))
    n_cal = max(cfg["recal_batches"], cfg["calib_batches"])
    cal = fixed_batches(train_loader, n_cal)  # the same training batches for every method
    xs, ys = test_loader.dataset.tensors
    test = [(xs[i:i + _TEST_BATCH], ys[i:i + _TEST_BATCH]) for i in range(0, len(ys), _TEST_BATCH)]

    units = [(s, i) for s in cfg["splits"] for i in range(min(cfg["archs"].get(s, 0), SPLIT_SIZES[s]))]
    # A fixed shuffle, so the progress ETA is representative early on; results do not depend on order.
    random.Random(0).shuffle(units)
    rows: list[dict[str, Any]] = []
    t_start, c_start = time.perf_counter(), time.process_time()
    for k, (split, idx) in enumerate(units):
        spec = get_arch(split, idx, in_ch)
        n_params = sum(p.numel() for p in build_model((split, idx, in_ch)).parameters())
        for method in methods:
            # GHN predictions are deterministic: one seed suffices (it only matters for fallbacks).
            seeds = cfg["seeds"][:1] if method in GHN_METHODS else cfg["seeds"]
            for seed in seeds:
                per_bits = method == "ghn-qat"  # GHN-QAT predicts different weights for each bit width
                model = None
                for b in cfg["bits"]:
                    if model is None or per_bits:
                        t0 = time.perf_counter()
                        model, report = init_model(spec, method, seed, bits=b if per_bits else 4,
                                                   device=cfg.get("device", "cpu"))
                        init_ms = (time.perf_counter() - t0) * 1000
                        recalibrate_bn(model, cal, cfg["recal_batches"])
                    t0 = time.perf_counter()
                    acc = evaluate(model, b, test, calib_loader=cal, recal_batches=0,
                                   calib_batches=cfg["calib_batches"], device=cfg.get("device", "cpu"))
                    row = {"split": split, "arch": idx, "params": n_params, "bn": spec.use_bn, "method": method,
                           "seed": seed, "bits": "float" if b is None else b, "accuracy": acc}
                    if b is not None:
                        err = weight_quant_error(model, b)
                        row["qmse"] = _mean_layers(err, "qmse")
                        row["sqnr_db"] = _mean_layers(err, "sqnr")
                    else:
                        row["qmse"] = row["sqnr_db"] = ""
                    row.update({"ghn_params": report.num_predicted, "fallback_params": report.num_fallback,
                                "init_ms": round(init_ms, 2), "eval_s": round(time.perf_counter() - t0, 3)})
                    rows.append(row)
        elapsed, cpu = time.perf_counter() - t_start, time.process_time() - c_start
        left = (len(units) - k - 1) / (k + 1)
        # CPU time predicts the wall time on an otherwise idle machine (one thread)
        log(f"zero_shot: {k + 1}/{len(units)} archs ({split}/{idx}, {n_params} params) elapsed {elapsed / 60:.1f} "
            f"min (CPU {cpu / 60:.1f} min), ETA {elapsed * left / 60:.1f} min (CPU {cpu * left / 60:.1f} min)",
            flush=True)
    return rows, skipped


def summarize(rows: list[dict[str, Any]], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (split, method, bits): mean/std accuracy over (arch, seed) runs, mean QMSE/SQNR."""
    out = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for split in cfg["splits"]:
        for method in methods:
            for b in cfg["bits"]:
                key = "float" if b is None else b
                sel = [r for r in rows if r["split"] == split and r["method"] == method and r["bits"] == key]
                if not sel:
                    continue
                m, s = mean_std(r["accuracy"] for r in sel)
                q = [r["qmse"] for r in sel if r["qmse"] != ""]
                d = [r["sqnr_db"] for r in sel if r["sqnr_db"] != "" and math.isfinite(r["sqnr_db"])]
                out.append({"split": split, "method": method, "bits": key, "n": len(sel),
                            "archs": len({r["arch"] for r in sel}), "acc_mean": m, "acc_std": s,
                            "qmse_mean": mean_std(q)[0] if q else "", "sqnr_db_mean": mean_std(d)[0] if d else ""})
    return out


def _pm(m: float, s: float, scale: float = 100.0) -> str:
    return f"{m * scale:.1f} ± {s * scale:.1f}"


def _tables(summary: list[dict[str, Any]], cfg: dict[str, Any]) -> str:
    bits_keys = ["float" if b is None else b for b in cfg["bits"]]
    parts = []
    acc_rows = []
    for split in cfg["splits"]:
        for method in dict.fromkeys(r["method"] for r in summary):
            sel = {r["bits"]: r for r in summary if r["split"] == split and r["method"] == method}
            if not sel:
                continue
            row: dict[str, Any] = {"split": split, "method": method, "n": next(iter(sel.values()))["n"]}
            for k in bits_keys:
                label = "float" if k == "float" else f"W{k}A{k}"
                row[label] = _pm(sel[k]["acc_mean"], sel[k]["acc_std"]) if k in sel else ""
            acc_rows.append(row)
    parts.append("## Accuracy (%), mean ± std over architectures × seeds\n\n" + results.markdown_table(acc_rows))

    qbits = [b for b in bits_keys if b != "float"]
    if qbits:
        q_rows, s_rows = [], []
        for method in dict.fromkeys(r["method"] for r in summary):
            qr: dict[str, Any] = {"method": method}
            sr: dict[str, Any] = {"method": method}
            for b in qbits:
                sel = [r for r in summary if r["method"] == method and r["bits"] == b and r["qmse_mean"] != ""]
                # weighted by runs so each (arch, seed) counts once across splits
                n = sum(r["n"] for r in sel)
                qr[f"W{b}"] = f"{sum(r['qmse_mean'] * r['n'] for r in sel) / n:.3g}" if n else ""
                sel_s = [r for r in sel if r["sqnr_db_mean"] != ""]
                ns = sum(r["n"] for r in sel_s)
                sr[f"W{b}"] = f"{sum(r['sqnr_db_mean'] * r['n'] for r in sel_s) / ns:.2f}" if ns else ""
            q_rows.append(qr)
            s_rows.append(sr)
        parts.append("## Weight quantization error of the initial weights (all splits)\n\n"
                     "Mean over conv/linear layers, then over architectures × seeds; per-channel symmetric "
                     "abs-max quantization of the weights as initialized (before BN folding).\n\n"
                     "QMSE:\n\n" + results.markdown_table(q_rows) + "\n\nSQNR (dB, higher is better):\n\n"
                     + results.markdown_table(s_rows))
    return "\n\n".join(parts)


def _plot(summary: list[dict[str, Any]], cfg: dict[str, Any], quick: bool) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bits_keys = ["float" if b is None else b for b in cfg["bits"]]
    # x axis: low to high precision, float last
    order = sorted([b for b in bits_keys if b != "float"]) + (["float"] if "float" in bits_keys else [])
    methods = list(dict.fromkeys(r["method"] for r in summary))
    splits = [s for s in cfg["splits"] if any(r["split"] == s for r in summary)]
    written = []
    line_methods = [m for m in methods if m in METHODS_MAIN] if len(methods) > 6 else methods
    line_methods = line_methods or methods[:6]
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 3.6), squeeze=False, sharey=True)
    for ax, split in zip(axes[0], splits):
        for method in line_methods:
            sel = {r["bits"]: r for r in summary if r["split"] == split and r["method"] == method}
            xs = [i for i, b in enumerate(order) if b in sel]
            ys = [sel[order[i]]["acc_mean"] * 100 for i in xs]
            es = [sel[order[i]]["acc_std"] * 100 for i in xs]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=method)
        ax.axhline(10, color="grey", ls=":", lw=1)
        ax.set_xticks(range(len(order)), [str(b) if b == "float" else f"W{b}A{b}" for b in order])
        ax.set_title(f"split: {split}")
        ax.set_xlabel("precision")
    axes[0][0].set_ylabel("zero-shot test accuracy (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(f"Zero-shot accuracy on {dataset_title(cfg['dataset'])} after init + BN recalibration "
                 "(mean ± std; dotted: chance)", y=1.04)
    written.append(str(results.save_figure(fig, cfg["name"], quick)))
    plt.close(fig)

    if len(methods) > 6:
        fig, axes = plt.subplots(1, len(splits), figsize=(3.2 * len(splits) + 1, 0.32 * len(methods) + 1.5),
                                 squeeze=False, sharey=True)
        for ax, split in zip(axes[0], splits):
            grid = [[next((r["acc_mean"] * 100 for r in summary if r["split"] == split and r["method"] == m
                           and r["bits"] == b), math.nan) for b in order] for m in methods]
            im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=100)
            for i, line in enumerate(grid):
                for j, v in enumerate(line):
                    if not math.isnan(v):
                        ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                                color="white" if v < 55 else "black")
            ax.set_xticks(range(len(order)), [str(b) if b == "float" else f"W{b}" for b in order])
            ax.set_yticks(range(len(methods)), methods)
            ax.set_title(f"split: {split}")
        fig.colorbar(im, ax=axes[0].tolist(), label="accuracy (%)")
        written.append(str(results.save_figure(fig, cfg["name"], quick, suffix="_heatmap")))
        plt.close(fig)
    return written


def _markdown(summary, cfg, skipped, elapsed, threads, pngs) -> str:
    from torch_qinit.space import SPLIT_SIZES

    archs = ", ".join(f"{s} {min(cfg['archs'].get(s, 0), SPLIT_SIZES[s])}/{SPLIT_SIZES[s]}" for s in cfg["splits"])
    bits = ", ".join(bits_label(b) for b in cfg["bits"])
    lines = [
        "Zero-shot protocol (docs/ARCHITECTURE.md §4): initialize → recalibrate BN statistics on training batches "
        "(no gradient) → fold BN → fake-quantize weights and activations at WbAb (activation ranges calibrated on "
        "training batches) → top-1 accuracy on a fixed test subset. `float` skips folding and quantization.",
        "",
        "Setup of this run:",
        "",
        f"- architectures (first N of each held-out split): {archs}",
        f"- methods: {', '.join(m for m in cfg['methods'] if m not in skipped)}",
        f"- precisions: {bits}",
        f"- seeds: {', '.join(map(str, cfg['seeds']))} (classic methods); GHN methods run once",
        f"- dataset: {dataset_title(cfg['dataset'])}",
        f"- test subset: {cfg['test_size'] or 10000} fixed {dataset_title(cfg['dataset'])} test images (seeded "
        "draw, the same for "
        "every method, architecture and seed)",
        f"- BN recalibration: {cfg['recal_batches']} training batches of {cfg['batch_size']}; activation "
        f"calibration: {cfg['calib_batches']} of the same batches (the same batches for every method)",
        f"- {threads} CPU thread(s), models on {cfg.get('device', 'cpu')}; wall time {elapsed / 60:.1f} min",
        "",
        "Notes:",
        "",
        "- GHN predictions are deterministic, so seeds only vary the classic initializers; GHN rows have one run "
        "per architecture (std is across architectures only). The test subset is fixed, not re-drawn per seed.",
        "- `ghn-qat` is queried once per bit width (it predicts weights for the target width; `float` asks for "
        "float weights); `ghn` and the classic methods initialize once and the same weights are quantized at "
        "every width.",
        "- std is over all (architecture, seed) runs of a split, so it includes the spread across architectures.",
        "- Chance accuracy is 10 %.",
    ]
    for m, why in skipped.items():
        lines.append(f"- **{m} skipped**: {why}")
    body = "\n".join(lines) + "\n\n" + _tables(summary, cfg)
    if pngs:
        body += "\n\n## Figures\n\n" + "\n".join(f"![{p.rsplit('/', 1)[-1]}]({p.rsplit('/', 1)[-1]})" for p in pngs)
    body += f"\n\nRaw rows: `{results.result_path(cfg['name'], cfg['quick'], 'csv').name}`; summary: " \
            f"`{results.result_path(cfg['name'] + '_summary', cfg['quick'], 'csv').name}`."
    return body


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    cfg = _config(args)
    cfg["quick"] = args.quick
    with bench_context(args):
        t0 = time.perf_counter()
        try:
            rows, skipped = run(cfg, args.data_dir)
        except FileNotFoundError as exc:  # DatasetNotFoundError
            print(f"zero_shot: {exc}")
            return 1
        if not rows:
            print("zero_shot: nothing to run (no available methods or architectures)")
            return 1
        elapsed = time.perf_counter() - t0
        summary = summarize(rows, cfg)
        name = cfg["name"]
        paths = [results.write_csv(name, rows, args.quick), results.write_csv(name + "_summary", summary, args.quick)]
        pngs = _plot(summary, cfg, args.quick)
        md = results.write_markdown(name, "Zero-shot quantized accuracy of each initializer"
                                    + ("" if name == NAME else f", {dataset_title(args.dataset)}"),
                                    _markdown(summary, cfg, skipped, elapsed, torch.get_num_threads(), pngs),
                                    args.quick)
        for p in [*paths, *pngs, md]:
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
