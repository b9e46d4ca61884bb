#!/usr/bin/env bash
# Cross-domain calibration matrix (issue 16): calibrate a basis on one kind
# of text, evaluate KVTC on another. Domains are the held-out texts that
# models/train/prepare_data.sh writes (models/train/heldout/eval_*.txt,
# from Debian packages) and Persuasion (novels). Writes
# bench/out/cross_domain/*.json and matrix.md.
#   [M=model.gguf] [CTX=2048] [CW=2] [W=2] bench/cross_domain.sh [DOMAIN...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
K=build/kvtc
M=${M:-data/eval-llama-27m-q8_0.gguf}
CTX=${CTX:-2048}
CW=${CW:-2}
W=${W:-2}
O=bench/out/cross_domain
H=models/train/heldout
mkdir -p $O
doms=("$@")
[ ${#doms[@]} -gt 0 ] || doms=(novels manpages code)
text() { if [ "$1" = novels ]; then echo data/persuasion.txt; else echo $H/eval_$1.txt; fi; }
B=""
for d in "${doms[@]}"; do
  # calibration windows come from the START of the text, evaluation windows from its END
  [ -f $O/cal_$d.safetensors ] || $K calibrate --model $M --text "$(text $d)" --ctx $CTX --windows $CW \
    --ratio 20 --ratio 32 --sensitivity --recompute-layers 0 -o $O/cal_$d.safetensors
  B="$B --basis $d=$O/cal_$d.safetensors"
done
# a mixed-domain basis: the first 6000 characters of every domain (CW + 1 windows
# in all), still disjoint from the evaluation windows at the texts' ends
if [ ! -f $O/cal_mixed.safetensors ]; then
  for d in "${doms[@]}"; do head -c 6000 "$(text $d)"; echo; done > $O/mixed.txt
  $K calibrate --model $M --text $O/mixed.txt --ctx $CTX --windows $((CW + 1)) --ratio 20 --ratio 32 --sensitivity \
    --recompute-layers 0 -o $O/cal_mixed.safetensors
fi
B="$B --basis mixed=$O/cal_mixed.safetensors"
for d in "${doms[@]}"; do
  # written to a temporary and renamed: an interrupted run leaves no empty .json taken as done
  if [ ! -f $O/eval_$d.json ]; then
    $K eval --model $M --text "$(text $d)" --ctx $CTX --windows $W --ratios 20,32 \
      --no-baselines $B --json > $O/eval_$d.json.tmp
    mv $O/eval_$d.json.tmp $O/eval_$d.json
  fi
done
python3 - "$O" "${doms[@]}" <<'PY' | tee $O/matrix.md
import json, sys
o, doms = sys.argv[1], sys.argv[2:]
print("| calibrated on \\\\ evaluated on | " + " | ".join(doms) + " |")
print("|---|" + "---|" * len(doms))
runs = {d: json.load(open("%s/eval_%s.json" % (o, d))) for d in doms}
res = {d: {m["name"]: m for m in runs[d]["methods"]} for d in doms}
npred = {d: runs[d]["predictions_per_method"] for d in doms}
for r in (20, 32):
    for c in doms + ["mixed"]:
        cells = []
        for e in doms:
            m = res[e]["%s@%d" % (c, r)]
            se = (m["top1"] * (1 - m["top1"]) / npred[e]) ** 0.5  # binomial; tokens are correlated
            cells.append("%.1fx: top-1 %.2f%% ± %.2f, KL %.2e, ppl %+.2f%%" % (
                m["compression_ratio"], 100 * m["top1"], 100 * se, m["kld"], 100 * m["ppl_change"]))
        print("| %s @%d | %s |" % (c, r, " | ".join(cells)))
PY
