"""Writing benchmark results: CSV + Markdown + PNG, stamped with command, git revision and machine."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from torch_qinit.results import machine_string
from torch_qinit.results import write_csv as _write_csv

__all__ = ["RESULTS_DIR", "provenance", "result_path", "write_csv", "markdown_table", "write_markdown",
           "save_figure"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def provenance() -> dict[str, str]:
    """The command, git revision and machine that produced a result."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent, timeout=5).stdout.strip()
        rev += "+dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        rev = "unknown"
    return {
        "command": "torch-qinit bench " + " ".join(sys.argv[1:]) if "bench" not in sys.argv[1:2]
        else "torch-qinit " + " ".join(sys.argv[1:]),
        "git": rev,
        "machine": machine_string(processor=True),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def result_path(name: str, quick: bool, ext: str) -> Path:
    """benchmarks/results/NAME.EXT, or NAME.quick.EXT for quick runs (git-ignored)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    return RESULTS_DIR / f"{name}{'.quick' if quick else ''}.{ext}"


def write_csv(name: str, rows: list[dict[str, Any]], quick: bool) -> Path:
    """NAME.csv (or NAME.quick.csv) in the results folder (`torch_qinit.results.write_csv`)."""
    return _write_csv(result_path(name, quick, "csv"), rows)


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A GitHub Markdown table of `rows` (floats to 3 significant decimals)."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_markdown(name: str, title: str, body: str, quick: bool) -> Path:
    """NAME.md with a title, the body (tables, notes) and the provenance block."""
    prov = provenance()
    text = f"# {title}\n\n{body}\n\n---\n" + "\n".join(f"- {k}: `{v}`" for k, v in prov.items()) + "\n"
    path = result_path(name, quick, "md")
    path.write_text(text)
    return path


def save_figure(fig: Any, name: str, quick: bool, suffix: str = "") -> Path:
    path = result_path(f"{name}{suffix}", quick, "png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
