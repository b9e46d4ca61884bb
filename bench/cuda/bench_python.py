"""bench_python.py - cost of the Python binding (kvtc.cuda) over the C calls,
and a restore from pinned host memory overlapped with compute.

    KVTC_LIB=build/libkvtc.so.0 KVTC_CUDA_LIB=build/libkvtc_cuda.so.0 \\
        python3 bench/cuda/bench_python.py [--rank 4096] [--rows 8192] [--batch 8] [--tokens 8192]

At the paper's geometry (40 layers x 8 KV heads x 128, bf16, NEOX RoPE theta
1e6, 4 sink + 128 window raw, chunks of 256, 16x plan), like
bench/cuda/bench_cuda.cu's `bench` mode (whose generator rank is also 4096). The basis comes from the GPU
calibrator (kvtc.cuda.calibrate_rows) on `rows` synthetic rows of a
rank-`rank` generator with variances 1/(i+1) plus noise, so its plan is
close to, not the same as, bench_cuda.cu's (printed below for comparison).

Measured, each the median of 10 repetitions after 2 warm-ups, timed with
CUDA events on the stream:
1. compress and decompress of `batch` caches of `tokens` tokens through
   kvtc.cuda.Codec (outputs given, as an engine with a pool would) and
   through the bare ctypes calls kvtc_cuda_compress / kvtc_cuda_decompress
   on the same basis, buffers and workspace: the difference is the binding's
   overhead (the bare ctypes calls cost what the C benchmark's calls cost,
   plus ~1 us of ctypes per call). The host time to enqueue is printed too.
2. restore: the streams in pinned host memory, copied and decoded on a side
   stream by kvtc.cuda.restore_from_host, while the main stream runs a
   stand-in compute kernel (bf16 matmuls of about the same duration): wall
   time of both vs each alone.
"""
import argparse
import ctypes as C
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import kvtc  # noqa: E402
import kvtc.cuda as kc  # noqa: E402
from kvtc import _abi  # noqa: E402


def timed(torch, fn, stream, reps=12, warm=2):
    """Median ms (CUDA events on `stream`) and median host ms to enqueue."""
    gpu, host = [], []
    for i in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        a.record(stream)
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        b.record(stream)
        b.synchronize()
        if i >= warm:
            gpu.append(a.elapsed_time(b))
            host.append((t1 - t0) * 1e3)
    return statistics.median(gpu), statistics.median(host)


def rope_keys(torch, k, theta):
    """Apply NEOX RoPE at positions 0..T-1 to keys [L, H, T, d] (in place)."""
    d = k.shape[-1]
    n = d // 2
    inv = theta ** (-2.0 * torch.arange(n, dtype=torch.float64, device=k.device) / d)
    ang = torch.arange(k.shape[2], dtype=torch.float64, device=k.device)[:, None] * inv[None, :]
    c, s = ang.cos().to(k.dtype), ang.sin().to(k.dtype)
    a, b = k[..., :n].clone(), k[..., n:].clone()
    k[..., :n] = a * c - b * s
    k[..., n:] = a * s + b * c


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rank", type=int, default=4096, help="rank of the synthetic generator and of the basis")
    ap.add_argument("--rows", type=int, default=8192, help="calibration rows")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=8192)
    args = ap.parse_args()
    if not kc.available():
        kc.Codec(None)  # raises CudaUnavailableError with the reason
    import torch
    dev = torch.device("cuda", torch.cuda.current_device())
    print("GPU %s, torch %s, %s" % (torch.cuda.get_device_name(dev), torch.__version__, kc.library_path()))
    L, H, D = 40, 8, 128
    p = L * H * D
    g = kvtc.Geometry(L, H, D, 0, kvtc.ROPE_NEOX, 1e6)
    m = args.rank
    gen = torch.Generator(device=dev).manual_seed(1)
    lam = (1.0 / torch.arange(1, m + 1, device=dev, dtype=torch.float32)).sqrt()
    # latent directions scaled so every coordinate has variance ~1 (sum of 1/(i+1) over i < m)
    q_scale = sum(1.0 / (i + 1) for i in range(m)) ** -0.5
    Q = [(torch.randn(m, p, device=dev, generator=gen) * q_scale).to(torch.bfloat16) for _ in range(2)]
    mean = [0.1 * torch.randn(p, device=dev, generator=gen) for _ in range(2)]

    def rows(n, s):
        z = torch.randn(n, m, device=dev, generator=gen) * lam
        x = (z.to(torch.bfloat16) @ Q[s]).float() + mean[s]
        return x + 0.05 * torch.randn(n, p, device=dev, generator=gen)  # noise: 0.25% of the variance

    t0 = time.time()
    st = {}
    basis = kc.calibrate_rows(g, rows(args.rows, 0), rows(args.rows, 1), [16.0], rank=m, stats=st)
    torch.cuda.empty_cache()
    pl = basis.plans()[0]
    print("basis: GPU calibration of %d rows in %.1f s (covariance %.1f s, eigen %.1f s); 16x plan: rank K %d V %d, "
          "%.0f bits/token" % (args.rows, time.time() - t0, st["covariance_s"], st["eigen_s"], pl["rank_k"],
                               pl["rank_v"], pl["bits_per_token"]))

    B, T = args.batch, args.tokens
    caches = []
    for i in range(B):
        k = rows(T, 0).to(torch.bfloat16).view(T, L, H, D).permute(1, 2, 0, 3).contiguous()
        v = rows(T, 1).to(torch.bfloat16).view(T, L, H, D).permute(1, 2, 0, 3).contiguous()
        rope_keys(torch, k, 1e6)
        caches.append((k, v))
    outs = [(torch.empty_like(k), torch.empty_like(v)) for k, v in caches]
    codec = kc.Codec(basis, ratio=16.0, max_tokens=T)
    s = torch.cuda.current_stream(dev)
    cap = codec.compress_bound(T, torch.bfloat16)
    bufs = [torch.empty(cap, dtype=torch.uint8, device=dev) for _ in range(B)]
    print("workspace %.2f GB, stream bound %.1f MB per cache" % (codec._ws.numel() / 1e9, cap / 1e6))

    # ---- 1. binding vs bare ctypes calls -------------------------------------------------------------
    streams = []

    def py_compress():
        streams[:] = [codec.compress(k, v, out=bufs[i]) for i, (k, v) in enumerate(caches)]

    c_ms, c_host = timed(torch, py_compress, s)
    prefixes = [cs.prefix() for cs in streams]
    sizes = [cs.size() for cs in streams]
    status = torch.zeros(B, dtype=torch.int32, device=dev)

    def py_decompress():
        for i, cs in enumerate(streams):
            codec.decompress(cs, out=outs[i], prefix=prefixes[i], status=status[i:i + 1])

    d_ms, d_host = timed(torch, py_decompress, s)
    codec.check(status[0:1])
    ek = float(((outs[0][0].float() - caches[0][0].float()) ** 2).sum() / (caches[0][0].float() ** 2).sum()) ** 0.5

    lib = kc._runtime()[1]
    h = codec._handle(16.0)
    ws = codec._ws
    sizes_t = torch.empty(B, dtype=torch.int64, device=dev)
    cache_structs, out_structs = [], []
    for (k, v), (ko, vo) in zip(caches, outs):
        for lst, a, b in ((cache_structs, k, v), (out_structs, ko, vo)):
            c = _abi.Cache()
            c.geometry, c.dtype, c.n_tokens = g, _abi.BF16, T
            c.k, c.v = a.data_ptr(), b.data_ptr()
            lst.append(c)
    pre_bufs = [C.create_string_buffer(x, len(x)) for x in prefixes]

    def raw_compress():
        for i in range(B):
            r = lib.kvtc_cuda_compress(h, C.byref(cache_structs[i]), bufs[i].data_ptr(), cap,
                                       sizes_t.data_ptr() + 8 * i, ws.data_ptr(), ws.numel(), s.cuda_stream)
            if r:
                raise kvtc.KvtcError(r, "kvtc_cuda_compress")

    def raw_decompress():
        for i in range(B):
            r = lib.kvtc_cuda_decompress(h, pre_bufs[i], len(prefixes[i]), bufs[i].data_ptr(), sizes[i],
                                         C.byref(out_structs[i]), ws.data_ptr(), ws.numel(),
                                         status.data_ptr() + 4 * i, s.cuda_stream)
            if r:
                raise kvtc.KvtcError(r, "kvtc_cuda_decompress")

    rc_ms, rc_host = timed(torch, raw_compress, s)
    rd_ms, rd_host = timed(torch, raw_decompress, s)
    raw = 2.0 * caches[0][0].numel() * 2 * B
    print("RESULT python batch %dx%d: compress %.2f ms via kvtc.cuda vs %.2f ms bare ctypes (%+.1f%%), "
          "decompress %.2f vs %.2f ms (%+.1f%%); host enqueue %.2f / %.2f ms (binding) vs %.2f / %.2f ms (bare); "
          "%.2f GB -> %.1f MB (%.1fx), rel err K %.4f"
          % (B, T, c_ms, rc_ms, 100 * (c_ms / rc_ms - 1), d_ms, rd_ms, 100 * (d_ms / rd_ms - 1), c_host, d_host,
             rc_host, rd_host, raw / 1e9, sum(sizes) / 1e6, raw / sum(sizes), ek))

    # ---- 2. restore from pinned memory overlapped with compute -----------------------------------------
    hosts = [cs.to_host() for cs in streams]
    rcodec = kc.Codec(basis, ratio=16.0, max_tokens=T)
    side = torch.cuda.Stream(device=dev)
    rcodec.reserve(T, stream=side)
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    bm = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)

    def restore():
        evs = [kc.restore_from_host(rcodec, hb, out=outs[i], side_stream=side).event for i, hb in enumerate(hosts)]
        for e in evs:
            s.wait_event(e)

    r_ms, _ = timed(torch, restore, s)
    one, _ = timed(torch, lambda: torch.matmul(a, bm), s)
    n_mm = max(1, int(round(r_ms / one)))

    def compute():
        for _ in range(n_mm):
            torch.matmul(a, bm)

    k_ms, _ = timed(torch, compute, s)

    def both():
        restore_ev = [kc.restore_from_host(rcodec, hb, out=outs[i], side_stream=side).event
                      for i, hb in enumerate(hosts)]
        compute()
        for e in restore_ev:
            s.wait_event(e)

    b_ms, _ = timed(torch, both, s)
    rcodec.check(rcodec.last_status)
    print("RESULT python restore batch %dx%d from pinned memory on a side stream: restore alone %.2f ms, compute "
          "alone %.2f ms (%d bf16 8192^3 matmuls), both %.2f ms = %.0f%% of the sum (100%% = no overlap, "
          "%.0f%% = full overlap)" % (B, T, r_ms, k_ms, n_mm, b_ms, 100 * b_ms / (r_ms + k_ms),
                                      100 * max(r_ms, k_ms) / (r_ms + k_ms)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
