"""test_kvtc_cuda.py - tests of kvtc.cuda (torch tensors through the CUDA codec).

    KVTC_LIB=build/libkvtc.so KVTC_CUDA_LIB=build/libkvtc_cuda.so.0 python3 python/test_kvtc_cuda.py

Exit status: 0 passed, 1 failed, 77 skipped (no torch, or no GPU / no
libkvtc_cuda: register with ctest SKIP_RETURN_CODE 77). With torch but no
GPU, the torch-only parts (RoPE removal of calibration rows) still run
before the skip. Covers: dtypes f32/f16/bf16, the GPU decode against the
CPU decode of the same stream (both directions), positions, error mapping
(host-side and device-status errors), restore from pinned host memory on a
side stream, GPU calibration (calibrator and row callback), and a CUDA
graph capture of compress + decompress (which fails if any call syncs).
"""
import ctypes as C
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvtc  # noqa: E402
import kvtc.cuda as kc  # noqa: E402

SKIP = 77
L, H, D, T = 2, 2, 64, 700
G = kvtc.Geometry(L, H, D, 0, kvtc.ROPE_NEOX, 10000.0)
failures = 0


def expect(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg)
    return cond


def rope_apply(torch, x, positions, geometry, sign=1.0):
    """Reference RoPE (written here independently of kvtc.cuda): rotate the
    pairs of x [L, H, T, d] by sign * pos * theta^(-2i/rope_dim)."""
    rd = geometry.rope_dim or geometry.head_dim
    n = rd // 2
    out = x.clone()
    for i in range(n):
        if geometry.rope_type == kvtc.ROPE_NORM:
            a, b = 2 * i, 2 * i + 1
        else:
            a, b = i, i + n
        ang = positions.to(torch.float64) * (float(geometry.rope_theta) ** (-2.0 * i / rd)) * sign
        c, s = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
        x0, x1 = x[..., a], x[..., b]
        out[..., a] = x0 * c - x1 * s
        out[..., b] = x0 * s + x1 * c
    return out


def make_cache(torch, seed, geometry=G, n_tokens=T, rank=6, noise=0.02, pos0=0):
    """Low-rank K/V [L, H, T, d] float32 on the CPU with keys rotated by RoPE
    at positions pos0..; also returns the un-rotated keys and the positions."""
    p = geometry.n_layers * geometry.n_kv_heads * geometry.head_dim
    mix = torch.Generator().manual_seed(1234)  # the "model", shared by every cache
    mk = torch.randn(rank, p, generator=mix) / math.sqrt(rank)
    mv = torch.randn(rank, p, generator=mix) / math.sqrt(rank)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n_tokens, rank, generator=gen)
    shape = (n_tokens, geometry.n_layers, geometry.n_kv_heads, geometry.head_dim)
    k0 = (z @ mk + noise * torch.randn(n_tokens, p, generator=gen)).reshape(shape).permute(1, 2, 0, 3).contiguous()
    v = (z @ mv + noise * torch.randn(n_tokens, p, generator=gen)).reshape(shape).permute(1, 2, 0, 3).contiguous()
    pos = torch.arange(pos0, pos0 + n_tokens, dtype=torch.int64)
    k = rope_apply(torch, k0, pos, geometry) if geometry.rope_type != kvtc.ROPE_NONE else k0
    return k.contiguous(), v, k0, pos


def host_bytes(t):
    t = t.contiguous().cpu()
    return C.string_at(t.data_ptr(), t.numel() * t.element_size())


def rel_err(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return float(((a - b) ** 2).sum() / (a ** 2).sum())


def test_rows_from_cache(torch):
    """Rows of a rotated cache equal the un-rotated keys, both pairings."""
    for rope in (kvtc.ROPE_NEOX, kvtc.ROPE_NORM):
        g = kvtc.Geometry(L, H, D, 32, rope, 10000.0)  # partial rotary dims
        k, v, k0, pos = make_cache(torch, 5, geometry=g, n_tokens=300, pos0=1000)
        kr, vr = kc.rows_from_cache(g, k, v, positions=pos, n_sink=4, n_window=128)
        want = k0[:, :, 4:300 - 128].permute(2, 0, 1, 3).reshape(300 - 132, L * H * D)
        wantv = v[:, :, 4:300 - 128].permute(2, 0, 1, 3).reshape(300 - 132, L * H * D)
        err = float((kr - want).abs().max())
        expect(tuple(kr.shape) == (168, L * H * D) and kr.dtype == torch.float32, "rows shape %s" % (kr.shape,))
        expect(err < 1e-4, "rope %d: un-rotated rows differ by %g" % (rope, err))
        expect(torch.equal(vr, wantv), "value rows are the values")
    kr, _ = kc.rows_from_cache(G, k, v, n_sink=200, n_window=200)
    expect(kr.shape[0] == 0, "sink + window cover the cache: no rows")
    print("rows_from_cache: RoPE removal matches the reference (NEOX, NORM, partial rotary)")


def cpu_decode(torch, basis, blob, dtype):
    kd, vd = kvtc.decompress(basis, blob)
    conv = (lambda x: bytes(x)) if isinstance(kd, bytearray) else (lambda x: x.tobytes())
    shape = (L, H, -1, D)
    return (torch.frombuffer(bytearray(conv(kd)), dtype=dtype).reshape(shape),
            torch.frombuffer(bytearray(conv(vd)), dtype=dtype).reshape(shape))


def expect_error(name, fn, what):
    try:
        fn()
    except kvtc.KvtcError as e:
        expect(e.name == name and e.code == kvtc.RESULT_NAMES.index(name), "%s: %s, want %s" % (what, e, name))
        return
    except Exception as e:  # noqa: BLE001 - reported as a failure
        expect(False, "%s: raised %r, want KvtcError %s" % (what, e, name))
        return
    expect(False, "%s: no error, want %s" % (what, name))


def test_gpu(torch):
    dev = torch.device("cuda", torch.cuda.current_device())
    caches = [make_cache(torch, s) for s in (1, 2)]
    basis = kvtc.calibrate(G, [(host_bytes(k), host_bytes(v), T) for k, v, _, _ in caches], [4.0, 8.0], dtype="f32")
    k, v, _, pos = make_cache(torch, 3)
    kg, vg = k.to(dev), v.to(dev)

    # ---- dtypes; GPU decode vs CPU decode of the GPU's stream ----------------------
    codec = kc.Codec(basis, ratio=8.0, gemm="fp32")
    for tdt in (torch.float32, torch.float16, torch.bfloat16):
        kt, vt = kg.to(tdt), vg.to(tdt)
        cs = codec.compress(kt, vt)
        k2, v2 = codec.decompress(cs)
        codec.check()
        ek, ev = rel_err(kt, k2), rel_err(vt, v2)
        blob = cs.to_bytes()
        info = kvtc.stream_info(blob)
        expect(info["entropy_codec"] == kvtc.CODEC_RANS and info["n_tokens"] == T and info["stream_bytes"] == len(blob),
               "stream info %r" % info)
        expect(k2.dtype == tdt and tuple(k2.shape) == (L, H, T, D), "decoded tensor %s %s" % (k2.dtype, k2.shape))
        kc_, vc_ = cpu_decode(torch, basis, blob, tdt)
        dk = rel_err(kc_, k2)
        ratio = 2 * kt.numel() * kt.element_size() / len(blob)
        print("%s: %d bytes (%.2fx), error K %.2e V %.2e, GPU vs CPU decode %.2e"
              % (tdt, len(blob), ratio, ek, ev, dk))
        expect(ek < 0.05 and ev < 0.05, "%s round-trip error K %g V %g" % (tdt, ek, ev))
        expect(dk < 1e-5, "%s: GPU and CPU decodes of one stream differ (%g)" % (tdt, dk))
        expect(ratio > 2.0, "%s ratio %.2f" % (tdt, ratio))

    # ---- the CPU's rANS stream decoded on the GPU --------------------------------------
    blob = kvtc.compress(basis, host_bytes(k), host_bytes(v), ratio=8.0, dtype="f32", n_tokens=T, codec=kvtc.CODEC_RANS)
    kc_, vc_ = cpu_decode(torch, basis, blob, torch.float32)
    k2, v2 = codec.decompress(blob, check=True)
    expect(rel_err(kc_, k2) < 1e-5 and rel_err(vc_, v2) < 1e-5, "CPU stream decoded on the GPU differs")

    # ---- positions in and out -----------------------------------------------------------
    kp, vp, _, posp = make_cache(torch, 4, pos0=5000)
    cs = codec.compress(kp.to(dev), vp.to(dev), positions=posp.to(dev))
    pout = torch.empty(T, dtype=torch.int64, device=dev)
    k2, _ = codec.decompress(cs, positions=pout, check=True)
    expect(torch.equal(pout.cpu(), posp), "positions round trip")
    expect(kvtc.stream_info(cs.to_bytes())["has_positions"] == 1, "positions stored")
    expect(rel_err(kp, k2) < 0.05, "keys at positions 5000.. decode (%g)" % rel_err(kp, k2))

    # ---- error mapping ---------------------------------------------------------------------
    for code, name in enumerate(kvtc.RESULT_NAMES):
        e = kvtc.KvtcError(code, "x")
        expect(e.name == name and e.code == code, "code %d -> %s" % (code, e.name))
    cs = codec.compress(kg, vg)
    good = cs.to_host()
    expect_error("KVTC_ERR_BAD_MAGIC", lambda: codec.decompress(b"\0" * 400), "garbage")
    expect_error("KVTC_ERR_TRUNCATED", lambda: codec.decompress(good[: good.numel() - 10]), "truncated stream")
    hdr = bytearray(host_bytes(good))
    hdr[50] ^= 1
    expect_error("KVTC_ERR_CORRUPT", lambda: codec.decompress(bytes(hdr)), "header bit flip")
    deflate = kvtc.compress(basis, host_bytes(k), host_bytes(v), ratio=8.0, dtype="f32", n_tokens=T)
    expect_error("KVTC_ERR_UNSUPPORTED", lambda: codec.decompress(deflate), "DEFLATE stream on the GPU")
    other = kvtc.calibrate(G, [(host_bytes(k), host_bytes(v), T)], [8.0], dtype="f32", seed=7)
    with kc.Codec(other) as oc:
        expect_error("KVTC_ERR_BASIS_MISMATCH", lambda: oc.decompress(good), "stream of another basis")
    bad = good.clone()
    bad[bad.numel() - 100] ^= 0x55  # inside the chunk data: found on the device
    codec.decompress(bad)
    expect_error("KVTC_ERR_CORRUPT", codec.check, "chunk bit flip (device status)")
    try:
        codec.compress(kg[:, :1].contiguous(), vg[:, :1].contiguous())
        expect(False, "wrong head count accepted")
    except ValueError:
        pass
    try:
        codec.compress(kg.to(torch.int32), vg.to(torch.int32))
        expect(False, "int32 cache accepted")
    except TypeError:
        pass
    try:
        codec.compress(kg.transpose(2, 3), vg.transpose(2, 3))
        expect(False, "non-contiguous cache accepted")
    except ValueError:
        pass
    print("error mapping ok")

    # ---- restore from pinned host memory on a side stream -------------------------------------
    rcodec = kc.Codec(basis, ratio=8.0, gemm="fp32")
    host = codec.compress(kg, vg).to_host()
    expect(host.is_pinned(), "to_host() gives pinned memory")
    cs = codec.compress(kg, vg)
    hs = cs.to_host_async()  # no sync: capacity and size copied in stream order
    hb = hs.tensor()
    expect(hs.done() and hb.is_pinned() and host_bytes(hb) == cs.to_bytes(), "to_host_async() gives the stream")
    want_k, want_v = codec.decompress(host)
    r = kc.restore_from_host(rcodec, host)
    torch.cuda.current_stream().wait_event(r.event)
    expect(torch.allclose(r.k, want_k, rtol=0, atol=1e-6) and torch.allclose(r.v, want_v, rtol=0, atol=1e-6),
           "restored cache differs from the direct decode")
    rcodec.check(r.status)
    print("restore from pinned memory ok")

    # ---- GPU calibration --------------------------------------------------------------------------
    stats = {}
    gb = kc.calibrate(G, [(c[0].to(dev), c[1].to(dev)) for c in caches], [8.0], stats=stats)
    rows = [kc.rows_from_cache(G, c[0].to(dev), c[1].to(dev)) for c in caches]
    rb = kc.calibrate_rows(G, torch.cat([x[0] for x in rows]), torch.cat([x[1] for x in rows]), [8.0])
    pg, pr = gb.plans()[0], rb.plans()[0]
    expect(abs(pg["expected_error_k"] - pr["expected_error_k"]) <= 0.05 * pg["expected_error_k"] + 1e-9,
           "calibrator vs row callback: expected K error %g vs %g" % (pg["expected_error_k"], pr["expected_error_k"]))
    for b, what in ((gb, "calibrator"), (rb, "rows")):
        with kc.Codec(b, ratio=8.0) as c2:
            k2, v2 = c2.decompress(c2.compress(kg, vg), check=True)
            expect(rel_err(kg, k2) < 0.05 and rel_err(vg, v2) < 0.05, "GPU-calibrated basis (%s) round trip" % what)
    print("GPU calibration ok (%d rows, %.3f s)" % (stats.get("rows", 0), stats.get("total_s", 0.0)))

    # ---- CUDA graph capture of compress + decompress (fails on any sync) ---------------------------------
    gcodec = kc.Codec(basis, ratio=8.0)
    s = torch.cuda.Stream()
    kb, vb = kg.to(torch.bfloat16), vg.to(torch.bfloat16)
    s.wait_stream(torch.cuda.current_stream())  # kb, vb are made on the current stream
    with torch.cuda.stream(s):
        gcodec.reserve(T)
        ref = gcodec.compress(kb, vb)  # warm-up, and the prefix the captured decode needs
        ref_k, ref_v = gcodec.decompress(ref)
        prefix = ref.prefix()
        buf = torch.empty(gcodec.compress_bound(T, torch.bfloat16), dtype=torch.uint8, device=dev)
        ko, vo = torch.empty_like(kb), torch.empty_like(vb)
        st = torch.full((1,), -1, dtype=torch.int32, device=dev)
    s.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=s):
        cst = gcodec.compress(kb, vb, out=buf)
        gcodec.decompress(cst, out=(ko, vo), prefix=prefix, status=st)
    graph.replay()
    torch.cuda.synchronize()
    n = int(cst.size_tensor.item())
    expect(n == ref.size() and torch.equal(buf[:n], ref.data[:n]), "captured compress gives the eager stream")
    expect(int(st.item()) == 0, "captured decode status %d" % int(st.item()))
    expect(torch.equal(ko, ref_k) and torch.equal(vo, ref_v), "captured decode equals the eager decode")
    print("CUDA graph capture of compress + decompress ok")
    for c in (codec, rcodec, gcodec):
        c.close()


def main():
    t0 = time.time()
    try:
        import torch
    except ImportError:
        print("SKIP: torch is not installed")
        return SKIP
    test_rows_from_cache(torch)
    if failures:
        return 1
    if not kc.available():
        try:
            kc.Codec(None)
        except kc.CudaUnavailableError as e:
            print("SKIP: %s" % e)
        return SKIP
    test_gpu(torch)
    print("%d failures (%.1f s)" % (failures, time.time() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
