#!/usr/bin/env bash
# kvtc on llama.cpp slot files of the bundled model (issue 13): on-disk
# ratio and time of compress/decompress at the default ratio (20), and the
# quality of a basis calibrated from slot files next to one calibrated by
# the engine on the same text, and how restored slots continue. About 8
# minutes on the 2-core dev machine.
#   bench/llama_slots.sh [FIXTURES]   (default tests/fixtures/llama.cpp; the
#   shared fixture folder adds the 1000/1199-token f16 and 2025 q8_0 slots)
# Writes bench/out/llama/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
F=${1:-tests/fixtures/llama.cpp}
O=bench/out/llama
K=build/kvtc
M=data/eval-llama-27m-q8_0.gguf
mkdir -p $O
# a held-out basis: the engine on the last 200 KB of the text, which no slot holds
tail -c 200000 data/persuasion.txt > $O/heldout.txt
[ -f $O/heldout.basis ] || $K calibrate -o $O/heldout.basis --model $M --text $O/heldout.txt --windows 4 --plain --recompute-layers 0
# the 1900-token slot exists as q8_0 only: an f16 copy of its values (bench_llama_f16_slot.c)
build/bench_llama_f16_slot $F/3f545be/eval27m-q8_0-vtrans0.ggsq 0 $O/eval27m-f16-1900-vtrans0.ggsq
build/bench_llama_f16_slot $F/3f545be/eval27m-q8_0-vtrans0.ggsq 1 $O/eval27m-f16-1900-vtrans1.ggsq
for f in $O/eval27m-f16-1900-vtrans0.ggsq $O/eval27m-f16-1900-vtrans1.ggsq $F/*/eval27m-*.ggsq; do
  [ -f "$f" ] || continue
  b=$(echo "$f" | sed 's|.*/\([^/]*\)/\([^/]*\)\.ggsq$|\1-\2|')
  $K compress --basis $O/heldout.basis "$f" -o $O/$b.kvtc
  /usr/bin/time -f "  decompress: %e s" $K decompress --basis $O/heldout.basis $O/$b.kvtc -o $O/$b.out.ggsq
done
# calibration from llama.cpp's own cache vs the engine's capture of the same 1900 tokens;
# kvtc eval scores both on windows from the end of the text (held out for both)
$K calibrate -o $O/slot.basis --model $M --ratio 20 $F/3f545be/eval27m-q8_0-vtrans0.ggsq
$K calibrate -o $O/engine.basis --model $M --text data/persuasion.txt --windows 1 --ctx 1900 --plain --recompute-layers 0 --ratio 20
$K eval --model $M --text data/persuasion.txt --windows 4 --ratios 20 --no-baselines \
  --basis slot_files=$O/slot.basis --basis engine_same_text=$O/engine.basis --basis engine_heldout=$O/heldout.basis
# how the restored slots continue, in kvtc's engine (greedy, 128 tokens; kvtc slots check),
# with the plain basis and with the default one (sensitivity + layer 0 recomputed; about 4 minutes)
[ -f $O/heldout_default.basis ] || $K calibrate -o $O/heldout_default.basis --model $M --text $O/heldout.txt --windows 4
for b in heldout heldout_default; do
  for f in $O/eval27m-f16-1900-vtrans0.ggsq $F/3f545be/eval27m-f16-vtrans0.ggsq $F/3f545be/eval27m-f16-vtrans1.ggsq \
           $F/3f545be/eval27m-q8_0-vtrans0.ggsq; do
    [ -f "$f" ] && $K slots check --tokens 128 --basis $O/$b.basis --model $M "$f"
  done
done
