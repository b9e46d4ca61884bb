"""Does an exported qwen2 GGUF retrieve? PyTorch (train.py's model with the
GGUF's dequantized weights), independently of kvtc's engine, on held-out
tokens (DATA/val.u16, never trained on) and DATA/recall_bank.u16:

  copy          top-1 accuracy on the second copy of a 64-token natural passage
  random copy   the same with a passage of random tokens (only the cache predicts it)
  recall        exact match of the 5 answer digits, one needle line at depths
                spread over the window
each next to its "hidden" control (first copy replaced / needle given another
code). A model that retrieves scores far above its controls.

  /usr/bin/python3 models/train/check_retrieval.py --gguf data/eval-qwen2-12m-q8_0.gguf \\
      --data models/train/data --ctx 2048 8192 --trials 16   (CPU: minutes at 8K)
Runs on the GPU when there is one (the device call right after training).
Prints one line per context and writes --json if asked."""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gguf_io  # noqa: E402
import retrieval_tasks as rt  # noqa: E402
import train  # noqa: E402


def config_of(path):
    meta, _ = gguf_io.read(path, meta_only=True)
    g = lambda k: meta["qwen2." + k][1]  # noqa: E731
    c = dict(n_embd=g("embedding_length"), n_layer=g("block_count"), n_head=g("attention.head_count"),
             n_head_kv=g("attention.head_count_kv"), n_ff=g("feed_forward_length"),
             ctx_long=g("context_length"), dropout=0.0)
    c["head_dim"] = meta["qwen2.attention.key_length"][1] if "qwen2.attention.key_length" in meta \
        else c["n_embd"] // c["n_head"]
    return c, len(meta["tokenizer.ggml.tokens"][1][1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.path.join(HERE, "..", "..", "data", "eval-qwen2-12m-q8_0.gguf"))
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--ctx", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--json")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if not cuda:
        torch.set_num_threads(2)

    def amp():
        if cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    c, n_vocab = config_of(args.gguf)
    model = train.Model(c, n_vocab)
    train.load_gguf_into(model, c, args.gguf)
    model.to(device).eval()
    val = train.load_tokens(os.path.join(args.data, "val.u16"))
    bank = rt.Bank(os.path.join(args.data, "recall_bank.u16"))
    res = {}
    for T in args.ctx:
        r = train.retrieval_eval(model, val, T, bank, args.trials, device, amp,
                                 batch_size=2 if T > 4096 and not cuda else 8)
        res[T] = r
        print("ctx %d, %d windows per task: %s" % (T, args.trials, train.fmt_retrieval(r)), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gguf": args.gguf, "trials": args.trials, "by_ctx": res}, f, indent=1)


if __name__ == "__main__":
    main()
