"""Paired differences against the uncompressed row of `kvtc eval --task
copy|copy-random|recall --json` (needs the rows' per_trial scores): every
method scores the same sequences, so the standard error of a difference is
that of the per-trial differences, far smaller than the rows' own errors.
Usage: python3 bench/paired_diff.py EVAL.json  -> a markdown table per point."""
import json
import math
import sys


def mean_se(xs):
    n = len(xs)
    m = sum(xs) / n
    var = sum((x - m) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    return m, math.sqrt(var / n)


r = json.load(open(sys.argv[1]))
rows = r["rows"]
score = "copy accuracy" if r["task"] != "recall" else "answer tokens right"
for p in sorted({x["point"] for x in rows}):
    at = [x for x in rows if x["point"] == p]
    base = next(x for x in at if x["name"] == "uncompressed")["per_trial"]
    print("\n%s, point %g (distance %.0f), %d trials: %s, paired difference vs uncompressed (points)\n"
          % (r["task"], p, at[0]["distance"], len(base), score))
    print("| method | ratio | %s | vs uncompressed | NLL |" % score)
    print("|---|---|---|---|---|")
    for x in at:
        m, se = mean_se(x["per_trial"])
        d, dse = mean_se([a - b for a, b in zip(x["per_trial"], base)])
        ratio = "-" if x["compression_ratio"] in (0, 0.5) else "%.2fx" % x["compression_ratio"]
        diff = "-" if x["name"] == "uncompressed" else "%+.2f ± %.2f" % (100 * d, 100 * dse)
        nll = "%.3f ± %.3f" % (x["nll"], x["nll_se"]) if "nll" in x else "-"
        print("| %s | %s | %.2f%% ± %.2f | %s | %s |" % (x["name"], ratio, 100 * m, 100 * se, diff, nll))
