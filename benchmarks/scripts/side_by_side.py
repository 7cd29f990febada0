"""Final accuracies of `bench qat_from_init` runs from several result files, one column each, per net.

For comparing runs of the same method made with different checkpoints (which `--merge` refuses: one
method name, one run per arch and seed), e.g. the shipped GHN-QAT against a candidate:

    python benchmarks/scripts/side_by_side.py \
        "shipped=benchmarks/results/classic_all/qat_from_init_classic_sgd.csv:ghn-qat" \
        "candidate=/tmp/eval/qat_from_init_classic_sgd.csv:ghn-qat" \
        "He=benchmarks/results/classic_all/qat_from_init_classic_sgd.csv:he_normal"

Each column is LABEL=CSV[,CSV...]:METHOD.  Prints a Markdown table: per net "seed 0 / seed 1 / ..."
final accuracy (%), then the mean, median and number of runs at chance (final accuracy below 15 %) over
the nets every column has.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict

from torch_qinit.space import get_arch

CHANCE = 0.15  # a 10-class run that ends below this learned nothing


def read_column(spec: str) -> tuple[str, dict[int, dict[int, float]]]:
    """LABEL=CSV[,CSV...]:METHOD -> (label, {arch: {seed: final_acc}})."""
    label, _, rest = spec.partition("=")
    paths, _, method = rest.rpartition(":")
    if not (label and paths and method):
        raise SystemExit(f"side_by_side: expected LABEL=CSV[,CSV...]:METHOD, got {spec!r}")
    runs: dict[int, dict[int, float]] = defaultdict(dict)
    for path in paths.split(","):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row["method"] == method and row.get("status", "ok") == "ok":
                    runs[int(row["arch"])][int(row["seed"])] = float(row["final_acc"])
    if not runs:
        raise SystemExit(f"side_by_side: no {method!r} runs in {paths}")
    return label, runs


def table(columns: list[tuple[str, dict[int, dict[int, float]]]], split: str = "classic") -> str:
    archs = sorted(set.intersection(*(set(runs) for _, runs in columns)))
    lines = ["| net | " + " | ".join(label for label, _ in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for a in archs:
        cells = [" / ".join(f"{100 * runs[a][s]:.1f}" for s in sorted(runs[a])) for _, runs in columns]
        name = get_arch(split, a).name.replace("|", "\\|")  # sampled nets name their parts with pipes
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    summary = []
    for _, runs in columns:
        accs = [acc for a in archs for acc in runs[a].values()]
        dead = sum(acc < CHANCE for acc in accs)
        summary.append(f"{100 * statistics.mean(accs):.1f} (median {100 * statistics.median(accs):.1f}, "
                       f"{dead} of {len(accs)} at chance)")
    lines.append("| **mean over runs** | " + " | ".join(summary) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("columns", nargs="+", help="LABEL=CSV[,CSV...]:METHOD")
    p.add_argument("--split", default="classic", help="the held-out split the runs' arch indices refer to")
    args = p.parse_args(argv)
    print(table([read_column(c) for c in args.columns], args.split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
