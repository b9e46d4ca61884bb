"""test_kvtc_cuda.py - tests of kvtc.cuda (torch tensors through the CUDA codec).

    KVTC_LIB=build/libkvtc.so KVTC_CUDA_LIB=build/libkvtc_cuda.so.0 python3 python/test_kvtc_cuda.py

Exit status: 0 passed, 1 failed, 77 skipped (no torch, or no GPU / no
libkvtc_cuda: register with ctest SKIP_RETURN_CODE 77). With torch but no
GPU, the torch-only parts (RoPE removal of calibration rows) still run
before the skip. Covers: dtypes f32/f16/bf16, the GPU decode against the
CPU decode of the same stream (both directions), positions, error mapping
(host-side and device-status errors), restore from pinned host memory on a
side stream, GPU calibration (calibrator and row callback), a CUDA
graph capture of compress + decompress (which fails if any call syncs), and
engine layouts: vLLM paged pools (NHD and HND, shuffled block tables) and HF
per-layer lists give the contiguous path's stream and decode, partial
decodes (tokens, layers) equal the slice of a full decode, bad block tables
raise KVTC_ERR_BAD_BLOCK_TABLE, and a captured layout compress + partial
decode.
"""
import ctypes as C
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvtc  # noqa: E402
import kvtc.cuda as kc  # noqa: E402
import layout_testlib as pg  # noqa: E402

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


def test_fp8(torch, basis, kg, vg):
    """Codec(projection=...): the FP8 decode of a bf16 codec's stream stays
    within e4m3's precision of the bf16 decode; fast accumulation within a
    fraction of that; bad settings are refused before or by the library."""
    for bad in (dict(projection="fp4"), dict(fp8_fast_accum=True)):
        try:
            kc.Codec(basis, ratio=8.0, **bad)
            expect(False, "Codec(%r) accepted" % bad)
        except ValueError:
            pass
    expect_error("KVTC_ERR_INVALID_ARGUMENT", lambda: kc.Codec(basis, ratio=8.0, gemm="fp32", projection="fp8"),
                 "FP8 projection with gemm=fp32")
    try:
        c8 = kc.Codec(basis, ratio=8.0, projection="fp8")
    except kvtc.KvtcError as e:
        major, minor = torch.cuda.get_device_capability()
        expect(e.name == "KVTC_ERR_UNSUPPORTED" and major * 10 + minor < 89, "FP8 codec refused: %s" % e)
        print("FP8: no FP8 tensor cores (compute capability %d.%d): skipped" % (major, minor))
        return
    c16 = kc.Codec(basis, ratio=8.0)
    cf = kc.Codec(basis, ratio=8.0, projection="fp8_decode", fp8_fast_accum=True)
    kt, vt = kg.to(torch.bfloat16), vg.to(torch.bfloat16)
    cs = c16.compress(kt, vt)
    k16, v16 = c16.decompress(cs)
    k8, v8 = c8.decompress(cs)
    kf, vf = cf.decompress(cs)
    c8.check()
    cf.check()
    cs8 = c8.compress(kt, vt)  # the FP8 encoder's stream: decodes anywhere
    k88, _ = c16.decompress(cs8)
    c16.check()
    e16, e8, e88 = rel_err(kt, k16), rel_err(k8, k16), rel_err(kt, k88)
    ef = max(rel_err(kf, k8), rel_err(vf, v8))
    print("FP8: bf16 decode error K %.2e; FP8 decode vs bf16 decode %.2e (V %.2e); fast accumulation vs FP8 %.2e; "
          "FP8-encoded stream error %.2e" % (e16, e8, rel_err(v8, v16), ef, e88))
    expect(e8 < 0.05 and rel_err(v8, v16) < 0.05, "FP8 decode differs from bf16 by %g / %g" % (e8, rel_err(v8, v16)))
    expect(ef < 0.5 * max(e8, 1e-3), "fast accumulation moves the decode by %g (FP8 vs bf16 %g)" % (ef, e8))
    expect(e88 < e16 + 0.05, "FP8-encoded stream error %g vs bf16 %g" % (e88, e16))
    for c in (c8, c16, cf):
        c.close()


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

    # ---- FP8 projections (projection=, fp8_fast_accum=) --------------------------------
    test_fp8(torch, basis, kg, vg)

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


def close_slice(torch, got, want):
    """Equal up to the last bit of the dtype (relative to the slice's largest value)."""
    if got.shape != want.shape:
        return False
    g, w = got.float(), want.float()
    scale = float(w.abs().max()) if w.numel() else 0.0
    return bool(((g - w).abs() <= 1e-2 * scale + 1e-6).all())


def test_layouts(torch, basis, dev, k, v, pos):
    """Engine layouts and partial decode against the contiguous path."""
    codec = kc.Codec(basis, ratio=8.0, gemm="fp32")
    bs, pool = 16, 64  # 44 blocks of the 64 hold the 700 tokens
    for nhd, tdt in ((True, torch.bfloat16), (False, torch.float16), (True, torch.float32)):
        what = "%s %s" % ("NHD" if nhd else "HND", tdt)
        kt, vt = k.to(dev, tdt), v.to(dev, tdt)
        cs = codec.compress(kt, vt)
        ref_blob = cs.to_bytes()
        ref_k, ref_v = codec.decompress(cs, check=True)
        table = pg.shuffled_table(torch, T, bs, pool, seed=3, device=dev)
        lay = kc.Layout.vllm_paged(pg.to_pages(torch, kt, table, bs, pool, nhd),
                                   pg.to_pages(torch, vt, table, bs, pool, nhd), table, bs, nhd=nhd)
        cp = codec.compress(layout=lay, n_tokens=T)
        expect(cp.to_bytes() == ref_blob, "%s: paged compress differs from the contiguous stream" % what)
        table2 = pg.shuffled_table(torch, T, bs, pool, seed=11, device=dev)
        kp, vp = pg.empty_pages(torch, kt, L, pool, bs, nhd), pg.empty_pages(torch, vt, L, pool, bs, nhd)
        out = kc.Layout.vllm_paged(kp, vp, table2, bs, nhd=nhd)
        expect(codec.decompress(cp, out=out, check=True) is out, "decompress(out=layout) returns the layout")
        gk, gv = pg.from_pages(torch, kp, table2, bs, T, nhd), pg.from_pages(torch, vp, table2, bs, T, nhd)
        expect(torch.equal(gk, ref_k) and torch.equal(gv, ref_v), "%s: paged decode differs from the contiguous" % what)
        # partial decode of tokens [100, 400) of layer 1 into other pools, from slot 0
        t0, t1 = 100, 400
        table3 = pg.shuffled_table(torch, t1 - t0, bs, pool, seed=13, device=dev)
        kp, vp = pg.empty_pages(torch, kt, L, pool, bs, nhd), pg.empty_pages(torch, vt, L, pool, bs, nhd)
        part = kc.Layout.vllm_paged([None, kp[1]], [None, vp[1]], table3, bs, nhd=nhd)
        codec.decompress(cp, out=part, tokens=(t0, t1), layers=(1, 2), check=True)
        gk = pg.from_pages(torch, [kp[1]], table3, bs, t1 - t0, nhd)
        gv = pg.from_pages(torch, [vp[1]], table3, bs, t1 - t0, nhd)
        expect(torch.equal(gk, ref_k[1:2, :, t0:t1]) and torch.equal(gv, ref_v[1:2, :, t0:t1]),
               "%s: partial paged decode differs from the slice" % what)
        print("%s: paged compress = contiguous stream, paged decode and partial paged decode ok" % what)

    # HF per-layer [1, H, T, d] lists: same stream, same decode
    kt, vt = k.to(dev, torch.bfloat16), v.to(dev, torch.bfloat16)
    cs = codec.compress(kt, vt)
    ref_blob = cs.to_bytes()
    ref_k, ref_v = codec.decompress(cs, check=True)
    hf = kc.Layout.hf([x.unsqueeze(0) for x in kt], [x.unsqueeze(0) for x in vt])
    ch = codec.compress(hf)
    expect(ch.to_bytes() == ref_blob, "HF lists: compress differs from the contiguous stream")
    hk = [torch.full((1, H, T, D), float("nan"), dtype=kt.dtype, device=dev) for _ in range(L)]
    hv = [torch.full((1, H, T, D), float("nan"), dtype=kt.dtype, device=dev) for _ in range(L)]
    codec.decompress(ch, out=kc.Layout.hf(hk, hv), check=True)
    expect(torch.equal(torch.cat(hk), ref_k) and torch.equal(torch.cat(hv), ref_v), "HF lists: decode differs")

    # partial decodes into allocated and given tensors equal slices of the full decode
    for tokens, layers in (((100, 400), (1, 2)), ((0, 50), None), ((T - 130, T), (0, 1)), (None, (1, 2)),
                           ((3, 5), None), ((600, 650), (0, L))):
        k2, v2 = codec.decompress(cs, tokens=tokens, layers=layers, check=True)
        a, b = tokens or (0, T)
        la, lb = layers or (0, L)
        expect(tuple(k2.shape) == (lb - la, H, b - a, D), "partial %s %s: shape %s" % (tokens, layers, k2.shape))
        # equal up to the GEMM's rounding: cuBLAS may choose another kernel for
        # another row count (kvtc_cuda.h), so a last bit may differ
        expect(close_slice(torch, k2, ref_k[la:lb, :, a:b]) and close_slice(torch, v2, ref_v[la:lb, :, a:b]),
               "partial decode tokens %s layers %s differs from the slice" % (tokens, layers))
    ko = torch.full((L, H, 300, D), float("nan"), dtype=kt.dtype, device=dev)
    vo = torch.full_like(ko, float("nan"))
    codec.decompress(cs, out=(ko, vo), tokens=(200, 500), layers=(0, 1), check=True)
    expect(torch.equal(ko[0], ref_k[0, :, 200:500]) and bool(torch.isnan(ko[1]).all()),
           "partial decode into [L, H, n, d]: layer 0 written, layer 1 untouched")
    # positions of the range
    cpz = codec.compress(kt, vt, positions=pos.to(dev))
    pout = torch.empty(300, dtype=torch.int64, device=dev)
    codec.decompress(cpz, tokens=(100, 400), positions=pout, check=True)
    expect(torch.equal(pout.cpu(), pos[100:400]), "positions of a partial decode")
    expect_error("KVTC_ERR_INVALID_ARGUMENT", lambda: codec.decompress(cs, tokens=(400, T + 1)), "tokens past the end")
    expect_error("KVTC_ERR_INVALID_ARGUMENT", lambda: codec.decompress(cs, layers=(1, 1)), "empty layer range")
    # layer-by-layer restore from a hold: each layer's decode equals the slice
    held = codec.hold(ref_blob)
    for layer in range(L):
        k2, v2 = codec.decompress(held, layers=(layer, layer + 1), tokens=(50, T), check=True)
        expect(torch.equal(k2, ref_k[layer:layer + 1, :, 50:]) and torch.equal(v2, ref_v[layer:layer + 1, :, 50:]),
               "held decode of layer %d differs from the slice" % layer)
    codec.release()
    print("HF lists and partial decodes (tokens, layers, positions) ok")

    # bad block tables: found on the device, raised from the status
    table = pg.shuffled_table(torch, T, bs, pool, seed=3, device=dev)
    kpool, vpool = pg.to_pages(torch, kt, table, bs, pool), pg.to_pages(torch, vt, table, bs, pool)
    dup = table.clone()
    dup[5] = dup[20]
    cb = codec.compress(layout=kc.Layout.vllm_paged(kpool, vpool, dup, bs), n_tokens=T)
    expect_error("KVTC_ERR_BAD_BLOCK_TABLE", cb.size, "compress with a block named twice (CompressedStream.size)")
    expect_error("KVTC_ERR_BAD_BLOCK_TABLE", codec.check, "compress with a block named twice (Codec.check)")
    for bad_entry, what in ((pool, "a block past the pool"), (-1, "a negative block")):
        badt = table.clone()
        badt[7] = bad_entry
        codec.decompress(ch, out=kc.Layout.vllm_paged(kpool, vpool, badt, bs))
        expect_error("KVTC_ERR_BAD_BLOCK_TABLE", codec.check, "decode into %s" % what)
    codec.decompress(cs, out=kc.Layout.vllm_paged(kpool, vpool, table, bs), check=True)  # the good table still decodes
    # host-side errors
    for exc, fn, what in (
            (ValueError, lambda: codec.compress(layout=kc.Layout.contiguous(k, v)), "CPU tensors"),
            (ValueError, lambda: codec.compress(layout=kc.Layout.vllm_paged(kpool, vpool, table, bs),
                                                n_tokens=table.numel() * bs + 1),
             "more tokens than the block table holds"),
            (TypeError, lambda: codec.compress(kt, vt, layout=hf), "both k, v and layout"),
            (ValueError, lambda: codec.compress(layout=kc.Layout.contiguous(kt[:, :1], vt[:, :1])), "wrong heads")):
        try:
            fn()
            expect(False, "%s accepted" % what)
        except exc:
            pass
    expect_error("KVTC_ERR_GEOMETRY_MISMATCH",
                 lambda: codec.decompress(cs, out=kc.Layout.contiguous(kt.float(), vt.float())), "f32 layout, bf16 stream")
    expect(codec.last_error() == "", "no CUDA error recorded: %r" % codec.last_error())
    print("bad block tables and layout errors ok")

    # CUDA graph capture of a paged compress + partial paged decode (fails on any sync);
    # a fresh codec, so its workspace is allocated on the capture stream
    codec.close()
    codec = kc.Codec(basis, ratio=8.0, gemm="fp32")
    s = torch.cuda.Stream()
    kpool, vpool = pg.to_pages(torch, kt, table, bs, pool), pg.to_pages(torch, vt, table, bs, pool)  # decoded into above
    lay = kc.Layout.vllm_paged(kpool, vpool, table, bs)
    kp, vp = pg.empty_pages(torch, kt, L, pool, bs), pg.empty_pages(torch, vt, L, pool, bs)
    part = kc.Layout.vllm_paged(kp, vp, table, bs)
    s.wait_stream(torch.cuda.current_stream())  # the pools are filled on the current stream
    with torch.cuda.stream(s):
        codec.reserve(T)
        ref = codec.compress(layout=lay, n_tokens=T)
        prefix = ref.prefix()
        codec.decompress(ref, out=part, tokens=(300, 600), check=True)  # warm-up of the decode kernels
        buf = torch.empty(ref.capacity, dtype=torch.uint8, device=dev)
        st1 = torch.full((1,), -1, dtype=torch.int32, device=dev)
        st2 = torch.full((1,), -1, dtype=torch.int32, device=dev)
    s.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=s):
        cst = codec.compress(layout=lay, n_tokens=T, out=buf, status=st1)
        codec.decompress(cst, out=part, prefix=prefix, status=st2, tokens=(300, 600))
    graph.replay()
    torch.cuda.synchronize()
    n = int(cst.size_tensor.item())
    expect(int(st1.item()) == 0 and int(st2.item()) == 0, "captured statuses %d %d" % (int(st1.item()), int(st2.item())))
    expect(n == ref.size() and torch.equal(buf[:n], ref.data[:n]), "captured paged compress gives the eager stream")
    gk = pg.from_pages(torch, kp, table, bs, 300)
    expect(torch.equal(gk, ref_k[:, :, 300:600]), "captured partial paged decode equals the slice")
    print("CUDA graph capture of a paged compress + partial paged decode ok")
    codec.close()


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
    k, v, _, pos = make_cache(torch, 3)
    caches = [make_cache(torch, s) for s in (1, 2)]
    basis = kvtc.calibrate(G, [(host_bytes(a), host_bytes(b), T) for a, b, _, _ in caches], [4.0, 8.0], dtype="f32")
    test_layouts(torch, basis, torch.device("cuda", torch.cuda.current_device()), k, v, pos)
    print("%d failures (%.1f s)" % (failures, time.time() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
