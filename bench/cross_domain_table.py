#!/usr/bin/env python3
"""cross_domain_table.py - the cross-domain calibration matrix from the
`kvtc eval --json` runs that bench/cross_domain.sh and
bench/cross_domain_qwen2.sh write (OUT/eval_DOMAIN.json, one run per
evaluated domain with one basis per calibration domain, named after it;
several OUT directories, comma-separated, are merged into one matrix).

  bench/cross_domain_table.py OUT[,OUT2...] DOMAIN...

Prints Markdown: one table each for top-1 agreement, KL divergence and
perplexity change, rows "basis @ratio", columns the evaluated domains and
the row's worst domain; ± = the standard error over windows that kvtc eval
reports; the ratio (over the coded tokens) is given with top-1.
"""
import json
import sys


def load(outs, doms):
    """Per domain, the first directory's run with the methods of the others
    appended (those of a name already there are left out)."""
    runs = {}
    for d in doms:
        for out in outs.split(","):
            with open("%s/eval_%s.json" % (out, d)) as f:
                r = json.load(f)
            if d not in runs:
                runs[d] = r
                continue
            have = {m["name"] for m in runs[d]["methods"]}
            runs[d]["methods"] += [m for m in r["methods"] if m["name"] not in have]
    return runs


def row_names(runs, doms):
    """Method names in the order of the first run, kept if every run has them."""
    names = [m["name"] for m in runs[doms[0]]["methods"] if m["name"] != "uncompressed"]
    have = [{m["name"] for m in runs[d]["methods"]} for d in doms]
    return [n for n in names if all(n in h for h in have)]


def table(runs, doms, names, title, cell, worse):
    """worse(a, b) is true when value a is worse than value b."""
    print("%s\n" % title)
    print("| basis \\ evaluated on | " + " | ".join(doms) + " | worst |")
    print("|---|" + "---|" * (len(doms) + 1))
    for n in names:
        ms = [next(m for m in runs[d]["methods"] if m["name"] == n) for d in doms]
        texts, vals = zip(*(cell(m) for m in ms))
        w = 0
        for i in range(1, len(vals)):
            if worse(vals[i], vals[w]):
                w = i
        print("| %s | %s | %s: %s |" % (n, " | ".join(texts), doms[w], texts[w]))
    print()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, doms = sys.argv[1], sys.argv[2:]
    runs = load(out, doms)
    names = row_names(runs, doms)
    r0 = runs[doms[0]]
    print("%d window(s) of %d tokens per domain, %d scored predictions per method and domain\n"
          % (r0["windows"], r0["ctx"], r0["predictions_per_method"]))
    table(runs, doms, names, "Top-1 agreement (ratio over coded tokens):",
          lambda m: ("%.2f%% ± %.2f (%.1fx)" % (100 * m["top1"], 100 * m["top1_se"], m["compression_ratio"]),
                     m["top1"]), lambda a, b: a < b)
    table(runs, doms, names, "KL divergence:",
          lambda m: ("%.2e ± %.1e" % (m["kld"], m["kld_se"]), m["kld"]), lambda a, b: a > b)
    table(runs, doms, names, "Perplexity change:",
          lambda m: ("%+.2f%% ± %.2f" % (100 * m["ppl_change"], 100 * m["ppl_change_se"]), m["ppl_change"]),
          lambda a, b: a > b)


if __name__ == "__main__":
    main()
