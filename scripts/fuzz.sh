#!/usr/bin/env bash
# Build the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang into
# build-fuzz and run each for SECONDS_PER_TARGET seconds (default 60), one
# after the other, then print a table of executions per target.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Environment: FUZZ_TARGETS="stream basis ..." runs a subset; BUILD_JOBS
# (default: nproc) for the build; FUZZ_FLAGS adds libFuzzer flags.
# Corpora: the committed seeds (tests/fuzz/corpus/<target>, read-only) plus
# fresh seeds from fuzz_make_corpus; new inputs go to build-fuzz/corpus/.
# Crashes are written to build-fuzz/artifacts/ and make the script exit 1.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
export OPENBLAS_NUM_THREADS=1
SECS="${1:-60}"
TARGETS="${FUZZ_TARGETS:-stream safetensors basis gguf roundtrip store_record llama_state}"
JOBS="${BUILD_JOBS:-$(nproc)}"
CC_FUZZ="${CC_FUZZ:-clang}"
B=build-fuzz

command -v "$CC_FUZZ" >/dev/null || { echo "fuzz.sh: $CC_FUZZ not found (apt-get install clang)"; exit 2; }
cmake -S . -B "$B" -DCMAKE_C_COMPILER="$CC_FUZZ" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVTC_FUZZ=ON \
  -DKVTC_CUDA=OFF >/dev/null || exit 2
tgts=(fuzz_make_corpus)
for t in $TARGETS; do tgts+=("fuzz_$t"); done
cmake --build "$B" -j"$JOBS" --target "${tgts[@]}" >/dev/null || { echo "fuzz.sh: build failed"; exit 2; }

rm -rf "$B/seeds" && "$B/fuzz_make_corpus" "$B/seeds" || exit 2
mkdir -p "$B/seeds/fuzz_gguf" "$B/seeds/fuzz_store_record" "$B/seeds/fuzz_llama_state" "$B/artifacts" "$B/logs"
# the real model too (1.1 MB; libFuzzer truncates it to -max_len)
[ -f data/stories260K.gguf ] && cp data/stories260K.gguf "$B/seeds/fuzz_gguf/stories260K.gguf"

max_len() {
  case "$1" in
    stream|safetensors|basis|llama_state) echo 65536 ;;
    gguf) echo 16384 ;;
    roundtrip) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

status=0
rows=()
for t in $TARGETS; do
  mkdir -p "$B/corpus/fuzz_$t"
  log="$B/logs/fuzz_$t.log"
  start=$(date +%s.%N)
  "$B/fuzz_$t" -max_total_time="$SECS" -print_final_stats=1 -max_len="$(max_len "$t")" -timeout=20 \
    -rss_limit_mb=2048 -artifact_prefix="$B/artifacts/fuzz_$t-" ${FUZZ_FLAGS:-} \
    "$B/corpus/fuzz_$t" "tests/fuzz/corpus/fuzz_$t" "$B/seeds/fuzz_$t" >"$log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  res=ok
  if [ $rc -ne 0 ]; then res="CRASH (rc $rc, see $log)"; status=1; fi
  rows+=("$(printf '%-18s %8.1f %12s %10s %6s  %s' "fuzz_$t" "$(echo "$end - $start" | bc)" "${execs:-?}" \
    "$(echo "${execs:-0} / ($end - $start)" | bc)" "${cov:-?}" "$res")")
done
printf '%-18s %8s %12s %10s %6s  %s\n' target seconds executions exec/s cov result
for r in "${rows[@]}"; do echo "$r"; done
exit $status
