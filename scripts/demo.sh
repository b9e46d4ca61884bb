#!/usr/bin/env bash
# The main job on the bundled defaults: install, build, calibrate a basis on
# the bundled model and the shipped mixed-domain calibration text, compress
# one captured cache of a held-out novel, and print the quality / ratio
# table of KVTC next to fp16, fp8, q8_0, q4_0 and KIVI-2 on that novel.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
scripts/install-deps.sh
scripts/build.sh
mkdir -p out
M=data/eval-llama-27m-q8_0.gguf
T=data/persuasion.txt
echo "== calibrate on the first 16 windows of the shipped mixed-domain text, the default"
echo "   without --text (data/calibration-mixed.txt: novels, dictionary, manual pages, code,"
echo "   jargon; other defaults: the model's measured sensitivity weights the distortion,"
echo "   layer 0 is recomputed from token ids)"
build/kvtc calibrate --model $M -o out/basis.safetensors
build/kvtc info out/basis.safetensors
echo "== compress one captured cache (a window near the end of the text) at the default ratio 20"
build/kvtc capture --model $M --text $T --window-index 60 -o out/cache.safetensors
build/kvtc compress --basis out/basis.safetensors --model $M out/cache.safetensors -o out/cache.kvtc
build/kvtc info out/cache.kvtc
build/kvtc decompress --basis out/basis.safetensors --model $M out/cache.kvtc -o out/cache.restored.safetensors
echo "== fidelity on the model (windows from the end of the held-out novel, which calibration never saw)"
build/kvtc eval --model $M --text $T --basis out/basis.safetensors --ratios 8,16,20,32,64 \
  --windows 2 --plot out/rate_distortion.png
echo "plot: out/rate_distortion.png"
