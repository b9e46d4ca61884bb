"""Markdown tables of `kvtc eval --task copy|copy-random|recall --json` outputs (bench/retrieval.sh)."""
import json
import sys

for path in sys.argv[1:]:
    r = json.load(open(path))
    rows, copy = r["rows"], r["task"] in ("copy", "copy-random")
    pts = sorted({x["point"] for x in rows})
    dist = {x["point"]: x["distance"] for x in rows}
    names = list(dict.fromkeys(x["name"] for x in rows))
    what = "copy accuracy (NLL)" if copy else "exact match (answer tokens right)"
    print("\n%s, context %d, %d trials, %s per %s:\n" % (r["task"], r["ctx"], r["trials"], what,
                                                       "distance" if copy else "depth"))
    head = ["distance %.0f" % dist[p] if copy else "depth %g (distance %.0f)" % (p, dist[p]) for p in pts]
    print("| method | ratio | " + " | ".join(head) + " |")
    print("|---|---|" + "---|" * len(pts))
    for n in names:
        cells, ratio = [], 0
        for p in pts:
            x = next(y for y in rows if y["name"] == n and y["point"] == p)
            ratio = x["compression_ratio"]
            if copy:
                cells.append("%.1f%% ± %.1f (%.3f ± %.3f)" % (100 * x["accuracy"], 100 * x["accuracy_se"],
                                                             x["nll"], x["nll_se"]))
            else:
                cells.append("%.0f%% ± %.0f (%.0f%% ± %.0f)" % (100 * x["exact_match"], 100 * x["exact_match_se"],
                                                              100 * x["answer_tokens"], 100 * x["answer_tokens_se"]))
        rs = "-" if n.startswith(("uncompressed", "hidden")) else "%.2f" % ratio
        print("| %s | %s | %s |" % (n, rs, " | ".join(cells)))
