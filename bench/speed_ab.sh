#!/usr/bin/env bash
# A/B of the CPU codec's speed against an older commit on the same machine,
# interleaved so that both see the same load (issue 15). Builds the old
# commit's library (CPU only) into /tmp, links bench/bench_speed.c against it
# and against build/ (scripts/build.sh first), and runs ROUNDS rounds of
# encode and decode at RATIO, REPS timed runs each.
#   bench/speed_ab.sh [BASE_COMMIT] [ROUNDS] [REPS] [RATIO]  -> bench/out/speed_ab.txt
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
export OPENBLAS_NUM_THREADS=1   # what kvtc compress/decompress do
BASE=${1:-4122423}
ROUNDS=${2:-5}
REPS=${3:-15}
RATIO=${4:-16}
O=bench/out
M=data/eval-llama-27m-q8_0.gguf
T=data/persuasion.txt
W=/tmp/kvtc-speed-ab-$BASE
mkdir -p $O
[ -f $O/thr_cache.safetensors ] || build/kvtc capture --model $M --text $T --window-index 60 -o $O/thr_cache.safetensors
[ -f $O/thr_basis.safetensors ] || build/kvtc calibrate --model $M --text $T --windows 4 --sensitivity --recompute-layers 0 \
    --ratio 8 --ratio 16 --ratio 32 --ratio 64 -o $O/thr_basis.safetensors 2>/dev/null
if [ ! -f $W/b/libkvtc.a ]; then
  rm -rf $W && mkdir -p $W
  git archive "$BASE" | tar -x -C $W
  cmake -S $W -B $W/b -DCMAKE_BUILD_TYPE=Release -DKVTC_CUDA=OFF >/dev/null
  cmake --build $W/b -j2 --target kvtc >/dev/null
fi
LIBS="-ldeflate -lopenblas -llapacke -lxxhash -lm -lpthread"
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I$W/include -I$W/lib bench/bench_speed.c $W/b/libkvtc.a $LIBS -o $W/bench_speed
cmake --build build -j2 --target bench_speed >/dev/null
C=$O/thr_cache.safetensors
B=$O/thr_basis.safetensors
{
  echo "# $(date -u '+%F %H:%M') $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), base $BASE vs $(git rev-parse --short HEAD), ratio $RATIO"
  for r in $(seq "$ROUNDS"); do
    echo "## round $r, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    for dir in enc dec; do
      echo "base $($W/bench_speed $dir $C $B $RATIO $REPS)"
      echo "new  $(build/bench_speed $dir $C $B $RATIO $REPS)"
    done
  done
} 2>&1 | tee $O/speed_ab.txt
