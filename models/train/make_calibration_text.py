"""make_calibration_text.py - the mixed-domain calibration text shipped as
data/calibration-mixed.txt (the default calibration text of scripts/demo.sh
and the README's recipes), and single-domain calibration texts for
bench/cross_domain_qwen2.sh; from Debian packages only, the same sources as
build_corpus.py (installed by models/train/prepare_data.sh).

  python3 make_calibration_text.py [-o data/calibration-mixed.txt]
  python3 make_calibration_text.py --domain manpages-unseen --chars 100000 -o OUT

Every part is text that the bundled qwen2 model was neither trained on nor
is scored on by `kvtc eval` on the held-out texts (build_corpus.py's split,
read back from models/train/heldout/manifest.json):
  novels      the last 5% of each of Jane Austen's five books other than
              Persuasion (r-cran-janeaustenr): build_corpus.py's validation part
  dictionary  WordNet 3.0 glosses (wordnet-base) of validation or unused
              documents (GCIDE, GPL-2+, is left out of the shipped text)
  manpages    the validation pages of sections 2 and 3 (manpages-dev and the
              -dev packages' pages), then pages the corpus never rendered,
              only pages whose source states a license, not the GPL
  code        standard-library modules of the validation split or left
              unused by its size cap (then modules of packages that
              build_corpus.py never reads: it reads /usr/lib/python3.11/*.py)
  jargon      the first 20% of the held-out Jargon File text (eval_jargon.txt,
              3 windows of 8K tokens: `kvtc eval` at 8K or 2K scores only its
              last 2 windows, from token 10553 of 26937; this prefix is its
              first 3799 tokens) and the validation paragraphs
Writes OUT and OUT's .sources.txt (every document with its Debian package,
version and license). The parts are cut at line ends into pieces of ~1500
characters and interleaved round-robin, two pieces of novels per round
(88,000 characters of novels, 44,000 of each other domain: --weight), so
that any leading windows that `kvtc calibrate` reads (it reads windows from
the start) hold every domain. Never reads r-cran-tokenizers (held out for
independent checks).

--domain manpages-unseen: man pages that the corpus never rendered (past
its first 1500) and whose text is unlike every page it rendered (aliases
render alike), so neither trained on nor scored: the manpages basis'
calibration text in bench/cross_domain_qwen2.sh.
"""
import argparse
import glob
import itertools
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_corpus  # noqa: E402  (the same extraction and cleaning as the training corpus)

HERE = os.path.dirname(os.path.abspath(__file__))
HELD = os.path.join(HERE, "heldout")
PIECE = 1500          # characters per interleaved piece
DOC_CAP = 8000        # characters per source document, so no one document dominates a domain
# standard-library packages whose modules are code never trained on nor scored
CODE_PACKAGES = ("json", "http", "html", "wsgiref", "xmlrpc", "concurrent/futures", "sqlite3", "dbm",
                 "importlib", "urllib", "email", "logging", "collections", "asyncio")


def untrained(manifest, dom, docs):
    """The documents of `dom` that build_corpus.py put in neither the
    training nor the evaluation split (validation and unused ones)."""
    keep = set(manifest["val"]) | set(manifest.get("unused", []))
    return [(t, x) for t, x in docs if "%s: %s" % (dom, t) in keep]


def novels_val():
    """The last 5% of each book (build_corpus.py's validation part)."""
    return [(title, build_corpus.novel_train_val(text)[1].lstrip("\n")) for title, text in build_corpus.austen()]


def code_untrained(manifest):
    docs = untrained(manifest, "code", build_corpus.python_source())
    for pkg in CODE_PACKAGES:
        for p in sorted(glob.glob("/usr/lib/python3.11/%s/*.py" % pkg)):
            t = open(p, encoding="utf-8", errors="replace").read()
            if len(t) > 500:
                docs.append(("python3.11 " + pkg + "/" + os.path.basename(p), t))
    return docs


def jargon_untrained(manifest):
    with open(os.path.join(HELD, "eval_jargon.txt"), encoding="utf-8") as f:
        held = f.read()
    head = held[:held.rfind("\n", 0, len(held) // 5) + 1]
    return [("eval_jargon.txt, its unscored start, part %d" % (i + 1), p) for i, p in enumerate(pieces(head, DOC_CAP))] \
        + untrained(manifest, "jargon", build_corpus.jargon())


def man_source(title):
    """The installed page of a build_corpus.py man page title
    ("manpages-dev NAME.S.gz[ = ALIAS...]")."""
    name = title.split()[1]
    return "/usr/share/man/man%s/%s" % (name.split(".")[-2], name)


def man_license(title):
    """The copyright / license comment lines at the top of a page's source
    (GPL pages are left out of the shipped text)."""
    import gzip
    with gzip.open(man_source(title), "rt", encoding="utf-8", errors="replace") as f:
        head = [l for _, l in zip(range(40), f) if l.startswith(('.\\"', "'\\\""))]
    return " ".join(l[3:].strip() for l in head if re.search(r"(?i)copyright|license|licence|GPL", l))


def manpages_unseen(keep=lambda title: True):
    """Pages the corpus never rendered, each unlike every page it rendered;
    only those whose title `keep` accepts are rendered."""
    seen = {x for _, x in build_corpus.manpages(1500, os.path.join(HELD, "manpages.cache.json.gz"))}
    for p in build_corpus.man_pages_shuffled()[1500:]:
        if not keep("manpages-dev " + os.path.basename(p)):
            continue
        d = build_corpus.render_man(p)
        if d and d[1] not in seen:
            seen.add(d[1])
            yield d


def shippable_man(title):
    """Pages whose source states a license that is not the GPL: pages with
    no notice of their own fall under their package's (libidn2's man pages
    under the GPL)."""
    lic = man_license(title)
    return bool(lic) and "GPL" not in lic


def domain_docs(manifest, dom):
    if dom == "novels":
        return novels_val()
    if dom == "dictionary":
        return untrained(manifest, "dictionary", build_corpus.wordnet())
    if dom == "manpages":  # the validation pages, then pages the corpus never rendered
        pages = itertools.chain(untrained(manifest, "manpages", build_corpus.manpages(
            1500, os.path.join(HELD, "manpages.cache.json.gz"))), manpages_unseen(shippable_man))
        return ((t, x) for t, x in pages if shippable_man(t))
    if dom == "manpages-unseen":
        return manpages_unseen()
    if dom == "code":
        return code_untrained(manifest)
    if dom == "jargon":
        return jargon_untrained(manifest)
    raise SystemExit("unknown domain " + dom)


def cut_lines(text, n):
    """The longest prefix of text of at most n characters that ends at a line
    end (or the first line, when that alone is longer)."""
    if len(text) <= n:
        return text
    end = text.rfind("\n", 0, n)
    return text[:end + 1] if end > 0 else text[:text.find("\n") + 1 or len(text)]


def domain_text(manifest, dom, chars, doc_cap=DOC_CAP):
    """Up to `chars` characters of the domain, at most doc_cap from each
    document; and the titles of the documents used."""
    parts, titles, total = [], [], 0
    for title, text in domain_docs(manifest, dom):
        piece = cut_lines(text.strip("\n") + "\n", min(doc_cap, chars - total))
        if not piece.strip():
            break
        parts.append(piece)
        titles.append(title)
        total += len(piece)
        if total >= chars - 200:
            break
    return "\n".join(parts), titles


def source_path(dom, title):
    """The installed file a man page or module document was read from."""
    return man_source(title) if dom == "manpages" else "/usr/lib/python3.11/" + title.split()[1]


def packages_of(paths):
    """{path: "package version"} for installed files, in two dpkg calls
    (one per file took seconds)."""
    if not paths:
        return {}
    out = subprocess.run(["dpkg", "-S"] + sorted(set(paths)), capture_output=True, text=True).stdout
    pkg = {}
    for line in out.splitlines():
        name, _, path = line.partition(": ")
        pkg[path] = name.split(":")[0]
    ver = versions(pkg.values())
    return {p: "%s %s" % (k, ver.get(k, "?")) for p, k in pkg.items()}


def versions(packages):
    """{package: installed version}, in one dpkg-query call."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"] + sorted(set(packages)),
                         capture_output=True, text=True).stdout
    return dict(l.split("\t") for l in out.splitlines())


PACKAGES = {"novels": "r-cran-janeaustenr", "dictionary": "wordnet-base", "jargon": "jargon-text"}


LICENSES = {"novels": "public domain (Project Gutenberg texts; the R package itself is MIT)",
            "dictionary": "WordNet 3.0 license (/usr/share/doc/wordnet-base/copyright; notice kept below)",
            "code": "PSF-2.0 (/usr/share/doc/libpython3.11-stdlib/copyright)",
            "jargon": "public domain (/usr/share/doc/jargon-text/copyright)"}


def sources_listing(used):
    """One line per document: domain, title, Debian package and version, license."""
    lines = ["Sources of calibration-mixed.txt (written by models/train/make_calibration_text.py):",
             "domain | document | Debian package version | license", ""]
    used = list(used)
    paths = [source_path(d, t) for d, ts in used if d in ("manpages", "code") for t in ts]
    pkgs = packages_of(paths)
    pkgs.update((d, "%s %s" % (name, versions([name])[name])) for d, name in PACKAGES.items())
    for dom, titles in used:
        for t in titles:
            if dom == "manpages":  # the page's own notice, in full in its source
                lic = "%s (in full: %s)" % (man_license(t) or "the package's copyright file", man_source(t))
                name = t.split()[1]
            else:
                lic, name = LICENSES[dom], t
            pkg = pkgs[source_path(dom, t)] if dom in ("manpages", "code") else pkgs[dom]
            lines.append("%s | %s | %s | %s" % (dom, name, pkg, lic))
    for what, path, name in (("WordNet", "/usr/share/doc/wordnet-base/copyright", "WordNet3.0"),
                             ("The man pages'", "/usr/share/doc/manpages-dev/copyright", "Linux-man-pages-copyleft")):
        lines += ["", "%s license, as %s states it:" % (what, path), ""] + license_text(path, name)
    return "\n".join(lines) + "\n"


def license_text(path, name):
    """The text of a "License: NAME" field of a Debian machine-readable
    copyright file: the first one that has a body (others only name it)."""
    text = open(path, encoding="utf-8").read()
    for part in text.split("\nLicense: %s\n" % name)[1:]:
        body = part.split("\n\n")[0].splitlines()
        if body and body[0].startswith(" "):
            return ["" if l.strip() == "." else l[1:] for l in body]
    raise SystemExit("no License: %s text in %s" % (name, path))


def pieces(text, n=PIECE):
    """text cut at line ends into pieces of at most ~n characters."""
    out = []
    while text:
        p = cut_lines(text, n)
        out.append(p)
        text = text[len(p):]
    return out


def interleave(texts, weights=None):
    """Round-robin over the texts' pieces, weights[i] pieces of text i per round."""
    queues = [pieces(t) for t in texts]
    weights = weights or [1] * len(texts)
    out = []
    while any(queues):
        for q, w in zip(queues, weights):
            for _ in range(w):
                if q:
                    out.append(q.pop(0))
    return "".join(p if p.endswith("\n") else p + "\n" for p in out)


def write(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    print("%s: %d characters" % (path, len(text)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", default=os.path.normpath(os.path.join(HERE, "..", "..", "data", "calibration-mixed.txt")))
    ap.add_argument("--domain", help="one domain's text instead of the mixed text")
    ap.add_argument("--chars", type=int, default=44000, help="characters per domain (default 44000)")
    ap.add_argument("--weight", action="append", default=[], metavar="DOMAIN=K",
                    help="K times the characters of DOMAIN, K pieces per round (default novels=2, others 1)")
    a = ap.parse_args()
    mpath = os.path.join(HELD, "manifest.json")
    if not os.path.exists(mpath):
        raise SystemExit("no %s: run models/train/prepare_data.sh first" % mpath)
    with open(mpath) as f:
        manifest = json.load(f)
    if a.domain:
        write(a.out, domain_text(manifest, a.domain, a.chars)[0])
        return
    doms = ("novels", "dictionary", "manpages", "code", "jargon")
    # novels count twice: prose was the hardest domain for every basis, and
    # twice the share of novels measured best in the worst domain
    # (bench/RESULTS.md section 8; --weight novels=1 is the equal mix)
    weight = dict({d: 1 for d in doms}, novels=2)
    for w in a.weight:
        d, _, k = w.partition("=")
        if d not in weight or not k.isdigit() or int(k) < 1:
            raise SystemExit("--weight needs DOMAIN=K with a domain of %s and K >= 1" % ", ".join(doms))
        weight[d] = int(k)
    made = [domain_text(manifest, d, a.chars * weight[d], DOC_CAP * weight[d]) for d in doms]
    write(a.out, interleave([t for t, _ in made], [weight[d] for d in doms]))
    write(re.sub(r"(\.txt)?$", ".sources.txt", a.out, count=1), sources_listing(zip(doms, [u for _, u in made])))


if __name__ == "__main__":
    main()
