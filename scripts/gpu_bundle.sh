#!/usr/bin/env bash
# Package what a GPU machine needs to run kvtc's CUDA checks when it cannot
# build the project (the device image lacks the libdeflate, OpenBLAS, LAPACKE,
# xxhash and hiredis development files): the Release build's GPU programs,
# libkvtc.so.0 / libkvtc_cuda.so.0 and their non-system, non-CUDA shared
# dependencies, xz-compressed (OpenBLAS alone is 36 MB) into
# .devbin/bundle.tar.xz. On the GPU machine (same nvcc major version, a
# glibc at least as new as the build machine's):
#   tar xJf .devbin/bundle.tar.xz -C /tmp && export LD_LIBRARY_PATH=/tmp/kvtc-gpu/lib
#   /tmp/kvtc-gpu/bin/test_cuda_contracts ...
# Carry .devbin with the device call. Run scripts/build.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${B:-build}
S=$(mktemp -d)
trap 'rm -rf "$S"' EXIT
D="$S/kvtc-gpu"
mkdir -p "$D/bin" "$D/lib"
for p in kvtc kvtc-gpu test_cuda_contracts kvtc_cuda_bench kvtc_cuda_calib_bench kvtc_cuda_store_bench $(cd "$B" && ls test_cuda_* 2>/dev/null || true); do
  [ -f "$B/$p" ] && cp "$B/$p" "$D/bin/"
done
cp -L "$B/libkvtc.so.0" "$B/libkvtc_cuda.so.0" "$D/lib/"
# every shared library the programs and libraries load, except glibc's and CUDA's
for f in "$D"/bin/* "$D"/lib/*; do
  ldd "$f" 2>/dev/null | awk '$3 ~ /^\// {print $3}'
done | sort -u | while read -r so; do
  case "$so" in
    */libc.so*|*/libm.so*|*/libdl.so*|*/libpthread.so*|*/librt.so*|*/ld-linux*|*/libgcc_s.so*|*/libstdc++.so*) ;;
    */cuda*|*/libcu*|*/libnv*) ;;
    "$PWD"/*) ;;
    *) cp -L "$so" "$D/lib/" ;;
  esac
done
strip --strip-unneeded "$D"/bin/* "$D"/lib/* 2>/dev/null || true
mkdir -p .devbin
# xz -9e: 6.9 MB instead of 9.2 at -6; the tracked tree plus the bundle
# must stay within the device tool's 64 MiB (counted in disk blocks)
XZ_OPT=${XZ_OPT:--9e} tar cJf .devbin/bundle.tar.xz -C "$S" kvtc-gpu
ls -la .devbin/bundle.tar.xz
tar tJf .devbin/bundle.tar.xz | sed 's/^/  /'
