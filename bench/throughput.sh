#!/usr/bin/env bash
# CPU throughput, ratios and calibration time (issue 2). About 10 minutes on
# 2 cores, most of it the p = 40960 randomized calibration.
#   bench/throughput.sh [codec]    -> bench/out/throughput.txt  ("codec": skip calibration timing)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
B=build
O=bench/out
M=data/eval-llama-27m-q8_0.gguf
T=data/persuasion.txt
mkdir -p $O
{
  echo "# $(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-default}"
  $B/bench_codec gemm
  # a real cache: the eval model over one 2048-token window not used for calibration
  [ -f $O/thr_cache.safetensors ] || $B/kvtc capture --model $M --text $T --window-index 60 -o $O/thr_cache.safetensors
  [ -f $O/thr_basis.safetensors ] || $B/kvtc calibrate --model $M --text $T --windows 4 --sensitivity --recompute-layers 0 \
      --ratio 8 --ratio 16 --ratio 32 --ratio 64 -o $O/thr_basis.safetensors 2>/dev/null
  echo "## OpenBLAS threads: default"
  $B/bench_codec codec $O/thr_cache.safetensors $O/thr_basis.safetensors 8 16 32 64
  echo "## OPENBLAS_NUM_THREADS=1 (the codec's worker threads parallelize instead)"
  OPENBLAS_NUM_THREADS=1 $B/bench_codec codec $O/thr_cache.safetensors $O/thr_basis.safetensors 8 16 32 64
  [ "${1:-}" = codec ] && exit 0
  # calibration time, synthetic correlated data (rank-256 latent, power-law spectrum, 1% noise)
  $B/bench_codec calib 1024 16384 exact
  $B/bench_codec calib 8192 16384 exact
  $B/bench_codec calib 8192 16384 randomized
  $B/bench_codec calib 40960 8192 randomized
} 2>&1 | tee $O/throughput.txt
