"""The initializer study (ARCHITECTURE.md §4; the first half of Yun & Wong 2025) on Fashion-MNIST or CIFAR-10.

Grid: block type (one small VGG-like net per type: stem + 3 stages of that block, widths
16/32/64) x initializer x seed.  For each cell:

1. initialize, train in float for a fixed number of Adam steps;
2. quantize post-training (BN folded, ranges calibrated on training batches) at W8A8 and W4A4;
3. record float / quantized test accuracy, the accuracy drop, weight quantization MSE of the
   (folded) weights, and the input range of every conv/linear layer on the calibration batches.

Outputs (``NAME.quick.*`` with ``--quick``): ``init_study.csv`` (one row per run),
``init_study_summary.csv`` (mean/std per block x init), ``init_study_act_ranges.csv`` (per layer),
``init_study.png`` (heatmaps) and ``init_study.md``; with ``--dataset cifar10`` (the paper's own
dataset) the same as ``init_study_cifar10*``.

    torch-qinit bench init_study --quick
    torch-qinit bench init_study                       # full grid, ~40 min on 1 thread
    torch-qinit bench init_study --dataset cifar10 [--data-dir DIR]
"""
from __future__ import annotations

import argparse
import logging
import math
import time
import warnings
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import results
from benchmarks.common import (
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
from torch_qinit.modules import device_of

__all__ = ["main", "run_one", "init_and_train", "build_net", "train_float", "activation_ranges", "summarize"]

NAME = "init_study"
logger = logging.getLogger(__name__)

#: Representative classic initializers for the full grid (the registry has 14 names; the
#: omitted ones are range variants of these: uniform/normal 0.01 and 0.1, He fan-out).
#: ``--methods all`` runs every registered initializer.
FULL_CLASSIC = ["uniform_0.05", "normal_0.05", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                "orthogonal", "pytorch_default"]
GHN = ["ghn", "ghn-qat"]
WIDTHS = (16, 32, 64)
PTQ_BITS = (8, 4)

#: Defaults per mode: training steps (batch 128 in full mode), calibration batches.
MODE = {
    "quick": {"blocks": ["conv_bn"], "methods": ["he_normal", "ghn-qat"], "steps": 4, "calib_batches": 2},
    "full": {"blocks": None, "methods": None, "steps": 120, "calib_batches": 4},
}


def build_net(block: str, in_channels: int = 1, num_classes: int = 10):
    """The study net of one block type, as an ArchSpec: stem (3x3 conv) + 3 stages of `block` (16/32/64).

    BN: "conv_bn"/"dws_bn" carry it, "conv"/"dws" do not (stem included); "residual" and
    "inverted" carry BN (their use_bn flag).  Each stage: one block, stride 2, kernel 3, ReLU.
    """
    from torch_qinit.space import ArchSpec, StageSpec

    use_bn = block not in ("conv", "dws")
    stages = tuple(StageSpec(block, w, 1, 3) for w in WIDTHS)
    return ArchSpec(16, stages, "relu", use_bn, in_channels, num_classes)


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


@torch.no_grad()
def activation_ranges(model: nn.Module, batches: list[Any]) -> dict[str, tuple[float, float]]:
    """{layer: (min, max)} of every conv/linear *input* over `batches`, in eval mode (model order).

    The inputs of a layer are the same with or without BN folding, so this is also the range
    post-training quantization calibrates.
    """
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    order: list[str] = []

    def hook(name: str):
        def fn(_m, args):
            x = args[0].detach()
            if name not in lo:
                order.append(name)
                lo[name], hi[name] = math.inf, -math.inf
            lo[name] = min(lo[name], float(x.amin()))
            hi[name] = max(hi[name], float(x.amax()))
        return fn

    hooks = [m.register_forward_pre_hook(hook(n)) for n, m in _layers(model).items()]
    was = model.training
    try:
        model.eval()
        device = device_of(model)
        for batch in batches:
            model(batch[0].to(device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return {n: (lo[n], hi[n]) for n in order}


def train_float(model: nn.Module, loader, steps: int, lr: float) -> tuple[float, bool]:
    """`steps` Adam steps (cycling over `loader`); returns (mean loss of the last 10 steps, diverged)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    device = device_of(model)
    model.train()
    losses: list[float] = []
    step = 0
    while step < steps:
        for x, y in loader:
            if step >= steps:
                break
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            if not torch.isfinite(loss):
                return math.nan, True
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
    model.eval()
    tail = losses[-10:]
    return (sum(tail) / len(tail) if tail else math.nan), False


def _finite_params(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def init_and_train(block: str, method: str, seed: int, steps: int, lr: float, train_loader,
                   dataset: str = "fmnist", device: str = "cpu") -> tuple[nn.Module, Any, float, bool]:
    """A cell's start and float training: (model, init report, mean loss of the last 10 steps, diverged).

    The seed sets the initializer draw and, through the loader's own generator, the data order.
    """
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, report = init_model(build_net(block, in_channels(dataset)), method, seed=seed, bits=4, device=device)
    train_loader.generator.manual_seed(seed)
    loss, diverged = train_float(model, train_loader, steps, lr)
    return model, report, loss, diverged


def run_one(block: str, method: str, seed: int, args, train_loader, test_loader, calib) -> tuple[dict, list[dict]]:
    """One grid cell: init, float-train, PTQ at W8A8/W4A4; returns (row, per-layer range rows)."""
    from torch_qinit.evaluation import accuracy
    from torch_qinit.quant import fold_bn, quantize_model, weight_quant_error

    t0 = time.perf_counter()
    model, report, loss, diverged = init_and_train(block, method, seed, args.steps, args.lr, train_loader,
                                                   getattr(args, "dataset", "fmnist"), getattr(args, "device", "cpu"))
    row: dict[str, Any] = {"block": block, "init": method, "seed": seed, "steps": args.steps,
                           "params": sum(p.numel() for p in model.parameters()),
                           "ghn_share": round(sum(s == "ghn" for s in report.sources.values())
                                              / max(1, len(report.sources)), 3)}
    row["train_loss"] = loss
    if diverged or not _finite_params(model):
        row.update(status="diverged", float_acc=math.nan, seconds=round(time.perf_counter() - t0, 2))
        return row, []
    row["float_acc"] = accuracy(model, test_loader, device_of(model))
    for bits in PTQ_BITS:
        q = quantize_model(model, w_bits=bits, fold_bn=True, calib_data=calib)
        q.eval()
        row[f"w{bits}a{bits}_acc"] = accuracy(q, test_loader, device_of(q))
        row[f"drop_w{bits}a{bits}"] = row["float_acc"] - row[f"w{bits}a{bits}_acc"]
    folded = fold_bn(model)  # the weights PTQ actually quantizes
    for bits in PTQ_BITS:
        err = weight_quant_error(folded, bits)
        row[f"qmse_w{bits}"] = sum(e["qmse"] for e in err.values()) / len(err)
        if bits == 4:
            row["sqnr_w4_db"] = sum(e["sqnr"] for e in err.values()) / len(err)
    ranges = activation_ranges(model, calib)
    names = list(ranges)
    inner = names[1:] or names  # the first layer's input is the image itself: same for every init
    spans = [ranges[n][1] - ranges[n][0] for n in inner]
    row["act_range_mean"] = sum(spans) / len(spans)
    row["act_range_max"] = max(spans)
    row["act_max"] = max(ranges[n][1] for n in inner)
    row["status"] = "ok"
    row["seconds"] = round(time.perf_counter() - t0, 2)
    layer_rows = [{"block": block, "init": method, "seed": seed, "layer": n, "index": i,
                   "act_min": lo, "act_max": hi, "act_range": hi - lo}
                  for i, (n, (lo, hi)) in enumerate(ranges.items())]
    return row, layer_rows


# --------------------------------------------------------------------------- reporting


METRICS = ["float_acc", "w8a8_acc", "w4a4_acc", "drop_w8a8", "drop_w4a4", "qmse_w8", "qmse_w4", "sqnr_w4_db",
           "act_range_mean", "act_range_max", "train_loss"]


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["block"], r["init"])].append(r)
    out = []
    for (block, init), rs in groups.items():
        s: dict[str, Any] = {"block": block, "init": init, "seeds": len(rs),
                             "diverged": sum(r.get("status") != "ok" for r in rs)}
        ok = [r for r in rs if r.get("status") == "ok"]
        for m in METRICS:
            mu, sd = mean_std(r[m] for r in ok if m in r and not _isnan(r[m]))
            s[f"{m}_mean"], s[f"{m}_std"] = mu, sd
        out.append(s)
    return out


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _pm(mu: float, sd: float, scale: float = 100.0, fmt: str = ".1f") -> str:
    if _isnan(mu):
        return "n/a"
    return f"{mu * scale:{fmt}} ± {sd * scale:{fmt}}"


def _spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    if len(xs) < 3:
        return math.nan
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (vx * vy) if vx and vy else math.nan


def heatmap(summary: list[dict], blocks: list[str], inits: list[str], quick: bool, name: str = NAME,
            title: str = "Fashion-MNIST"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cell = {(s["block"], s["init"]): s for s in summary}
    panels = [("w4a4_acc_mean", "W4A4 test accuracy (%)", "viridis"),
              ("drop_w4a4_mean", "accuracy drop float → W4A4 (pp)", "magma_r")]
    panel_w = max(3.5, 1.2 + 0.6 * len(inits))
    fig, axes = plt.subplots(1, 2, figsize=(2 * panel_w + 1.5, 1.8 + 0.5 * len(blocks)), squeeze=False,
                             layout="constrained")
    for k, (ax, (key, title, cmap)) in enumerate(zip(axes[0], panels)):
        data = [[cell.get((b, i), {}).get(key, math.nan) * 100 for i in inits] for b in blocks]
        im = ax.imshow(data, cmap=cmap, aspect="auto")
        ax.set_xticks(range(len(inits)), inits, rotation=45, ha="right")
        ax.set_yticks(range(len(blocks)), blocks if k == 0 else [])
        ax.set_title(title, fontsize=10)
        for yi, rowv in enumerate(data):
            for xi, v in enumerate(rowv):
                if math.isnan(v):
                    ax.text(xi, yi, "—", ha="center", va="center", fontsize=7)
                    continue
                r, g, b_, _ = im.cmap(im.norm(v))
                dark = 0.299 * r + 0.587 * g + 0.114 * b_ < 0.5
                ax.text(xi, yi, f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(f"Initializer study, {title}: PTQ at W4A4 after float training (mean over seeds)", fontsize=11)
    path = results.save_figure(fig, name, quick)
    plt.close(fig)
    return path


def reading(summary: list[dict], rows: list[dict], blocks: list[str], inits: list[str]) -> str:
    """Data-driven observations (computed, not hand-written), with the caveats that apply."""
    cell = {(s["block"], s["init"]): s for s in summary}
    lines = []
    for b in blocks:
        cs = [cell[(b, i)] for i in inits if (b, i) in cell and not _isnan(cell[(b, i)]["w4a4_acc_mean"])]
        if not cs:
            lines.append(f"- **{b}**: no successful runs.")
            continue
        best = max(cs, key=lambda s: s["w4a4_acc_mean"])
        worst = min(cs, key=lambda s: s["w4a4_acc_mean"])
        gap = best["w4a4_acc_mean"] - worst["w4a4_acc_mean"]
        noise = max(best["w4a4_acc_std"], worst["w4a4_acc_std"])
        sep = "larger" if gap > 2 * noise else "not clearly larger"
        fl = [s["float_acc_mean"] for s in cs]
        div = sum(s["diverged"] for s in summary if s["block"] == b)
        lines.append(
            f"- **{b}**: W4A4 best {best['init']} {best['w4a4_acc_mean'] * 100:.1f}%, worst {worst['init']} "
            f"{worst['w4a4_acc_mean'] * 100:.1f}% (spread {gap * 100:.1f} pp, {sep} than 2x the seed std "
            f"{noise * 100:.1f} pp); float accuracy spans {min(fl) * 100:.1f}-{max(fl) * 100:.1f}%; W4A4 drop "
            f"{min(s['drop_w4a4_mean'] for s in cs) * 100:.1f}-{max(s['drop_w4a4_mean'] for s in cs) * 100:.1f} pp"
            + (f"; {div} run(s) diverged" if div else "") + ".")
    ok = [r for r in rows if r.get("status") == "ok"]
    rho = _spearman([r["act_range_max"] for r in ok], [r["drop_w4a4"] for r in ok])
    rho_q = _spearman([r["qmse_w4"] for r in ok], [r["drop_w4a4"] for r in ok])
    drops8 = [r["drop_w8a8"] for r in ok]
    drops4 = [r["drop_w4a4"] for r in ok]
    out = ["Per block type (W4A4 accuracy, mean over seeds):", "", *lines, ""]
    if ok:
        m8, m4 = mean_std(drops8)[0], mean_std(drops4)[0]
        verdict = ("8-bit PTQ is nearly free here, 4-bit is where the runs differ" if abs(m8) < 0.01 < m4
                   else "see the table for where the loss comes from")
        out.append(f"- Across all {len(ok)} runs the W8A8 drop is {_pm(*mean_std(drops8))} pp and the W4A4 drop "
                   f"{_pm(*mean_std(drops4))} pp: {verdict}.")
        if not (math.isnan(rho) or math.isnan(rho_q)):
            out.append(f"- Spearman rank correlation with the W4A4 drop over runs: max activation range "
                       f"{rho:+.2f}, weight QMSE at 4 bits {rho_q:+.2f} (pooled over block types, so partly "
                       "a block-type effect).")
    ranked = []
    for i in inits:
        v = [cell[(b, i)]["w4a4_acc_mean"] for b in blocks if (b, i) in cell
             and not _isnan(cell[(b, i)]["w4a4_acc_mean"])]
        if v:
            ranked.append((sum(v) / len(v), i, len(v)))
    if ranked:
        ranked.sort(reverse=True)
        out.append("- Mean W4A4 accuracy over block types: " + ", ".join(
            f"{i} {m * 100:.1f}%" + ("" if n == len(blocks) else f" ({n} blocks)") for m, i, n in ranked) + ".")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torch-qinit bench init_study", description=__doc__.split("\n\n")[0])
    common_args(parser)
    parser.add_argument("--blocks", nargs="+", default=None, help="block types (default: all six; quick: conv_bn)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="initializers; 'all' = every registered one (default: a representative "
                             "subset + ghn + ghn-qat; quick: he_normal ghn-qat)")
    parser.add_argument("--steps", type=int, default=None, help="float training steps (full 120, quick 4)")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    parser.add_argument("--calib-batches", type=int, default=None, help="PTQ calibration batches")
    parser.add_argument("--train-size", type=int, default=None, help="train subset (0 = all; default per mode)")
    parser.add_argument("--test-size", type=int, default=None, help="test subset (0 = all; default per mode)")
    args = parser.parse_args(argv)
    from torch_qinit.space import BLOCK_TYPES

    mode = MODE["quick" if args.quick else "full"]
    args.steps = args.steps if args.steps is not None else mode["steps"]
    calib_n = args.calib_batches or mode["calib_batches"]
    blocks = args.blocks or mode["blocks"] or list(BLOCK_TYPES)
    bad = [b for b in blocks if b not in BLOCK_TYPES]
    if bad:
        parser.error(f"unknown block type(s) {bad}; choose from {list(BLOCK_TYPES)}")
    if args.methods == ["all"]:
        methods = classic_methods() + GHN
    else:
        methods = args.methods or mode["methods"] or FULL_CLASSIC + GHN
    known = set(classic_methods()) | set(GHN)
    if any(m not in known for m in methods):
        parser.error(f"unknown method(s) {[m for m in methods if m not in known]}; choose from {sorted(known)}")
    seeds = resolve_seeds(args, quick=(0,), full=(0, 1, 2))
    name, title = result_name(NAME, args.dataset), dataset_title(args.dataset)

    notes: list[str] = []
    skipped = {m: ghn_unavailable_reason(m) for m in methods}
    for m, why in skipped.items():
        if why:
            notes.append(f"- `{m}` skipped: its GHN weights could not be loaded ({why}).")
            print(f"[init_study] skipping {m}: {why}")
    methods = [m for m in methods if not skipped[m]]

    rows: list[dict] = []
    layer_rows: list[dict] = []
    with bench_context(args):
        train_loader, test_loader = load_data(args.quick, args.data_dir, dataset=args.dataset,
                                              train_size=args.train_size, test_size=args.test_size)
        calib = fixed_batches(train_loader, calib_n)  # same calibration batches for every run
        total = len(blocks) * len(methods) * len(seeds)
        t_start = time.perf_counter()
        for block in blocks:
            for method in methods:
                for seed in seeds:
                    try:
                        row, lrs = run_one(block, method, seed, args, train_loader, test_loader, calib)
                    except Exception as exc:  # one failing cell must not lose the grid
                        logger.exception("init_study: %s/%s/seed %d failed", block, method, seed)
                        row, lrs = {"block": block, "init": method, "seed": seed,
                                    "status": f"error: {type(exc).__name__}: {exc}"}, []
                    rows.append(row)
                    layer_rows += lrs
                    done = len(rows)
                    el = time.perf_counter() - t_start
                    print(f"[init_study {done}/{total}] {block:9s} {method:15s} seed {seed}: "
                          f"float {row.get('float_acc', math.nan):.3f} W8A8 {row.get('w8a8_acc', math.nan):.3f} "
                          f"W4A4 {row.get('w4a4_acc', math.nan):.3f} ({row.get('seconds', 0):.1f}s; "
                          f"ETA {el / done * (total - done) / 60:.1f} min)", flush=True)

        summary = summarize(rows)
        results.write_csv(name, rows, args.quick)
        results.write_csv(f"{name}_summary", summary, args.quick)
        if layer_rows:
            results.write_csv(f"{name}_act_ranges", layer_rows, args.quick)
        inits = list(dict.fromkeys(r["init"] for r in rows))
        png = heatmap(summary, blocks, inits, args.quick, name, title) if summary else None
        n_train = len(train_loader.dataset)
        n_test = len(test_loader.dataset)
        setup = (
            f"{title}, {n_train} training / {n_test} test examples (fixed subsets). Net per block type: "
            f"3x3 stem (16) + 3 stages of one block, widths {'/'.join(map(str, WIDTHS))}, stride 2, ReLU, global "
            f"pool, linear; BN in conv_bn, dws_bn, residual, inverted, none in conv and dws. Float training: "
            f"{args.steps} Adam steps (lr {args.lr}) at batch {train_loader.batch_size}; the seed sets the "
            f"initializer draw and the data order (GHN predictions are deterministic, so for ghn/ghn-qat only "
            f"the data order varies; ghn-qat predicts for 4-bit weights). PTQ: BN folded, per-channel "
            f"symmetric weights, per-tensor min/max "
            f"activations calibrated on {calib_n} training batches; the network input stays at 8 bits. "
            f"Seeds: {seeds}. Device: {args.device}. Elapsed: {(time.perf_counter() - t_start) / 60:.1f} min."
        )
        if not args.quick and args.methods is None:
            notes.append(f"- Classic initializers reduced to a representative subset ({', '.join(FULL_CLASSIC)}); "
                         "`--methods all` runs all of them.")
        table = [{
            "block": s["block"], "init": s["init"],
            "float %": _pm(s["float_acc_mean"], s["float_acc_std"]),
            "W8A8 %": _pm(s["w8a8_acc_mean"], s["w8a8_acc_std"]),
            "W4A4 %": _pm(s["w4a4_acc_mean"], s["w4a4_acc_std"]),
            "drop W4A4 pp": _pm(s["drop_w4a4_mean"], s["drop_w4a4_std"]),
            "QMSE W4 (1e-4)": _pm(s["qmse_w4_mean"], s["qmse_w4_std"], 1e4, ".2f"),
            "act range mean": _pm(s["act_range_mean_mean"], s["act_range_mean_std"], 1.0, ".2f"),
            "act range max": _pm(s["act_range_max_mean"], s["act_range_max_std"], 1.0, ".2f"),
            "failed": s["diverged"],
        } for s in summary]
        cellmap = {(s["block"], s["init"]): s for s in summary}
        pivot = [{"block": b, **{i: (f"{cellmap[(b, i)]['w4a4_acc_mean'] * 100:.1f}"
                                     if (b, i) in cellmap and not _isnan(cellmap[(b, i)]["w4a4_acc_mean"]) else "—")
                                 for i in inits}} for b in blocks]
        errors = [r for r in rows if str(r.get("status", "")).startswith("error")]
        body = "\n\n".join(filter(None, [
            "**Quick mode: a smoke test; these numbers mean nothing.**" if args.quick else "",
            "## Setup\n\n" + setup,
            "## W4A4 accuracy (%), block type x initializer\n\n" + results.markdown_table(pivot),
            f"![heatmap]({png.name})" if png else "",
            "## All metrics (mean ± std over seeds)\n\nAccuracies and drops in %/pp; QMSE is the mean over "
            "layers of the folded weights' quantization MSE; activation ranges are max - min of each "
            "conv/linear input on the calibration batches, averaged / maxed over layers (network input "
            f"excluded; per layer in `{name}_act_ranges{'.quick' if args.quick else ''}.csv`).\n\n"
            + results.markdown_table(table),
            "## Reading\n\n" + reading(summary, rows, blocks, inits) + "\n\nCaveats: a short fixed float budget "
            "(the nets are not converged, so this measures initialization *and* early training dynamics), "
            f"one small dataset, {n_test} test examples (1 pp ≈ {n_test // 100} images), "
            f"{len(seeds)} seed(s).",
            "## Notes\n\n" + "\n".join(notes + [f"- {r['block']}/{r['init']}/seed {r['seed']}: {r['status']}"
                                                   for r in errors]) if notes or errors else "",
        ]))
        md = results.write_markdown(name, "Initializer study: PTQ after float training"
                                    + ("" if name == NAME else f", {title}"), body, args.quick)
    print(f"[init_study] wrote {md}")
    return 1 if len(errors) == len(rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
