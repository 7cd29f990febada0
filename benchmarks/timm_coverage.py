"""timm coverage of ``initialize_`` (issue 12, item 4; ARCHITECTURE.md §4).

Over timm classification models built with ``pretrained=False``: the share that
``initialize_(model, bits=4)`` (method ghn-qat, the default checkpoint choice) handles without error,
the capture path each took (``report.capture_method``, ``report.capture_note``), the number of fallback
parameters and the time.  timm is optional: without it the benchmark writes a note and exits 0.

    torch-qinit bench timm_coverage [--quick] [--max-params 30000000] [--per-family 1] [--timeout 120]
                                    [--models NAME ...] [--out DIR]

Selection (deterministic): every name of ``timm.list_models()``, grouped by timm module (the family:
``resnet``, ``vision_transformer``, ...); each model's parameter count comes from a build on the meta
device (no memory, no init cost); models over ``--max-params`` are dropped, and of the rest each family
contributes its ``--per-family`` smallest (ties broken by name).  ``--models`` gives the list instead.

Writes timm_coverage.{csv,md} and timm_coverage_time.png (``.quick.`` variants with ``--quick``).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from benchmarks import results
from benchmarks.common import bench_context, common_args, ghn_unavailable_reason

__all__ = ["main", "meta_params", "select_models", "timm_rows"]

NAME = "timm_coverage"
#: timm models run in quick mode (when timm is installed).
TIMM_QUICK = ["resnet10t", "mobilenetv3_small_050", "vit_tiny_patch16_224"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class ModelTimeout(Exception):
    """A model took longer than the per-model limit."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise ModelTimeout after `seconds` (SIGALRM; a no-op off the main thread or without SIGALRM)."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def handler(signum, frame):  # noqa: ANN001, ARG001 - signal handler signature
        raise ModelTimeout(f"over the {seconds:.0f} s limit")

    try:
        old = signal.signal(signal.SIGALRM, handler)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def meta_params(timm: Any, name: str) -> int | None:
    """Parameter count of timm model `name` built on the meta device, or None if that build fails."""
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            return n_params(timm.create_model(name, pretrained=False))
    except Exception:  # noqa: BLE001 - some models do not build on meta; they are sized on the real build
        return None


def families(timm: Any) -> dict[str, list[str]]:
    """{timm module: its model names} over ``timm.list_models()`` (public API: list_modules, list_models)."""
    all_names = set(timm.list_models())
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    for module in sorted(timm.list_modules()):
        names = sorted(n for n in timm.list_models(module=module) if n in all_names and n not in seen)
        if names:
            out[module] = names
            seen.update(names)
    rest = sorted(all_names - seen)
    if rest:
        out["(no module)"] = rest
    return out


def select_models(timm: Any, max_params: int, per_family: int,
                  log: Callable[[str], None]) -> tuple[list[tuple[str, str, int | None]], dict[str, Any]]:
    """The deterministic subset: [(name, family, meta params)] and counts that describe the selection."""
    fams = families(timm)
    chosen: list[tuple[str, str, int | None]] = []
    stats = {"listed": 0, "families": len(fams), "meta_failed": 0, "over_max": 0, "eligible": 0,
             "families_with_a_model": 0}
    for fam, names in fams.items():
        sized = []
        for name in names:
            stats["listed"] += 1
            p = meta_params(timm, name)
            if p is None:
                stats["meta_failed"] += 1
            elif p > max_params:
                stats["over_max"] += 1
                continue
            sized.append((name, p))
        stats["eligible"] += len(sized)
        # smallest first; unknown sizes (meta build failed) last, by name
        sized.sort(key=lambda t: (t[1] is None, t[1] or 0, t[0]))
        picked = sized[:per_family]
        if picked:
            stats["families_with_a_model"] += 1
        chosen += [(n, fam, p) for n, p in picked]
    log(f"timm_coverage: {stats['listed']} models in {stats['families']} families; {stats['over_max']} over "
        f"{max_params:,} params; {stats['meta_failed']} not sizable on meta; {len(chosen)} selected")
    return chosen, stats


def _input_size(model: nn.Module) -> tuple[int, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    return tuple(size) if size else (3, 224, 224)


def timm_rows(timm: Any, models: list[tuple[str, str, int | None]], max_params: int, timeout: float | None,
              log: Callable[[str], None]) -> list[dict]:
    """initialize_(model, bits=4) (ghn-qat) on each timm model built with pretrained=False."""
    import torch_qinit

    rows = []
    for name, family, meta in models:
        row: dict[str, Any] = {"model": name, "family": family, "method": "ghn-qat"}
        try:
            with time_limit(timeout), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(0)
                t0 = time.perf_counter()
                model = timm.create_model(name, pretrained=False).eval()
                row["build_ms"] = (time.perf_counter() - t0) * 1000
        except Exception as exc:  # noqa: BLE001 - building is timm's business; record it
            row.update({"params": meta, "status": "build failed", "error": f"{type(exc).__name__}: {exc}"[:200]})
            rows.append(row)
            log(f"timm_coverage: {name:<40} build failed")
            continue
        row["params"] = n_params(model)
        if row["params"] > max_params:
            row["status"] = f"skipped (> {max_params:,} params)"
            rows.append(row)
            del model
            continue
        size = _input_size(model)
        row["input"] = "x".join(str(s) for s in size)
        try:
            with time_limit(timeout), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t0 = time.perf_counter()
                rep = torch_qinit.initialize_(model, bits=4, method="ghn-qat", example_input=torch.randn(1, *size),
                                              generator=torch.Generator().manual_seed(0))
                row["init_ms"] = (time.perf_counter() - t0) * 1000
            first_fb = next(iter(rep.fallback.items()), None)
            row.update({"status": "ok", "capture_method": rep.capture_method, "capture_note": rep.capture_note,
                        "ghn_params": rep.num_predicted, "fallback_params": rep.num_fallback,
                        "total_param_names": len(rep.sources),
                        "fallback_example": f"{first_fb[0]}: {first_fb[1]}"[:160] if first_fb else "",
                        "warnings": len(caught)})
        except Exception as exc:  # noqa: BLE001 - the point is to count failures
            row.update({"status": "timeout" if isinstance(exc, ModelTimeout) else "error",
                        "error": f"{type(exc).__name__}: {exc}"[:200]})
        rows.append(row)
        log(f"timm_coverage: {name:<40} {row['params']:>12,}  {row['status']:<8} "
            f"{row.get('capture_method') or '':<6} {row.get('init_ms', 0):8.0f} ms")
        del model
    return rows


# --------------------------------------------------------------------------- report


def _plot(rows: list[dict], quick: bool) -> str | None:
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for method, marker in (("fx", "o"), ("hooks", "s")):
        sel = [r for r in ok if r["capture_method"] == method]
        if sel:
            ax.scatter([r["params"] for r in sel], [r["init_ms"] for r in sel], marker=marker, s=18, alpha=0.75,
                       label=f"captured by {method} ({len(sel)})")
    other = [r for r in ok if r["capture_method"] not in ("fx", "hooks")]
    if other:
        ax.scatter([r["params"] for r in other], [r["init_ms"] for r in other], marker="^", s=18,
                   label=f"other capture ({len(other)})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model parameters")
    ax.set_ylabel("initialize_ time (ms, one call)")
    ax.set_title("timm models: initialize_(bits=4) time vs size (CPU)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path = str(results.save_figure(fig, NAME, quick, suffix="_time"))
    plt.close(fig)
    return path


def _fmt(rows: list[dict], cols: list[str]) -> list[dict]:
    out = []
    for r in rows:
        d = {}
        for c in cols:
            v = r.get(c, "")
            if c == "params" and isinstance(v, int):
                v = f"{v:,}"
            elif c.endswith("_ms") and v != "":
                v = f"{v:.0f}"
            elif isinstance(v, str):
                v = v.replace("|", "\\|").replace("\n", " ")
            d[c] = v
        out.append(d)
    return out


def summary(rows: list[dict]) -> dict[str, Any]:
    """Share initialized, capture paths, fallbacks and time quantiles of `rows`."""
    tried = [r for r in rows if r.get("status") in ("ok", "error", "timeout")]
    ok = [r for r in tried if r["status"] == "ok"]
    paths: dict[str, int] = {}
    for r in ok:
        paths[r["capture_method"]] = paths.get(r["capture_method"], 0) + 1
    times = sorted(r["init_ms"] for r in ok)
    q = (lambda f: times[min(len(times) - 1, int(f * len(times)))]) if times else (lambda f: float("nan"))  # noqa: E731
    return {"tried": len(tried), "ok": len(ok), "paths": paths,
            "with_fallback": sum(1 for r in ok if r.get("fallback_params", 0) > 0),
            "fallback_total": sum(r.get("fallback_params", 0) for r in ok),
            "ghn_total": sum(r.get("ghn_params", 0) for r in ok),
            "param_names_total": sum(r.get("total_param_names", 0) for r in ok),
            "median_ms": statistics.median(times) if times else float("nan"), "p90_ms": q(0.9),
            "max_ms": times[-1] if times else float("nan"),
            "build_failed": sum(1 for r in rows if r.get("status") == "build failed")}


def _markdown(rows: list[dict], note: str, selection: str, notes: list[str]) -> str:
    parts = [note]
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    if selection:
        parts.append("## Selection\n\n" + selection)
    if rows:
        s = summary(rows)
        share = f"{s['ok']}/{s['tried']} ({100 * s['ok'] / s['tried']:.0f} %)" if s["tried"] else "n/a"
        parts.append(
            "## Summary\n\n"
            f"- initialized without error: **{share}**"
            + (f" ({s['build_failed']} more did not build in timm itself and are not counted)" if s["build_failed"]
               else "")
            + "\n- capture path: " + ", ".join(f"{k}: {v}" for k, v in sorted(s["paths"].items()))
            + f"\n- parameters predicted by the GHN: {s['ghn_total']:,} of {s['param_names_total']:,} parameter "
            f"tensors; fallback: {s['fallback_total']:,} in {s['with_fallback']} models"
            f"\n- time per `initialize_` call: median {s['median_ms']:.0f} ms, 90th percentile {s['p90_ms']:.0f} ms, "
            f"max {s['max_ms']:.0f} ms (one call each)")
        errs = [r for r in rows if r.get("status") in ("error", "timeout", "build failed")]
        if errs:
            parts.append("## Failures\n\n" + results.markdown_table(_fmt(errs, ["model", "family", "params", "status",
                                                                               "error"])))
        notes_rows = [r for r in rows if r.get("capture_note")]
        if notes_rows:
            parts.append("## Why torch.fx was not used (`report.capture_note`)\n\n"
                         + results.markdown_table(_fmt(notes_rows, ["model", "capture_method", "capture_note"])))
        parts.append("## All models\n\n" + results.markdown_table(_fmt(rows, [
            "model", "family", "params", "input", "status", "capture_method", "ghn_params", "fallback_params",
            "build_ms", "init_ms", "fallback_example"])))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"torch-qinit bench {NAME}", description=__doc__.split("\n\n")[0])
    common_args(parser)
    parser.add_argument("--max-params", type=int, default=30_000_000,
                        help="only models up to this many parameters (default 30M)")
    parser.add_argument("--per-family", type=int, default=1,
                        help="smallest models taken from each timm module (default 1)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds per model for the build and for initialize_ each (default 120; 0: none)")
    parser.add_argument("--models", nargs="+", default=None, help="timm model names to try instead of the selection")
    args = parser.parse_args(argv)
    log = print
    with bench_context(args):
        t_start = time.perf_counter()
        notes: list[str] = []
        rows: list[dict] = []
        selection = ""
        try:
            timm = importlib.import_module("timm")
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
            timm = None
            note = f"Skipped: timm is not importable here ({type(exc).__name__}: {exc}); it is optional."
        why = ghn_unavailable_reason("ghn-qat")
        if timm is not None and why:
            note = f"Skipped: needs the ghn-qat weights ({why})."
        elif timm is not None:
            from torch_qinit.initialize import get_ghn

            get_ghn("ghn-qat", None)  # load and cache the checkpoint, so the first model's time is not the load
            try:
                tv_version = importlib.import_module("torchvision").__version__
            except Exception:  # noqa: BLE001 - only reported
                tv_version = "not installed"
            note = (f"timm {timm.__version__}, torch {torch.__version__}, torchvision {tv_version}; "
                    f"{torch.get_num_threads()} thread(s). Each model is built with `pretrained=False`, `eval()`, "
                    "and given an example input of its `pretrained_cfg['input_size']` (used only if torch.fx "
                    "cannot trace it); `initialize_(model, bits=4, method=\"ghn-qat\")`, default checkpoint "
                    "choice (3-channel models get the closest bundled checkpoint, with a warning). Times are one "
                    "call per model, wall clock, after the checkpoint was loaded once.")
            if args.models or args.quick:
                names = args.models or TIMM_QUICK
                models = [(n, "(given)", None) for n in names]
                selection = "Given on the command line: " + ", ".join(f"`{n}`" for n in names) + "."
            else:
                models, st = select_models(timm, args.max_params, args.per_family, log)
                selection = (f"`timm.list_models()` lists {st['listed']} models in {st['families']} modules "
                             f"(families). Sized on the meta device: {st['over_max']} are over "
                             f"{args.max_params:,} parameters; {st['meta_failed']} could not be built on meta "
                             f"(sized on the real build instead). Of the {st['eligible']} eligible, each family "
                             f"contributes its {args.per_family} smallest (ties by name): {len(models)} models from "
                             f"{st['families_with_a_model']} families. Per-model limit: {args.timeout:.0f} s for "
                             "the build and for `initialize_` each.")
            rows = timm_rows(timm, models, args.max_params, args.timeout or None, log)
        notes.append(f"wall time of this run: {time.perf_counter() - t_start:.0f} s")
        s = summary(rows) if rows else None
        if s:
            log(f"timm_coverage: {s['ok']}/{s['tried']} ok; paths {s['paths']}; fallback {s['fallback_total']} "
                f"in {s['with_fallback']} models; median {s['median_ms']:.0f} ms")
        csv = results.write_csv(NAME, rows or [{"status": note}], args.quick)
        png = _plot(rows, args.quick)
        body = _markdown(rows, note, selection, notes)
        if png:
            body += f"\n\n## Figure\n\n![{png.rsplit('/', 1)[-1]}]({png.rsplit('/', 1)[-1]})"
        md = results.write_markdown(NAME, "timm coverage of initialize_", body, args.quick)
        for p in [csv, png, md]:
            if p:
                print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
