#!/usr/bin/env bash
# Benchmarks on a lent GPU machine, inside one call's time limit: each jobs file in turn through
# run_jobs.py (the jobs of one file side by side), whatever finished packed as OUT/NAME/jobs.tgz.
#
#   OUT=$OUT DEADLINE=540 bash benchmarks/scripts/device_bench.sh benchmarks/scripts/jobs/FILE.txt:WORKERS ...
#
# The data travels in .devdata/ (git-ignored, named in the device tool's `carry`): a copy of
# ../shared/data/cifar10-jpg.tar.gz and of /usr/share/datasets/fashion-mnist/*.gz in .devdata/fashion-mnist.
# Jobs name no data folder: the environment below points both loaders there.  DEADLINE: seconds for
# everything, counted from the start of this script.  PY (default python3).
set -uo pipefail
: "${OUT:?OUT: results folder}" "${DEADLINE:?DEADLINE: seconds}"
PY=${PY:-python3}
start=$(date +%s)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export TORCH_QINIT_DATA_DIR=$PWD/.devdata/fashion-mnist TORCH_QINIT_CIFAR10_DIR=$PWD/.devdata/cifar10-jpg.tar.gz
$PY -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', os.cpu_count(), 'cores')"
# decode CIFAR-10 once into the cache, so the jobs read it instead of decoding side by side
$PY -c "from torch_qinit.data import load_dataset
for s in ('train', 'test'): print('cifar10', s, tuple(load_dataset('cifar10', s).tensors[0].shape))"
echo "data ready after $(( $(date +%s) - start )) s"
rc=0
for spec in "$@"; do
  jobs=${spec%:*} workers=${spec##*:}
  left=$(( DEADLINE - ($(date +%s) - start) ))
  echo "== $jobs: $workers workers, $left s left"
  $PY benchmarks/scripts/run_jobs.py "$jobs" --out "$OUT/$(basename "$jobs" .txt)" --workers "$workers" \
    --deadline "$left" --min-left 20 || rc=1
done
echo "total $(( $(date +%s) - start )) s"
exit $rc
