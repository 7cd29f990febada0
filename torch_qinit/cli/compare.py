"""`torch-qinit compare MODEL`: does GHN-QAT help *your* model? Table, files, and a CI gate.

    torch-qinit compare models.py:lenet --dataset fmnist --bits 4,2 --steps 200 --seeds 0,1 \\
        --require "ghn-qat >= he_normal + 2" --fail-on-divergence

MODEL is package.module:factory or path/to/file.py:factory (returning an nn.Module).
Requirements: "A >= B + 2" on mean accuracies in % (final after QAT; METHOD@BITS pins a bit width,
METHOD:zero_shot uses zero-shot accuracy); checked at every measured bit width.

exit codes: 0 ok; 1 a --require failed; 2 usage, model or data error (or nothing could run);
3 --fail-on-divergence and a QAT run ended in NaN.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys

import torch

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torch-qinit compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("model", metavar="MODEL", help="package.module:factory or path/to/file.py:factory")
    a("--model-kwargs", default=None, help="JSON object of factory keyword arguments, e.g. '{\"num_classes\": 10}'")
    a("--dataset", choices=["fmnist", "cifar10", "imagefolder"], help="built-in data (with --data-dir)")
    a("--data", default=None, help="module:loaders or file.py:loaders returning (train_loader, test_loader)")
    a("--data-dir", default=None, help="dataset folder (imagefolder: DIR/train/<class>/* and DIR/test/<class>/*)")
    a("--methods", default="ghn-qat,ghn,he_normal,glorot_uniform", help="comma-separated (torch-qinit info)")
    a("--bits", default="4,2", help="weight bit widths, comma-separated (default 4,2)")
    a("--act-bits", default=None, help="activation bits: one value or one per --bits (default: = --bits)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, help="QAT steps per run (default 100; 0: zero-shot only)")
    budget.add_argument("--epochs", type=int, default=None, help="QAT epochs per run instead of --steps")
    a("--optimizer", choices=["adam", "sgd"], default="adam")
    a("--lr", type=float, default=None, help="learning rate (default: adam 1e-3, sgd 0.05)")
    a("--seeds", default="0", help="comma-separated seeds (default 0)")
    a("--eval-every", type=int, default=None, help="curve point every N steps (default: steps / 10)")
    a("--batch-size", type=int, default=128)
    a("--train-size", type=int, default=None, help="seeded subset of the built-in training set")
    a("--test-size", type=int, default=None, help="seeded subset of the built-in test set")
    a("--require", action="append", default=[], metavar="EXPR", help='e.g. "ghn-qat >= he_normal + 2" (repeatable)')
    a("--fail-on-divergence", action="store_true", help="exit 3 when any QAT run ends in NaN")
    a("--out", default="compare_results", help="folder for summary.md, results.json, *.csv, curves.png")
    a("--no-plot", action="store_true", help="skip curves.png")
    a("--no-progress", action="store_true", help="no progress bars")
    a("--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch's default)")
    a("--device", default="cpu")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for a usage error
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from torch_qinit import compare as C

    try:
        methods = C.parse_methods(args.methods)
        requirements = [C.parse_requirement(r, methods) for r in args.require]
        result = C.compare(args.model, args.data, dataset=args.dataset, data_dir=args.data_dir,
                           model_kwargs=C.parse_model_kwargs(args.model_kwargs), methods=methods, bits=args.bits,
                           act_bits=args.act_bits, steps=args.steps, epochs=args.epochs, optimizer=args.optimizer,
                           lr=args.lr, seeds=args.seeds, eval_every=args.eval_every, batch_size=args.batch_size,
                           train_size=args.train_size, test_size=args.test_size, device=args.device,
                           progress=not args.no_progress)
    except C.CompareError as exc:
        print(f"torch-qinit compare: error: {exc}", file=sys.stderr)
        return exc.exit_code
    outcomes = C.check_requirements(result, requirements)
    code = C.exit_code(result, outcomes, args.fail_on_divergence)
    md = C.markdown(result, outcomes)
    print(md)
    command = "torch-qinit compare " + " ".join(shlex.quote(x) for x in argv)
    written = C.write_outputs(result, args.out, outcomes, plot=not args.no_plot,
                              extra={"command": command, "exit_code": code})
    summary = C.append_step_summary(md)
    if not args.no_plot and result.trained and not any(p.suffix == ".png" for p in written):
        print("note: matplotlib is not installed, no curves.png (pip install 'torch_qinit[plot]')")
    print("wrote " + ", ".join(str(p) for p in written) + (f"; appended to {summary}" if summary else ""))
    if code == C.EXIT_DIVERGED:
        print(f"FAILED: {len(result.diverged_runs)} QAT run(s) ended in NaN (--fail-on-divergence)", file=sys.stderr)
    elif code == C.EXIT_REQUIREMENT_FAILED:
        for o in outcomes:
            if not o.passed:
                print(f"FAILED requirement {o.requirement!r}: {o.detail}", file=sys.stderr)
    elif code == C.EXIT_USAGE:
        print("FAILED: no method could run on this model (see the status column)", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
