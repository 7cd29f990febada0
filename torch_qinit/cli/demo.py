"""`torch-qinit demo` (`make demo`): does the starting point matter for 4-bit QAT?

On Fashion-MNIST (or CIFAR-10 with --dataset cifar10), for a few held-out architectures of the
design space (`get_arch("test", i)`), each initializer (GHN-QAT, float GHN, He normal, Glorot
uniform) is measured twice at WbAb:

* zero-shot: initialize, recalibrate BN, fold BN, fake-quantize, test accuracy (ARCHITECTURE.md §4);
* after a short QAT run from that init (`torch_qinit.qat.qat_finetune`, same batches for every method).

It prints a table (mean ± std over architectures) and writes CSV, Markdown and a PNG to --out.
The defaults took 26-28 min on this project's 2-CPU machine (1 thread, beside other work; README,
"`make demo`"); --archs and --qat-steps shorten it. The measuring is `torch_qinit.compare.demo`
(compare's run loop); this module only parses and prints.

    torch-qinit demo
    torch-qinit demo --archs 3 --qat-steps 100 --out /tmp/demo
    torch-qinit demo --dataset cifar10 --data-dir ~/data/cifar-10-batches-py
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from torch_qinit.data.registry import DATASET_NAMES
from torch_qinit.results import MAIN_METHODS

__all__ = ["main", "build_parser", "DEFAULT_METHODS"]

DEFAULT_METHODS = MAIN_METHODS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torch-qinit demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", type=int, default=5, help="held-out test-split architectures 0..N-1 (default 5)")
    p.add_argument("--qat-steps", type=int, default=200, help="QAT steps from each init (default 200)")
    p.add_argument("--eval-every", type=int, default=0,
                   help="test accuracy every N QAT steps for the curves (default: qat-steps / 4)")
    p.add_argument("--bits", type=int, default=4, help="weight and activation bits, 2..8 (default 4)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated initializers (default {','.join(DEFAULT_METHODS)}; "
                        "see `torch-qinit info` for all)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the QAT runs")
    p.add_argument("--calib-batches", type=int, default=20,
                   help="train batches for zero-shot BN recalibration; the first half also calibrates "
                        "activation ranges (default 20)")
    p.add_argument("--test-subset", type=int, default=None,
                   help="evaluate on a seeded random subset of this many test images (default: all 10000)")
    p.add_argument("--curve-subset", type=int, default=2000,
                   help="test images for the intermediate points of the QAT curves (default 2000; 0: the full "
                        "test set); zero-shot and final accuracies always use the whole test set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", choices=DATASET_NAMES, default="fmnist",
                   help="fmnist (1x28x28, default) or cifar10 (3x32x32; uses the ghn-qat-cifar10/ghn-cifar10 "
                        "checkpoints)")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder: Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist); "
                        "CIFAR-10 python/binary batches, image folder or .tar.gz (default "
                        "$TORCH_QINIT_CIFAR10_DIR, then what `make cifar10` prepared)")
    p.add_argument("--weights-dir", default=None,
                   help="folder holding the ghn-qat/ and ghn/ checkpoints (ghn-qat-cifar10/ and ghn-cifar10/ "
                        "for CIFAR-10; sets TORCH_QINIT_WEIGHTS_DIR; default: the bundled weights)")
    p.add_argument("--out", default="demo_results", help="output folder (default ./demo_results)")
    p.add_argument("--device", default="cpu",
                   help="where the models run: cpu (default) or cuda (GPU numbers differ from CPU ones in rounding)")
    # One thread by default: the demo's nets are tiny (<= 0.1M parameters, 28x28 inputs), so intra-op
    # threads gain little, while oversubscribed cores (any other busy process) made 2 threads 3-4x slower.
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch's default)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t_start = time.perf_counter()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.weights_dir:
        os.environ["TORCH_QINIT_WEIGHTS_DIR"] = str(Path(args.weights_dir).expanduser())

    from torch_qinit.compare import CompareError, demo
    from torch_qinit.data import DatasetNotFoundError
    from torch_qinit.hub import bundled_weights_dir
    from torch_qinit.initialize import FALLBACK_METHOD, GHN_METHODS
    from torch_qinit.results import machine_string, pyplot

    try:
        cfg = demo.DemoConfig(
            archs=args.archs, qat_steps=args.qat_steps, eval_every=args.eval_every, bits=args.bits,
            methods=args.methods.split(","), batch_size=args.batch_size, lr=args.lr, calib_batches=args.calib_batches,
            test_subset=args.test_subset, curve_subset=args.curve_subset, seed=args.seed, dataset=args.dataset,
            data_dir=args.data_dir, device=args.device)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    methods = cfg.methods
    try:
        data = demo.load_data(cfg)
    except DatasetNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    ghns, missing = demo.load_ghns(methods, args.dataset)
    print(f"torch_qinit demo: W{args.bits}A{args.bits} on {data.title} ({len(data.train.dataset)} train / "
          f"{len(data.test.dataset)} test images, loaded in {data.seconds:.1f} s), {args.archs} held-out "
          f"architectures, {args.qat_steps}-step QAT (batch {args.batch_size}, Adam lr {args.lr:g}), torch threads "
          f"{torch.get_num_threads()}, models on {cfg.device}")
    for m, ghn in ghns.items():
        steps = (ghn.config.training or {}).get("steps")
        trained = f"{steps} training steps" if steps else "training not recorded"
        shape = "x".join(map(str, ghn.config.input_shape))
        print(f"  {m}: {getattr(ghn, 'source_id', '?')} (sha256 {str(getattr(ghn, 'weights_sha256', ''))[:12]}, "
              f"{trained}, trained on {shape} input)")
    for m, why in missing.items():
        print(f"  {m}: MISSING, skipped ({why})")
    if missing:
        folders = " and ".join(f"{demo.checkpoint_name(m, args.dataset)}/" for m in GHN_METHODS)
        print(f"  -> {', '.join(missing)} not run; the other methods still run. Bundled checkpoints live in "
              f"{bundled_weights_dir()}; --weights-dir DIR uses a folder holding {folders} instead.")
    if len(missing) == len(methods):
        print("error: no method left to run", file=sys.stderr)
        return 1

    result = demo.run_demo(cfg, data, methods, ghns, missing, progress=not args.no_progress)
    print()
    print(demo.text_table(result))
    fallbacks = {d.run.method: d.run.fallback_params for d in result.runs
                 if d.run.method in GHN_METHODS and d.run.fallback_params}
    if fallbacks:
        print(f"  note: parameters the GHN could not serve got the {FALLBACK_METHOD} fallback: {fallbacks}")
    for d in result.runs:  # warnings raised inside a run are recorded there, not shown as they happen
        for note in d.run.notes:
            print(f"  note: arch {d.arch} {d.run.method}: {note}")

    footer = [f"- command: `torch-qinit demo {' '.join(shlex.quote(a) for a in argv)}`",
              f"- machine: {machine_string()}, models on {cfg.device}",
              f"- total time: {time.perf_counter() - t_start:.0f} s",
              f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"]
    plot = not args.no_plot
    if plot and pyplot() is None:
        print("matplotlib is not installed: skipping the PNG (pip install 'torch_qinit[plot]')")
        plot = False
    written = demo.write_outputs(result, Path(args.out), demo.summary_markdown(result, footer), plot=plot)
    print("wrote " + ", ".join(str(p) for p in written))
    total = time.perf_counter() - t_start
    print(f"total time {total / 60:.1f} min ({total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
