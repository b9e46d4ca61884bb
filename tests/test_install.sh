#!/usr/bin/env bash
# test_install.sh BUILD_DIR C_COMPILER CMAKE - install libkvtc into a temporary
# prefix and use it the way a dependent project does:
#  1. the installed shared libraries export exactly the KVTC_API functions of
#     the installed headers (nm -D);
#  2. examples/example.c (README.md shows it verbatim) builds against the
#     installed copy with `pkg-config --cflags --libs kvtc`, statically with
#     `pkg-config --static`, and in a CMake project with find_package(kvtc);
#  3. each build runs on a real cache: captured from the bundled model with
#     the installed kvtc CLI, calibrated and compressed; the installed CLI
#     calibrates on the installed mixed-domain text when --text is left out.
set -euo pipefail
build=$(cd "$1" && pwd); cc=$2; cmake=$3
src=$(cd "$(dirname "$0")/.." && pwd)
command -v pkg-config >/dev/null || { echo "SKIP: no pkg-config"; exit 77; }
command -v nm >/dev/null || { echo "SKIP: no nm"; exit 77; }
tmp=$(mktemp -d /tmp/kvtc_install_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test_install: FAIL: $*" >&2; exit 1; }
p=$tmp/prefix

"$cmake" --install "$build" --prefix "$p" >/dev/null
libdir=$(dirname "$(find "$p" -name libkvtc.so.0 | head -1)")
[ -f "$p/include/kvtc.h" ] && [ -f "$libdir/libkvtc.a" ] && [ -x "$p/bin/kvtc" ] || fail "incomplete install"
readelf -d "$libdir/libkvtc.so.0" | grep -q 'SONAME.*\[libkvtc\.so\.0\]' || fail "SONAME is not libkvtc.so.0"

[ -f "$p/include/kvtc_store.h" ] || fail "kvtc_store.h (the prefix store API, in libkvtc) is not installed"

# 1. exports == KVTC_API declarations
check_exports() { # LIB HEADER...
    local lib=$1; shift
    nm -D --defined-only "$lib" | awk '{print $3}' | sort >"$tmp/exported"
    cat "$@" | grep -oE '^KVTC_API [^(]*\bkvtc_[a-z0-9_]+\(' | grep -oE 'kvtc_[a-z0-9_]+\($' | tr -d '(' | sort >"$tmp/declared"
    diff "$tmp/declared" "$tmp/exported" >"$tmp/diff" || { cat "$tmp/diff" >&2; fail "$lib exports differ from $* (< declared only, > exported only)"; }
    echo "$(basename "$lib"): $(wc -l <"$tmp/exported") exported symbols, all declared KVTC_API"
}
check_exports "$libdir/libkvtc.so.0" "$p/include/kvtc.h" "$p/include/kvtc_store.h"
if [ -f "$libdir/libkvtc_cuda.so.0" ]; then
    check_exports "$libdir/libkvtc_cuda.so.0" "$p/include/kvtc_cuda.h"
fi

# the installed headers compile on their own, as C and (when there is a C++
# compiler) as C++ (extern "C", no C-only constructs)
cxx=$(command -v c++ || command -v g++ || command -v clang++ || true)
for h in kvtc.h kvtc_store.h; do
    printf '#include <%s>\nint main(void) { return 0; }\n' "$h" >"$tmp/h.c"
    "$cc" -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only -I"$p/include" "$tmp/h.c" || fail "$h does not compile as C"
    if [ -n "$cxx" ]; then
        cp "$tmp/h.c" "$tmp/h.cpp"
        "$cxx" -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only -I"$p/include" "$tmp/h.cpp" || fail "$h does not compile as C++"
    fi
done

# 2. the README shows examples/example.c verbatim
awk '/^<!-- examples\/example.c -->$/ {f = 1; next} f && /^```c$/ {g = 1; next} g && /^```$/ {exit} g' \
    "$src/README.md" >"$tmp/readme_example.c"
diff -q "$src/examples/example.c" "$tmp/readme_example.c" >/dev/null || fail "README.md does not show examples/example.c verbatim"

export PKG_CONFIG_PATH=$libdir/pkgconfig
flags="-std=c11 -Wall -Wextra -Werror -O1"
# shellcheck disable=SC2046,SC2086
"$cc" $flags "$src/examples/example.c" -o "$tmp/ex_pc" $(pkg-config --cflags --libs kvtc)
# static: the same flags from --static, with libkvtc.a instead of the .so
# shellcheck disable=SC2046,SC2086
"$cc" $flags "$src/examples/example.c" -o "$tmp/ex_static" \
    $(pkg-config --cflags kvtc) $(pkg-config --static --libs kvtc | sed 's/-lkvtc\b/-l:libkvtc.a/')
if readelf -d "$tmp/ex_static" | grep -q 'libkvtc\.so'; then fail "static example links libkvtc.so"; fi

mkdir "$tmp/proj"
cp "$src/examples/example.c" "$tmp/proj/"
cat >"$tmp/proj/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(kvtc_example C)
find_package(kvtc 0.1 CONFIG REQUIRED)
add_executable(example example.c)
target_link_libraries(example PRIVATE kvtc::kvtc)
CM
"$cmake" -S "$tmp/proj" -B "$tmp/proj/build" -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$p" >/dev/null
"$cmake" --build "$tmp/proj/build" >/dev/null
readelf -d "$tmp/proj/build/example" | grep -q 'NEEDED.*libkvtc\.so\.0' || fail "CMake example does not use libkvtc.so.0"

# the prefix store through the installed libkvtc.so (RAW codec: no basis
# needed): put a synthetic cache, get it back bit-exact, read the counters
cat >"$tmp/store_app.c" <<'C'
#include <kvtc_store.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    enum { T = 512, L = 2, H = 2, D = 8, N = L * H * T * D };
    static float k[N], v[N], k2[N], v2[N];
    static int32_t tok[T];
    for (int i = 0; i < N; i++) { k[i] = (float)(i % 97) - 48.0f; v[i] = (float)(i % 89) * 0.5f; }
    for (int i = 0; i < T; i++) tok[i] = i * 7 + 1;
    kvtc_geometry g = {L, H, D, 0, KVTC_ROPE_NONE, 0.0f};
    kvtc_store_options o;
    kvtc_store_options_init(&o);
    o.codec = KVTC_STORE_CODEC_RAW;
    char uri[4200];
    snprintf(uri, sizeof uri, "file:%s", argc > 1 ? argv[1] : ".");
    kvtc_store *s = NULL;
    kvtc_result r = kvtc_store_open(uri, NULL, &g, KVTC_DTYPE_F32, &o, &s);
    kvtc_cache in = {g, KVTC_DTYPE_F32, T, k, v, NULL, NULL}, out = {g, KVTC_DTYPE_F32, T, k2, v2, NULL, NULL};
    kvtc_store_layout lay = {sizeof lay, KVTC_STORE_LAYOUT_CONTIGUOUS, &out};
    uint64_t stored = 0, restored = 0;
    if (!r) r = kvtc_store_put(s, tok, T, &in, &stored);
    if (!r) r = kvtc_store_get(s, tok, T, &lay, &restored);
    kvtc_store_stats st = {.struct_size = sizeof st};
    if (!r) r = kvtc_store_stats_get(s, &st);
    kvtc_store_close(s);
    if (r) { fprintf(stderr, "store: %s\n", kvtc_result_string(r)); return 1; }
    int same = !memcmp(k, k2, sizeof k) && !memcmp(v, v2, sizeof v);
    printf("store: %llu chunks put, %llu tokens restored, %s\n", (unsigned long long)st.chunks_put,
           (unsigned long long)restored, same ? "identical" : "DIFFERENT");
    return same && restored == T ? 0 : 1;
}
C
# shellcheck disable=SC2046,SC2086
"$cc" $flags "$tmp/store_app.c" -o "$tmp/store_app" $(pkg-config --cflags --libs kvtc)
mkdir "$tmp/store"
LD_LIBRARY_PATH=$libdir "$tmp/store_app" "$tmp/store" || fail "the prefix store does not work through the installed libkvtc.so"

# 3. a real cache from the bundled model, through the installed CLI
kvtc=$p/bin/kvtc
model=$src/data/eval-llama-27m-q8_0.gguf
text=$src/data/persuasion.txt
"$kvtc" capture --model "$model" --text "$text" --ctx 512 --window-index 0 -o "$tmp/calib.safetensors"
"$kvtc" capture --model "$model" --text "$text" --ctx 512 --window-index 1 -o "$tmp/kv.safetensors"
"$kvtc" calibrate -o "$tmp/basis.kvtcb" --ratio 8 "$tmp/calib.safetensors" 2>/dev/null
# without --text, the installed tool calibrates on the installed mixed-domain text
mixed=$(realpath "$p")/share/kvtc/calibration-mixed.txt
cmp -s "$mixed" "$src/data/calibration-mixed.txt" || fail "share/kvtc/calibration-mixed.txt is not installed"
"$kvtc" calibrate -o "$tmp/mixed.kvtcb" --model "$src/data/stories260K.gguf" --plain --windows 1 --ctx 384 \
  --ratio 20 2>"$tmp/mixed.err" || fail "calibrate without --text: $(cat "$tmp/mixed.err")"
grep -qF "on the mixed-domain text $mixed" "$tmp/mixed.err" || fail "calibrate without --text did not read $mixed: $(cat "$tmp/mixed.err")"
"$kvtc" compress --basis "$tmp/basis.kvtcb" "$tmp/kv.safetensors" -o "$tmp/kv.kvtc" 2>/dev/null
# what the example must report, from the CLI's own view of the stream
info=$("$kvtc" info "$tmp/kv.kvtc")
tokens=$(sed -n 's/^  tokens: \([0-9]*\) .*/\1/p' <<<"$info")
decoded=$(sed -n 's/^  decoded size: k \([0-9]*\) B + v \([0-9]*\) B$/\1 + \2/p' <<<"$info")
[ -n "$tokens" ] && [ -n "$decoded" ] || fail "cannot read 'kvtc info' output: $info"
size=$(stat -c %s "$tmp/kv.kvtc")
want="libkvtc $(pkg-config --modversion kvtc): $tokens tokens, stream $size bytes, decoded $((decoded)) bytes, stored again in"
for ex in "$tmp/ex_pc" "$tmp/ex_static" "$tmp/proj/build/example"; do
    if [ "$ex" = "$tmp/ex_pc" ]; then out=$(LD_LIBRARY_PATH=$libdir "$ex" "$tmp/basis.kvtcb" "$tmp/kv.kvtc")
    else out=$("$ex" "$tmp/basis.kvtcb" "$tmp/kv.kvtc"); fi
    echo "$(basename "$ex"): $out"
    case $out in "$want"*) ;; *) fail "$ex printed '$out', expected '$want ...'";; esac
done
echo "test_install: OK"
