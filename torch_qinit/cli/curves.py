"""`torch-qinit curves`: plot GHN training curves from run directories.

    torch-qinit curves runs/ghn-float runs/ghn-qat --out benchmarks/results/ghn_training

Reads each run's OUT/ckpt/state.json history (loss and training accuracy every
--log-every steps, as logged by `torch-qinit train`, and the held-out validation
accuracies every --val-every steps when the run logged them) and writes NAME.csv and NAME.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torch_qinit.data import dataset_for_input
from torch_qinit.results import moving_average, pyplot, write_csv

__all__ = ["main", "read_history", "val_series"]

#: Validation columns of a history row (`torch_qinit.training.validation.val_bits`) and how they are plotted.
VAL_LABELS = {"val_float": "val float", "val_w4": "val W4A4", "val_w2": "val W2A2"}


def _read_state(run_dir: Path) -> dict:
    return json.loads((run_dir / "ckpt" / "state.json").read_text())


def _history(state: dict) -> tuple[str, list[dict]]:
    return state["train_config"]["stage"], state.get("history", [])


def read_history(run_dir: Path) -> tuple[str, list[dict]]:
    """(stage, history rows) of a training run."""
    return _history(_read_state(run_dir))


def dataset_title(state: dict) -> str:
    """The training data of a run, named from the input shape its GHN was built for."""
    shape = tuple(state.get("ghn_config", {}).get("input_shape", ()))
    info = dataset_for_input(shape) if shape else None
    return info.title if info else "x".join(map(str, shape)) or "?"


def val_series(hist: list[dict], offset: int = 0) -> dict[str, tuple[list[int], list[float]]]:
    """{validation column: (steps, accuracies)} of the rows that hold it; empty for a run logged without validation."""
    return {k: ([offset + h["step"] for h in hist if k in h], [h[k] for h in hist if k in h])
            for k in VAL_LABELS if any(k in h for h in hist)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="torch-qinit curves", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories (the --out of torch-qinit train)")
    p.add_argument("--out", default="ghn_training", help="output path without extension")
    p.add_argument("--smooth", type=int, default=10, help="moving-average window in logged points")
    args = p.parse_args(argv)
    rows, series, datasets = [], [], []
    offset = 0
    for run in args.runs:
        try:
            state = _read_state(Path(run))
            stage, hist = _history(state)
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            print(f"error: cannot read {run}/ckpt/state.json: {exc}", file=sys.stderr)
            return 1
        datasets.append(dataset_title(state))
        # Stages are shown back to back: the QAT run continues from the float run's end.
        logged = [h for h in hist if "loss" in h]  # a validation step that logged no training row has only val columns
        steps = [offset + h["step"] for h in logged]
        series.append((f"{stage} ({Path(run).name})", steps, [h["loss"] for h in logged], [h["acc"] for h in logged],
                       val_series(hist, offset)))
        rows += [{"run": Path(run).name, "stage": stage, "global_step": offset + h["step"], **h} for h in hist]
        offset = max([offset + h["step"] for h in hist], default=offset)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out.with_suffix(".csv"), rows)
    plt = pyplot()
    if plt is None:
        print("matplotlib is not installed: wrote only the CSV (pip install 'torch_qinit[plot]')")
        return 0

    def smooth(v: list[float]) -> list[float]:
        return moving_average(v, args.smooth)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    # (marker, line style, legend label) of each measured series
    styles = {"train": ("", "-", "train batches")} | {
        key: (marker, ls, VAL_LABELS[key]) for key, marker, ls in zip(VAL_LABELS, "os^", ("--", ":", "-."))}
    for label, steps, loss, acc, val in series:
        line, = ax1.plot(steps, smooth(loss), label=label)
        ax2.plot(steps, smooth([100 * a for a in acc]), color=line.get_color())
        for key, (vsteps, vacc) in val.items():
            marker, ls, _ = styles[key]
            ax2.plot(vsteps, [100 * a for a in vacc], marker=marker, linestyle=ls, color=line.get_color(), markersize=3)
    ax1.set(xlabel="GHN training step", ylabel=f"loss (moving average of {args.smooth} logs)", yscale="log")
    ax2.set(xlabel="GHN training step", ylabel="accuracy of predicted nets (%)")
    if any(val for *_, val in series):
        ax2.set_title("train: training batches (smoothed); val: held-out archs, test images, zero-shot", fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)  # colour = run, on both panels
    # line style = what was measured: one grey entry each, so the legend stays short with many runs
    shown = {"train"} | {key for *_, val in series for key in val}
    handles = [plt.Line2D([], [], color="0.3", marker=marker, linestyle=ls, markersize=3, label=name)
               for key, (marker, ls, name) in styles.items() if key in shown]
    ax2.legend(handles=handles, fontsize=8)
    # one figure per dataset reads best; runs of several datasets are named together
    fig.suptitle(f"GHN training on {' + '.join(dict.fromkeys(datasets))} "
                 "(QAT stage: bits drawn from {2,3,4,8}, mixed and float)")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
