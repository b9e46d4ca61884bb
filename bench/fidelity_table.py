#!/usr/bin/env python3
"""Render kvtc eval --json outputs as markdown tables (stdlib only)."""
import json, sys

for path in sys.argv[1:]:
    d = json.load(open(path))
    print(f"\n{path}: {d['windows']} windows x {d['predictions_per_method'] // d['windows']} scored tokens, "
          f"ctx {d['ctx']}, prefix {d['prefix']}, sinks {d['n_sink']}, window {d['n_window']}, "
          f"reference ppl {d['reference_ppl']:.4f}\n")
    print("| method | ratio (coded) | ratio (total) | ppl | ppl change | KL | top-1 |")
    print("|---|---|---|---|---|---|---|")
    for m in d["methods"]:
        print(f"| {m['name']} | {m['compression_ratio']:.2f} | {m['compression_ratio_total']:.2f} | "
              f"{m['ppl']:.4f} | {100*m['ppl_change']:+.2f}% | {m['kld']:.3e} | {100*m['top1']:.2f}% |")
