"""Results of `compare`: the Markdown table, JSON, CSV, the PNG of the curves, and the exit code."""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..results import pyplot, write_csv
from .errors import EXIT_DIVERGED, EXIT_OK, EXIT_REQUIREMENT_FAILED, EXIT_USAGE
from .gates import GateOutcome
from .runner import CompareResult

__all__ = ["markdown", "verdicts", "write_outputs", "plot_curves", "append_step_summary", "exit_code",
           "STEP_SUMMARY_ENV"]

logger = logging.getLogger(__name__)

#: GitHub Actions' job-summary file; `compare` appends its table there when it is set.
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def _pct(mean: float, std: float, n: int) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if n > 1 else f"{100 * mean:.1f}"


def _secs(s: float) -> str:
    return "–" if not math.isfinite(s) else (f"{s:.1f} s" if s < 100 else f"{s / 60:.1f} min")


def _status(row: dict[str, Any]) -> str:
    parts = []
    if row["failed"]:
        prefix = "failed" if not row["runs_ok"] else f"{row['failed']}/{row['runs']} failed"
        parts.append(f"{prefix}: {row['error']}".replace("|", "\\|"))
    if row["diverged"]:
        parts.append(f"diverged in {row['diverged']}/{row['runs']} runs")
    if row["fallback_params"]:
        parts.append(f"{row['fallback_params']} params fell back to he_normal")
    return "; ".join(parts) or "ok"


def verdicts(result: CompareResult) -> list[str]:
    """One sentence per GHN method and bit width: does it beat the best classic start?"""
    from torch_qinit.initialize import GHN_METHODS

    key = "final_mean" if result.trained else "zero_shot_mean"
    after = "after QAT" if result.trained else "zero-shot"
    out = []
    for w, a in result.bit_configs():
        rows = [r for r in result.summary if r["bits"] == w and r["act_bits"] == a and r["runs_ok"]
                and math.isfinite(r[key])]
        classic = max((r for r in rows if r["method"] not in GHN_METHODS), key=lambda r: r[key], default=None)
        if classic is None:
            continue
        for ghn in (r for r in rows if r["method"] in GHN_METHODS):
            diff = 100 * (ghn[key] - classic[key])
            word = "beats" if diff > 0 else "does not beat"
            text = (f"**W{w}A{a}**: {ghn['method']} {word} the best classic init ({classic['method']}) {after}: "
                    f"{100 * ghn[key]:.1f} vs {100 * classic[key]:.1f} % ({diff:+.1f} pp)")
            if result.trained:
                zs = 100 * (ghn["zero_shot_mean"] - classic["zero_shot_mean"])
                reach = ghn["steps_to_target"]
                text += f"; zero-shot {zs:+.1f} pp; " + (
                    f"it reaches {classic['method']}'s final accuracy at step {reach} of {result.config['steps']}"
                    if reach is not None else f"it does not reach {classic['method']}'s final accuracy")
            out.append(text + ".")
    return out


def markdown(result: CompareResult, outcomes: Sequence[GateOutcome] = ()) -> str:
    """The result as Markdown: a header, the table per bit width and method, verdicts and gates."""
    c = result.config
    n_seeds = len(c["seeds"])
    budget = (f"{c['steps']} QAT steps" + (f" ({c['epochs']} epochs)" if c.get("epochs") else "")
              + f", {c['optimizer']} lr {c['lr']:g}, batch {c['batch_size']}"
              ) if result.trained else "no QAT (zero-shot only)"
    lines = [f"### torch-qinit compare: `{c['model']}` on {c['data']}", "",
             f"{budget}; seeds {', '.join(map(str, c['seeds']))}; test accuracy in %"
             + (", mean ± std over seeds" if n_seeds > 1 else "") + f". {result.machine}; "
             f"total {_secs(result.seconds)}.", ""]
    final_col = f"after {c['steps']} QAT steps" if result.trained else "after QAT (not run)"
    lines += [f"| bits | method | zero-shot | {final_col} | steps to target | time / run | status |",
              "|---|---|---|---|---|---|---|"]
    for w, a in result.bit_configs():
        rows = [r for r in result.summary if r["bits"] == w and r["act_bits"] == a]
        finals = [r["final_mean"] for r in rows if r["runs_ok"] and math.isfinite(r["final_mean"])]
        best = max(finals, default=math.nan)
        for r in rows:
            fin = _pct(r["final_mean"], r["final_std"], r["runs_ok"])
            if len(finals) > 1 and r["final_mean"] == best:
                fin = f"**{fin}**"
            reach = ("–" if not r["target_method"] or not r["runs_ok"]
                     else "not reached" if r["steps_to_target"] is None else str(r["steps_to_target"]))
            lines.append(f"| W{w}A{a} | {r['method']} | {_pct(r['zero_shot_mean'], r['zero_shot_std'], r['runs_ok'])} "
                         f"| {fin if result.trained else '–'} | {reach} | {_secs(r['seconds_mean'])} | {_status(r)} |")
    targets = {(r["bits"], r["act_bits"]): (r["target_method"], r["target"]) for r in result.summary
               if r["target_method"]}
    if targets:
        lines += ["", "Target: the best classic init's final accuracy ("
                  + "; ".join(f"W{w}A{a}: {m} {100 * t:.1f} %" for (w, a), (m, t) in targets.items())
                  + f"); the curves are evaluated every {c['eval_every']} steps."]
    v = verdicts(result)
    if v:
        lines += [""] + [f"- {s}" for s in v]
    ghn = result.config.get("ghn_weights") or {}
    if ghn:
        lines += ["", "GHN checkpoints: " + "; ".join(f"{m}: {w}" for m, w in ghn.items())]
    notes = {(r.method, n) for r in result.runs for n in r.notes}
    if notes:  # warnings from initialize_ and QAT (e.g. a bit width the GHN never saw, skipped steps)
        lines += ["", "Notes:"] + [f"- {m}: {n}" for m, n in sorted(notes)[:12]]
    if result.diverged_runs:
        lines += ["", "Diverged (QAT ended in NaN): " + ", ".join(
            f"{r.method} W{r.bits}A{r.act_bits} seed {r.seed}"
            + (f" (stopped at step {r.stopped_at})" if r.stopped_at else "") for r in result.diverged_runs)]
    if outcomes:
        lines += ["", "| requirement | result | measured |", "|---|---|---|"]
        lines += [f"| `{o.requirement}` | {'PASS' if o.passed else '**FAIL**'} | {o.detail} |" for o in outcomes]
    return "\n".join(lines) + "\n"


def exit_code(result: CompareResult, outcomes: Sequence[GateOutcome] = (), fail_on_divergence: bool = False) -> int:
    """3 if `fail_on_divergence` and a run diverged, else 1 if a requirement failed, 2 if nothing ran, else 0."""
    if fail_on_divergence and result.diverged_runs:
        return EXIT_DIVERGED
    if any(not o.passed for o in outcomes):
        return EXIT_REQUIREMENT_FAILED
    if not any(r.status == "ok" for r in result.runs):
        return EXIT_USAGE
    return EXIT_OK


def append_step_summary(md: str) -> Path | None:
    """Append `md` to ``$GITHUB_STEP_SUMMARY`` when it is set (GitHub Actions); returns the path or None."""
    target = os.environ.get(STEP_SUMMARY_ENV)
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as f:
        f.write(md if md.endswith("\n") else md + "\n")
    return path


def plot_curves(result: CompareResult, path: str | os.PathLike[str]) -> Path | None:
    """PNG of the mean QAT curves, one panel per bit width; None (and a log note) without matplotlib."""
    plt = pyplot()
    if plt is None:
        logger.info("matplotlib is not installed: no PNG (pip install 'torch_qinit[plot]')")
        return None
    configs = result.bit_configs()
    fig, axes = plt.subplots(1, len(configs), figsize=(5.2 * len(configs), 3.9), squeeze=False)
    for ax, (w, a) in zip(axes[0], configs):
        for r in result.summary:
            if r["bits"] != w or r["act_bits"] != a or not r["curve"]:
                continue
            steps = [s for s, _ in r["curve"]]
            ax.plot(steps, [100 * v for _, v in r["curve"]], marker="o", ms=3, label=r["method"])
        for m, t in {(r["target_method"], r["target"]) for r in result.summary
                     if r["bits"] == w and r["act_bits"] == a and r["target_method"]}:
            ax.axhline(100 * t, color="grey", ls=":", lw=1, label=f"target ({m})")
        ax.set_title(f"W{w}A{a}: QAT from each init (mean of {len(result.config['seeds'])} seed(s))", fontsize=9)
        ax.set_xlabel("QAT step (0 = zero-shot)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"torch-qinit compare: {result.config['model']}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_SUMMARY_COLS = ["bits", "act_bits", "method", "runs", "runs_ok", "zero_shot_mean", "zero_shot_std", "final_mean",
                 "final_std", "target_method", "target", "steps_to_target", "diverged", "skipped_steps",
                 "fallback_params", "seconds_mean", "seconds_total", "error"]
_RUN_COLS = ["method", "bits", "act_bits", "seed", "status", "zero_shot", "final", "final_loss", "skipped_steps",
             "diverged", "stopped_at", "fallback_params", "seconds", "error"]


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else round(v, 6)
    return "" if v is None else v


def write_outputs(result: CompareResult, out_dir: str | os.PathLike[str], outcomes: Sequence[GateOutcome] = (),
                  *, plot: bool = True, extra: dict[str, Any] | None = None) -> list[Path]:
    """Write ``summary.md``, ``results.json``, ``summary.csv``, ``runs.csv``, ``curves.csv`` and ``curves.png``.

    `extra` (e.g. the command line and exit code) is stored in the JSON.  The PNG is skipped when
    `plot` is false or matplotlib is missing.  Returns the written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.md", out / "results.json", out / "summary.csv", out / "runs.csv", out / "curves.csv"]
    written[0].write_text(markdown(result, outcomes), encoding="utf-8")
    doc = result.to_dict()
    doc["requirements"] = [{"requirement": o.requirement, "bits": o.bits, "passed": o.passed, "detail": o.detail}
                           for o in outcomes]
    doc.update(extra or {})
    written[1].write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    write_csv(written[2], [{k: _cell(r[k]) for k in _SUMMARY_COLS} for r in result.summary], _SUMMARY_COLS)
    write_csv(written[3], [{k: _cell(getattr(r, k)) for k in _RUN_COLS} for r in result.runs], _RUN_COLS)
    write_csv(written[4], [{"method": r.method, "bits": r.bits, "act_bits": r.act_bits, "seed": r.seed, "step": s,
                            "accuracy": _cell(acc)} for r in result.runs for s, acc in r.curve],
              ["method", "bits", "act_bits", "seed", "step", "accuracy"])
    if plot and result.trained:
        png = plot_curves(result, out / "curves.png")
        if png is not None:
            written.append(png)
    return written
