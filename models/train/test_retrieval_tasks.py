"""ctest test_train_retrieval_tasks: the copy / recall windows that train.py
trains on and that check_retrieval.py scores (retrieval_tasks.py).

Tokenizes a small recall bank with kvtc_tokenize ($KVTC_TOKENIZE) and checks
that a needle line whose digits retrieval_tasks substitutes is exactly what the
tokenizer makes of the same line with that code, that windows have the asked
length and layout (second copy = first copy at the asked distance; answer
digits = the needle's code), and that the hidden controls really remove the
information. Exits 77 (skipped) without numpy or kvtc_tokenize."""
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
try:
    import numpy as np
except ImportError:
    print("numpy missing: skipped")
    sys.exit(77)
import build_corpus  # noqa: E402
import retrieval_tasks as rt  # noqa: E402

TOK = os.environ.get("KVTC_TOKENIZE", os.path.join(ROOT, "build", "kvtc_tokenize"))
MODEL = os.path.join(ROOT, "data", "eval-llama-27m-q8_0.gguf")


def tokenize(docs, tmp, name):
    with open(os.path.join(tmp, name + ".docs"), "w", encoding="utf-8") as f:
        f.write(build_corpus.SEP.join(docs))
    subprocess.run([TOK, MODEL, os.path.join(tmp, name + ".docs"), os.path.join(tmp, name + ".u16")],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.join(tmp, name + ".u16")


def main():
    if not os.access(TOK, os.X_OK):
        print("kvtc_tokenize missing: skipped")
        return 77
    tmp = tempfile.mkdtemp(prefix="test_retrieval_tasks-")
    docs = build_corpus.recall_bank(random.Random(5), 120)
    bank = rt.Bank(tokenize(docs, tmp, "bank"))
    assert len(set(bank.digits.tolist())) == 10
    assert len(bank.ok) == len(bank.needles) == len(docs) // 2, (len(bank.ok), len(docs))

    # substituted digits == the tokenizer's own tokens of the line with that code
    i, code = bank.ok[7], [4, 8, 2, 1, 3]
    name = docs[2 * i].split(" of ")[1].split(" is ")[0]
    direct = rt._docs(np.fromfile(tokenize(
        ["\nThe secret code of %s is 48213.\n" % name,
         "\nQuestion: what is the secret code of %s?\nAnswer: the secret code of %s is 48213.\n" % (name, name)],
        tmp, "direct"), "<u2").astype(np.int64))
    direct = [d[1:] for d in direct]  # the dummy-prefix piece before the leading newline
    for qa, ref in ((False, direct[0]), (True, direct[1])):
        t, at = bank.line(i, np.array(code), qa)
        assert np.array_equal(t, ref), (qa, t, ref)
        assert np.array_equal(t[at], bank.digits[code])

    # filler: the first model's tokenizer over a few documents of text
    text = open(os.path.join(ROOT, "data", "persuasion.txt"), encoding="utf-8").read()[:60000]
    tokens = np.fromfile(tokenize([text], tmp, "text"), "<u2").astype(np.int64)
    rng = np.random.default_rng(3)
    T, P = 512, 40
    for salad in (False, True):
        ids, pos = rt.make_copy(tokens, T, rng, P, 300, salad=salad)
        assert len(ids) == T and ids[0] == rt.BOS and np.array_equal(pos, np.arange(T - P, T))
        assert np.array_equal(ids[pos], ids[pos - 300]), "second copy is not the first one"
        hid, _ = rt.make_copy(tokens, T, np.random.default_rng(9), P, 300, salad=salad, hidden=True)
        assert (hid[pos] != hid[pos - 300]).mean() > 0.5, "hidden control still holds the passage"
    for k in (1, 3):
        for hidden in (False, True):
            ids, pos = rt.make_recall(tokens, T, np.random.default_rng(k), bank, k=k, hidden=hidden)
            assert len(ids) == T and ids[0] == rt.BOS and len(pos) == 5 * k
            answers = ids[pos].reshape(k, 5)
            # each answer's digits appear in a needle line before the questions iff not hidden
            head = ids[:T - 45 * k].tolist()
            for a in answers:
                found = any(head[j:j + 5] == a.tolist() for j in range(len(head) - 4))
                assert found != hidden, (k, hidden, a)
    for T in (256, 2048):
        for _ in range(50):
            assert len(rt.training_window(tokens, T, rng, bank, 1.0)) == T
    print("ok: bank of %d names, copy and recall layouts, hidden controls" % len(bank.ok))
    return 0


if __name__ == "__main__":
    sys.exit(main())
