"""`classic` 150-step W4A4 QAT runs over seeds 0-2: the GHN-QAT trained with the norm floor
(training_state/ghn-v2-qat-floor at step 5,800 and its completed step 8,000), the GHN-QAT f8df57b5 it
was warm-started from, the GHN-QAT a281d5d0 (the floor run + a second 8,000-step cycle, float16 as
shipped), and He normal.

    python benchmarks/scripts/norm_floor_summary.py

Reads the raw `qat_from_init` rows in `benchmarks/results/norm_floor/` (commands in its README.md; the
seed-0 rows of f8df57b5 and He, `*_s0.csv`, are copied from the README's `qat_from_init_classic{_sgd,}.csv`
run of 2026-11-27, before those files were re-run with a later checkpoint; a281d5d0's seed-0 rows are its
ghn-qat rows of the re-run that finished 2026-11-27 19:54 UTC).  Prints final accuracy (%), mean over seeds
per net, then the mean and the median over nets, the per-seed means and the runs that ended at chance.
"""
import csv
import statistics
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
NETS = {"0": "LeNet-5", "5": "ResNet-18-like", "6": "MobileNetV2-like", "8": "SqueezeNet-like",
        "11": "MLP, 4 layers, BN"}
# (optimizer, column) -> [(csv file, method in that file)]
SOURCES = {
    (opt, column): files
    for opt in ("sgd", "adam")
    for column, files in {
        "floor@5800": [(f"norm_floor/{opt}_floor_s0.csv", "ghn-qat"), (f"norm_floor/{opt}_floor_s12.csv", "ghn-qat")],
        "floor@8000": [(f"norm_floor/{opt}_final_s012.csv", "ghn-qat")],
        "f8df57b5": [(f"norm_floor/{opt}_f8df57b5_s0.csv", "ghn-qat"),
                     (f"norm_floor/{opt}_f8df57b5_s12.csv", "ghn-qat")],
        "a281d5d0": [(f"norm_floor/{opt}_a281d5d0_s0.csv", "ghn-qat"),
                     (f"norm_floor/{opt}_a281d5d0_s12.csv", "ghn-qat")],
        "he_normal": [(f"norm_floor/{opt}_he_s0.csv", "he_normal"), (f"norm_floor/{opt}_he_s12.csv", "he_normal")],
    }.items()
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
    # one fragile net (SqueezeNet under SGD: 11-58 % between seeds) moves the mean by itself
    medians = [statistics.median(statistics.mean(data[c][a].values()) for a in NETS) for c in cols]
    print("| median | " + " | ".join(f"{m:.1f}" for m in medians) + " |")
    for c in cols:
        seeds = sorted({s for a in NETS for s in data[c][a]})
        per_seed = [statistics.mean(data[c][a][s] for a in NETS) for s in seeds]
        dead = sum(v < 15 for a in NETS for v in data[c][a].values())
        print(f"{c[0]} {c[1]}: per-seed means {', '.join(f'{m:.1f}' for m in per_seed)}; runs below 15 %: {dead}")


if __name__ == "__main__":
    main()
