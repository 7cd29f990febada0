#!/usr/bin/env bash
# GHN training throughput on this machine's cores: 1 process × 2 threads against 2 DDP ranks × 1 thread
# (torchrun, gloo), with 1 process × 1 thread as the reference. Same work per step in all three: 8
# architectures (DDP: --meta-batch is per rank, so 4 each). 30 float steps warm-started from weights/ghn,
# REPEATS rounds; prints wall seconds per run (start-up included) and the tqdm rate of each run's log.
# Run it on an otherwise idle machine: bash benchmarks/scripts/ddp_vs_threads.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
REPEATS=${REPEATS:-2}
TMP=$(mktemp -d)
COMMON="--stage float --init-from weights/ghn --steps 30 --batch-size 64 --lr 5e-4 --warmup 10 --arch-pool 20000
        --ckpt-every 1000 --val-every 0"
run() {  # name, command...
  local name=$1; shift
  local s e; s=$(date +%s.%N)
  "$@" > "$TMP/$name.log" 2>&1
  e=$(date +%s.%N)
  printf '%-22s wall %6.1f s   %s\n' "$name" "$(echo "$e - $s" | bc)" \
    "$(tr '\r' '\n' < "$TMP/$name.log" | grep -o '30/30 \[[^]]*\]' | tail -1)"
}
for _ in $(seq "$REPEATS"); do
  run "threads=2 meta-batch=8" $PY -m torch_qinit.cli.main train $COMMON --meta-batch 8 --threads 2 --out "$TMP/t2"
  run "ddp=2x1 meta-batch=4x2" env OMP_NUM_THREADS=1 $PY -m torch.distributed.run --standalone --nproc_per_node 2 \
      -m torch_qinit.cli.main train $COMMON --meta-batch 4 --threads 1 --out "$TMP/d2"
  run "threads=1 meta-batch=8" $PY -m torch_qinit.cli.main train $COMMON --meta-batch 8 --threads 1 --out "$TMP/t1"
  rm -rf "$TMP"/t2 "$TMP"/d2 "$TMP"/t1
done
rm -rf "$TMP"
