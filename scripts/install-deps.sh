#!/usr/bin/env bash
# Debian packages kvtc needs to build, test and plot. Idempotent.
# KVTC_TRAIN_DEPS=1 also installs the text packages that
# models/train/prepare_data.sh builds the second evaluation model's corpus from.
set -euo pipefail
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

install_missing() { # apt-get options then "--" then packages: installs those not installed yet
  local opts=() missing=() p
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done; shift
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${opts[@]}" "${missing[@]}"
}

# python3-torch: python/test_kvtc.py checks the tensor layouts (vLLM/HF/
# SGLang shapes) with torch CPU tensors; without it those checks skip.
install_missing -- build-essential cmake pkg-config libdeflate-dev libxxhash-dev libopenblas-dev liblapacke-dev \
  gnuplot-nox clang libclang-rt-14-dev valgrind python3 python3-numpy python3-torch locales libhiredis-dev redis-server

# A locale whose decimal point is a comma, for tests/test_locale.c (numbers
# in files must not depend on the locale).
if ! locale -a 2>/dev/null | grep -qiE '^de_DE\.utf-?8$'; then
  $SUDO localedef -i de_DE -f UTF-8 de_DE.UTF-8
fi

if [ "${KVTC_TRAIN_DEPS:-0}" = 1 ]; then
  install_missing --no-install-recommends -- r-cran-janeaustenr dict-gcide wordnet-base fortunes-min jargon-text \
    manpages-dev man-db libpython3.11-stdlib xz-utils
fi
