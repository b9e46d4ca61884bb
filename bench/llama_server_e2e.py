#!/usr/bin/env python3
"""End-to-end check of kvtc against a running llama-server (issue 13).

Driven by bench/llama_server_e2e.sh, which starts and stops the server. For
each prompt (a ~N-token stretch of a text at some offset): prefill, save the
slot, then for the original and for every kvtc configuration: compress and
expand the slot file with the kvtc CLI, restore it into the server, continue
greedily, and teacher-force the original's continuation token by token.

Everything goes through llama-server's HTTP API (stdlib urllib only):
  POST /completion {"prompt": [ids], "n_predict": 1}   prefill
  POST /slots/0?action=save|restore {"filename": F}    slot files
  POST /completion with n_predict T, temperature 0      greedy continuation
  POST /completion prompt+ref[:i], n_predict 1, n_probs teacher-forced step i

Each restore is followed by a request that starts with the restored tokens;
the script checks from timings.prompt_n that the server evaluated only the
tokens past the restored prefix (the last prompt token, which llama-server
always decodes again, or the one forced token), so the continuation really
runs on the restored cache and not on a fresh prefill.

Output: one JSON object per (prompt, configuration) line on stdout, and a
summary per configuration on stderr.
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import time
import urllib.request


def post(url, path, body, timeout=600):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def slot(url, action, filename):
    return post(url, "/slots/0?action=" + action, {"filename": filename})


def complete(url, ids, n_predict, n_probs=0):
    body = {"prompt": ids, "n_predict": n_predict, "temperature": 0, "seed": 0, "cache_prompt": True,
            "n_probs": n_probs, "return_tokens": True}
    return post(url, "/completion", body)


def check_reused(res, n_evaluated, what):
    """The request evaluated only n_evaluated tokens: the rest came from the restored cache."""
    n = res["timings"]["prompt_n"]
    if n != n_evaluated:
        raise SystemExit("%s: the server evaluated %d prompt tokens, not %d: the restored cache was not reused"
                         % (what, n, n_evaluated))


def distribution(res):
    """Next-token distribution of a 1-token completion: {id: p} over the top n_probs."""
    top = res["completion_probabilities"][0]["top_logprobs"]
    return {e["id"]: math.exp(e["logprob"]) if e["logprob"] is not None else 0.0 for e in top}


def kl(p, q, floor):
    """KL(p || q) over p's entries; a token missing from q's top list gets
    q = floor (the smallest probability q lists), so the value is a lower bound
    when the lists are truncated and exact when they cover the vocabulary."""
    s = 0.0
    for t, pt in p.items():
        if pt <= 0:
            continue
        qt = q.get(t, floor)
        s += pt * math.log(pt / max(qt, 1e-30))
    return s


def argmax(d):
    return max(d.items(), key=lambda kv: kv[1])[0]


def greedy(url, name, ids, steps):
    slot(url, "restore", name)
    res = complete(url, ids, steps)
    check_reused(res, 1, "greedy after restoring " + name)
    return res["tokens"]


def forced(url, name, ids, ref, n_probs):
    slot(url, "restore", name)
    out = []
    for i in range(len(ref)):
        res = complete(url, ids + ref[:i], 1, n_probs)
        check_reused(res, 1, "teacher-forced step %d after restoring %s" % (i, name))
        out.append(distribution(res))
    return out


def ulp_copy(src, dst, n_sink, n_window, seed):
    """The control for the server's own sensitivity: src with every f16 K/V
    value of the tokens a kvtc stream codes (all but n_sink first and
    n_window last cells) moved by one unit in the last place, up or down at
    random: the smallest change any lossy store of an f16 cache can make.
    Reads the kv-C slot files of one stream that llama-server writes
    (tests/fixtures/llama.cpp/README.md); f16 K and V only."""
    d = bytearray(open(src, "rb").read())
    rnd = random.Random(seed)
    o = 8
    n_tok = struct.unpack_from("<I", d, o)[0]
    o += 4 + 4 * n_tok
    n_stream, cells = struct.unpack_from("<II", d, o)
    if n_stream != 1:
        raise SystemExit("ulp control: one stream expected")
    o += 8
    for _ in range(cells):
        o += 8 + 4 * struct.unpack_from("<I", d, o + 4)[0]
    v_trans, n_layer = struct.unpack_from("<II", d, o)
    o += 8
    coded = range(n_sink, cells - n_window)

    def nudge(off):
        h = struct.unpack_from("<H", d, off)[0]
        if h & 0x7C00 not in (0, 0x7C00):  # normal numbers only: no change of class
            struct.pack_into("<H", d, off, h + rnd.choice((-1, 1)))

    for kv in range(2):
        for _ in range(n_layer):
            typ = struct.unpack_from("<i", d, o)[0]
            if typ != 1:
                raise SystemExit("ulp control: f16 caches only")
            if kv == 1 and v_trans:
                el, n_embd = struct.unpack_from("<II", d, o + 4)
                o += 12
                for j in range(n_embd):
                    for c in coded:
                        nudge(o + (j * cells + c) * 2)
                o += n_embd * cells * el
            else:
                row = struct.unpack_from("<Q", d, o + 4)[0]
                o += 12
                for c in coded:
                    for j in range(0, row, 2):
                        nudge(o + c * row + j)
                o += cells * row
    if o != len(d):
        raise SystemExit("ulp control: %s is not a one-stream kv-C slot file" % src)
    open(dst, "wb").write(d)


def run(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit("failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), p.stderr))
    return time.perf_counter() - t


def prompts(url, text_path, n, offsets, tokens):
    text = open(text_path, encoding="utf-8").read()
    out = []
    for k in range(n):
        off = offsets[k]
        while off < len(text) and not text[off].isspace():
            off += 1
        chunk = text[off:off + tokens * 8].lstrip()
        ids = post(url, "/tokenize", {"content": chunk, "add_special": True})["tokens"][:tokens]
        if len(ids) < tokens:
            raise SystemExit("text too short at offset %d" % off)
        out.append((off, ids))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--slot-dir", required=True, help="the server's --slot-save-path")
    ap.add_argument("--kvtc", default="build/kvtc")
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--label", default="", help="cache type, for the output")
    ap.add_argument("--prompts", type=int, default=6)
    ap.add_argument("--offsets", default="0,40000,80000,120000,160000,200000,240000")
    ap.add_argument("--tokens", type=int, default=1900, help="prompt tokens (BOS included)")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--n-probs", type=int, default=4096, help="top-n of each distribution (4096 = the whole vocabulary)")
    ap.add_argument("--config", action="append", default=[],
                    help="NAME|BASIS|kvtc compress options (repeatable); BASIS copy: the uncompressed "
                         "slot restored under another name; BASIS ulp: the slot with every coded f16 value "
                         "moved by one unit in the last place (the controls)")
    a = ap.parse_args()
    offsets = [int(x) for x in a.offsets.split(",")]
    if a.prompts > len(offsets):
        raise SystemExit("--prompts %d needs as many --offsets" % a.prompts)
    configs = [c.split("|") for c in a.config]
    summary = {c[0]: {"same": 0, "n": 0, "top1": 0, "kl": 0.0, "orig": 0, "kvtc": 0, "tc": [], "td": [], "first": []}
               for c in configs}
    for p, (off, ids) in enumerate(prompts(a.url, a.text, a.prompts, offsets, a.tokens)):
        name = "e2e-p%d.bin" % p
        res = complete(a.url, ids, 1)
        if res["timings"]["prompt_n"] < len(ids) - 1:
            # the previous slot content shared a prefix: fine, but say so
            print("prompt %d: prefill reused %d cached tokens" % (p, len(ids) - res["timings"]["prompt_n"]), file=sys.stderr)
        saved = slot(a.url, "save", name)
        orig = os.path.join(a.slot_dir, name)
        ref = greedy(a.url, name, ids, a.steps)
        if greedy(a.url, name, ids, a.steps) != ref:
            raise SystemExit("restoring the same original twice gave two continuations: not deterministic")
        ref_d = forced(a.url, name, ids, ref, a.n_probs)
        tf_consistent = sum(argmax(d) == t for d, t in zip(ref_d, ref))
        for cname, basis, opts in configs:
            z = os.path.join(a.slot_dir, "e2e-p%d.%s.kvtc" % (p, cname))
            back_name = "e2e-p%d.%s.bin" % (p, cname)
            back = os.path.join(a.slot_dir, back_name)
            if basis in ("copy", "ulp"):  # controls: no kvtc
                shutil.copyfile(orig, z)
                if basis == "copy":
                    shutil.copyfile(orig, back)
                else:
                    ulp_copy(orig, back, 4, 128, p)
                tc = td = 0.0
            else:
                tc = run([a.kvtc, "compress", "--basis", basis, "--model", a.model] + opts.split() + [orig, "-o", z])
                td = run([a.kvtc, "decompress", "--basis", basis, "--model", a.model, z, "-o", back])
            got = greedy(a.url, back_name, ids, a.steps)
            same = sum(x == y for x, y in zip(got, ref))
            first = next((i for i, (x, y) in enumerate(zip(got, ref)) if x != y), a.steps)
            dist = forced(a.url, back_name, ids, ref, a.n_probs)
            top1 = sum(argmax(q) == argmax(r) for q, r in zip(dist, ref_d))
            kls = [kl(r, q, min(q.values())) for r, q in zip(ref_d, dist)]
            row = {"cache": a.label, "prompt": p, "offset": off, "tokens": len(ids), "config": cname,
                   "options": opts, "basis": os.path.basename(basis), "orig_bytes": os.path.getsize(orig),
                   "kvtc_bytes": os.path.getsize(z), "ratio": os.path.getsize(orig) / os.path.getsize(z),
                   "compress_s": tc, "expand_s": td, "greedy_same": same, "first_difference": first,
                   "steps": a.steps, "top1": top1, "kl_mean": sum(kls) / len(kls), "n_probs": a.n_probs,
                   "ref_teacher_forced_top1_equals_greedy": tf_consistent, "save_ms": saved["timings"]["save_ms"],
                   "ref_tokens": ref, "tokens_out": got}
            print(json.dumps(row), flush=True)
            s = summary[cname]
            s["same"] += same
            s["n"] += a.steps
            s["top1"] += top1
            s["kl"] += sum(kls)
            s["orig"] += row["orig_bytes"]
            s["kvtc"] += row["kvtc_bytes"]
            s["tc"].append(tc)
            s["td"].append(td)
            s["first"].append(first)
            for f in (z, back):
                os.remove(f)
        os.remove(orig)
    for cname, s in summary.items():
        if not s["n"]:
            continue
        # a markdown table row: cache | config | ratio | greedy | first differences | top-1 | KL | times
        print("| %s | %s | %.2fx | %d/%d (%.1f%%) | %s | %.2f%% | %.2e | %.2f-%.2f s | %.2f-%.2f s |" %
              (a.label, cname, s["orig"] / s["kvtc"], s["same"], s["n"], 100.0 * s["same"] / s["n"],
               ",".join(map(str, s["first"])), 100.0 * s["top1"] / s["n"], s["kl"] / s["n"], min(s["tc"]), max(s["tc"]),
               min(s["td"]), max(s["td"])), file=sys.stderr)


if __name__ == "__main__":
    main()
