"""offload_restore.py - offload the KV cache of a small HF-style attention model
(plain torch, random weights) through the LMCache-shaped serde pair
(lmcache_serde.py), restore it, and compare the next-token logits.

    KVTC_LIB=build/libkvtc.so KVTC_CUDA_LIB=build/libkvtc_cuda.so.0 python3 python/examples/offload_restore.py

Runs on the GPU when kvtc.cuda is available (GPU calibration, GPU codec,
and the pinned-memory restore helper), else on the CPU with the CPU codec.
It prints the compression ratio, the logit error of the restored cache
next to the logit error of a 4-bit copy of the cache for scale, and
whether the next token is the same; exits 1 if the argmax differs.

The model: Llama-like (RMSNorm, grouped-query attention with HF's
rotate_half RoPE = kvtc's ROPE_NEOX, SiLU-gated MLP), 4 layers, 8 query
heads, 2 KV heads of 64; random weights, with token embeddings confined to
a 48-dimensional subspace so that the cache has some of the low-rank
structure of a trained model's (ratio 8 plan).
"""
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvtc  # noqa: E402
import kvtc.cuda  # noqa: E402
from lmcache_serde import KvtcDeserializer, KvtcSerializer  # noqa: E402

CHUNK = 256  # LMCache's chunk_size


class Config:
    vocab, hidden, n_layers, n_heads, n_kv_heads, head_dim, ffn, theta = 4096, 512, 4, 8, 2, 64, 1024, 10000.0


def rms_norm(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def rope(x, positions, theta):
    """HF Llama's apply_rotary_pos_emb: x [B, H, T, d], positions [T]."""
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=x.device) / d))
    ang = positions.to(torch.float64)[:, None] * inv[None, :]
    emb = torch.cat((ang, ang), dim=-1)
    return (x * emb.cos().to(x.dtype) + rotate_half(x) * emb.sin().to(x.dtype)).to(x.dtype)


class TinyLlama(torch.nn.Module):
    def __init__(self, cfg, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        c = cfg
        self.cfg = c

        def w(*shape, scale=None):
            return torch.nn.Parameter(torch.randn(*shape, generator=gen) * (scale or 1.0 / math.sqrt(shape[-1])))

        # token embeddings in a 48-dimensional subspace (plus a little noise):
        # trained models' hidden states concentrate in few directions, which is
        # what makes their KV compressible; fully random ones would not be
        self.embed = torch.nn.Parameter(torch.randn(c.vocab, 48, generator=gen) @ torch.randn(48, c.hidden, generator=gen)
                                        / math.sqrt(48) + 0.05 * torch.randn(c.vocab, c.hidden, generator=gen))
        self.lm_head = w(c.vocab, c.hidden)
        self.layers = torch.nn.ModuleList()
        for _ in range(c.n_layers):
            m = torch.nn.Module()
            m.q, m.k = w(c.n_heads * c.head_dim, c.hidden), w(c.n_kv_heads * c.head_dim, c.hidden)
            m.v, m.o = w(c.n_kv_heads * c.head_dim, c.hidden), w(c.hidden, c.n_heads * c.head_dim)
            m.gate, m.up, m.down = w(c.ffn, c.hidden), w(c.ffn, c.hidden), w(c.hidden, c.ffn)
            m.n1 = torch.nn.Parameter(torch.ones(c.hidden))
            m.n2 = torch.nn.Parameter(torch.ones(c.hidden))
            self.layers.append(m)
        self.norm = torch.nn.Parameter(torch.ones(c.hidden))

    @torch.no_grad()
    def forward(self, ids, past=None, start=0):
        """ids [B, T]; past: list of (k, v) [B, Hkv, T0, d] per layer (keys with
        RoPE applied, as HF caches them). Returns logits [B, T, vocab], new past."""
        c = self.cfg
        B, T = ids.shape
        pos = torch.arange(start, start + T, device=ids.device)
        x = self.embed[ids]
        out = []
        for i, m in enumerate(self.layers):
            h = rms_norm(x, m.n1)
            q = (h @ m.q.T).view(B, T, c.n_heads, c.head_dim).transpose(1, 2)
            k = (h @ m.k.T).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
            v = (h @ m.v.T).view(B, T, c.n_kv_heads, c.head_dim).transpose(1, 2)
            q, k = rope(q, pos, c.theta), rope(k, pos, c.theta)
            if past is not None:
                k = torch.cat((past[i][0].to(k.dtype), k), dim=2)
                v = torch.cat((past[i][1].to(v.dtype), v), dim=2)
            out.append((k, v))
            rep = c.n_heads // c.n_kv_heads
            kk, vv = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            att = (q @ kk.transpose(-1, -2)) / math.sqrt(c.head_dim)
            t0 = kk.shape[2] - T  # causal mask over the new tokens
            mask = torch.ones(T, kk.shape[2], dtype=torch.bool, device=x.device).tril(t0)
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            x = x + (att @ vv).transpose(1, 2).reshape(B, T, -1) @ m.o.T
            h = rms_norm(x, m.n2)
            x = x + (torch.nn.functional.silu(h @ m.gate.T) * (h @ m.up.T)) @ m.down.T
        return rms_norm(x, self.norm) @ self.lm_head.T, out


def stack_cache(past):
    """Per-layer [1, H, T, d] -> kvtc's [L, H, T, d] k and v."""
    return torch.cat([k for k, _ in past]), torch.cat([v for _, v in past])


def to_2ltd(k, v):
    """[L, H, T, d] k, v -> LMCache's KV_2LTD [2, L, T, H*d]."""
    L, H, T, d = k.shape
    return torch.stack((k, v)).permute(0, 1, 3, 2, 4).reshape(2, L, T, H * d)


def from_2ltd(kv, n_kv_heads):
    two, L, T, hd = kv.shape
    x = kv.view(2, L, T, n_kv_heads, hd // n_kv_heads).permute(0, 1, 3, 2, 4)
    return x[0].contiguous(), x[1].contiguous()


def main():
    gpu = kvtc.cuda.available()
    dev = torch.device("cuda" if gpu else "cpu")
    dtype = torch.bfloat16 if gpu else torch.float32
    cfg = Config()
    model = TinyLlama(cfg).to(dev)
    geom = kvtc.Geometry(cfg.n_layers, cfg.n_kv_heads, cfg.head_dim, 0, kvtc.ROPE_NEOX, cfg.theta)
    gen = torch.Generator().manual_seed(1)
    n_prefix = 1024

    # calibration: the caches of a few prompts (a real deployment uses text)
    t = time.time()
    calib = []
    for _ in range(4):
        ids = torch.randint(0, cfg.vocab, (1, n_prefix), generator=gen).to(dev)
        calib.append(stack_cache(model(ids)[1]))
    if gpu:
        basis = kvtc.cuda.calibrate(geom, calib, [8.0, 16.0])
    else:
        from lmcache_serde import _host_bytes
        basis = kvtc.calibrate(geom, [(_host_bytes(k), _host_bytes(v), k.shape[2]) for k, v in calib], [8.0, 16.0],
                               dtype="f32")
    print("calibrated on %d x %d tokens (%s) in %.1f s" % (len(calib), n_prefix, "GPU" if gpu else "CPU",
                                                          time.time() - t))

    # the request: prefill, then offload its cache in LMCache chunks
    ids = torch.randint(0, cfg.vocab, (1, n_prefix + 1), generator=gen).to(dev)
    _, past = model(ids[:, :n_prefix])
    k, v = stack_cache(past)
    k, v = k.to(dtype), v.to(dtype)
    ser, des = KvtcSerializer(basis, ratio=8.0), KvtcDeserializer(basis)
    store = {}  # the storage backend: chunk key -> bytes
    kv = to_2ltd(k, v)
    for start in range(0, n_prefix, CHUNK):
        store["chunk@%d" % start] = ser.serialize(kv[:, :, start:start + CHUNK], start=start)
    raw = k.numel() * k.element_size() * 2
    stored = sum(len(b) for b in store.values())
    print("offloaded %d tokens in %d chunks: %d -> %d bytes (%.1fx vs %s)"
          % (n_prefix, len(store), raw, stored, raw / stored, str(dtype).replace("torch.", "")))

    # restore: deserialize every chunk (and, on the GPU, once more through pinned memory)
    chunks = [des.deserialize(store["chunk@%d" % s], device=dev) for s in range(0, n_prefix, CHUNK)]
    k2, v2 = from_2ltd(torch.cat(chunks, dim=2), cfg.n_kv_heads)
    if gpu:
        codec = kvtc.cuda.Codec(basis)
        pinned = [torch.frombuffer(bytearray(store["chunk@%d" % s]), dtype=torch.uint8).pin_memory()
                  for s in range(0, n_prefix, CHUNK)]
        restored = [kvtc.cuda.restore_from_host(codec, p) for p in pinned]
        for r in restored:
            torch.cuda.current_stream().wait_event(r.event)
            codec.check(r.status)
        k3 = torch.cat([r.k for r in restored], dim=2)
        print("pinned-memory restore equals the serde path: %s" % bool(torch.equal(k3, k2)))

    def next_logits(kk, vv):
        past2 = [(kk[i:i + 1], vv[i:i + 1]) for i in range(cfg.n_layers)]
        return model(ids[:, n_prefix:], past=past2, start=n_prefix)[0][0, -1].float()

    ref = next_logits(k.float(), v.float())
    got = next_logits(k2.float(), v2.float())
    def int4(x):  # symmetric 4-bit per 64 values with an fp16 scale: 4.25 bits, 3.8x vs fp16
        g = x.float().reshape(-1, 64)
        scale = (g.abs().amax(-1, keepdim=True) / 7).clamp_min(1e-8)
        return ((g / scale).round().clamp(-8, 7) * scale).reshape(x.shape)

    q4 = next_logits(int4(k), int4(v))

    def kl(a, b):
        return float((a.softmax(-1) * (a.log_softmax(-1) - b.log_softmax(-1))).sum())

    print("next token: reference %d, restored %d; max |logit diff| %.4f (logit range %.1f), KL %.2e"
          % (int(ref.argmax()), int(got.argmax()), float((ref - got).abs().max()), float(ref.max() - ref.min()),
             kl(ref, got)))
    print("for scale, a 4-bit (per 64 values) copy of the cache: max |logit diff| %.4f, KL %.2e"
          % (float((ref - q4).abs().max()), kl(ref, q4)))
    rel = float(((k.float() - k2.float()) ** 2).sum() / (k.float() ** 2).sum())
    print("relative squared error of the restored keys %.2e" % rel)
    return 0 if int(ref.argmax()) == int(got.argmax()) else 1


if __name__ == "__main__":
    sys.exit(main())
