#!/usr/bin/env bash
# GHN-QAT training pace on a GPU machine: --device cuda (1 process; 4 ranks sharing the GPU) against the
# same steps on CPU ranks. 30 steps each, CIFAR-10, warm-started from INIT; prints seconds per step over
# steps 10-30 (the first 10 carry start-up) and architectures per second, also into $OUT/pace.txt beside
# each run's log (the runs themselves go to a temporary folder). GPU=cpu tries the script without a GPU.
#   DATA=.devdata/cifar10-jpg.tar.gz INIT=training_state/ghn-v2-cifar10-qat2/final OUT=/tmp/pace \
#     bash benchmarks/scripts/gpu_vs_cpu_pace.sh
set -uo pipefail
: "${DATA:?}" "${INIT:?}" "${OUT:?}"
PY=${PY:-python3}
GPU=${GPU:-cuda}
RUNS=$(mktemp -d)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$OUT"
$PY -c "
from torch_qinit.data import load_dataset
for split in ('train', 'test'):
    load_dataset('cifar10', split, data_dir='$DATA')"
COMMON="--stage qat --dataset cifar10 --data-dir $DATA --init-from $INIT --steps 30 --batch-size 64 --lr 5e-4
        --warmup 10 --arch-pool 20000 --float-loss-weight 1 --threads 1 --ckpt-every 30"
run() {  # name, ranks, args...
  local name=$1 ranks=$2; shift 2
  if [ "$ranks" = 1 ]; then
    $PY -m torch_qinit.cli.main train $COMMON --out "$RUNS/$name" "$@" > "$OUT/$name.log" 2>&1
  else
    $PY -m torch.distributed.run --standalone --nproc_per_node "$ranks" -m torch_qinit.cli.main train $COMMON \
      --out "$RUNS/$name" "$@" > "$OUT/$name.log" 2>&1
  fi
  echo "$name exit $?"
  $PY - "$RUNS/$name/ckpt/state.json" "$name" <<'EOF' | tee -a "$OUT/pace.txt"
import json, sys
meta = json.load(open(sys.argv[1]))
rows = {r["step"]: r for r in meta["history"] if "sec" in r}
tc = meta["train_config"]
per_step = (rows[30]["sec"] - rows[10]["sec"]) / 20
archs = tc["meta_batch"] * meta["world_size"]
val = {k: v for r in meta["history"] for k, v in r.items() if k.startswith("val_")}
print(f"{sys.argv[2]:<28} device {tc['device']:<5} ranks {meta['world_size']:>2} x meta-batch {tc['meta_batch']:>2}: "
      f"{per_step:.3f} s/step, {archs / per_step:.1f} architectures/s, nan {meta['nan_steps']} {val}")
EOF
}
# the CPU reference runs beside the first GPU run (different cores); the GPU runs one at a time
run cpu-1rank-mb4 1 --device cpu --meta-batch 4 --val-every 0 &
run gpu-1rank-mb4 1 --device "$GPU" --meta-batch 4 --val-every 30
wait
run gpu-1rank-mb16 1 --device "$GPU" --meta-batch 16 --val-every 0
[ "${SKIP_SHARED:-0}" = 1 ] || run gpu-4ranks-mb4 4 --device "$GPU" --meta-batch 4 --val-every 0
rm -rf "$RUNS"
