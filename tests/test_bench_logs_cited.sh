#!/usr/bin/env bash
# test_bench_logs_cited.sh - every log kept under bench/cuda/logs is cited by
# a bench/RESULTS*.md; logs of superseded runs belong in git history, not in
# the tree (issue 10). Citations may be plain names or brace groups, as the
# RESULTS files write them: bench/cuda/logs/{check,bench}_rerun2.txt.
# Also checks the checker: a fake uncited log must be reported.
set -euo pipefail
cd "$(dirname "$0")/.."

uncited() { # LOGDIR RESULTS... : prints the logs of LOGDIR no RESULTS file cites
  python3 - "$@" <<'EOF'
import os, re, sys
logdir, results = sys.argv[1], sys.argv[2:]
text = "".join(open(p, encoding="utf-8").read() for p in results)
cited = set(re.findall(r"[\w.-]+\.txt", text))
for pre, alts, post in re.findall(r"([\w.-]*)\{([\w.,-]+)\}([\w.-]*)", text):
    cited.update(pre + a + post.rstrip(".") for a in alts.split(","))  # "{a,b}.txt." ends a sentence
for name in sorted(os.listdir(logdir)):
    if name not in cited:
        print(name)
EOF
}

out=$(uncited bench/cuda/logs bench/RESULTS*.md)
if [ -n "$out" ]; then
  echo "FAIL: logs under bench/cuda/logs that no bench/RESULTS*.md cites (cite them or git rm them):"
  echo "$out"
  exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir "$TMP/logs"
touch "$TMP/logs/a_rerun.txt" "$TMP/logs/b_rerun.txt" "$TMP/logs/env.txt" "$TMP/logs/old_run.txt"
printf 'see logs/{a,b}_rerun.txt and env.txt\n' >"$TMP/RESULTS.md"
out=$(uncited "$TMP/logs" "$TMP/RESULTS.md")
if [ "$out" != old_run.txt ]; then
  echo "FAIL: the checker reported '$out' instead of the one uncited log old_run.txt"
  exit 1
fi
echo "bench/cuda/logs: $(ls bench/cuda/logs | wc -l) logs, all cited by bench/RESULTS*.md"
