"""Random-token copy in PyTorch (train.py's model on a GGUF's weights, no
kvtc code) with the random passage drawn from different token sources: does
the model copy any random string, or only distinctive tokens?
  build/kvtc_tokenize data/eval-llama-27m-q8_0.gguf data/persuasion.txt /tmp/pers.u16
  /usr/bin/python3 models/train/copy_by_source.py /tmp/pers.u16 models/train/data/val.u16
Per source: top-1 accuracy over the second copy (make_copy with salad=True:
64 random tokens of the source, distance 1024, 2048-token windows of the
same source, 4 windows) and its hidden control (another random first copy).
Seeded: the same windows every run."""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_retrieval  # noqa: E402
import retrieval_tasks as rt  # noqa: E402
import train  # noqa: E402


def main():
    gguf = os.environ.get("GGUF", os.path.join(HERE, "..", "..", "data", "eval-qwen2-12m-q8_0.gguf"))
    torch.set_num_threads(2)
    c, n_vocab = check_retrieval.config_of(gguf)
    model = train.Model(c, n_vocab)
    train.load_gguf_into(model, c, gguf)
    model.eval()
    for path in sys.argv[1:]:
        tokens = train.load_tokens(path)
        for hidden in (False, True):
            rng = np.random.default_rng(7)  # the same windows with and without the control
            hits = []
            for _ in range(4):
                ids, pos = rt.make_copy(tokens, 2048, rng, 64, 1024, salad=True, hidden=hidden)
                x = torch.from_numpy(ids[None].astype(np.int64))
                with torch.no_grad():
                    lg = model(x).float()
                p = torch.from_numpy(pos)
                hits.append((lg[0, p - 1].argmax(-1) == x[0, p]).float().mean().item())
            print("%s %s: copy accuracy %.4f" % (path, "hidden" if hidden else "shown", np.mean(hits)), flush=True)


if __name__ == "__main__":
    main()
