"""Helpers for measured results, shared by `torch-qinit demo`, `compare` and the benchmarks (benchmarks/ in
the source tree), so all of them compute, stamp and write their numbers one way (ARCHITECTURE.md §4).
"""
from __future__ import annotations

import csv
import math
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["MAIN_METHODS", "machine_string", "mean_std", "moving_average", "pyplot", "write_csv"]

#: The methods the demo and every benchmark compare by default: both GHNs and two classic inits.
MAIN_METHODS: tuple[str, ...] = ("ghn-qat", "ghn", "he_normal", "glorot_uniform")


def mean_std(values: Iterable[float], skip_nan: bool = False) -> tuple[float, float]:
    """Mean and sample standard deviation (0.0 for one value; NaNs for none).

    `skip_nan` leaves non-finite values (NaN: runs that produced no number) out first; without it a NaN
    makes both NaN.
    """
    vals = [float(v) for v in values]
    if skip_nan:
        vals = [v for v in vals if math.isfinite(v)]
    if not vals or any(math.isnan(v) for v in vals):
        return math.nan, math.nan
    if len(vals) == 1:
        return vals[0], 0.0
    return statistics.fmean(vals), statistics.stdev(vals)


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last `window` points (fewer at the start); single logged batches are noisy."""
    k = max(1, window)
    return [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1]) for i in range(len(values))]


def machine_string(processor: bool = False) -> str:
    """Where a result was measured: CPU architecture and count (and `processor` name), torch version,
    threads, and the GPU when one is present (a run may have used it)."""
    cpu = f", {platform.processor() or platform.system()}" if processor else ""
    threads = torch.get_num_threads()
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{platform.machine()}, {os.cpu_count()} CPUs{cpu}, torch {torch.__version__}, "
            f"{threads} thread{'s' if threads != 1 else ''}{gpu}")


def write_csv(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]],
              columns: Sequence[str] | None = None) -> Path:
    """Write `rows` (dicts) as CSV with a header: `columns`, or every key in first-seen order."""
    path = Path(path)
    keys = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the Agg backend (files only, never a window), or None without matplotlib.

    Plotting is optional (``pip install 'torch_qinit[plot]'``): each caller says in its own words what it skips.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
