#!/usr/bin/env python3
"""How far llama-server's own greedy continuations of the same prompts agree
between two cache set-ups (e.g. f16 with flash attention on vs off, or f16 vs
q8_0): the noise floor for the greedy-token comparisons of
bench/llama_server_e2e.sh. Reads two of its CACHE.jsonl files and compares
the reference continuations (restored uncompressed slots), prompt by prompt.
  bench/llama_server_refs.py bench/out/llama_server/f16.jsonl bench/out/llama_server/q8_0.jsonl
"""
import json
import sys


def refs(path):
    out = {}
    for line in open(path, encoding="utf-8"):
        row = json.loads(line)
        out[row["prompt"]] = (row["cache"], row["offset"], row["ref_tokens"])
    return out


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    a, b = refs(sys.argv[1]), refs(sys.argv[2])
    same = total = 0
    for p in sorted(set(a) & set(b)):
        (ca, oa, ta), (cb, ob, tb) = a[p], b[p]
        if oa != ob:
            raise SystemExit("prompt %d: offsets differ (%d, %d)" % (p, oa, ob))
        s = sum(x == y for x, y in zip(ta, tb))
        first = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), len(ta))
        print("prompt %d (offset %d): %s vs %s: %d/%d identical, first difference at %d" % (p, oa, ca, cb, s, len(ta), first))
        same += s
        total += len(ta)
    if total:
        print("all: %d/%d (%.1f%%)" % (same, total, 100.0 * same / total))


if __name__ == "__main__":
    main()
