#!/usr/bin/env bash
# Debian packages kvtc needs to build, test and plot. Idempotent.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libdeflate-dev libopenblas-dev liblapacke-dev gnuplot-nox clang libclang-rt-14-dev valgrind python3 libhiredis-dev redis-server)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
