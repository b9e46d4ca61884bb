"""Paired differences against the uncompressed row of `kvtc eval --task
copy|copy-random|recall --json` (needs the rows' per_trial scores): every
method scores the same sequences, so the standard error of a difference is
that of the per-trial differences, far smaller than the rows' own errors.
Usage: python3 bench/paired_diff.py [--exact] EVAL.json [MORE.json...]  -> a
markdown table per point. --exact (recall only): score each trial 1 when
every answer token is right, else 0 (exact match), instead of the fraction
of answer tokens right. Several files are runs of the same task on the same
sequences with other bases (same model, text, ctx, trials): their rows are
merged after checking that their uncompressed rows agree trial for trial
(the controls are listed once)."""
import json
import math
import signal
import sys

signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the table quietly


def mean_se(xs):
    n = len(xs)
    m = sum(xs) / n
    var = sum((x - m) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    return m, math.sqrt(var / n)


def fail(msg):
    """One line on stderr, exit 1: bad input is never a traceback."""
    sys.exit("paired_diff: " + msg)


def read_run(path):
    """A `kvtc eval --task ... --json` object, checked for everything used below."""
    try:
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
    except OSError as e:
        fail("%s: cannot read: %s" % (path, e.strerror or e))
    except (ValueError, UnicodeDecodeError) as e:
        fail("%s: not JSON (%s)" % (path, str(e).splitlines()[0]))
    if not isinstance(r, dict) or r.get("task") not in ("copy", "copy-random", "recall"):
        fail("%s: not the output of kvtc eval --task copy|copy-random|recall --json" % path)
    rows = r.get("rows")
    if not isinstance(rows, list) or not rows:
        fail("%s: no rows" % path)
    for i, x in enumerate(rows):
        ok = isinstance(x, dict) and isinstance(x.get("name"), str)
        ok = ok and all(isinstance(x.get(k), (int, float)) and math.isfinite(x[k])
                        for k in ("point", "distance", "compression_ratio"))
        pt = x.get("per_trial") if ok else None
        if not ok or not isinstance(pt, list) or not pt or not all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in pt):
            fail("%s: row %d lacks a name, point, distance, ratio or per_trial scores "
                 "(a kvtc eval older than per_trial?)" % (path, i))
    # two rows of one name and point (two unnamed bases were both "kvtc" before
    # kvtc eval refused it) cannot be told apart in the table
    seen = set()
    for x in rows:
        if (x["name"], x["point"]) in seen:
            fail("%s: two rows named %s at point %g: which basis is which?" % (path, x["name"], x["point"]))
        seen.add((x["name"], x["point"]))
    return r


def load(paths):
    runs = [read_run(p) for p in paths]
    r = runs[0]
    rows = list(r["rows"])
    controls = ("uncompressed", "hidden (passage replaced)", "hidden (code replaced)")
    for p, other in zip(paths[1:], runs[1:]):
        for key in ("task", "ctx", "trials", "passage", "n_sink", "n_window"):
            if other.get(key) != r.get(key):
                fail("%s: %s %r differs from %s's %r" % (p, key, other.get(key), paths[0], r.get(key)))
        for x in other["rows"]:
            same = [y for y in rows if y["name"] == x["name"] and y["point"] == x["point"]]
            if x["name"] in controls and same:
                if same[0]["per_trial"] != x["per_trial"]:
                    fail("%s: the %s row differs from %s's: not the same sequences" % (p, x["name"], paths[0]))
                continue
            if same:
                fail("%s: method %s appears in two files" % (p, x["name"]))
            rows.append(x)
    return r, rows


args = sys.argv[1:]
exact = bool(args) and args[0] == "--exact"
if exact:
    args = args[1:]
if not args or any(a.startswith("--") for a in args):
    fail("usage: python3 bench/paired_diff.py [--exact] EVAL.json [MORE.json...]")
r, rows = load(args)
if exact:
    if r["task"] != "recall":
        fail("--exact scores recall runs only, not %s" % r["task"])
    for x in rows:  # a recall trial's score is its fraction of answer tokens right
        x["per_trial"] = [1.0 if v >= 1.0 else 0.0 for v in x["per_trial"]]
for p in sorted({x["point"] for x in rows}):
    # every row of a point scores the same trials as its uncompressed row: a
    # shorter list would be paired with the wrong trials by zip
    base = [x for x in rows if x["point"] == p and x["name"] == "uncompressed"]
    if len(base) != 1:
        fail("point %g: %d uncompressed rows, need 1" % (p, len(base)))
    for x in rows:
        if x["point"] == p and len(x["per_trial"]) != len(base[0]["per_trial"]):
            fail("point %g: %s has %d per-trial scores, uncompressed %d: not the same trials"
                 % (p, x["name"], len(x["per_trial"]), len(base[0]["per_trial"])))
score = "copy accuracy" if r["task"] != "recall" else "exact match" if exact else "answer tokens right"
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
