#!/usr/bin/env bash
# Real-model fidelity and ablations (issues 3 and 6). Long: about 30-40
# minutes on a 2-core machine. Writes bench/out/fidelity/*.json, tables.md
# and rate_distortion.png.
#   [CW=16] bench/fidelity.sh [WINDOWS]   (default 8 evaluation windows from
#   the end of the text; CW calibration windows from its start)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
W=${1:-8}
K=build/kvtc
M=data/eval-llama-27m-q8_0.gguf
T=data/persuasion.txt
O=bench/out/fidelity
R="--ratio 8 --ratio 16 --ratio 20 --ratio 32 --ratio 64"
mkdir -p $O
cal() { local name=$1; shift; [ -f $O/$name.safetensors ] || $K calibrate --model $M --text $T $R "$@" -o $O/$name.safetensors; }
# issue 6: each change alone and both together (4 calibration windows from the start of the text)
CW=${CW:-16}   # calibration windows of 2048 tokens from the start of the text
cal plain --windows $CW --plain
cal sens --windows $CW --sensitivity --recompute-layers 0
cal r1 --windows $CW --plain --recompute-layers 1
cal sens_r1 --windows $CW --sensitivity --recompute-layers 1
$K eval --model $M --text $T --windows $W --ratios 8,16,20,32,64 \
  --basis plain=$O/plain.safetensors --basis sens=$O/sens.safetensors \
  --basis r1=$O/r1.safetensors --basis sens_r1=$O/sens_r1.safetensors \
  --plot $O/rate_distortion.png --json > $O/main.json
# issue 3 ablations around the model-free default (sensitivity weighting)
S="--sensitivity --recompute-layers 0"
cal sens_norope --windows $CW $S --no-rope-removal
cal sens_perlayer --windows $CW $S --per-layer-pca
cal sens_uniform --windows $CW $S --uniform-bits
cal sens_cal1 --windows 1 $S
cal sens_cal4 --windows 4 $S
cal sens_cal32 --windows 32 $S
$K eval --model $M --text $T --windows $W --ratios 16,32 --no-baselines \
  --basis sens=$O/sens.safetensors --basis no_rope_removal=$O/sens_norope.safetensors \
  --basis per_layer_pca=$O/sens_perlayer.safetensors --basis uniform_bits=$O/sens_uniform.safetensors \
  --basis calib_1win=$O/sens_cal1.safetensors --basis calib_4win=$O/sens_cal4.safetensors \
  --json > $O/ablation.json
$K eval --model $M --text $T --windows $W --ratios 16,32 --no-baselines --sink 0 --window 0 \
  --basis no_sink_window=$O/sens.safetensors --json > $O/ablation_nosink.json
$K eval --model $M --text $T --windows $W --ratios 16,32 --no-baselines \
  --basis calib_32win=$O/sens_cal32.safetensors --json > $O/ablation_cal32.json
python3 bench/fidelity_table.py $O/main.json $O/ablation.json $O/ablation_nosink.json $O/ablation_cal32.json > $O/tables.md
cat $O/tables.md
