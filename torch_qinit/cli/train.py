"""`torch-qinit train`: command-line front end of the GHN trainer.

    torch-qinit train --stage float --steps 3000 --out runs/ghn
    torch-qinit train --dataset cifar10 --data-dir ~/data/cifar-10-batches-py --stage float --out runs/ghn-c10
    torch-qinit train --stage qat --init-from runs/ghn/final --steps 3000 --out runs/ghn-qat
    torchrun --nproc_per_node=2 -m torch_qinit.cli.train ...   # data-parallel, gloo on CPU
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

import torch

from ..data.registry import DATASET_NAMES
from ..ghn import GHNConfig
from ..training import TrainConfig, train
from ..training.trainer import FIT_AFTER_STEPS

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="torch-qinit train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=d.out, help="run directory (checkpoints in OUT/ckpt, result in OUT/final)")
    p.add_argument("--stage", choices=("float", "qat"), default=d.stage)
    p.add_argument("--init-from", default=None, help="warm-start GHN directory (e.g. the float run's OUT/final)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--meta-batch", type=int, default=d.meta_batch, help="architectures per step per process")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per architecture")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--clip", type=float, default=d.clip)
    p.add_argument("--bits", default=",".join(map(str, d.bits)),
                   help="QAT bit widths to sample, e.g. 2,3,4,8; repeat one to sample it more often (2,2,3,4,8)")
    p.add_argument("--mixed-frac", type=float, default=d.mixed_frac)
    p.add_argument("--float-frac", type=float, default=d.float_frac)
    p.add_argument("--float-loss-weight", type=float, default=d.float_loss_weight,
                   help="QAT: weight of the float loss of the same prediction next to its quantized loss")
    p.add_argument("--norm-floor-weight", type=float, default=d.norm_floor_weight,
                   help="weight of a penalty on predicted norm scales below 0.5 and shifts below -0.5 "
                        "(channels that start switched off and train slowly); 0: off")
    p.add_argument("--lookahead-steps", type=int, default=d.lookahead_steps,
                   help="mix in the loss after this many simulated plain-SGD steps from each prediction "
                        "(differentiated through the steps), so starts from which SGD diverges cost more; 0: off")
    p.add_argument("--lookahead-lr", type=float, nargs=2, default=d.lookahead_lr, metavar=("LO", "HI"),
                   help="the simulated steps' learning rate, drawn log-uniformly per architecture")
    p.add_argument("--lookahead-weight", type=float, default=d.lookahead_weight,
                   help="weight of the lookahead loss next to the loss at the prediction")
    p.add_argument("--lookahead-first-order", action="store_true",
                   help="treat each simulated step's gradient as a constant (cheaper; blind to curvature)")
    p.add_argument("--item-clip", type=float, default=d.item_clip,
                   help="clip each architecture's gradient norm (w.r.t. its predicted parameters) to this before "
                        "the GHN's backward; non-finite ones are left out of the step; <= 0: no clip")
    p.add_argument("--arch-pool", type=int, default=d.arch_pool)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--val-every", type=int, default=d.val_every,
                   help="every N steps (and at the end) log the zero-shot accuracy of held-out 'val' architectures "
                        "on 1000 test images (val_float; QAT: also val_w4, val_w2); 0 disables")
    p.add_argument("--val-archs", type=int, default=d.val_archs,
                   help="how many of the val split's architectures each validation initializes (1..20)")
    p.add_argument("--hidden", type=int, default=d.ghn["hidden"])
    p.add_argument("--layers", type=int, default=d.ghn["layers"])
    p.add_argument("--heads", type=int, default=d.ghn["heads"])
    p.add_argument("--decoder-hidden", type=int, default=GHNConfig.decoder_hidden,
                   help="decoder basis size: every predicted filter is a mix of this many learned basis filters")
    p.add_argument("--decoder-rank", type=int, default=GHNConfig.decoder_rank,
                   help="inner width of the factorized decoder's per-row code")
    p.add_argument("--dataset", choices=DATASET_NAMES, default="fmnist",
                   help="training images: fmnist (1x28x28) or cifar10 (3x32x32)")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder: Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist); "
                        "CIFAR-10 python/binary batches, image folder or .tar.gz (default: "
                        "$TORCH_QINIT_CIFAR10_DIR, then what `make cifar10` prepared)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="end the whole run within this many minutes: after %d steps the measured pace sets --steps "
                        "(never above it), so the learning-rate schedule still decays to zero; a resumed run keeps "
                        "the fitted steps" % FIT_AFTER_STEPS)
    p.add_argument("--device", default="cpu",
                   help="where the GHN and the sampled nets train: cpu (default) or cuda; every rank uses this one "
                        "device (several ranks share one GPU); checkpoints are the same either way")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt if it exists")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = _config(args, argv)
    except ValueError as exc:
        print(f"torch-qinit train: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        # gloo even with --device cuda: it reduces CPU tensors and CUDA ones alike, also for several ranks
        # sharing one GPU, which nccl refuses
        torch.distributed.init_process_group("gloo")
    from ..data import DatasetNotFoundError, load_dataset

    try:
        data = load_dataset(args.dataset, "train", data_dir=args.data_dir)
    except DatasetNotFoundError as exc:
        print(f"torch-qinit train: {exc}", file=sys.stderr)
        return 2
    images, labels = data.tensors
    val_data = None
    if args.val_every:
        try:
            val_data = load_dataset(args.dataset, "test", data_dir=args.data_dir).tensors
        except DatasetNotFoundError as exc:
            print(f"torch-qinit train: no validation (--val-every): {exc}", file=sys.stderr)
    train(cfg, images, labels, resume=args.resume, val_data=val_data)
    if world > 1:
        torch.distributed.destroy_process_group()
    return 0


def _config(args: argparse.Namespace, argv: list[str] | None) -> TrainConfig:
    return TrainConfig(
        out=args.out, stage=args.stage, init_from=args.init_from, steps=args.steps, meta_batch=args.meta_batch,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup, clip=args.clip,
        bits=tuple(int(b) for b in args.bits.split(",")), mixed_frac=args.mixed_frac, float_frac=args.float_frac,
        float_loss_weight=args.float_loss_weight,
        norm_floor_weight=args.norm_floor_weight, item_clip=args.item_clip,
        lookahead_steps=args.lookahead_steps, lookahead_lr=tuple(args.lookahead_lr),
        lookahead_weight=args.lookahead_weight, lookahead_first_order=args.lookahead_first_order,
        arch_pool=args.arch_pool, seed=args.seed, ckpt_every=args.ckpt_every, data_dir=args.data_dir,
        val_every=args.val_every, val_archs=args.val_archs, time_budget=args.time_budget,
        device=args.device,
        ghn={"hidden": args.hidden, "layers": args.layers, "heads": args.heads,
             "decoder_hidden": args.decoder_hidden, "decoder_rank": args.decoder_rank},
        command="torch-qinit train " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
    )


if __name__ == "__main__":
    sys.exit(main())
