"""build_corpus.py - the second model's training text, from Debian packages
only (prepare_data.sh installs them); splits every source into train / val /
eval by whole documents, and writes the needle / question lines that train.py
builds its key-value recall windows from.

  python3 build_corpus.py WORKDIR HELDOUT

Writes WORKDIR/{train,val,recall_bank}.docs (documents separated by a line
holding only \\x1e, for kvtc_tokenize), HELDOUT/eval_<domain>.txt (held-out
plain text per domain, for ppl / copy / recall / cross-domain calibration)
and HELDOUT/manifest.json (which document of which package went where).

Never reads r-cran-tokenizers (its texts are held out for independent
checks) nor Persuasion (the first model's held-out text, also excluded from
janeaustenr's books here).
"""
import glob
import gzip
import json
import os
import random
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

SEP = "\n\x1e\n"
SEED = 16
# Training characters kept per domain (whole documents, in a fixed random
# order): the dictionaries alone would be ~2/3 of the corpus, and the token
# file (~1.4 bytes per token after xz) is carried to the device call, which
# ships the repository (57 MB with the bundled models) in 64 MiB.
CAP = {"dictionary": 10e6, "code": 4e6}
N_RECALL_NAMES = 2000


def austen():
    """janeaustenr's books except Persuasion, one document per book (R)."""
    r = ('library(janeaustenr); b <- austen_books(); '
         'for (t in levels(b$book)) if (t != "Persuasion") { '
         'cat(paste0("\\x1d", t, "\\n")); cat(b$text[b$book == t], sep = "\\n") }')
    out = subprocess.run(["Rscript", "-e", r], check=True, capture_output=True).stdout
    docs = []
    for chunk in out.decode("utf-8").split("\x1d")[1:]:
        title, _, text = chunk.partition("\n")
        docs.append((title, text.strip() + "\n"))
    return docs


def novel_train_val(text):
    """A book's training part and its validation part, the last 5% cut at a
    paragraph (make_calibration_text.py reads the latter too)."""
    cut = text.rfind("\n\n", 0, int(len(text) * 0.95))
    return text[:cut], text[cut:]


def gcide():
    """GCIDE articles as plain prose: pronunciations (\\...\\) and source tags
    ([1913 Webster]) dropped; one document per 200 articles."""
    with gzip.open("/usr/share/dictd/gcide.dict.dz", "rt", encoding="utf-8", errors="replace") as f:
        raw = f.read()
    arts = [a.strip() for a in re.split(r"\n\s*\n(?=\S)", raw) if a.strip()]
    arts = [a for a in arts if not a.startswith("00-database")]
    clean = []
    for a in arts:
        a = re.sub(r"\\[^\\\n]*\\", "", a)
        a = re.sub(r"\[(1913 Webster|WordNet 1\.5|PJC|Century Dict\.|RHM|Webster 1913 Suppl\.)[^\]]*\]", "", a)
        a = re.sub(r"[ \t]+", " ", a)
        a = "\n".join(l.strip() for l in a.splitlines() if l.strip())
        clean.append(a)
    return [("gcide articles %d-%d" % (i, i + 199), "\n\n".join(clean[i:i + 200]) + "\n")
            for i in range(0, len(clean), 200)]


def wordnet():
    """WordNet 3.0 glosses, 'lemma, lemma (pos): gloss', 500 per document."""
    pos = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
    lines = []
    for part in ("noun", "verb", "adj", "adv"):
        path = "/usr/share/wordnet/data." + part
        with open(path, encoding="utf-8", errors="replace") as f:
            for l in f:
                if l.startswith("  ") or "|" not in l:
                    continue
                head, gloss = l.split("|", 1)
                w = head.split()
                n = int(w[3], 16)
                lemmas = [re.sub(r"\(.*\)$", "", x).replace("_", " ") for x in w[4:4 + 2 * n:2]]
                lines.append("%s (%s): %s" % (", ".join(lemmas), pos.get(w[2], w[2]), gloss.strip()))
    return [("wordnet glosses %d-%d" % (i, i + 499), "\n".join(lines[i:i + 500]) + "\n")
            for i in range(0, len(lines), 500)]


def fortunes():
    docs = []
    for p in sorted(glob.glob("/usr/share/games/fortunes/*")):
        if p.endswith((".dat", ".u8")) or os.path.isdir(p):
            continue
        text = open(p, encoding="utf-8", errors="replace").read()
        quotes = [q.strip("\n") for q in text.split("\n%\n") if q.strip()]
        for i in range(0, len(quotes), 50):
            docs.append(("fortunes %s %d" % (os.path.basename(p), i), "\n\n".join(quotes[i:i + 50]) + "\n"))
    return docs


def jargon():
    with gzip.open("/usr/share/doc/jargon-text/jargon.txt.gz", "rt", encoding="utf-8", errors="replace") as f:
        text = f.read()
    paras = text.split("\n\n")
    return [("jargon file paragraphs %d-" % i, "\n\n".join(paras[i:i + 60]) + "\n")
            for i in range(0, len(paras), 60)]


def man_pages_shuffled():
    """Every installed page of sections 2 and 3, in the corpus' fixed random
    order (manpages() renders the first `limit`)."""
    pages = sorted(glob.glob("/usr/share/man/man2/*.2.gz") + glob.glob("/usr/share/man/man3/*.3.gz"))
    random.Random(SEED).shuffle(pages)
    return pages


def render_man(p):
    """(title, plain text) of one page rendered by man(1), or None."""
    env = dict(os.environ, MANWIDTH="80", LANG="C.UTF-8", MAN_KEEP_FORMATTING="0")
    r = subprocess.run(["man", "-P", "cat", "-l", p], capture_output=True, env=env)
    t = re.sub(r".\x08", "", r.stdout.decode("utf-8", "replace"))
    return ("manpages-dev " + os.path.basename(p), t) if r.returncode == 0 and len(t) > 200 else None


def dedup_pages(rendered):
    """Pages that are .so aliases of one another (malloc.3, free.3, calloc.3)
    render to the same text: keep one document per rendered text, so that
    the split by document cannot put one alias in training and another in
    the held-out text (the first model's held-out man pages had ppl 1.03).
    Idempotent, so it also repairs a cache written before it existed (such a
    cache silently gave another split: bench/RESULTS.md section 8)."""
    docs, seen = [], {}
    for title, text in rendered:
        if text in seen:
            docs[seen[text]] = (docs[seen[text]][0] + " = " + title.split()[-1], text)
        else:
            seen[text] = len(docs)
            docs.append((title, text))
    return docs


def manpages(limit, cache):
    """Sections 2 and 3 of manpages-dev rendered to plain text by man(1)."""
    if os.path.exists(cache):
        with gzip.open(cache, "rt", encoding="utf-8") as f:
            return dedup_pages([tuple(d) for d in json.load(f)])
    pages = man_pages_shuffled()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        rendered = [d for d in ex.map(render_man, pages[:limit]) if d]
    docs = dedup_pages(rendered)
    with gzip.open(cache, "wt", encoding="utf-8") as f:
        json.dump(docs, f)
    return docs


def python_source():
    """The Python standard library's modules (libpython3.11-stdlib)."""
    docs = []
    for p in sorted(glob.glob("/usr/lib/python3.11/*.py")):
        t = open(p, encoding="utf-8", errors="replace").read()
        if 500 < len(t) < 200000:
            docs.append(("python3.11 " + os.path.basename(p), t))
    return docs


# ---------------------------------------------------- synthetic retrieval ----

def name(rnd):
    """A made-up name of 2-4 consonant-vowel syllables, e.g. 'Kavoru' (the C
    recall task builds its names the same way)."""
    cons, vow = "bdfgklmnprstvz", "aeiou"
    s = "".join(rnd.choice(cons) + rnd.choice(vow) for _ in range(rnd.randint(2, 4)))
    return s[0].upper() + s[1:]


def recall_bank(rnd, n):
    """Needle and question-answer lines for n made-up names, code 00000 (train.py
    puts a fresh random code into the digit tokens of every use, so no name-code
    pair can be memorized): documents 2i (needle) and 2i+1 (question + answer)
    of recall_bank.u16. Same line formats as `kvtc eval --task recall`."""
    names = sorted({name(rnd) for _ in range(n)})
    docs = []
    for nm in names:
        docs.append("\nThe secret code of %s is 00000.\n" % nm)
        docs.append("\nQuestion: what is the secret code of %s?\nAnswer: the secret code of %s is 00000.\n"
                    % (nm, nm))
    docs.append("0123456789")  # the digit tokens, one per digit (split_digits)
    return docs


def main():
    work, held = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    os.makedirs(held, exist_ok=True)
    rnd = random.Random(SEED)
    sources = {"novels": austen(), "dictionary": gcide() + wordnet(), "fortunes": fortunes(),
               "jargon": jargon(), "manpages": manpages(1500, os.path.join(held, "manpages.cache.json.gz")), "code": python_source()}
    manifest = {"train": [], "val": [], "eval": []}
    split = {"train": [], "val": [], "eval": []}
    for dom, docs in sources.items():
        order = list(range(len(docs)))
        rnd.shuffle(order)
        # the eval and val documents of a domain: ~2% and ~1% (at least one
        # each where there are >= 3 documents); novels keep all five books
        # for training (Persuasion is their held-out text)
        n_eval = 0 if dom == "novels" else max(1, len(docs) // 50)
        n_val = 0 if dom == "novels" else max(1, len(docs) // 100)
        kept = 0
        for j, i in enumerate(order):
            where = "eval" if j < n_eval else "val" if j < n_eval + n_val else "train"
            if where == "train":
                if kept >= CAP.get(dom, float("inf")):
                    manifest.setdefault("unused", []).append("%s: %s" % (dom, docs[i][0]))
                    continue
                kept += len(docs[i][1])
            split[where].append((dom, docs[i][1]))
            manifest[where].append("%s: %s" % (dom, docs[i][0]))
    # Novels' validation: the last 5% of each book (cut at a paragraph).
    for k, (dom, text) in enumerate(split["train"]):
        if dom == "novels":
            split["train"][k] = (dom, novel_train_val(text)[0])
            split["val"].append((dom, novel_train_val(text)[1]))
    manifest["val"].append("novels: the last 5% of each of the five books")
    for dom in sources:
        with open(os.path.join(held, "eval_%s.txt" % dom), "w", encoding="utf-8") as f:
            f.write("\n\n".join(t for d, t in split["eval"] if d == dom))
    # Copy and recall windows are built by train.py in token space, fresh at
    # every step (retrieval_tasks.py); text documents of that kind, cut from
    # the training text, were memorized by the first qwen2 model instead.
    for w in ("train", "val"):
        docs = [t for _, t in split[w]]
        rnd.shuffle(docs)
        with open(os.path.join(work, w + ".docs"), "w", encoding="utf-8") as f:
            f.write(SEP.join(d.replace("\x1e", " ") for d in docs))
        print("%s: %.1f MB of text in %d documents" % (w, sum(len(d) for d in docs) / 1e6, len(docs)))
    with open(os.path.join(work, "recall_bank.docs"), "w", encoding="utf-8") as f:
        f.write(SEP.join(recall_bank(random.Random(SEED + 1), N_RECALL_NAMES)))
    with open(os.path.join(held, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=0)


if __name__ == "__main__":
    main()
