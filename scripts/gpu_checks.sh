#!/usr/bin/env bash
# The GPU measurements behind docs/PERFORMANCE.md (issues #4 and #6), as run on a lent H100/H200.
#   scripts/gpu_checks.sh bench    DATA_ROOT OUT   # extraction probe + extraction/training benchmarks
#   scripts/gpu_checks.sh finetune DATA_ROOT OUT   # the whole-Aria fine-tuning runs (suites/study)
# DATA_ROOT holds aria_all_pbs_binary/; OUT receives logs, benchmark JSON and result records.
# Each step has its own time limit so one slow step cannot eat the others' time.
set -uo pipefail
phase=$1 data=$2 out=$3
mkdir -p "$out"
export PYTHONUNBUFFERED=1 LEUKOBENCH_SHARED_DATA=$data LEUKOBENCH_CACHE=${LEUKOBENCH_CACHE:-/tmp/lbcache}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee -a "$out/gpu.txt"
python3 -c "import torch, torchvision, timm, sklearn; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'sklearn', sklearn.__version__, 'cpus', __import__('os').cpu_count())" | tee -a "$out/gpu.txt"
case "$phase" in
bench)
  timeout 200 python3 scripts/gpu_probe.py "$data/aria_all_pbs_binary" "$out/probe.json" 2>&1 | tee "$out/probe.log"
  timeout 200 python3 -m pytest benchmarks/test_bench_extract_cuda.py --benchmark-enable -s -q \
    -p no:cacheprovider --benchmark-json "$out/bench_extract_cuda.json" 2>&1 | tee "$out/bench_extract.log"
  timeout 80 python3 -m pytest benchmarks/test_bench_finetune_cuda.py --benchmark-enable -s -q \
    -p no:cacheprovider --benchmark-json "$out/bench_finetune_cuda.json" 2>&1 | tee "$out/bench_finetune.log"
  ;;
finetune)
  aria="$data/aria_all_pbs_binary"
  timeout "${HOLDOUT_LIMIT:-200}" leukobench run suites/study/aria-finetune-gpu.toml --data "$aria" \
    --results-dir "$out" --no-progress 2>&1 | tee "$out/finetune_holdout.log"
  timeout "${KFOLD_LIMIT:-130}" leukobench run suites/study/aria-finetune-gpu-10fold.toml --data "$aria" \
    --results-dir "$out" --no-progress 2>&1 | tee "$out/finetune_10fold.log"
  ;;
*) echo "usage: $0 bench|finetune DATA_ROOT OUT" >&2; exit 2 ;;
esac
