"""TTFT baseline: recompute the prefill of a Mistral-NeMo-12B-shaped model in
PyTorch (hidden 5120, 32 heads, 8 KV heads, head_dim 128, FFN 14336, 40
layers, vocab 131072, bf16, scaled_dot_product_attention with GQA, RoPE).
Weights are random; to save memory and start-up time ONE layer's weights are
shared by all 40 layers (the FLOPs and the activation/KV traffic are those
of the full model; weight reads hit the same 0.55 GB 40 times, which only
helps the baseline). The prefill writes the KV cache of every layer
(bf16, [B, 8, T, 128] per layer) and returns the first token's logits.
Also timed: one decode step (1 new token per sequence against the restored
8K/16K cache), the part of TTFT a restored cache still has to pay.
Usage: python3 ttft_recompute.py  (prints RESULT lines)"""
import torch, torch.nn.functional as F

dev, dt = "cuda", torch.bfloat16
HID, NH, NKV, HD, FFN, L, VOCAB = 5120, 32, 8, 128, 14336, 40, 131072
torch.manual_seed(0)


def w(o, i):
    return (torch.randn(o, i, device=dev, dtype=dt) / i ** 0.5)


W = dict(q=w(NH * HD, HID), k=w(NKV * HD, HID), v=w(NKV * HD, HID), o=w(HID, NH * HD),
         g=w(FFN, HID), u=w(FFN, HID), d=w(HID, FFN))
emb = torch.randn(VOCAB, HID, device=dev, dtype=dt) * 0.02
n1 = torch.ones(HID, device=dev, dtype=dt)


def rms(x):
    return F.rms_norm(x, (HID,), n1, 1e-5)


def rope_tables(pos):
    inv = 1e6 ** (-torch.arange(0, HD, 2, device=dev, dtype=torch.float64) / HD)
    a = pos.to(torch.float64)[:, None] * inv[None]
    return a.cos().to(dt), a.sin().to(dt)


def rope(x, cos, sin):  # neox halves; x [B, H, T, HD]
    x1, x2 = x[..., :HD // 2], x[..., HD // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


@torch.no_grad()
def prefill(ids, kcache, vcache):
    B, T = ids.shape
    cos, sin = rope_tables(torch.arange(T, device=dev))
    x = emb[ids]
    for l in range(L):
        h = rms(x)
        q = (h @ W["q"].T).view(B, T, NH, HD).transpose(1, 2)
        k = (h @ W["k"].T).view(B, T, NKV, HD).transpose(1, 2)
        v = (h @ W["v"].T).view(B, T, NKV, HD).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        kcache[l].copy_(k)
        vcache[l].copy_(v)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + a.transpose(1, 2).reshape(B, T, NH * HD) @ W["o"].T
        h = rms(x)
        x = x + (F.silu(h @ W["g"].T) * (h @ W["u"].T)) @ W["d"].T
        del q, k, v, a, h
    return rms(x[:, -1]) @ emb.T


@torch.no_grad()
def step(ids, kcache, vcache, T, inplace=False):
    """One decode step: the new token against the restored cache. inplace:
    as an engine runs it, the token's K and V written into the cache's free
    slot T (caches of T + 1 slots) and attention over them in place; else
    each layer's cache concatenated with the token (torch.cat copies the
    whole cache, 21 GB at 8 x 8K, on each call: what this script timed
    first, a cost no engine pays; both are printed)."""
    B = ids.shape[0]
    cos, sin = rope_tables(torch.tensor([T], device=dev))
    x = emb[ids][:, None]
    for l in range(L):
        h = rms(x)
        q = (h @ W["q"].T).view(B, 1, NH, HD).transpose(1, 2)
        k = (h @ W["k"].T).view(B, 1, NKV, HD).transpose(1, 2)
        v = (h @ W["v"].T).view(B, 1, NKV, HD).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if inplace:
            kcache[l][:, :, T:T + 1].copy_(k)
            vcache[l][:, :, T:T + 1].copy_(v)
            kk, vv = kcache[l], vcache[l]
        else:
            kk = torch.cat([kcache[l], k], 2)
            vv = torch.cat([vcache[l], v], 2)
        a = F.scaled_dot_product_attention(q, kk, vv, enable_gqa=True)
        x = x + a.transpose(1, 2).reshape(B, 1, NH * HD) @ W["o"].T
        h = rms(x)
        x = x + (F.silu(h @ W["g"].T) * (h @ W["u"].T)) @ W["d"].T
    return rms(x[:, -1]) @ emb.T


def timed(fn, reps, warm=1):
    ts = []
    for i in range(warm + reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        if i >= warm:
            ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2], ts


print("device:", torch.cuda.get_device_name(), "torch", torch.__version__, flush=True)
for B, T in [(8, 8192), (2, 16384)]:
    kc = torch.empty(L, B, NKV, T, HD, device=dev, dtype=dt)
    vc = torch.empty_like(kc)
    ids = torch.randint(0, VOCAB, (B, T), device=dev)
    med, ts = timed(lambda: prefill(ids, kc, vc), reps=3)
    flops = 2 * B * T * (HID * (NH + 2 * NKV) * HD + NH * HD * HID + 3 * HID * FFN) * L + \
        2 * 2 * B * NH * HD * T * T / 2 * L
    print(f"RESULT recompute prefill batch {B}x{T}: {med:.1f} ms (runs {', '.join(f'{t:.0f}' for t in ts)}), "
          f"{flops / med / 1e9:.0f} TFLOP/s of {flops / 1e15:.2f} PFLOP, peak mem {torch.cuda.max_memory_allocated() / 1e9:.1f} GB",
          flush=True)
    nid = torch.randint(0, VOCAB, (B,), device=dev)
    med2, _ = timed(lambda: step(nid, kc, vc, T), reps=5, warm=2)
    print(f"RESULT first decode step after restore, batch {B}x{T}: {med2:.1f} ms (torch.cat of the cache)", flush=True)
    del kc, vc
    torch.cuda.empty_cache()
    kf = torch.zeros(L, B, NKV, T + 1, HD, device=dev, dtype=dt)
    vf = torch.zeros_like(kf)
    med3, _ = timed(lambda: step(nid, kf, vf, T, inplace=True), reps=5, warm=2)
    print(f"RESULT first decode step after restore, in place, batch {B}x{T}: {med3:.1f} ms", flush=True)
    del kf, vf
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
