#!/usr/bin/env bash
# One GHN training run on a lent GPU machine (or any many-core machine), inside a fixed time budget.
#
# By default one DDP rank per core on CPU (gloo): on the lent H200 machine 16 ranks gave 5.2x our 2-core
# machine's architectures per second. With `--device cuda` and NPROC=4 the ranks share the GPU instead
# (measured at 0.85x those 16 CPU ranks; more GPU ranks not yet tried): benchmarks/results/device_runs.md.
#
#   DATASET=cifar10 DATA=.devdata/cifar10-jpg.tar.gz INIT=training_state/RUN/final OUT=/tmp/out BUDGET=7 \
#     bash benchmarks/scripts/device_train.sh --stage qat --float-loss-weight 1 ...
#
# Extra arguments go to `torch-qinit train`.  --time-budget BUDGET fits the step count to the minutes
# left after the data is decoded.  Results: $OUT/run/ckpt (resumable state), $OUT/run/final (the GHN),
# $OUT/train.log.  NPROC (default: all cores), PY (default: python3).
set -euo pipefail
: "${DATA:?DATA: the dataset folder or archive}" "${INIT:?INIT: the warm-start GHN directory}" "${OUT:?OUT: results folder}"
DATASET=${DATASET:-fmnist}
BUDGET=${BUDGET:-7}
PY=${PY:-python3}
NPROC=${NPROC:-$(nproc)}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"
$PY -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), platform.processor())"
echo "ranks: $NPROC"
t0=$(date +%s)
# decode once before the ranks start, so they all read the cache instead of decoding side by side
$PY -c "
import sys
from torch_qinit.data import load_dataset
for split in ('train', 'test'):
    print(split, tuple(load_dataset(sys.argv[1], split, data_dir=sys.argv[2]).tensors[0].shape))
" "$DATASET" "$DATA"
left=$($PY -c "import sys; print(round(float(sys.argv[1]) - (int(sys.argv[3]) - int(sys.argv[2])) / 60, 2))" \
  "$BUDGET" "$t0" "$(date +%s)")
echo "data ready after $(( $(date +%s) - t0 )) s; training budget $left min"
$PY -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m torch_qinit.cli.main train \
  --dataset "$DATASET" --init-from "$INIT" --data-dir "$DATA" --time-budget "$left" --threads 1 --out "$OUT/run" --resume "$@" \
  2>&1 | tr '\r' '\n' > "$OUT/train.log" || { tail -50 "$OUT/train.log"; exit 1; }
grep -ho "time budget.*\|resumed from.*" "$OUT/train.log" || true
$PY - "$OUT/run/ckpt/state.json" <<'EOF'
import json, sys
meta = json.load(open(sys.argv[1]))
print("step", meta["step"], "of", meta["train_config"]["steps"], "world", meta["world_size"], "nan", meta["nan_steps"])
for row in meta["history"]:
    if "val_float" in row or row is meta["history"][-1]:
        print(row)
EOF
