"""`classic` 150-step W4A4 QAT runs: the GHN-QAT trained with the norm floor (training_state/ghn-v2-qat-floor,
step 5,800) over seeds 0-2, against He normal (seeds 0-2) and the shipped GHN-QAT f8df57b5 (seed 0).

    python benchmarks/scripts/norm_floor_summary.py

Reads the raw `qat_from_init` rows: seed 0 of the shipped GHN-QAT and of He from
`benchmarks/results/qat_from_init_classic{_sgd,}.csv` (the README's run), the rest from
`benchmarks/results/norm_floor/` (commands in its README.md).  Prints final accuracy (%), mean over seeds
per net, then the mean over nets, the per-seed means and the runs that ended at chance.
"""
import csv
import statistics
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
NETS = {"0": "LeNet-5", "5": "ResNet-18-like", "6": "MobileNetV2-like", "8": "SqueezeNet-like", "11": "MLP, 4 layers, BN"}
# (optimizer, column) -> [(csv file, method in that file)]
SOURCES = {
    ("sgd", "ghn-qat floor"): [("norm_floor/sgd_floor_s0.csv", "ghn-qat"), ("norm_floor/sgd_floor_s12.csv", "ghn-qat")],
    ("sgd", "ghn-qat shipped"): [("qat_from_init_classic_sgd.csv", "ghn-qat")],
    ("sgd", "he_normal"): [("qat_from_init_classic_sgd.csv", "he_normal"), ("norm_floor/sgd_he_s12.csv", "he_normal")],
    ("adam", "ghn-qat floor"): [("norm_floor/adam_floor_s0.csv", "ghn-qat"), ("norm_floor/adam_floor_s12.csv", "ghn-qat")],
    ("adam", "ghn-qat shipped"): [("qat_from_init_classic.csv", "ghn-qat")],
    ("adam", "he_normal"): [("qat_from_init_classic.csv", "he_normal"), ("norm_floor/adam_he_s12.csv", "he_normal")],
}


def load(column: tuple[str, str]) -> dict[str, dict[str, float]]:
    """net -> seed -> final accuracy."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for name, method in SOURCES[column]:
        for row in csv.DictReader(open(RESULTS / name)):
            if row["method"] == method and row["arch"] in NETS:
                out[row["arch"]][row["seed"]] = 100 * float(row["final_acc"])
    return out


def main() -> None:
    data = {col: load(col) for col in SOURCES}
    cols = list(SOURCES)
    print("| net | " + " | ".join(f"{c} {o.upper()}" for o, c in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for arch, name in NETS.items():
        cells = [f"{statistics.mean(data[c][arch].values()):.1f}" for c in cols]
        print(f"| {name} | " + " | ".join(cells) + " |")
    means = [statistics.mean(statistics.mean(data[c][a].values()) for a in NETS) for c in cols]
    print("| **mean** | " + " | ".join(f"{m:.1f}" for m in means) + " |")
    for c in cols:
        seeds = sorted({s for a in NETS for s in data[c][a]})
        per_seed = [statistics.mean(data[c][a][s] for a in NETS) for s in seeds]
        dead = sum(v < 15 for a in NETS for v in data[c][a].values())
        print(f"{c[0]} {c[1]}: per-seed means {', '.join(f'{m:.1f}' for m in per_seed)}; runs below 15 %: {dead}")


if __name__ == "__main__":
    main()
