"""Paired differences against the uncompressed row of `kvtc eval --task
copy|copy-random|recall --json` (needs the rows' per_trial scores): every
method scores the same sequences, so the standard error of a difference is
that of the per-trial differences, far smaller than the rows' own errors.
Usage: python3 bench/paired_diff.py EVAL.json [MORE.json...]  -> a markdown
table per point. Several files are runs of the same task on the same
sequences with other bases (same model, text, ctx, trials): their rows are
merged after checking that their uncompressed rows agree trial for trial
(the controls are listed once)."""
import json
import math
import sys


def mean_se(xs):
    n = len(xs)
    m = sum(xs) / n
    var = sum((x - m) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    return m, math.sqrt(var / n)


def load(paths):
    runs = [json.load(open(p)) for p in paths]
    r = runs[0]
    rows = list(r["rows"])
    controls = ("uncompressed", "hidden (passage replaced)", "hidden (code replaced)")
    for p, other in zip(paths[1:], runs[1:]):
        for key in ("task", "ctx", "trials", "passage", "n_sink", "n_window"):
            if other.get(key) != r.get(key):
                sys.exit("%s: %s %r differs from %s's %r" % (p, key, other.get(key), paths[0], r.get(key)))
        for x in other["rows"]:
            same = [y for y in rows if y["name"] == x["name"] and y["point"] == x["point"]]
            if x["name"] in controls and same:
                if same[0]["per_trial"] != x["per_trial"]:
                    sys.exit("%s: the %s row differs from %s's: not the same sequences" % (p, x["name"], paths[0]))
                continue
            if same:
                sys.exit("%s: method %s appears in two files" % (p, x["name"]))
            rows.append(x)
    return r, rows


r, rows = load(sys.argv[1:])
score = "copy accuracy" if r["task"] != "recall" else "answer tokens right"
for p in sorted({x["point"] for x in rows}):
    at = [x for x in rows if x["point"] == p]
    at.sort(key=lambda x: x["name"].startswith("hidden"))  # controls last
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
