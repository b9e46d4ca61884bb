"""check_heldout.py - is a "held-out" text really absent from the training
tokens? Samples pieces of each text, tokenizes them with kvtc_tokenize and
looks for 40 consecutive tokens of each in the training token file.

  /usr/bin/python3 models/train/check_heldout.py TRAIN.u16[.xz] TEXT...
      [KVTC_TOKENIZE=build/kvtc_tokenize]

Prints, per text, how many of 12 sampled pieces occur verbatim in the
training tokens. A real held-out text scores 0 or 1-2 (boilerplate shared
by documents: man-page sections, license lines); a text that was trained
on scores most of 12. Found (bench/RESULTS.md section 8) that a
models/train/heldout/ made before the corpus split the model was trained
with does not match it. Needs numpy (Debian's python3-numpy)."""
import lzma
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOK = os.environ.get("KVTC_TOKENIZE", os.path.join(ROOT, "build", "kvtc_tokenize"))
MODEL = os.path.join(ROOT, "data", "eval-llama-27m-q8_0.gguf")  # its tokenizer is the corpus'
PIECES, RUN = 12, 40


def tokens(text, tmp):
    docs, out = os.path.join(tmp, "q.docs"), os.path.join(tmp, "q.u16")
    with open(docs, "w", encoding="utf-8") as f:
        f.write(text)
    subprocess.run([TOK, MODEL, docs, out], capture_output=True, check=True)
    return np.fromfile(out, dtype="<u2")[1:-1]  # without <s> and </s>


def occurs(train, seq):
    for i in np.nonzero(train == seq[0])[0]:
        if i + len(seq) <= train.size and np.array_equal(train[i:i + len(seq)], seq):
            return True
    return False


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path = sys.argv[1]
    raw = lzma.open(path).read() if path.endswith(".xz") else open(path, "rb").read()
    train = np.frombuffer(raw, dtype="<u2")
    print("%s: %d training tokens" % (path, train.size))
    with tempfile.TemporaryDirectory() as tmp:
        for name in sys.argv[2:]:
            text = open(name, encoding="utf-8").read()
            hits = n = 0
            for off in range(0, max(1, len(text) - 2000), max(1, len(text) // PIECES)):
                piece = text[off:off + 600]
                piece = piece[piece.find("\n") + 1:]  # from a line start
                seq = tokens(piece, tmp)[5:5 + RUN]   # away from the cut ends
                if len(seq) == RUN:
                    n += 1
                    hits += occurs(train, seq)
            print("%s: %d of %d sampled pieces occur verbatim in the training tokens" % (name, hits, n))


if __name__ == "__main__":
    main()
