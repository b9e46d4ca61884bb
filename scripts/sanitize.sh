#!/usr/bin/env bash
# Sanitizer and analysis runs (about 5-10 minutes on 2 cores):
#   1. the whole project with -DKVTC_SANITIZE=ON (gcc: ASan + UBSan) into
#      build-asan, and the full ctest suite;
#   2. tests/test_concurrency.c and tests/test_store.c under ThreadSanitizer
#      (build-tsan, only those tests; OPENBLAS_NUM_THREADS=1 keeps OpenBLAS's
#      own threads out of them);
#   3. valgrind (memcheck, leak check) over the CLI: capture a small cache
#      with data/stories260K.gguf, calibrate, compress, info, decompress;
#   4. a few seconds of each fuzz target (scripts/fuzz.sh; skipped without clang).
# Environment: ASAN_DIR, TSAN_DIR, VG_DIR (build dirs), BUILD_JOBS,
# FUZZ_SECONDS (default 5), SKIP_FUZZ=1, SKIP_VALGRIND=1.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
ASAN_DIR="${ASAN_DIR:-build-asan}"
TSAN_DIR="${TSAN_DIR:-build-tsan}"
VG_DIR="${VG_DIR:-build-valgrind}"
JOBS="${BUILD_JOBS:-$(nproc)}"
declare -A STATUS
t0=$(date +%s)

echo "== 1. ASan + UBSan build ($ASAN_DIR) and ctest"
cmake -S . -B "$ASAN_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVTC_SANITIZE=ON -DKVTC_CUDA=OFF >/dev/null
cmake --build "$ASAN_DIR" -j"$JOBS" >/dev/null
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
if (cd "$ASAN_DIR" && ctest --output-on-failure -j"$JOBS"); then STATUS[asan]=pass; else STATUS[asan]=FAIL; fi

echo "== 2. ThreadSanitizer: test_concurrency, test_store ($TSAN_DIR)"
cmake -S . -B "$TSAN_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVTC_CUDA=OFF \
  -DCMAKE_C_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build "$TSAN_DIR" -j"$JOBS" --target test_concurrency test_store >/dev/null
if OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" "$TSAN_DIR/test_concurrency" &&
   OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" "$TSAN_DIR/test_store"; then
  STATUS[tsan]=pass; else STATUS[tsan]=FAIL; fi

if [ "${SKIP_VALGRIND:-0}" != 1 ] && command -v valgrind >/dev/null; then
  echo "== 3. valgrind over the CLI ($VG_DIR)"
  cmake -S . -B "$VG_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVTC_CUDA=OFF >/dev/null
  cmake --build "$VG_DIR" -j"$JOBS" --target kvtc_cli >/dev/null
  W=$(mktemp -d)
  VG=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect)
  # valgrind has no AVX-512: OpenBLAS must not pick its SkylakeX kernels
  export OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell
  ok=1
  run() { echo "   $*"; "${VG[@]}" "$VG_DIR/kvtc" "$@" >"$W/last.log" 2>&1 || { cat "$W/last.log"; ok=0; }; }
  run capture --model data/stories260K.gguf --text data/persuasion.txt --ctx 200 -o "$W/kv.safetensors"
  run calibrate -o "$W/basis.safetensors" --window 16 --ratio 4 --ratio 8 "$W/kv.safetensors"
  run compress --basis "$W/basis.safetensors" --window 16 --ratio 4 --chunk 64 "$W/kv.safetensors" -o "$W/kv.kvtc"
  run info "$W/kv.kvtc"
  run info "$W/basis.safetensors"
  run info "$W/kv.safetensors"
  run decompress --basis "$W/basis.safetensors" "$W/kv.kvtc" -o "$W/out.safetensors"
  # a corrupt stream must fail cleanly (exit 1), with no memory errors (99)
  cp "$W/kv.kvtc" "$W/bad.kvtc"
  printf '\xff' | dd of="$W/bad.kvtc" bs=1 seek=300 conv=notrunc 2>/dev/null
  set +e
  "${VG[@]}" "$VG_DIR/kvtc" decompress --basis "$W/basis.safetensors" "$W/bad.kvtc" -o "$W/bad.out" >"$W/last.log" 2>&1
  rc=$?
  set -e
  echo "   decompress of a corrupt stream: exit $rc"
  [ $rc -eq 1 ] || { cat "$W/last.log"; ok=0; }
  unset OPENBLAS_NUM_THREADS
  rm -rf "$W"
  [ $ok = 1 ] && STATUS[valgrind]=pass || STATUS[valgrind]=FAIL
else
  STATUS[valgrind]=skipped
fi

if [ "${SKIP_FUZZ:-0}" != 1 ] && command -v clang >/dev/null; then
  echo "== 4. fuzz targets, ${FUZZ_SECONDS:-5} s each"
  if BUILD_JOBS="$JOBS" scripts/fuzz.sh "${FUZZ_SECONDS:-5}"; then STATUS[fuzz]=pass; else STATUS[fuzz]=FAIL; fi
else
  STATUS[fuzz]=skipped
fi

echo "== summary ($(( $(date +%s) - t0 )) s)"
rc=0
for k in asan tsan valgrind fuzz; do
  printf '  %-9s %s\n' "$k" "${STATUS[$k]}"
  [ "${STATUS[$k]}" = FAIL ] && rc=1
done
exit $rc
