#!/usr/bin/env bash
# Restore throughput/latency of the kvtc store (bench/bench_store.c) on the
# file: backend and on a loopback redis-server started here (stopped by PID).
#   bench/store.sh [bench_store options...]   -> bench/out/store.txt
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
B=build
O=bench/out
mkdir -p $O
[ -x $B/bench_store ] || scripts/build.sh
tmp=$(mktemp -d /tmp/kvtc_bench_store.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" --logfile redis.log \
  --maxmemory 4gb --maxmemory-policy allkeys-lru --daemonize no &
rpid=$!
trap 'kill $rpid 2>/dev/null; wait $rpid 2>/dev/null; rm -rf "$tmp"' EXIT
for i in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
{
  echo "# $(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')"
  echo "# bench_store options: ${*:-(defaults: 8192 tokens, 4 caches, 20 restores, ratio 20, 2 threads, chunk 256)}"
  mkdir -p "$tmp/files"
  $B/bench_store "file:$tmp/files" "$@"
  $B/bench_store "redis://127.0.0.1:$port/0" "$@" | tail -n +3
} 2>&1 | tee $O/store.txt
