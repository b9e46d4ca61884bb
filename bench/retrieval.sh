#!/usr/bin/env bash
# Retrieval through a compressed cache (issue 16): kvtc eval --task copy,
# copy-random and recall, baselines and KVTC in one table each, with the
# uncompressed and "hidden" control rows. Writes
# bench/out/retrieval/MODEL.TASK.json and MODEL.TASKS.tables.md.
#   [M=model.gguf] [T=text] [CAL=calibration text] [CTX=n] [W=trials]
#   [TASKS="copy recall"] [RATIOS=20,32,64] [K=build/kvtc] bench/retrieval.sh
# Defaults: the bundled eval-llama-27m at 2048 tokens, evaluated on the end of
# persuasion.txt, calibrated (sensitivity, no recompute, and with layer 0
# recomputed) on CAL (default: the same book's start, disjoint windows).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
K=${K:-build/kvtc}
M=${M:-data/eval-llama-27m-q8_0.gguf}
T=${T:-data/persuasion.txt}
CAL=${CAL:-$T}
CTX=${CTX:-2048}
W=${W:-4}
CW=${CW:-4}
TASKS=${TASKS:-copy recall}
RATIOS=${RATIOS:-20,32,64}
O=bench/out/retrieval
mkdir -p $O
tag=$(basename "$M" .gguf)
R=$(echo "$RATIOS" | tr , '\n' | sed 's/^/--ratio /' | tr '\n' ' ')
[ -f $O/$tag.sens.safetensors ] || $K calibrate --model $M --text $CAL --ctx $CTX --windows $CW $R \
  --sensitivity --recompute-layers 0 -o $O/$tag.sens.safetensors
[ -f $O/$tag.sens_r1.safetensors ] || $K calibrate --model $M --text $CAL --ctx $CTX --windows $CW $R \
  --sensitivity --recompute-layers 1 -o $O/$tag.sens_r1.safetensors
B="--basis sens=$O/$tag.sens.safetensors --basis sens_r1=$O/$tag.sens_r1.safetensors --ratios $RATIOS"
# each result is written to a temporary and renamed: a run that fails or is
# interrupted leaves no empty .json that a rerun would take as done. Results
# and bases are reused by model name only: remove $O to rerun with another
# CTX, T or CAL.
for task in $TASKS; do
  if [ ! -f $O/$tag.$task.json ]; then
    $K eval --model $M --text $T --ctx $CTX --windows $W --task $task $B --json > $O/$tag.$task.json.tmp
    mv $O/$tag.$task.json.tmp $O/$tag.$task.json
  fi
done
python3 bench/retrieval_table.py $(for t in $TASKS; do echo $O/$tag.$t.json; done) | tee $O/$tag.$(echo $TASKS | tr " " -).tables.md
