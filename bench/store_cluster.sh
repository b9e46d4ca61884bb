#!/usr/bin/env bash
# The kvtc store on a 3-node Redis Cluster on loopback (3 redis-server
# processes in cluster mode started here, joined by redis-cli --cluster
# create, stopped by PID): restore throughput/latency as bench/store.sh part
# 1, with the store pointed at one node and following MOVED to the others.
#   bench/store_cluster.sh [bench_store options...]   -> bench/out/store_cluster.txt
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
B=build
O=bench/out
mkdir -p $O
[ -x $B/bench_store ] || scripts/build.sh
tmp=$(mktemp -d /tmp/kvtc_bench_cluster.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
ports=()
for i in 0 1 2; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  while [ "$port" -ge 55536 ]; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  done
  redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
    --save '' --appendonly no --dir "$tmp" --logfile "redis-$port.log" --maxmemory 2gb \
    --maxmemory-policy allkeys-lru --daemonize no &
  pids+=($!)
  ports+=("$port")
done
for p in "${ports[@]}"; do
  for i in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" "127.0.0.1:${ports[2]}" \
  --cluster-replicas 0 --cluster-yes >/dev/null
for i in $(seq 100); do
  ok=0
  for p in "${ports[@]}"; do redis-cli -p "$p" cluster info | grep -q cluster_state:ok && ok=$((ok + 1)); done
  [ $ok -eq 3 ] && break
  sleep 0.1
done
{
  echo "# $(date -u +%F) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') x 3 in cluster mode, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# bench_store options: ${*:-(defaults: 8192 tokens, 4 caches, 20 restores, ratio 20, 2 threads, chunk 256)}"
  $B/bench_store "redis://127.0.0.1:${ports[0]}" "$@"
  for p in "${ports[@]}"; do
    echo "# node $p: $(redis-cli -p "$p" dbsize) keys left, $(redis-cli -p "$p" info stats | grep -m1 total_commands_processed | tr -d '\r'), MOVED replies: $(redis-cli -p "$p" info errorstats | grep MOVED | tr -d '\r' || echo none)"
  done
  echo "# load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee $O/store_cluster.txt
