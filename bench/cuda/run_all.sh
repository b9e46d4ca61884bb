#!/bin/bash
# Build the CUDA backend on the GPU machine, check it, benchmark it, and time
# the TTFT recompute baseline. One call of the device tool:
#   bash bench/cuda/run_all.sh            (results under $OUT, or /tmp/kvtc_out)
# Falls back to the bundle carried in .devbin/ (scripts/gpu_bundle.sh, built
# on the dev machine with the same nvcc) when the machine lacks the
# libdeflate/OpenBLAS/LAPACKE headers.
set -u
OUT=${OUT:-/tmp/kvtc_out}
mkdir -p "$OUT"
M=${KVTC_BENCH_RANK:-4096}
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,memory.total,power.limit --format=csv
  nvcc --version | tail -2
} 2>&1 | tee "$OUT/env.txt"
BIN=""
# the GPU ctests (tests/cuda), run below from the same directory as the bench
GPU_TESTS=$(cd tests/cuda && ls test_cuda_*.c | sed 's/\.c$//' | tr '\n' ' ')
if cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVTC_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
     > "$OUT/build.log" 2>&1 && cmake --build build-cuda -j 16 --target kvtc_cuda_bench $GPU_TESTS >> "$OUT/build.log" 2>&1; then
  BIN=build-cuda/kvtc_cuda_bench
  echo "built on the device: $BIN"
else
  echo "device build failed (tail of the log below); using the carried bundle (scripts/gpu_bundle.sh)"
  tail -15 "$OUT/build.log"
  . bench/cuda/gpu_env.sh || exit 1
  BIN=$KVTC_GPU_BIN/kvtc_cuda_bench
fi
export OPENBLAS_NUM_THREADS=16
for t in $GPU_TESTS; do
  echo "== $t"; "$(dirname "$BIN")/$t"; echo "$t exit $?"
done 2>&1 | tee "$OUT/gpu_tests.txt"
$BIN check 2>&1 | tee "$OUT/check.txt"
$BIN bench "$M" 2>&1 | tee "$OUT/bench.txt"
$BIN paged "$M" 2>&1 | tee "$OUT/paged.txt"
$BIN crc 2>&1 | tee "$OUT/crc.txt"
if [ -z "${SKIP_TTFT:-}" ]; then
  PYTHONUNBUFFERED=1 python3 bench/cuda/ttft_recompute.py 2>&1 | tee "$OUT/ttft.txt"
else
  : > "$OUT/ttft.txt"
fi
echo "== summary =="
grep -h -E "exit|passed|FAIL" "$OUT/gpu_tests.txt"
grep -h -E "RESULT|FLOOR|FAIL|failures|identical|status|PROFILE" "$OUT/check.txt" "$OUT/bench.txt" "$OUT/paged.txt" "$OUT/crc.txt" "$OUT/ttft.txt"
