"""Speed and coverage of ``initialize_`` (ARCHITECTURE.md §4).

(a) ``initialize_`` latency (ghn-qat, he_normal) against model size, on hand-written CNNs of about
    10k to 25M parameters, with the share of graph capture and of the GHN forward pass;
(b) torchvision classification models (``weights=None``), when torchvision is importable: the share
    that ``initialize_(method="ghn-qat")`` handles without error, the capture path, fallbacks, time;
(c) GHN forward time against graph size (conv-BN-ReLU chains of 10 to 200 nodes), checked against
    the target of at most 20 ms for a 50-node graph.

timm models get the same coverage measurement in ``timm_coverage`` (a benchmark of its own: choosing its
models sizes all ~1,400 of ``timm.list_models()`` first), and the duplicate-filter check of the predicted
weights on the torchvision models is ``duplicates``.

    torch-qinit bench speed_coverage [--quick] [--repeats 5] [--max-params 100000000]

Writes benchmarks/results/speed_coverage.{csv,md}, speed_coverage_latency.png and
speed_coverage_nodes.png (``.quick.`` variants with ``--quick``).
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks import results
from benchmarks.common import bench_context, common_args, ghn_unavailable_reason

__all__ = ["main", "latency_rows", "torchvision_rows", "node_rows"]

NAME = "speed_coverage"
#: Base widths of the (a) CNN family: about 11k, 43k, 168k, 668k, 2.7M, 10.6M and 25M parameters.
WIDTHS_FULL = [3, 6, 12, 24, 48, 96, 148]
WIDTHS_QUICK = [3, 12]
NODES_FULL = [10, 25, 50, 75, 100, 150, 200]
NODES_QUICK = [10, 50]
TARGET_NODES, TARGET_MS = 50, 20.0
#: torchvision models run in quick mode (when torchvision is installed).
TV_QUICK = ["resnet18", "mobilenet_v3_small", "squeezenet1_0"]


# --------------------------------------------------------------------------- models


class CNN(nn.Module):
    """stem conv → 4 stages (widths w, 2w, 4w, 8w; `depth` conv-BN-ReLU each, stride 2 first) → pool → linear."""

    def __init__(self, width: int, depth: int = 2, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU()]
        c = width
        for s in range(4):
            co = width * 2**s
            for i in range(depth):
                layers += [nn.Conv2d(c, co, 3, stride=2 if i == 0 and s > 0 else 1, padding=1, bias=False),
                           nn.BatchNorm2d(co), nn.ReLU()]
                c = co
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def chain(num_ops: int, width: int = 32) -> nn.Sequential:
    """A Sequential of `num_ops` ops cycling conv 3×3 → BN → ReLU (first conv takes 1 channel)."""
    ops: list[nn.Module] = []
    c = 1
    for i in range(num_ops):
        kind = i % 3
        if kind == 0:
            ops.append(nn.Conv2d(c, width, 3, padding=1))
            c = width
        elif kind == 1:
            ops.append(nn.BatchNorm2d(width))
        else:
            ops.append(nn.ReLU())
    return nn.Sequential(*ops)


def chain_with_nodes(target: int, width: int = 32) -> tuple[nn.Module, Any]:
    """A chain whose captured graph has `target` nodes (or the nearest reachable); returns (model, graph)."""
    from torch_qinit.graph import capture

    n_ops = max(1, target - 2)  # input and output nodes
    for _ in range(8):
        model = chain(n_ops, width)
        graph = capture(model)
        if graph.num_nodes == target or n_ops == 1:
            break
        n_ops = max(1, n_ops + target - graph.num_nodes)
    return model, graph


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- timing


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of `fn` in ms over `repeats` calls after `warmup` calls; and all timings."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), times


def latency_rows(widths: list[int], methods: list[str], repeats: int, log: Callable[[str], None]) -> list[dict]:
    """(a) initialize_ latency per model size and method; for GHN methods also capture and forward time.

    For GHN methods the three timings are interleaved call by call (init, capture, forward), so a
    load spike hits all of them alike; shares use the per-part minimum, the least disturbed estimate.
    """
    import torch_qinit
    from torch_qinit.graph import capture
    from torch_qinit.initialize import get_ghn

    rows = []
    for w in widths:
        torch.manual_seed(0)
        model = CNN(w)
        size = n_params(model)
        for method in methods:
            g = torch.Generator().manual_seed(0)
            parts: dict[str, Callable[[], Any]] = {
                "init": lambda: torch_qinit.initialize_(model, bits=4, method=method, generator=g)}
            if method in ("ghn-qat", "ghn"):
                ghn = get_ghn(method, None)
                graph = capture(model)
                fwd_bits = 4 if ghn.config.bits else None
                parts["capture"] = lambda: capture(model)
                parts["forward"] = lambda: ghn(graph, bits=fwd_bits)
            times: dict[str, list[float]] = {k: [] for k in parts}
            with torch.no_grad():
                for i in range(repeats + 1):  # call 0 is the warm-up
                    for k, fn in parts.items():
                        t0 = time.perf_counter()
                        fn()
                        if i:
                            times[k].append((time.perf_counter() - t0) * 1000)
            row: dict[str, Any] = {"part": "a_latency", "model": f"CNN(width={w})", "params": size,
                                   "method": method, "init_ms": statistics.median(times["init"]),
                                   "init_min_ms": min(times["init"]), "repeats": repeats}
            if "forward" in parts:
                row.update({"nodes": graph.num_nodes, "capture_ms": statistics.median(times["capture"]),
                            "ghn_forward_ms": statistics.median(times["forward"]),
                            "capture_share": min(times["capture"]) / min(times["init"]),
                            "ghn_forward_share": min(times["forward"]) / min(times["init"])})
            rows.append(row)
            log(f"speed_coverage (a): {size:>10,} params  {method:<9} {row['init_ms']:9.1f} ms")
    return rows


def torchvision_rows(tv: Any, names: list[str] | None, max_params: int, log: Callable[[str], None]) -> list[dict]:
    """(b) initialize_(method="ghn-qat") on torchvision classification models built with weights=None."""
    import torch_qinit

    all_names = list(tv.models.list_models(module=tv.models))
    names = [n for n in (names or all_names) if n in all_names]
    rows = []
    for name in names:
        row: dict[str, Any] = {"part": "b_torchvision", "model": name, "method": "ghn-qat"}
        try:
            torch.manual_seed(0)
            model = tv.models.get_model(name, weights=None).eval()
        except Exception as exc:  # noqa: BLE001 - building is torchvision's business; record it
            row.update({"status": "build failed", "error": f"{type(exc).__name__}: {exc}"[:200]})
            rows.append(row)
            continue
        row["params"] = n_params(model)
        if row["params"] > max_params:
            row["status"] = f"skipped (> {max_params:,} params)"
            rows.append(row)
            del model
            continue
        size = 299 if "inception" in name else 224
        try:
            t0 = time.perf_counter()
            rep = torch_qinit.initialize_(model, bits=4, method="ghn-qat",
                                          example_input=torch.randn(1, 3, size, size),
                                          generator=torch.Generator().manual_seed(0))
            row.update({"status": "ok", "init_ms": (time.perf_counter() - t0) * 1000,
                        "capture_method": rep.capture_method, "ghn_params": rep.num_predicted,
                        "fallback_params": rep.num_fallback, "total_param_names": len(rep.sources)})
        except Exception as exc:  # noqa: BLE001 - the point is to count failures
            row.update({"status": "error", "error": f"{type(exc).__name__}: {exc}"[:200]})
        rows.append(row)
        log(f"speed_coverage (b): {name:<28} {row['status']}")
        del model
    return rows


def node_rows(ghn: nn.Module, targets: list[int], repeats: int, log: Callable[[str], None]) -> list[dict]:
    """(c) GHN forward time against the node count of conv-BN-ReLU chains."""
    rows = []
    bits = 4 if getattr(ghn.config, "bits", ()) else None
    for target in targets:
        torch.manual_seed(0)
        model, graph = chain_with_nodes(target)
        with torch.no_grad():
            fwd, times = median_ms(lambda: ghn(graph, bits=bits), repeats, warmup=2)
        rows.append({"part": "c_nodes", "model": f"chain({len(model)} ops)", "nodes": graph.num_nodes,
                     "params": n_params(model), "ghn_forward_ms": fwd, "ghn_forward_min_ms": min(times),
                     "repeats": repeats})
        log(f"speed_coverage (c): {graph.num_nodes:>4} nodes  {fwd:8.2f} ms")
    return rows


def _ghn_for_nodes() -> tuple[nn.Module, str]:
    """The bundled ghn-qat if installed, else an untrained GHN of the default config (same cost)."""
    from torch_qinit.ghn import GHN, GHNConfig
    from torch_qinit.initialize import get_ghn

    if ghn_unavailable_reason("ghn-qat") is None:
        ghn = get_ghn("ghn-qat", None)
        return ghn, "the bundled ghn-qat checkpoint"
    torch.manual_seed(0)
    return GHN(GHNConfig()).eval(), "an untrained GHN of the default GHNConfig (bundled ghn-qat weights missing)"


def _config_str(ghn: nn.Module) -> str:
    c = ghn.config
    return f"hidden={c.hidden}, layers={c.layers}, heads={c.heads}, decoder_rank={c.decoder_rank}, bits={tuple(c.bits)}"


# --------------------------------------------------------------------------- report


def _plots(lat: list[dict], nodes: list[dict], quick: bool) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    if lat:
        fig, ax = plt.subplots(figsize=(6, 4))
        for method in dict.fromkeys(r["method"] for r in lat):
            sel = [r for r in lat if r["method"] == method]
            ax.plot([r["params"] for r in sel], [r["init_ms"] for r in sel], "o-", label=f"initialize_ {method}")
            if "capture_ms" in sel[0]:
                ax.plot([r["params"] for r in sel], [r["capture_ms"] for r in sel], "s--", alpha=0.7,
                        label=f"  capture ({method})")
                ax.plot([r["params"] for r in sel], [r["ghn_forward_ms"] for r in sel], "^--", alpha=0.7,
                        label=f"  GHN forward ({method})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("model parameters")
        ax.set_ylabel("median latency (ms)")
        ax.set_title("initialize_ latency vs model size (CPU)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        out.append(str(results.save_figure(fig, NAME, quick, suffix="_latency")))
        plt.close(fig)
    if nodes:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["nodes"] for r in nodes], [r["ghn_forward_ms"] for r in nodes], "o-", label="GHN forward (median)")
        ax.axhline(TARGET_MS, color="red", ls=":", label=f"target ≤ {TARGET_MS:.0f} ms at {TARGET_NODES} nodes")
        ax.axvline(TARGET_NODES, color="grey", ls=":", lw=1)
        ax.set_xlabel("graph nodes")
        ax.set_ylabel("ms")
        ax.set_title("GHN forward time vs graph size (CPU)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        out.append(str(results.save_figure(fig, NAME, quick, suffix="_nodes")))
        plt.close(fig)
    return out


def _target_check(nodes: list[dict]) -> tuple[str, float | None]:
    exact = [r for r in nodes if r["nodes"] == TARGET_NODES]
    if exact:
        ms = exact[0]["ghn_forward_ms"]
    else:  # linear interpolation between the neighbours
        lo = [r for r in nodes if r["nodes"] < TARGET_NODES]
        hi = [r for r in nodes if r["nodes"] > TARGET_NODES]
        if not lo or not hi:
            return f"no graph near {TARGET_NODES} nodes was measured", None
        a, b = max(lo, key=lambda r: r["nodes"]), min(hi, key=lambda r: r["nodes"])
        f = (TARGET_NODES - a["nodes"]) / (b["nodes"] - a["nodes"])
        ms = a["ghn_forward_ms"] + f * (b["ghn_forward_ms"] - a["ghn_forward_ms"])
    verdict = "PASS" if ms <= TARGET_MS else "FAIL"
    return f"GHN forward on a {TARGET_NODES}-node graph: {ms:.2f} ms (target ≤ {TARGET_MS:.0f} ms): **{verdict}**", ms


def _fmt_rows(rows: list[dict], cols: list[str]) -> list[dict]:
    out = []
    for r in rows:
        d = {}
        for c in cols:
            v = r.get(c, "")
            if c == "params" and v != "":
                v = f"{v:,}"
            elif c.endswith("_ms") and v != "":
                v = f"{v:.1f}" if v >= 10 else f"{v:.2f}"
            elif c.endswith("_share") and v != "":
                v = f"{100 * v:.0f} %"
            d[c] = v
        out.append(d)
    return out


def _markdown(lat, tv_rows, tv_note, nodes, ghn_desc, ghn_cfg, notes, repeats) -> str:
    parts = [f"All timings on CPU, wall clock, median of {repeats} calls after a warm-up call "
             "(the GHN checkpoint is loaded and cached by the warm-up)."]
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    parts.append("## (a) `initialize_` latency vs model size\n\nModels: `CNN(width)`, a stem conv and four "
                 "stages of two conv-BN-ReLU blocks (widths w, 2w, 4w, 8w), pool, linear; input 1×28×28, "
                 "10 classes. `bits=4`. For GHN methods, `capture` is `torch_qinit.graph.capture(model)` and "
                 "`GHN forward` the prediction alone; the rest is drawing fallback values and copying. The "
                 "three are timed call by call, interleaved; times are medians, shares are ratios of the "
                 "per-part minimum times (least disturbed by other load).\n\n"
                 + (results.markdown_table(_fmt_rows(lat, ["model", "params", "method", "init_ms", "init_min_ms",
                                                           "nodes", "capture_ms", "ghn_forward_ms", "capture_share",
                                                           "ghn_forward_share"]))
                    if lat else "_not run_"))
    tv_body = tv_note
    if tv_rows:
        ok = [r for r in tv_rows if r.get("status") == "ok"]
        tried = [r for r in tv_rows if r.get("status") in ("ok", "error")]
        methods = {}
        for r in ok:
            methods[r["capture_method"]] = methods.get(r["capture_method"], 0) + 1
        with_fb = sum(1 for r in ok if r.get("fallback_params", 0) > 0)
        share = f"{len(ok)}/{len(tried)} ({100 * len(ok) / len(tried):.0f} %)" if tried else "n/a"
        tv_body += (f"\n\n- initialized without error: **{share}**\n- capture path: "
                    + ", ".join(f"{k}: {v}" for k, v in sorted(methods.items()))
                    + f"\n- models with at least one fallback parameter: {with_fb}; fallback parameters in total: "
                    f"{sum(r.get('fallback_params', 0) for r in ok)}\n"
                    f"- median time: {statistics.median([r['init_ms'] for r in ok]):.0f} ms\n\n" if ok else "\n\n")
        tv_body += results.markdown_table(_fmt_rows(tv_rows, ["model", "params", "status", "capture_method",
                                                              "ghn_params", "fallback_params", "init_ms", "error"]))
    parts.append("## (b) torchvision coverage (`method=\"ghn-qat\"`, `weights=None`)\n\n" + tv_body)
    check, _ = _target_check(nodes) if nodes else ("not run", None)
    parts.append(f"## (c) GHN forward time vs graph size\n\nGHN: {ghn_desc} ({ghn_cfg}); graphs: chains of "
                 "conv 3×3 (32 channels) → BN → ReLU captured with `capture`; `bits=4`; no gradient.\n\n"
                 f"{check}\n\n" + (results.markdown_table(_fmt_rows(nodes, ["model", "nodes", "params",
                                                                             "ghn_forward_ms", "ghn_forward_min_ms"]))
                                   if nodes else ""))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="torch-qinit bench speed_coverage", description=__doc__.split("\n\n")[0])
    common_args(parser)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per point (default quick 3, full 5)")
    parser.add_argument("--max-params", type=int, default=100_000_000,
                        help="skip torchvision models larger than this (default 100M)")
    parser.add_argument("--torchvision-models", nargs="+", default=None,
                        help="torchvision models to try (default: all classification models; quick: a few)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    log = print
    with bench_context(args):
        t_start = time.perf_counter()
        notes = []
        methods = ["ghn-qat", "he_normal"]
        why = ghn_unavailable_reason("ghn-qat")
        if why:
            methods = ["he_normal"]
            notes.append(f"**ghn-qat skipped in (a) and (b)**: {why}")
        lat = latency_rows(WIDTHS_QUICK if args.quick else WIDTHS_FULL, methods, repeats, log)

        tv_rows: list[dict] = []
        try:
            tv = importlib.import_module("torchvision")
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
            tv = None
            tv_note = f"Skipped: torchvision is not importable here ({type(exc).__name__}: {exc}); it is optional."
        if tv is not None and why:
            tv_note = "Skipped: needs the ghn-qat weights (see above)."
        elif tv is not None:
            names = args.torchvision_models or (TV_QUICK if args.quick else None)
            tv_note = f"torchvision {tv.__version__}; models built with `weights=None`, `eval()`, and an example " \
                      "input of 1×3×224×224 (299 for Inception) for the hooks fallback."
            tv_rows = torchvision_rows(tv, names, args.max_params, log)

        ghn, ghn_desc = _ghn_for_nodes()
        nodes = node_rows(ghn, NODES_QUICK if args.quick else NODES_FULL, max(repeats, 5), log)
        check, _ = _target_check(nodes)
        log(f"speed_coverage (c): {check.replace('**', '')}")
        notes.append(f"wall time of this run: {time.perf_counter() - t_start:.0f} s")

        csv = results.write_csv(NAME, lat + tv_rows + nodes, args.quick)
        pngs = _plots(lat, nodes, args.quick)
        body = _markdown(lat, tv_rows, tv_note, nodes, ghn_desc, _config_str(ghn), notes, repeats)
        if pngs:
            body += "\n\n## Figures\n\n" + "\n".join(f"![{p.rsplit('/', 1)[-1]}]({p.rsplit('/', 1)[-1]})"
                                                      for p in pngs)
        md = results.write_markdown(NAME, "Speed and coverage of initialize_", body, args.quick)
        for p in [csv, *pngs, md]:
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
