"""Duplicate filters and numerical rank of GHN-predicted weights on torchvision models (issue 8 target).

For each torchvision classification model (``weights=None``, up to ``--max-params``) and each GHN:

- the checkpoint that ``initialize_(model, bits=4)`` picks by default (bundled ghn-qat), labelled by its
  decoder version (version 1 tiles a 64×64 block, so every layer wider than 64 has duplicates: the
  baseline of the first measurement; version 2 has shipped since);
- an untrained version-2 GHN, ``GHN(GHNConfig())`` after ``torch.manual_seed(0)`` (distinct rows hold
  by construction of the tile-position decoder, trained or not);
- a version-2 checkpoint in training, ``--ghn-ckpt DIR`` (a trainer ``ckpt/`` folder with
  ``state.safetensors`` + ``state.json``, or a saved ``model.safetensors`` folder), when it exists;

it runs ``initialize_(model, bits=4, weights=ghn, calibrate=False)`` and checks every predicted conv/linear
weight ``w`` for identical output channels: ``torch.unique(w.reshape(w.shape[0], -1), dim=0)`` must keep
``w.shape[0]`` rows.  (Calibration, skipped here for time, multiplies a whole layer by one scalar, so it
neither creates nor removes duplicates.)  For a few models (``--rank-models``) it also records the numerical
rank share of the widest layers: singular values above 1e-3 × the largest, over ``min(out, fan_in)``.

    torch-qinit bench duplicates [--quick] [--max-params 100000000] [--ghn-ckpt runs/ghn-v2-float/ckpt]
                                 [--models NAME ...] [--rank-models resnet50 vgg11 mobilenet_v2]
                                 [--rank-max-numel 20000000] [--tag TAG] [--out DIR]

Writes duplicates.{csv,md} (duplicates_TAG.* with ``--tag``; ``.quick.`` with ``--quick``).  torchvision is
optional: without it the benchmark writes a note and exits 0.
"""
from __future__ import annotations

import argparse
import importlib
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks import results
from benchmarks.common import bench_context, common_args, ghn_unavailable_reason

__all__ = ["main", "duplicate_rows", "rank_share", "load_ghns", "model_rows"]

NAME = "duplicates"
TV_QUICK = ["resnet18", "mobilenet_v3_small", "squeezenet1_0"]
RANK_MODELS = ["resnet50", "vgg11", "mobilenet_v2"]
#: widest layers per model whose rank is measured; layers over this many elements are left out (SVD time).
RANK_LAYERS, RANK_MAX_NUMEL = 3, 20_000_000
RANK_TOL = 1e-3
DEFAULT_CKPT = "runs/ghn-v2-float/ckpt"


def duplicate_rows(w: torch.Tensor) -> int:
    """How many output channels of `w` repeat an earlier one exactly (0: all distinct)."""
    flat = w.detach().reshape(w.shape[0], -1)
    return int(w.shape[0] - torch.unique(flat, dim=0).shape[0])


def rank_share(w: torch.Tensor, tol: float = RANK_TOL) -> tuple[int, int, float]:
    """(numerical rank, min(out, fan_in), share): singular values above `tol` × the largest."""
    flat = w.detach().reshape(w.shape[0], -1).float()  # float32 resolves 1e-3 × the largest with room to spare
    s = torch.linalg.svdvals(flat)
    full = min(flat.shape)
    r = int((s > tol * s.max()).sum()) if s.numel() and float(s.max()) > 0 else 0
    return r, full, r / full if full else float("nan")


def _load_ckpt(path: Path) -> nn.Module:
    """A GHN from a trainer checkpoint folder, read from a copy (the trainer may be rewriting it)."""
    from torch_qinit.training.train_state import load_trained_ghn

    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(3):
            try:
                for f in path.iterdir():
                    if f.is_file():
                        shutil.copy2(f, Path(tmp) / f.name)
                return load_trained_ghn(tmp)
            except Exception:  # noqa: BLE001 - a half-written file: wait for the next checkpoint write
                if attempt == 2:
                    raise
                time.sleep(5)
    raise RuntimeError("unreachable")


def load_ghns(ckpt: str | None, log: Callable[[str], None]) -> list[tuple[str, str, Any, str]]:
    """[(label, initialize_ method, weights= value or None for the default choice, description)]."""
    from torch_qinit.ghn import GHN, GHNConfig
    from torch_qinit.initialize import get_ghn

    ghns: list[tuple[str, str, Any, str]] = []
    why = ghn_unavailable_reason("ghn-qat")
    if why is None:
        bundled = get_ghn("ghn-qat", None)
        version = bundled.config.decoder_version  # the label says which decoder the shipped checkpoint has
        ghns.append((f"v{version} bundled ghn-qat", "ghn-qat", None,
                     f"the bundled ghn-qat checkpoint, decoder version {version}, chosen by "
                     f"initialize_'s default (weights=None); {getattr(bundled, 'source_id', '')}"))
    else:
        log(f"duplicates: bundled ghn-qat skipped: {why}")
    torch.manual_seed(0)
    v2 = GHN(GHNConfig()).eval()
    ghns.append(("v2 untrained", "ghn-qat", v2,
                 "GHN(GHNConfig()) after torch.manual_seed(0), untrained, "
                 f"decoder version {v2.config.decoder_version}"))
    if ckpt:
        p = Path(ckpt)
        if (p / "state.safetensors").is_file() or (p / "model.safetensors").is_file():
            ghn = _load_ckpt(p).eval()
            step, label = "", "v2 in training"
            if (p / "state.json").is_file():
                try:
                    meta = json.loads((p / "state.json").read_text())
                    step = f", step {meta.get('step')} of {meta.get('train_config', {}).get('steps')}"
                    label = f"v2 in training (step {meta.get('step')})"
                except (OSError, ValueError):
                    pass
            method = "ghn-qat" if ghn.config.bits else "ghn"
            ghns.append((label, method, ghn,
                         f"{p} (trainer checkpoint{step}; stage {method}, decoder version "
                         f"{ghn.config.decoder_version}), loaded with the trainer's load_trained_ghn"))
        else:
            log(f"duplicates: no checkpoint in {p}; the in-training v2 GHN is left out")
    return ghns


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta_params(tv: Any, name: str) -> int | None:
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            return _params(tv.models.get_model(name, weights=None))
    except Exception:  # noqa: BLE001 - sized on the real build instead
        return None


def model_rows(tv: Any, name: str, ghns: list[tuple[str, str, Any, str]], max_params: int, rank: bool,
               log: Callable[[str], None], rank_max_numel: int = RANK_MAX_NUMEL) -> list[dict]:
    """One 'dups' row per GHN (and 'rank' rows when `rank`) for torchvision model `name`.

    A rank model over `max_params` is still measured (it was asked for by name), but its rows are marked
    ``in_summary=False`` so the summary keeps to the models under the cap.
    """
    import torch_qinit

    meta = _meta_params(tv, name)
    over_cap = meta is not None and meta > max_params
    if over_cap and not rank:
        return [{"part": "dups", "model": name, "params": meta, "status": f"skipped (> {max_params:,} params)"}]
    try:
        torch.manual_seed(0)
        model = tv.models.get_model(name, weights=None).eval()
    except Exception as exc:  # noqa: BLE001 - torchvision's business; recorded
        error = f"{type(exc).__name__}: {exc}"[:200]
        return [{"part": "dups", "model": name, "status": "build failed", "error": error}]
    n = _params(model)
    over_cap = n > max_params
    if over_cap and not rank:
        return [{"part": "dups", "model": name, "params": n, "status": f"skipped (> {max_params:,} params)"}]
    size = 299 if "inception" in name else 224
    x = torch.randn(1, 3, size, size)
    rows = []
    for label, method, weights, _ in ghns:
        row: dict[str, Any] = {"part": "dups", "model": name, "params": n, "ghn": label, "in_summary": not over_cap}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                rep = torch_qinit.initialize_(model, bits=4, method=method, weights=weights, calibrate=False,
                                              example_input=x, generator=torch.Generator().manual_seed(0))
                row["init_ms"] = (time.perf_counter() - t0) * 1000
        except Exception as exc:  # noqa: BLE001 - counted
            row.update({"status": "error", "error": f"{type(exc).__name__}: {exc}"[:200]})
            rows.append(row)
            continue
        named = dict(model.named_parameters(remove_duplicate=False))
        checked, dup_weights, dup_total, worst = 0, 0, 0, ("", 0, 0)
        weights_checked = []
        for pname, src in rep.sources.items():
            p = named.get(pname)
            if src != "ghn" or p is None or p.ndim < 2 or not pname.endswith("weight"):
                continue
            checked += 1
            d = duplicate_rows(p)
            weights_checked.append((pname, p))
            if d:
                dup_weights += 1
                dup_total += d
                if d > worst[1]:
                    worst = (pname, d, p.shape[0])
        row.update({"status": "ok", "weights_checked": checked, "weights_with_duplicates": dup_weights,
                    "duplicate_rows": dup_total, "rows_checked": sum(p.shape[0] for _, p in weights_checked),
                    "worst_layer": f"{worst[0]} ({worst[1]} of {worst[2]} rows)" if worst[1] else "",
                    "capture_method": rep.capture_method, "fallback_params": rep.num_fallback})
        rows.append(row)
        log(f"duplicates: {name:<22} {label:<28} {checked:>4} weights, {dup_weights:>4} with duplicates "
            f"({dup_total} rows)  {row['init_ms']:.0f} ms")
        if rank:
            def width(item: tuple[str, torch.Tensor]) -> tuple[int, int]:
                w = item[1]
                return (min(w.shape[0], w[0].numel()), -w.numel())

            eligible = [it for it in weights_checked if it[1].numel() <= rank_max_numel]
            for pname, p in sorted(eligible, key=width, reverse=True)[:RANK_LAYERS]:
                r, full, share = rank_share(p)
                rows.append({"part": "rank", "model": name, "ghn": label, "layer": pname,
                             "shape": "x".join(str(s) for s in p.shape), "rank": r, "full_rank": full,
                             "rank_share": share, "duplicate_rows": duplicate_rows(p)})
                log(f"duplicates: rank {name}.{pname} {tuple(p.shape)} {label}: {r}/{full} ({100 * share:.0f} %)")
    del model
    return rows


def _summary(rows: list[dict], labels: list[str]) -> list[dict]:
    out = []
    for label in labels:
        sel = [r for r in rows if r.get("part") == "dups" and r.get("ghn") == label and r.get("status") == "ok"
               and r.get("in_summary", True)]
        if not sel:
            continue
        out.append({"ghn": label, "models": len(sel),
                    "models_with_duplicates": sum(1 for r in sel if r["weights_with_duplicates"]),
                    "weights_checked": sum(r["weights_checked"] for r in sel),
                    "weights_with_duplicates": sum(r["weights_with_duplicates"] for r in sel),
                    "duplicate_rows": sum(r["duplicate_rows"] for r in sel),
                    "rows_checked": sum(r["rows_checked"] for r in sel),
                    "errors": sum(1 for r in rows if r.get("part") == "dups" and r.get("ghn") == label
                                  and r.get("status") == "error")})
    return out


def _markdown(rows: list[dict], ghns: list[tuple[str, str, Any, str]], note: str, notes: list[str],
              rank_max_numel: int = RANK_MAX_NUMEL) -> str:
    labels = [g[0] for g in ghns]
    parts = [note]
    if ghns:
        parts.append("GHNs:\n\n" + "\n".join(f"- **{label}**: {desc}" for label, _, _, desc in ghns))
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    if not rows:
        return "\n\n".join(parts)
    summ = _summary(rows, labels)
    parts.append("## Summary: duplicate output channels in predicted conv/linear weights\n\n"
                 + results.markdown_table(summ))
    per_model: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("part") != "dups":
            continue
        d = per_model.setdefault(r["model"], {"model": r["model"], "params": f"{r['params']:,}" if r.get("params")
                                              else ""})
        if not r.get("in_summary", True):
            d["note"] = "over the cap, measured for the rank table only (not in the summary)"
        if r.get("status") != "ok":
            d[r.get("ghn") or "note"] = r.get("status", "") + (f": {r['error']}" if r.get("error") else "")
            continue
        d[r["ghn"]] = (f"{r['weights_with_duplicates']}/{r['weights_checked']} weights, "
                       f"{r['duplicate_rows']} rows")
    parts.append("## Per model (weights with duplicates / predicted conv-linear weights; duplicate rows)\n\n"
                 + results.markdown_table(list(per_model.values()), ["model", "params", *labels, "note"]))
    rank = [r for r in rows if r.get("part") == "rank"]
    if rank:
        parts.append(f"## Numerical rank of the widest layers (singular values > {RANK_TOL:g} × the largest)\n\n"
                     f"Per model, the {RANK_LAYERS} predicted weights with the largest min(out, fan_in) (of at "
                     f"most {rank_max_numel:,} elements), reshaped to out × fan_in; float32 SVD. Rank models "
                     "are measured even when over the parameter cap.\n\n"
                     + results.markdown_table([{**r, "rank_share": f"{100 * r['rank_share']:.1f} %"} for r in rank],
                                              ["model", "layer", "shape", "ghn", "rank", "full_rank", "rank_share",
                                               "duplicate_rows"]))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"torch-qinit bench {NAME}", description=__doc__.split("\n\n")[0])
    common_args(parser)
    parser.add_argument("--max-params", type=int, default=100_000_000,
                        help="skip torchvision models larger than this (default 100M)")
    parser.add_argument("--models", nargs="+", default=None,
                        help="torchvision models (default: all classification models; quick: a few)")
    parser.add_argument("--rank-models", nargs="*", default=None,
                        help=f"models whose widest layers get a rank measurement (default {' '.join(RANK_MODELS)})")
    parser.add_argument("--ghn-ckpt", default=DEFAULT_CKPT,
                        help=f"a version-2 checkpoint in training to check too, if it exists (default {DEFAULT_CKPT})")
    parser.add_argument("--rank-max-numel", type=int, default=RANK_MAX_NUMEL,
                        help=f"leave layers with more elements out of the rank table (default {RANK_MAX_NUMEL:,})")
    parser.add_argument("--tag", default="",
                        help="write duplicates_TAG.{csv,md} instead (a supplementary run beside the main one)")
    args = parser.parse_args(argv)
    name_out = f"{NAME}_{args.tag}" if args.tag else NAME
    log = print
    with bench_context(args):
        t_start = time.perf_counter()
        rows: list[dict] = []
        ghns: list[tuple[str, str, Any, str]] = []
        notes: list[str] = []
        try:
            tv = importlib.import_module("torchvision")
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
            tv = None
            note = f"Skipped: torchvision is not importable here ({type(exc).__name__}: {exc}); it is optional."
        if tv is not None:
            ghns = load_ghns(args.ghn_ckpt, log)
            all_names = list(tv.models.list_models(module=tv.models))
            names = args.models or (TV_QUICK if args.quick else all_names)
            names = [n for n in names if n in all_names]
            rank_models = set(RANK_MODELS if args.rank_models is None else args.rank_models)
            note = (f"torch {torch.__version__}, torchvision {tv.__version__}; {torch.get_num_threads()} thread(s). "
                    f"Models: torchvision classification models (`list_models(module=torchvision.models)`), "
                    f"`weights=None`, up to {args.max_params:,} parameters, example input 1×3×224×224 (299 for "
                    "Inception) for the hooks fallback; `initialize_(model, bits=4, weights=GHN, calibrate=False)`.")
            for name in names:
                rows += model_rows(tv, name, ghns, args.max_params, name in rank_models, log, args.rank_max_numel)
        notes.append(f"wall time of this run: {time.perf_counter() - t_start:.0f} s")
        for s in _summary(rows, [g[0] for g in ghns]):
            log(f"duplicates: {s['ghn']}: {s['models_with_duplicates']}/{s['models']} models, "
                f"{s['weights_with_duplicates']}/{s['weights_checked']} weights, {s['duplicate_rows']} duplicate rows")
        csv = results.write_csv(name_out, rows or [{"status": note}], args.quick)
        md = results.write_markdown(name_out, "Duplicate filters and rank of predicted weights (torchvision)",
                                    _markdown(rows, ghns, note, notes, args.rank_max_numel), args.quick)
        for p in [csv, md]:
            print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
