#!/usr/bin/env bash
# Build and run the whole test suite (CPU only; no GPU needed).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
scripts/build.sh
cd build
ctest --output-on-failure -j2 "$@"
