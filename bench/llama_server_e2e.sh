#!/usr/bin/env bash
# kvtc against a real llama-server (issue 13): prefill prompts, save the
# slot, compress and expand it with kvtc, restore it into the server and
# continue; compared with restoring the uncompressed slot (greedy tokens,
# teacher-forced top-1 and KL; bench/llama_server_e2e.py does the HTTP).
# Not run by CI (CI has no llama.cpp): needs a llama-server binary, e.g. a
# CPU build of llama.cpp 3f545be (`cmake --build build --target llama-server`).
#   LLAMA_SERVER=/path/llama-server bench/llama_server_e2e.sh [CACHE...]
#   CACHE: f16 (flash attention on, V rows), f16-vtrans (flash attention off,
#   V transposed), q8_0; default "f16 q8_0".
# Env: PROMPTS (default 6), STEPS (32), PORT (18093), KVTC (build/kvtc),
#   CONFIGS: newline-separated NAME|BASIS|kvtc compress options; BASIS copy
#   or ulp: the controls (the original restored under another name; the
#   original with every coded f16 value moved by one unit in the last place,
#   f16 caches only). Default: the two bases of bench/llama_slots.sh at the
#   default ratio, plus the ulp control on f16 caches.
# Writes bench/out/llama_server/CACHE.jsonl (one line per prompt and config)
# and CACHE.md (one table row per config, as in bench/RESULTS.md section 6).
# About 2 minutes per cache type and config on the 2-core dev machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${LLAMA_SERVER:-}" ] || [ ! -x "$LLAMA_SERVER" ]; then
  echo "llama_server_e2e: set LLAMA_SERVER to an executable llama-server; skipped" >&2
  exit 77
fi
. scripts/blas-env.sh
K=${KVTC:-build/kvtc}
M=data/eval-llama-27m-q8_0.gguf
T=data/persuasion.txt
O=bench/out/llama_server
B=bench/out/llama
PORT=${PORT:-18093}
mkdir -p $O $B
# the bases of bench/llama_slots.sh: calibrated on the last 200 KB of the
# text, which no prompt here comes from (prompts start in the first 250 KB)
tail -c 200000 $T > $B/heldout.txt
[ -f $B/heldout.basis ] || $K calibrate -o $B/heldout.basis --model $M --text $B/heldout.txt --windows 4 --plain --recompute-layers 0
[ -f $B/heldout_default.basis ] || $K calibrate -o $B/heldout_default.basis --model $M --text $B/heldout.txt --windows 4
DEFAULT_CONFIGS="plain|$B/heldout.basis|
default|$B/heldout_default.basis|"

SLOTS=$(mktemp -d /tmp/kvtc-e2e-XXXXXX)
PID=
stop() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  PID=
}
trap 'stop; rm -rf "$SLOTS"' EXIT

for cache in ${@:-f16 q8_0}; do
  case $cache in
  f16) flags="-fa on" ;;
  f16-vtrans) flags="-fa off" ;;
  q8_0) flags="-ctk q8_0 -ctv q8_0 -fa on" ;;
  *) echo "llama_server_e2e: unknown cache type $cache (f16, f16-vtrans, q8_0)" >&2; exit 2 ;;
  esac
  # --cache-ram 0: no host prompt cache, so a request can only reuse what
  # the slot holds, which is what was restored
  # shellcheck disable=SC2086
  "$LLAMA_SERVER" -m $M --slot-save-path "$SLOTS/" -c 2048 -np 1 -t 2 --host 127.0.0.1 --port "$PORT" \
    --cache-ram 0 $flags > "$O/server-$cache.log" 2>&1 &
  PID=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$PORT/health" > /dev/null 2>&1 && break
    kill -0 "$PID" 2>/dev/null || { echo "llama_server_e2e: llama-server exited, see $O/server-$cache.log" >&2; exit 1; }
    sleep 0.5
  done
  curl -sf "http://127.0.0.1:$PORT/health" > /dev/null 2>&1 || { echo "llama_server_e2e: llama-server not ready after 300 s" >&2; exit 1; }
  configs=${CONFIGS:-$DEFAULT_CONFIGS}
  [ -n "${CONFIGS:-}" ] || [ "$cache" = q8_0 ] || configs="ulp|ulp|
$configs"
  args=()
  while IFS= read -r c; do [ -n "$c" ] && args+=(--config "$c"); done <<< "$configs"
  python3 bench/llama_server_e2e.py --url "http://127.0.0.1:$PORT" --slot-dir "$SLOTS" --kvtc "$K" --model $M \
    --text $T --label "$cache" --prompts "${PROMPTS:-6}" --steps "${STEPS:-32}" "${args[@]}" > "$O/$cache.jsonl" 2> >(tee "$O/$cache.md" >&2)
  stop
done
