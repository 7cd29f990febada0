"""Time of ``initialize_`` on a ResNet-50-size model: GHN against He normal, per phase.

A bottleneck ResNet-50 layout (3-4-6-3 blocks, 25.6 M parameters, BN, 1000 classes) built here, so no
torchvision is needed.  The GHN method and He normal run interleaved, after one warm-up call each (the
first GHN call loads the checkpoint), and the medians of wall and CPU time are printed with their ratio.
On a machine other processes load, quote the CPU time (with one thread, the wall time an idle machine
shows) and the ratio, not the wall time.

    python -m benchmarks.time_init --threads 1 --repeats 7              # ghn vs he_normal, medians
    python -m benchmarks.time_init --threads 1 --phases                 # + where the GHN call spends its time
    python -m benchmarks.time_init --threads 1 --profile                # + cProfile, top functions
    python -m benchmarks.time_init --save /tmp/a.pt                     # predicted parameters, for --compare
    python -m benchmarks.time_init --compare /tmp/a.pt                  # max |diff| against a saved run

``--model small`` swaps in a small net with depthwise, tall, wide, 5x5, 9x9 and 1x3 layers (the decoder's
edge cases).  Prints only; writes nothing unless ``--save`` is given.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import io
import pstats
import statistics
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["resnet50", "small_net", "main"]


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class ResNet(nn.Module):
    """torchvision's ResNet-50 layout (v1.5: stride on the 3x3 conv): 25,557,032 parameters."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, stages = 64, []
        for i, n in enumerate(layers):
            width = 64 * 2**i
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50() -> nn.Module:
    return ResNet()


def small_net() -> nn.Module:
    """Decoder edge cases: depthwise (fan-in < rows), a tall 1x1 (out > in), 5x5, 7x7, 9x9 (zero-padded) and
    1x3 kernels, partial tiles, a no-BN conv-ReLU chain (calibrated), a linear head."""
    return nn.Sequential(
        nn.Conv2d(3, 24, 5, padding=2), nn.ReLU(),
        nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.BatchNorm2d(24), nn.ReLU(),
        nn.Conv2d(24, 150, 1), nn.BatchNorm2d(150), nn.ReLU(),
        nn.Conv2d(150, 70, 7, padding=3, bias=False), nn.ReLU(),
        nn.Conv2d(70, 130, 3, stride=2, padding=1), nn.BatchNorm2d(130), nn.ReLU(),
        nn.Conv2d(130, 64, 9, padding=4), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 130, (1, 3), padding=(0, 1), bias=False), nn.BatchNorm2d(130), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(130, 200), nn.ReLU(), nn.Linear(200, 10))


MODELS = {"resnet50": resnet50, "small": small_net}

#: (module, attribute) pairs timed by --phases; a missing one is skipped (the code may have moved).
PHASES = [
    ("torch_qinit.initialize", "capture_with_note", "graph capture"),
    ("torch_qinit.ghn.model.GHN", "encode", "GHN encoder"),
    ("torch_qinit.ghn.decoder.BlockDecoder", "patterns", "decoder (tiles + orthonormalize)"),
    ("torch_qinit.ghn.decoder", "_orthonormal_blocks", "  of which orthonormalize"),  # decoder before 335ce20
    ("torch_qinit.ghn.decoder", "_orthonormal_rows", "  of which orthonormalize"),
    ("torch_qinit.ghn.model", "shape_weight", "shape_weight"),
    ("torch_qinit.ghn.model.GHN", "forward", "GHN forward (all of the above but capture)"),
    ("torch_qinit.initialize", "calibrate_scales", "calibration"),
    ("torch_qinit.initialize", "_not_finite", "finite check"),
    ("torch_qinit.initialize", "write_values", "write-back"),
]


def _resolve(path: str):
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


@contextlib.contextmanager
def phase_timers(totals: dict[str, list[float]]) -> Iterator[None]:
    """Wrap each function of PHASES so its CPU time per call is appended to totals[label]."""
    patched = []
    for owner_path, attr, label in PHASES:
        try:
            owner = _resolve(owner_path)
            fn = getattr(owner, attr)
        except (ImportError, AttributeError):
            continue

        def timed(*args, __fn=fn, __label=label, **kwargs):
            t = time.process_time()
            try:
                return __fn(*args, **kwargs)
            finally:
                totals[__label].append(time.process_time() - t)

        setattr(owner, attr, timed)
        patched.append((owner, attr, fn))
    try:
        yield
    finally:
        for owner, attr, fn in reversed(patched):
            setattr(owner, attr, fn)


def _init(model: nn.Module, method: str, args: argparse.Namespace) -> tuple[float, float]:
    """One ``initialize_`` call: (wall seconds, CPU seconds of this process)."""
    from torch_qinit import initialize_

    kw = {"bits": args.bits, "method": method}
    if method in ("ghn", "ghn-qat"):
        kw.update(weights=args.weights or method, calibrate=not args.no_calibrate)
    else:
        kw["generator"] = 0
    t, c = time.perf_counter(), time.process_time()
    initialize_(model, **kw)
    return time.perf_counter() - t, time.process_time() - c


def _predictions(model: nn.Module, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    from torch_qinit import initialize_

    initialize_(model, bits=args.bits, method=args.method, weights=args.weights or args.method,
                calibrate=not args.no_calibrate, generator=0)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.time_init", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet50")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per method (default 7)")
    parser.add_argument("--method", default="ghn", help="GHN method (default ghn)")
    parser.add_argument("--baseline", default="he_normal", help="classic method timed alongside (default he_normal)")
    parser.add_argument("--weights", default=None, help="GHN checkpoint (default: the method's bundled one)")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--no-calibrate", action="store_true", help="calibrate=False")
    parser.add_argument("--phases", action="store_true", help="median time per phase of the GHN call")
    parser.add_argument("--profile", action="store_true", help="cProfile of one GHN call, top 30 by cumulative time")
    parser.add_argument("--save", metavar="PATH", help="save the predicted parameters (float tensors) to PATH")
    parser.add_argument("--compare", metavar="PATH", help="max |diff| of the predictions against a --save file")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(0)
    model = MODELS[args.model]()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {n_params / 1e6:.2f} M params, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")

    if args.save or args.compare:
        preds = _predictions(model, args)
        if args.save:
            torch.save(preds, args.save)
            print(f"saved {len(preds)} tensors to {args.save}")
        if args.compare:
            ref = torch.load(args.compare)
            worst, worst_rel, where = 0.0, 0.0, ""
            for k, v in ref.items():
                d = (preds[k] - v).abs().max().item() if v.numel() else 0.0
                rel = d / max(v.abs().max().item(), 1e-30) if v.numel() else 0.0
                if d > worst:
                    worst, where = d, k
                worst_rel = max(worst_rel, rel)
            same = all(torch.equal(preds[k], v) for k, v in ref.items())
            print(f"compare {len(ref)} tensors: bit-identical={same}, max |diff| {worst:.3g} ({where or '-'}), "
                  f"max |diff|/max|ref| {worst_rel:.3g}")
        return 0

    times: dict[str, list[tuple[float, float]]] = {args.method: [], args.baseline: []}
    for method in times:  # warm-up: loads the checkpoint, fills caches
        _init(model, method, args)
    totals: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.repeats):
        times[args.baseline].append(_init(model, args.baseline, args))
        with phase_timers(totals) if args.phases else contextlib.nullcontext():
            times[args.method].append(_init(model, args.method, args))
    # CPU time of the process is steadier than wall time when other processes share the cores
    # (with one thread it is the wall time an idle machine would show).
    for i, what in enumerate(("wall", "cpu")):
        med = {m: statistics.median(t[i] for t in v) for m, v in times.items()}
        for m, v in times.items():
            xs = [t[i] for t in v]
            print(f"{what:>4} {m:>10}: median {med[m]:.3f} s  (min {min(xs):.3f}, max {max(xs):.3f}, n={len(xs)})")
        print(f"{what:>4}      ratio: {args.method}/{args.baseline} = {med[args.method] / med[args.baseline]:.2f}")
    if args.phases:
        print("phases of the GHN call (median CPU s per call):")
        for label in dict.fromkeys(label for _, _, label in PHASES):
            if label in totals:
                k = max(1, len(totals[label]) // args.repeats)  # calls per initialize_
                per_call = [sum(totals[label][i * k:(i + 1) * k]) for i in range(args.repeats)]
                print(f"  {label:<44} {statistics.median(per_call):.3f}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        _init(model, args.method, args)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
