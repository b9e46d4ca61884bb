#!/usr/bin/env bash
# The kvtc store at the 12B geometry (40 layers x 8 KV heads x 128, bf16) on
# the CPU, file: and a loopback redis-server started here (stopped by PID),
# with the CUDA benchmark's synthetic generator (bench_store --paper):
# 1. raw bf16 records of 8K-token caches (1.3 GB each): what restoring them
#    costs without compression (generator rank 256: only the raw codec runs,
#    the basis rank does not matter to it);
# 2. kvtc records at the paper basis rank 4096 (plan 16x, rANS) for one
#    256-token chunk: the CPU decode of an 8K cache is 32 such chunks and
#    does not fit a 2-core machine's minutes (bench/cuda: the GPU run);
#    file: only (a decode-bound case: the backend moves 3 MB).
#   bench/store_12b.sh   -> bench/out/store_12b.txt
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
B=build
O=bench/out
mkdir -p $O
[ -x $B/bench_store ] || scripts/build.sh
tmp=$(mktemp -d /tmp/kvtc_bench_store12b.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" --logfile redis.log \
  --maxmemory 4gb --maxmemory-policy allkeys-lru --proto-max-bulk-len 4gb --daemonize no &
rpid=$!
trap 'kill $rpid 2>/dev/null; wait $rpid 2>/dev/null; rm -rf "$tmp"' EXIT
for i in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
{
  echo "# $(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  mkdir -p "$tmp/files"
  echo "# 1. raw, 8192 tokens: bench_store URI --paper 256 --no-kvtc --caches 1 --restores 3"
  $B/bench_store "file:$tmp/files" --paper 256 --no-kvtc --caches 1 --restores 3
  $B/bench_store "redis://127.0.0.1:$port/0" --paper 256 --no-kvtc --caches 1 --restores 3 | tail -n +3
  echo "# 2. kvtc, one 256-token chunk at rank 4096: bench_store URI --paper 4096 --tokens 256 --caches 1 --restores 2 --no-raw --rans"
  $B/bench_store "file:$tmp/files" --paper 4096 --tokens 256 --caches 1 --restores 2 --no-raw --rans
  echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee $O/store_12b.txt
