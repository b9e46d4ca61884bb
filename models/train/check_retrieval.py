"""Does the bundled qwen2 model retrieve, in PyTorch (train.py's model with the
GGUF's dequantized weights), independently of kvtc's engine? Builds one recall
document (a "secret code" line at half depth, the question and answer in the
training format) and one copy document (a 400-character passage repeated) at
~2K and ~8K tokens from the end of data/persuasion.txt, and prints top-1
accuracy and NLL of the answer / the repeated passage.
  scripts/build.sh && /usr/bin/python3 models/train/check_retrieval.py   (CPU, ~2 min)"""
import os, subprocess, sys, tempfile
import numpy as np
import torch
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402
torch.set_num_threads(2)
W = os.path.dirname(os.path.dirname(HERE))
TMP = tempfile.mkdtemp(prefix="check_retrieval-")
M = W + "/data/eval-qwen2-12m-q8_0.gguf"
txt = open(W + "/data/persuasion.txt").read()[-200000:]
docs, meta = [], []
for n_chars, depth in ((7000, 0.5), (28000, 0.5)):
    fill = txt[:n_chars]; cut = fill.rfind("\n", 0, int(depth * n_chars))
    doc = fill[:cut] + "\nThe secret code of Bamoruk is 48213.\n" + fill[cut:] + \
        "\nQuestion: what is the secret code of Bamoruk?\nAnswer: the secret code of Bamoruk is 48213."
    docs.append(doc); meta.append(("recall", n_chars))
for n_chars in (7000, 28000):
    p = txt[100000:100400]
    doc = txt[150000:150000 + 500] + p + txt[160000:160000 + n_chars - 1300] + p
    docs.append(doc); meta.append(("copy", n_chars))
open(TMP + "/in.docs", "w").write("\n\x1e\n".join(docs))
subprocess.run([W + "/build/kvtc_tokenize", M, TMP + "/in.docs", TMP + "/out.u16"], check=True)
ids = np.fromfile(TMP + "/out.u16", "<u2").astype(np.int64)
starts = list(np.where(ids == 1)[0]) + [len(ids)]
c = dict(train.CONFIGS["small"])
model = train.Model(c, 4096); train.load_gguf_into(model, c, M); model.eval()
with torch.no_grad():
    for i, (kind, n) in enumerate(meta):
        seq = ids[starts[i]:starts[i + 1]]
        if seq[-1] == 2: seq = seq[:-1]  # </s>
        x = torch.from_numpy(seq[None])
        lg = model(x)[0]
        pred = lg.argmax(-1).numpy()
        if kind == "recall":
            tail = 6  # " 48213." : the answer digits and the period
        else:
            tail = 90  # inside the second copy of the passage (~100 tokens)
        hit = (pred[len(seq) - tail - 1:len(seq) - 1] == seq[len(seq) - tail:]).mean()
        nll = torch.nn.functional.cross_entropy(lg[len(seq) - tail - 1:len(seq) - 1], x[0, len(seq) - tail:]).item()
        print(kind, "tokens", len(seq), "last", tail, "tokens: top-1 acc %.3f, nll %.3f" % (hit, nll),
              "answer pred", pred[-tail - 1:-1].tolist(), "true", seq[-tail:].tolist() if kind == "recall" else "")
