#!/usr/bin/env bash
# Build the second model's training data from Debian packages only:
#   models/train/prepare_data.sh [WORKDIR [HELDOUT]]
#     (defaults models/train/data, carried to the GPU, and models/train/heldout)
# Installs the text packages (apt-get, no recommends), extracts and cleans
# their texts, adds synthetic copy / key-value recall documents
# (build_corpus.py), tokenizes with the first model's SentencePiece tokenizer
# (kvtc_tokenize, built from this repo) and writes
#   WORKDIR/train.u16.xz  training tokens (uint16 LE, xz): carried to the GPU
#   WORKDIR/val.u16       validation tokens
#   WORKDIR/recall_bank.u16  needle / question lines for train.py's recall windows
#   HELDOUT/eval_*.txt    held-out text per domain (never trained on)
#   HELDOUT/manifest.json which document went where
# Never uses r-cran-tokenizers' texts (held out for independent checks).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-models/train/data}
held=${2:-models/train/heldout}
KVTC_TRAIN_DEPS=1 scripts/install-deps.sh
[ -x build/kvtc_tokenize ] || scripts/build.sh
mkdir -p "$work"
/usr/bin/python3 models/train/build_corpus.py "$work" "$held"
for s in train val recall_bank; do
  build/kvtc_tokenize data/eval-llama-27m-q8_0.gguf "$work/$s.docs" "$work/$s.u16"
  rm "$work/$s.docs"
done
xz -6 -T2 -f "$work/train.u16"
ls -l "$work"
