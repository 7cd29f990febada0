"""`torch-qinit bench NAME [--quick]`: run a benchmark of the source tree.

The benchmarks (``benchmarks/`` next to ``torch_qinit/`` in a checkout) are not installed with the library:
they measure the numbers the README quotes, write them to ``benchmarks/results/`` with the git revision, and
so belong to a source checkout.  This command finds them there (an editable install, or running from the
checkout) and says what to do when they are absent.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

__all__ = ["main", "load_benchmarks"]

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def load_benchmarks():  # noqa: ANN201 - the benchmarks package
    """The ``benchmarks`` package of the checkout this torch_qinit was imported from; ImportError if none."""
    if not (SOURCE_ROOT / "benchmarks" / "__init__.py").is_file():
        raise ImportError(f"no benchmarks/ in {SOURCE_ROOT}")
    if str(SOURCE_ROOT) not in sys.path:
        sys.path.insert(0, str(SOURCE_ROOT))
    return importlib.import_module("benchmarks")


def main(argv: list[str] | None = None) -> int:
    try:
        benchmarks = load_benchmarks()
    except ImportError:
        print("torch-qinit bench: the benchmarks live in the source repository (benchmarks/ next to "
              f"torch_qinit/), not in the installed package, and none was found next to {SOURCE_ROOT / 'torch_qinit'}. "
              "Clone the repository and install it editable there (pip install -e .), then run "
              "torch-qinit bench from it.", file=sys.stderr)
        return 2
    return int(benchmarks.main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
