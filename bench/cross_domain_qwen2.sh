#!/usr/bin/env bash
# Cross-domain calibration matrix on the bundled qwen2 model at 8K (issue 16,
# bench/RESULTS.md section 8): a model-free `sens` basis (--sensitivity
# --recompute-layers 0) calibrated on each domain, and one on the shipped
# mixed-domain text (data/calibration-mixed.txt), each evaluated on every
# domain's held-out text. Needs models/train/prepare_data.sh first (the
# held-out texts, models/train/heldout/eval_*.txt, of the split the bundled
# model was trained with).
#   [K=build/kvtc] [CTX=8192] [W=2] [RATIOS=20] bench/cross_domain_qwen2.sh
#   CAL_ONLY=1 [BASES="novels mixed"] bench/cross_domain_qwen2.sh   # only (these) bases
#   O=DIR MIXED=T.txt MIXED_NAME=NAME BASES=NAME bench/cross_domain_qwen2.sh   # another mix alone;
#     bench/cross_domain_table.py bench/out/cross_domain_qwen2,DIR DOMAIN... puts both in one matrix
# Writes bench/out/cross_domain_qwen2/{cal_*.safetensors,eval_*.json,matrix.md};
# what exists is kept (delete it to redo).
#
# Calibration never sees a scored token. `kvtc eval` scores the last W
# windows of a text and `kvtc calibrate` (and its sensitivity pass) reads
# the first ones, so a text of N windows may give up to N - W windows to
# calibration. At 8K: persuasion.txt has 17 windows, eval_dictionary 39,
# eval_code 8, eval_manpages and eval_jargon 3 each. Man pages are therefore
# calibrated on pages that the corpus never rendered, so neither trained on
# nor scored (make_calibration_text.py --domain manpages-unseen), jargon on
# the first window of its held-out file only (all other Jargon File text
# was trained on), with --windows 1 --sens-windows 1.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/blas-env.sh
K=${K:-build/kvtc}
M=${M:-data/eval-qwen2-12m-q8_0.gguf}
CTX=${CTX:-8192}
W=${W:-2}
RATIOS=${RATIOS:-20}
MIXED=${MIXED:-data/calibration-mixed.txt}
MIXED_NAME=${MIXED_NAME:-mixed}   # the mixed basis' name (another mix: another name)
H=models/train/heldout
O=${O:-bench/out/cross_domain_qwen2}
DOMS=(novels dictionary code manpages jargon)
read -r -a BASES <<< "${BASES:-${DOMS[*]} $MIXED_NAME}"
[ -f $H/eval_code.txt ] || { echo "no $H/eval_code.txt: run models/train/prepare_data.sh first" >&2; exit 1; }
mkdir -p $O
[[ " ${BASES[*]} " != *" manpages "* || -f $O/manpages_cal.txt ]] ||
  python3 models/train/make_calibration_text.py --domain manpages-unseen --chars 100000 -o $O/manpages_cal.txt

eval_text() { if [ "$1" = novels ]; then echo data/persuasion.txt; else echo $H/eval_$1.txt; fi; }
# calibration text and windows of each basis: "TEXT WINDOWS"
cal_source() {
  case $1 in
    novels) echo "data/persuasion.txt 2" ;;
    manpages) echo "$O/manpages_cal.txt 2" ;;
    jargon) echo "$H/eval_jargon.txt 1" ;;
    "$MIXED_NAME") echo "$MIXED 2" ;;
    *) echo "$H/eval_$1.txt 2" ;;
  esac
}

B=""
for c in "${BASES[@]}"; do
  read -r t cw <<< "$(cal_source $c)"
  if [ ! -f $O/cal_$c.safetensors ]; then
    echo "== calibrate $c on $t ($cw windows of $CTX)"
    $K calibrate --model $M --text "$t" --ctx $CTX --windows $cw --sens-windows $cw --ratio 20 --ratio 32 \
      --sensitivity --recompute-layers 0 -o $O/cal_$c.safetensors
  fi
  B="$B --basis $c=$O/cal_$c.safetensors"
done
[ -z "${CAL_ONLY:-}" ] || exit 0

for d in "${DOMS[@]}"; do
  # to a temporary and renamed: an interrupted run leaves no empty .json taken as done
  if [ ! -f $O/eval_$d.json ]; then
    echo "== evaluate every basis on $d"
    $K eval --model $M --text "$(eval_text $d)" --ctx $CTX --windows $W --ratios $RATIOS \
      --no-baselines $B --json > $O/eval_$d.json.tmp
    mv $O/eval_$d.json.tmp $O/eval_$d.json
  fi
done
python3 bench/cross_domain_table.py $O "${DOMS[@]}" | tee $O/matrix.md
