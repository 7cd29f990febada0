"""`torch-qinit` console script: dispatches to sub-commands, imported lazily."""
from __future__ import annotations

import importlib
import sys

__all__ = ["main", "COMMANDS"]

# sub-command -> module exposing main(argv: list[str]) -> int | None
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("torch_qinit.cli.info", "show versions, the bundled GHN checkpoint and the dataset location"),
    "demo": ("torch_qinit.cli.demo", "the main job: compare initializers at W4A4 on Fashion-MNIST"),
    "compare": ("torch_qinit.cli.compare", "benchmark the inits on YOUR model and data; CI gate (--require)"),
    "train": ("torch_qinit.cli.train", "train a GHN (float) or GHN-QAT (quantization-aware finetune)"),
    "export": ("torch_qinit.cli.export", "write a training run's GHN as a checkpoint (also a run stopped early)"),
    "curves": ("torch_qinit.cli.curves", "plot GHN training curves of run directories"),
    "push": ("torch_qinit.cli.push", "upload a GHN checkpoint directory to the Hugging Face Hub: push DIR REPO_ID"),
    "bench": ("torch_qinit.cli.bench", "run a benchmark of the source tree: torch-qinit bench NAME [--quick]"),
}


def _usage() -> str:
    lines = ["usage: torch-qinit COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<6} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[cmd][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
