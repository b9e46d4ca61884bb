#!/usr/bin/env bash
# The kvtc store (docs/STORE.md) on the file: backend and on a loopback
# redis-server started here (stopped by PID):
# 1. restore throughput/latency of 8K-token synthetic caches at the bundled
#    model's geometry, kvtc codec against raw (bench/bench_store.c);
# 2. a multi-turn workload on the bundled model (bench/store_turns.c), with a
#    basis calibrated once into bench/out/store_basis.safetensors (~2 min).
#   bench/store.sh [bench_store options...]   -> bench/out/store.txt
# SKIP_TURNS=1 runs part 1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
B=build
O=bench/out
mkdir -p $O
[ -x $B/bench_store ] && [ -x $B/bench_store_turns ] || scripts/build.sh
M=data/eval-llama-27m-q8_0.gguf
T=data/persuasion.txt
[ -n "${SKIP_TURNS:-}" ] || [ -f $O/store_basis.safetensors ] || $B/kvtc calibrate --model $M --text $T --windows 4 --recompute-layers 0 \
    --ratio 20 -o $O/store_basis.safetensors 2>/dev/null
tmp=$(mktemp -d /tmp/kvtc_bench_store.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" --logfile redis.log \
  --maxmemory 4gb --maxmemory-policy allkeys-lru --daemonize no &
rpid=$!
trap 'kill $rpid 2>/dev/null; wait $rpid 2>/dev/null; rm -rf "$tmp"' EXIT
for i in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
{
  echo "# $(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# bench_store options: ${*:-(defaults: 8192 tokens, 4 caches, 20 restores, ratio 20, 2 threads, chunk 256)}"
  mkdir -p "$tmp/files"
  $B/bench_store "file:$tmp/files" "$@"
  $B/bench_store "redis://127.0.0.1:$port/0" "$@" | tail -n +3
  if [ -n "${SKIP_TURNS:-}" ]; then echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"; exit 0; fi
  echo
  echo "## multi-turn workload, file: store"
  mkdir -p "$tmp/turns"
  $B/bench_store_turns $M $T $O/store_basis.safetensors "file:$tmp/turns"
  echo
  echo "## multi-turn workload, redis"
  $B/bench_store_turns $M $T $O/store_basis.safetensors "redis://127.0.0.1:$port/0"
  echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee $O/store.txt
