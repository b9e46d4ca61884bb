"""retrieval_tasks.py - copy and key-value recall windows built in token space,
for training (train.py mixes them into its batches), for the retrieval
validation that picks the exported step, and for check_retrieval.py.

Why in token space and at training time: the first qwen2 model saw 2400 fixed
text documents of this kind, 1% of its tokens, with passages and filler cut
from its own training text. Over 19 passes it memorized that text, so the
second copy of a passage was predictable from the weights and the lookup was
never needed (copy accuracy with the passage in context = hidden control).
Here every window is new: random-token passages that only the cache can
predict, natural passages, and needle lines whose 5-digit code is drawn
afresh at every use, at distances and depths spread over the whole window.

The layouts are those of `kvtc eval --task copy|recall` (tools/eval/retrieval.c):
  copy:   [<s>] text[a] P text[gap] P    (P: the text after the gap, or random tokens)
  recall: [<s>] text needle text ... needle text  question answer ...
and the "hidden" controls replace the first copy by other tokens / give the
needle another code, so a model that really retrieves scores well only
without them.
"""
import numpy as np

BOS, EOS, NEWLINE = 1, 2, 13


def _docs(ids):
    """<s> ... </s> documents of a kvtc_tokenize file, without <s> and </s>."""
    starts = np.flatnonzero(ids == BOS)
    ends = np.append(starts[1:], len(ids))
    return [ids[s + 1:e - 1 if ids[e - 1] == EOS else e] for s, e in zip(starts, ends)]


class Bank:
    """recall_bank.u16 (build_corpus.py): for each name a needle line and a
    question-answer line with code 00000, then one document "0123456789"
    that gives the digit tokens. Lines start with a newline, so the dummy
    prefix piece before it is dropped (the tokens inside running text, as
    tokenize_inner in retrieval.c)."""

    def __init__(self, path):
        docs = _docs(np.fromfile(path, "<u2").astype(np.int64))
        self.digits = docs[-1][-10:]
        lines = [d[1:] if len(d) > 1 and d[1] == NEWLINE and d[0] != NEWLINE else d for d in docs[:-1]]
        self.needles, self.qas = lines[0::2], lines[1::2]
        zero = self.digits[0]
        self.needle_code = [np.flatnonzero(n == zero) for n in self.needles]
        self.qa_code = [np.flatnonzero(q == zero) for q in self.qas]
        ok = [i for i in range(len(self.needles))
              if len(self.needle_code[i]) == 5 and len(self.qa_code[i]) == 5]
        if len(ok) < 100:
            raise ValueError("%s: %d usable recall lines (the digits do not tokenize one per digit?)"
                             % (path, len(ok)))
        self.ok = ok

    def line(self, i, code, qa):
        """The needle (qa False) or question-answer (qa True) line of name i
        carrying the 5 digits `code`; returns tokens and the code's positions."""
        src, at = (self.qas[i], self.qa_code[i]) if qa else (self.needles[i], self.needle_code[i])
        t = src.copy()
        t[at] = self.digits[code]
        return t, at


def make_copy(tokens, T, rng, P, dist, salad=False, hidden=False):
    """T tokens [<s>] text[a] P text[gap] P with the second copy starting `dist`
    tokens after the first; P natural (the text following the gap, as in
    kvtc eval) or random tokens of the corpus (salad: no way to predict them
    but the first copy). Returns (ids, positions of the second copy)."""
    gap = dist - P
    a = T - 1 - 2 * P - gap
    assert P >= 1 and gap >= 0 and a >= 0, (T, P, dist)
    o = int(rng.integers(0, len(tokens) - T))
    w = tokens[o:o + T]
    pas = tokens[rng.integers(0, len(tokens), size=P)] if salad else w[a + gap:a + gap + P]
    first = tokens[rng.integers(0, len(tokens), size=P)] if hidden else pas
    ids = np.concatenate([[BOS], w[:a], first, w[a:a + gap], pas])
    return ids, np.arange(T - P, T)


def make_recall(tokens, T, rng, bank, k=1, depths=None, hidden=False):
    """T tokens: natural filler with k needle lines at the given depths
    (fractions of the filler; random if None), then the k questions with
    their answers in random order. hidden: each needle carries another code.
    Returns (ids, positions of the answer digits of every question)."""
    names = rng.choice(bank.ok, size=k, replace=False)
    codes = rng.integers(0, 10, size=(k, 5))
    needles = []
    for i, c in zip(names, codes):
        shown = c
        if hidden:
            shown = c.copy()
            while (shown == c).all():
                shown = rng.integers(0, 10, size=5)
        needles.append(bank.line(i, shown, False)[0])
    qas = [bank.line(i, c, True) for i, c in zip(names, codes)]
    fixed = 1 + sum(len(n) for n in needles) + sum(len(q) for q, _ in qas)
    fill = T - fixed
    assert fill > 0, "window too short for the recall lines"
    o = int(rng.integers(0, len(tokens) - fill))
    w = tokens[o:o + fill]
    d = rng.random(k) if depths is None else np.asarray(depths, float)
    cuts = np.sort((d * fill).astype(np.int64))
    order = np.argsort(d * fill, kind="stable")
    parts, prev = [np.array([BOS])], 0
    for c, j in zip(cuts, order):
        parts += [w[prev:c], needles[j]]
        prev = c
    parts.append(w[prev:])
    pos, n = [], T - sum(len(q) for q, _ in qas)
    for j in rng.permutation(k):
        q, at = qas[j]
        parts.append(q)
        pos.append(n + at)
        n += len(q)
    ids = np.concatenate(parts)
    assert len(ids) == T
    return ids, np.concatenate(pos)


def training_window(tokens, T, rng, bank, frac):
    """A training window: with probability frac a retrieval window (half copy,
    half recall; copy passages half random tokens, half natural text), else a
    plain window of text. Distances and depths are uniform over the window,
    so the long phase teaches lookups across the whole 8K."""
    u = rng.random()
    if bank is None or u >= frac:
        o = int(rng.integers(0, len(tokens) - T))
        return tokens[o:o + T]
    if u < frac / 2:
        P = int(rng.integers(16, max(17, min(256, T // 8))))
        dist = int(rng.integers(P + 1, T - P))
        return _strip_bos(make_copy(tokens, T + 1, rng, P, dist, salad=rng.random() < 0.5)[0])
    k = int(rng.integers(1, 1 + min(4, max(1, T // 512))))  # 1-4 needles, ~60 tokens each
    return _strip_bos(make_recall(tokens, T + 1, rng, bank, k=k)[0])


def _strip_bos(ids):
    """train.py's batches put <s> in front of T tokens themselves."""
    return ids[1:]
