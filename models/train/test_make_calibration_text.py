"""ctest test_calibration_text: the shipped mixed-domain calibration text
(data/calibration-mixed.txt, make_calibration_text.py).

Always: the piece cutting and round-robin interleaving keep every character
in order per domain, cut only at line ends and put every domain into the
first pieces; the shipped file is UTF-8 and within the 250 KB the
repository allows it.
Where models/train/prepare_data.sh has run (models/train/heldout/ and the
Debian text packages present; otherwise those checks are skipped and said
so): the file and its sources listing are exactly what the script makes,
and no run of 5 of its lines (200+ characters) occurs in the text that
`kvtc eval` scores in the cross-domain matrix (the held-out dictionary /
manual / code texts, the last 2/3 of the Jargon File's and the last half of
Persuasion)."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import build_corpus  # noqa: E402
import make_calibration_text as mct  # noqa: E402

SHIPPED = os.path.join(ROOT, "data", "calibration-mixed.txt")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL: " + what)


def test_cutting():
    text = "".join("line %d %s\n" % (i, "x" * (i % 37)) for i in range(400))
    ps = mct.pieces(text, 200)
    check("".join(ps) == text, "pieces lose or reorder text")
    check(all(p.endswith("\n") for p in ps), "a piece does not end at a line end")
    check(all(len(p) <= 200 for p in ps), "a piece longer than asked")
    long_line = "y" * 500 + "\n" + "z\n"
    check(mct.pieces(long_line, 100) == ["y" * 500 + "\n", "z\n"], "a line longer than a piece is not kept whole")
    check(mct.cut_lines("ab\ncd\n", 4) == "ab\n", "cut_lines does not stop at the last line end")


def test_interleave():
    doms = ["".join("%s%d\n" % (tag, i) for i in range(300)) for tag in "ABC"]
    out = mct.interleave(doms)
    for tag, d in zip("ABC", doms):
        mine = "".join(l + "\n" for l in out.splitlines() if l.startswith(tag))
        check(mine == d, "interleave loses or reorders domain %s" % tag)
    head = out[:3 * mct.PIECE]
    check(all(tag in head for tag in "ABC"), "the first pieces do not hold every domain")


def test_shipped_file():
    raw = open(SHIPPED, "rb").read()
    check(len(raw) <= 250000, "%s is %d bytes, over 250 KB" % (SHIPPED, len(raw)))
    text = raw.decode("utf-8")  # raises (fails the test) when not UTF-8
    check(len(text.splitlines()) > 1000, "the shipped text is suspiciously short")
    return text


def scored_texts():
    h = mct.HELD

    def read(p):
        return open(p, encoding="utf-8").read()
    out = [read(os.path.join(h, "eval_%s.txt" % d)) for d in ("dictionary", "manpages", "code")]
    j = read(os.path.join(h, "eval_jargon.txt"))
    out.append(j[len(j) // 3:])
    p = read(os.path.join(ROOT, "data", "persuasion.txt"))
    out.append(p[len(p) // 2:])
    return out


def test_against_heldout(text):
    if not os.path.exists(os.path.join(mct.HELD, "manifest.json")):
        print("models/train/heldout/ missing (run models/train/prepare_data.sh): reproduction and "
              "disjointness checks skipped")
        return
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "mixed.txt")
        r = subprocess.run([sys.executable, os.path.join(HERE, "make_calibration_text.py"), "-o", out],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print("make_calibration_text.py failed (Debian text packages missing?): reproduction check "
                  "skipped\n" + r.stderr[-2000:])
        else:
            check(open(out, encoding="utf-8").read() == text,
                  "data/calibration-mixed.txt differs from what make_calibration_text.py makes")
            check(open(os.path.join(d, "mixed.sources.txt"), encoding="utf-8").read() ==
                  open(SHIPPED.replace(".txt", ".sources.txt"), encoding="utf-8").read(),
                  "data/calibration-mixed.sources.txt differs from what make_calibration_text.py makes")
    # runs of 5 consecutive lines, not single lines: man pages share
    # boilerplate lines (attribute tables, feature-test macros) across pages
    scored = "\n".join(scored_texts())
    lines = text.splitlines()
    runs = {"\n".join(lines[i:i + 5]) for i in range(len(lines) - 4)}
    runs = {r for r in runs if len(r.replace(" ", "")) >= 200}
    shared = [r for r in runs if r in scored]
    check(not shared, "%d run(s) of 5 lines of the shipped text occur in scored held-out text, e.g. %r"
          % (len(shared), shared[:1]))
    print("%d runs of 5 lines (200+ characters) checked against the scored held-out text" % len(runs))


def test_dedup_pages():
    """build_corpus.dedup_pages keeps one document per rendered text and is
    idempotent, so a man-page cache written before deduplication (aliases
    with identical text) gives the same documents, hence the same corpus
    split, as a fresh render (a stale cache once shifted the held-out code
    and man pages: bench/RESULTS.md section 8)."""
    raw = [("p malloc.3", "A"), ("p free.3", "A"), ("p open.2", "B"), ("p calloc.3", "A"), ("p read.2", "C")]
    once = build_corpus.dedup_pages(raw)
    check(once == [("p malloc.3 = free.3 = calloc.3", "A"), ("p open.2", "B"), ("p read.2", "C")],
          "dedup_pages merges aliases in order: %r" % (once,))
    check(build_corpus.dedup_pages(once) == once, "dedup_pages is idempotent")


def main():
    test_dedup_pages()
    test_cutting()
    test_interleave()
    text = test_shipped_file()
    test_against_heldout(text)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
