"""Overlay two CIFAR-10 GHN runs by their own step: trained from scratch vs. warm-started from Fashion-MNIST.

`torch-qinit curves` chains the runs it is given as consecutive stages; here both start at step 0, so this
re-plots its CSV (benchmarks/results/cifar10_transfer.csv) with each run on its own step axis.

    python benchmarks/scripts/cifar10_transfer_plot.py benchmarks/results/cifar10_transfer.csv
"""
import csv
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from torch_qinit.results import moving_average


def main(path: str) -> None:
    rows = defaultdict(list)
    with open(path) as f:
        for row in csv.DictReader(f):
            rows[row["run"]].append(row)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (run, rs) in enumerate(rows.items()):
        color = f"C{i}"
        steps = [int(r["step"]) for r in rs]
        acc = [100 * float(r["acc"]) for r in rs]
        ax.plot(steps, moving_average(acc, 20), color=color, label=f"{run}: training batches")
        val = [(int(r["step"]), 100 * float(r["val_float"])) for r in rs if r["val_float"]]
        if val:
            ax.plot(*zip(*val), "o--", color=color, label=f"{run}: val float (8 held-out nets)")
    ax.set_xlabel("GHN training step (8 architectures per step)")
    ax.set_ylabel("accuracy of predicted nets (%)")
    ax.set_title("CIFAR-10 GHN: from scratch vs. warm start from the Fashion-MNIST GHN-QAT", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out = Path(path).with_suffix(".png")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1])
