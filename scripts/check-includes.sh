#!/usr/bin/env bash
# check-includes.sh [ROOT] - fail when an #include "..." crosses the layout
# that docs/ARCHITECTURE.md describes, so the folders keep matching the
# pipeline stages. ROOT defaults to the checkout this script lives in.
#
# Rules (the table below is the one source of truth; ARCHITECTURE.md shows it):
#  - lib/FOLDER/* may include the public headers (kvtc.h, kvtc_store.h,
#    kvtc_cuda.h), its own folder (FOLDER/x.h, or a bare name of a file next
#    to the includer), and the folders ALLOWED[FOLDER] names; every other
#    quoted include in lib/ must be written FOLDER/file.h.
#  - lib/internal.h (the tools' internal API) may include ALLOWED[internal].
#  - tools/ may include the public headers, internal.h, its own files and the
#    engine's headers; never a lib/ header directly.
#  - engine/ may include the public headers and its own files.
# Prints one line per violation (file:line: the include and why) and exits 1
# when there is any; exits 0 when the tree is clean.
set -euo pipefail
ROOT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$ROOT"

declare -A ALLOWED=(
  [util]=""
  [model]="util"
  [alloc]="model util"
  [io]="util"
  [transform]="alloc model util"
  [quant]="model util"
  [entropy]="model util"
  [format]="model io util"
  [cpu]="alloc entropy format model quant transform util"
  [cuda]="alloc entropy format model quant transform util"
  [store]="util"
  [internal]="cpu io util"
)
PUBLIC_RE='^kvtc(_store|_cuda)?\.h$'
bad=0
violation() { echo "$1: #include \"$2\": $3"; bad=1; }

# file:line:included-path for every quoted include under the given folders
includes() {
  [ -e "$1" ] || return 0
  find "$@" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) -print0 |
    xargs -0 -r grep -HnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' |
    sed -E 's/^([^:]+:[0-9]+):[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]*)".*/\1:\2/'
}

while IFS=: read -r file line inc; do
  [ -n "$file" ] || continue
  [[ $inc =~ $PUBLIC_RE ]] && continue
  if [ "$file" = lib/internal.h ]; then
    from=internal
  else
    from=${file#lib/}; from=${from%%/*}
  fi
  if [ -z "${ALLOWED[$from]+set}" ]; then
    violation "$file:$line" "$inc" "lib/$from/ is not in the allowed-dependency table (scripts/check-includes.sh)"
    continue
  fi
  # a bare name next to the including file is its own folder (ggml-style .cuh)
  [[ $inc != */* && -f "$(dirname "$file")/$inc" ]] && continue
  if [[ $inc != */* || $inc == *..* ]]; then
    violation "$file:$line" "$inc" "lib/ includes are written FOLDER/file.h (or name a file next to the includer)"
    continue
  fi
  to=${inc%%/*}
  [ "$to" = "$from" ] && continue
  case " ${ALLOWED[$from]} " in
    *" $to "*) ;;
    *) violation "$file:$line" "$inc" "lib/$from may not depend on lib/$to (allowed: ${ALLOWED[$from]:-nothing})" ;;
  esac
done < <(includes lib)

while IFS=: read -r file line inc; do
  [ -n "$file" ] || continue
  [[ $inc =~ $PUBLIC_RE || $inc == internal.h ]] && continue
  [[ $inc != *..* ]] && { [ -f "tools/$inc" ] || [ -f "engine/$inc" ]; } && continue
  # a tools/ file next to the includer, or reached with ../ without leaving tools/
  rel=$(realpath -m --relative-to=tools "$(dirname "$file")/$inc")
  [[ $rel != ..* && -f "tools/$rel" ]] && continue
  violation "$file:$line" "$inc" "tools/ uses the public API and lib/internal.h, not private lib/ headers"
done < <(includes tools)

while IFS=: read -r file line inc; do
  [ -n "$file" ] || continue
  [[ $inc =~ $PUBLIC_RE ]] && continue
  [[ $inc != *..* && -f "engine/$inc" ]] && continue
  violation "$file:$line" "$inc" "engine/ uses only the public API and its own headers"
done < <(includes engine)

exit $bad
