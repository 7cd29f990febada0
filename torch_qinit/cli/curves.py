"""`torch-qinit curves`: plot GHN training curves from run directories.

    torch-qinit curves runs/ghn-float runs/ghn-qat --out benchmarks/results/ghn_training

Reads each run's OUT/ckpt/state.json history (loss and training accuracy every
--log-every steps, as logged by `torch-qinit train`) and writes NAME.csv and NAME.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torch_qinit.results import pyplot, write_csv

__all__ = ["main", "read_history"]


def read_history(run_dir: Path) -> tuple[str, list[dict]]:
    """(stage, history rows) of a training run."""
    state = json.loads((run_dir / "ckpt" / "state.json").read_text())
    return state["train_config"]["stage"], state.get("history", [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="torch-qinit curves", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (the --out of torch-qinit train)")
    p.add_argument("--out", default="ghn_training", help="output path without extension")
    p.add_argument("--smooth", type=int, default=10, help="moving-average window in logged points")
    args = p.parse_args(argv)
    rows, series = [], []
    offset = 0
    for run in args.runs:
        try:
            stage, hist = read_history(Path(run))
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            print(f"error: cannot read {run}/ckpt/state.json: {exc}", file=sys.stderr)
            return 1
        # Stages are shown back to back: the QAT run continues from the float run's end.
        steps = [offset + h["step"] for h in hist]
        series.append((f"{stage} ({Path(run).name})", steps, [h["loss"] for h in hist], [h["acc"] for h in hist]))
        rows += [{"run": Path(run).name, "stage": stage, "global_step": s, **h} for s, h in zip(steps, hist)]
        offset = steps[-1] if steps else offset
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out.with_suffix(".csv"), rows)
    plt = pyplot()
    if plt is None:
        print("matplotlib is not installed: wrote only the CSV (pip install 'torch_qinit[plot]')")
        return 0

    def smooth(v: list[float]) -> list[float]:
        k = max(1, args.smooth)
        return [sum(v[max(0, i - k + 1):i + 1]) / len(v[max(0, i - k + 1):i + 1]) for i in range(len(v))]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, steps, loss, acc in series:
        ax1.plot(steps, smooth(loss), label=label)
        ax2.plot(steps, smooth([100 * a for a in acc]), label=label)
    ax1.set(xlabel="GHN training step", ylabel=f"loss (moving average of {args.smooth} logs)", yscale="log")
    ax2.set(xlabel="GHN training step", ylabel="training-batch accuracy of predicted nets (%)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("GHN training on Fashion-MNIST (QAT stage: bits drawn from {2,3,4,8}, mixed and float)")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
