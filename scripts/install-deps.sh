#!/usr/bin/env bash
# Debian packages kvtc needs to build, test and plot. Idempotent.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libdeflate-dev libxxhash-dev libopenblas-dev liblapacke-dev gnuplot-nox clang libclang-rt-14-dev valgrind python3 locales libhiredis-dev redis-server)
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# A locale whose decimal point is a comma, for tests/test_locale.c (numbers
# in files must not depend on the locale).
if ! locale -a 2>/dev/null | grep -qiE '^de_DE\.utf-?8$'; then
  $SUDO localedef -i de_DE -f UTF-8 de_DE.UTF-8
fi

# Optional: the text packages models/train/prepare_data.sh builds the second
# evaluation model's corpus from (KVTC_TRAIN_DEPS=1 scripts/install-deps.sh).
if [ "${KVTC_TRAIN_DEPS:-0}" = 1 ]; then
  train=(r-cran-janeaustenr dict-gcide wordnet-base fortunes-min jargon-text manpages-dev man-db
         libpython3.11-stdlib xz-utils)
  missing=()
  for p in "${train[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi
