#!/bin/bash
# GPU calibration on the device machine (one call of the device tool):
#   bash bench/cuda/run_calib.sh     (logs under $OUT, or /tmp/kvtc_out)
# Uses the bundle carried in .devbin/ (scripts/gpu_bundle.sh).
set -u
OUT=${OUT:-/tmp/kvtc_out}
mkdir -p "$OUT"
N=${KVTC_CALIB_TOKENS:-200000}
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } 2>&1 | tee "$OUT/calib_env.txt"
. bench/cuda/gpu_env.sh || exit 1
BIN=$KVTC_GPU_BIN/kvtc_cuda_calib_bench
export OPENBLAS_NUM_THREADS=16
timeout 120 $BIN check 2>&1 | tee "$OUT/calib_check.txt"
for mode in ${KVTC_CALIB_MODES:-tf32 fp32}; do
  timeout 200 $BIN time "$N" 4096 $mode 4096 2>&1 | tee "$OUT/calib_time_$mode.txt"
done
echo "== summary =="
grep -h -E "RESULT|FAIL|passed|failures|agreement|eigenvalue 1:" "$OUT"/calib_*.txt
