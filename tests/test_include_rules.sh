#!/usr/bin/env bash
# test_include_rules.sh - the source tree keeps the layout of
# docs/ARCHITECTURE.md (scripts/check-includes.sh passes on it), and the
# checker really catches each kind of drift: it is run on small fake trees
# that each hold one forbidden include, and on one that holds only allowed ones.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECK=$PWD/scripts/check-includes.sh
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# 1. this checkout
if ! out=$(bash "$CHECK" "$PWD"); then
  fail "the source tree breaks the include rules:"; echo "$out"
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# write FILE with one include line per remaining argument, under tree $1
make_file() {
  local root=$1 file=$2; shift 2
  mkdir -p "$(dirname "$root/$file")"
  : >"$root/$file"
  for inc in "$@"; do printf '#include "%s"\n' "$inc" >>"$root/$file"; done
}

# a tree with every kind of include the rules allow: must pass
ok=$TMP/ok
make_file "$ok" lib/util/cache.h kvtc.h
make_file "$ok" lib/model/basis.h kvtc.h model/groups.h util/cache.h
make_file "$ok" lib/cpu/encode.c cpu/codec_common.h model/basis.h transform/rows.h entropy/rans.h kvtc_store.h
make_file "$ok" lib/internal.h io/cache_file.h util/number.h
make_file "$ok" lib/cuda/common.cuh kvtc_cuda.h
make_file "$ok" lib/cuda/rans.cu common.cuh cuda/common.cuh model/basis.h alloc/dp.h
make_file "$ok" tools/eval/metrics.h kvtc.h
make_file "$ok" tools/cmd.c internal.h eval/metrics.h gguf.h kvtc_store.h
make_file "$ok" engine/gguf.h kvtc.h
make_file "$ok" engine/llama.c gguf.h
if ! out=$(bash "$CHECK" "$ok"); then fail "allowed includes reported: $out"; fi

# one tree per forbidden include: the checker must fail and name the file
expect_violation() { # FILE INCLUDE WHY
  local root=$TMP/bad$fails$RANDOM
  make_file "$root" lib/util/cache.h kvtc.h
  make_file "$root" tools/eval/metrics.h kvtc.h
  make_file "$root" "$1" "$2"
  local out rc=0
  out=$(bash "$CHECK" "$root") || rc=$?
  if [ "$rc" -ne 1 ]; then fail "$3: $1 including $2 passed (rc $rc)"
  elif [[ $out != *"$1:1: #include \"$2\""* ]]; then fail "$3: report does not name $1: $out"
  fi
}
expect_violation lib/util/cache.h transform/rope.h "util/ depending on transform/ (the drift of issue 10)"
expect_violation lib/quant/group_quant.h format/container.h "quant/ depending on format/"
expect_violation lib/entropy/rans.c format/basis.h "entropy/ depending on format/"
expect_violation lib/format/basis.h alloc/dp.h "format/ depending on alloc/"
expect_violation lib/model/basis.h alloc/dp.h "model/ depending on alloc/"
expect_violation lib/util/x.c store/keys.h "util/ depending on anything"
expect_violation lib/internal.h transform/pca.h "internal.h widening the tools' API"
expect_violation lib/newstage/a.c util/cache.h "a lib/ folder missing from the table"
expect_violation lib/cpu/a.c ../util/cache.h "a relative include escaping the folder rules"
expect_violation lib/cpu/a.c codec_common.h "a lib/ include without its folder"
expect_violation tools/cmd_codec.c util/cache.h "tools/ reaching into a private header"
expect_violation tools/cmd_eval.c io/cache_file.h "tools/ bypassing internal.h"
expect_violation tools/eval/b.c ../../lib/util/cache.h "tools/ reaching lib/ by a relative path"
expect_violation engine/llama.c util/cache.h "engine/ reaching into libkvtc"

if [ "$fails" -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "include rules: source tree clean; 1 allowed tree passed, 14 forbidden includes caught"
