"""test_kvtc.py - tests of the ctypes binding (the package python/kvtc/) over libkvtc.so.

Runs with the standard library alone (array/struct buffers); when numpy is
installed the numpy path ([L,H,T,d] arrays in and out) is tested too. Also
checks what needs no GPU of the package: error names, the library search,
the header reader kvtc.cuda uses, and that kvtc.cuda imports without torch.
    KVTC_LIB=build/libkvtc.so python3 python/test_kvtc.py
"""
import array
import ctypes
import math
import os
import random
import shutil
import struct
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvtc  # noqa: E402
import kvtc.cuda  # noqa: E402  (must import without torch, a GPU or libkvtc_cuda)
from kvtc import _header, _loader  # noqa: E402

try:
    import numpy as np
except ImportError:
    np = None

L, H, D, T = 2, 2, 64, 700
G = kvtc.Geometry(L, H, D, 0, kvtc.ROPE_NEOX, 10000.0)
N = L * H * T * D


def make_cache(seed, rank=6, noise=0.02, pos0=0):
    """Low-rank correlated K/V as flat float lists in [L][H][T][d] order (keys
    get RoPE applied by rotating the latent structure per position)."""
    rng = random.Random(seed)
    mix_rng = random.Random(1234)  # the "model": shared by every cache
    p = L * H * D
    mk = [[mix_rng.gauss(0, 1) / math.sqrt(rank) for _ in range(rank)] for _ in range(p)]
    mv = [[mix_rng.gauss(0, 1) / math.sqrt(rank) for _ in range(rank)] for _ in range(p)]
    k = [0.0] * N
    v = [0.0] * N
    half = D // 2
    for t in range(T):
        z = [rng.gauss(0, 1) for _ in range(rank)]
        for l in range(L):
            for h in range(H):
                base = ((l * H + h) * T + t) * D
                row = (l * H + h) * D
                kk = [sum(mk[row + i][j] * z[j] for j in range(rank)) + rng.gauss(0, noise) for i in range(D)]
                for i in range(half):  # NEOX rotation by position t
                    ang = (pos0 + t) * 10000.0 ** (-2.0 * i / D)
                    c, s = math.cos(ang), math.sin(ang)
                    a, b = kk[i], kk[i + half]
                    kk[i], kk[i + half] = a * c - b * s, a * s + b * c
                k[base:base + D] = kk
                v[base:base + D] = [sum(mv[row + i][j] * z[j] for j in range(rank)) + rng.gauss(0, noise)
                                    for i in range(D)]
    return k, v


def rel_err(a, b):
    num = sum((x - y) ** 2 for x, y in zip(a, b))
    den = sum(x * x for x in a)
    return num / den


def to_bf16(xs):
    out = array.array("H")
    for x in xs:
        u = struct.unpack("<I", struct.pack("<f", x))[0]
        u += 0x7FFF + ((u >> 16) & 1)
        out.append((u >> 16) & 0xFFFF)
    return out


def from_bf16(buf):
    hs = array.array("H")
    hs.frombytes(bytes(buf))
    return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in hs]


failures = 0


def expect(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg)
    return cond


def test_error_names():
    """RESULT_NAMES covers every kvtc_result of the loaded library: each
    known code has its own description, the next one is "unknown"."""
    unknown = kvtc.result_string(1000)
    descriptions = [kvtc.result_string(c) for c in range(len(kvtc.RESULT_NAMES))]
    expect(unknown not in descriptions and len(set(descriptions)) == len(descriptions),
           "a kvtc_result has no name in RESULT_NAMES or two share one")
    expect(kvtc.result_string(len(kvtc.RESULT_NAMES)) == unknown, "the library has codes past %s"
           % kvtc.RESULT_NAMES[-1])
    for code, name in enumerate(kvtc.RESULT_NAMES):
        e = kvtc.KvtcError(code, "call", kvtc.result_string(code))
        expect(e.code == code and e.name == name and name in str(e), "KvtcError(%d) -> %s" % (code, e.name))
        expect(name.startswith("KVTC_OK" if code == 0 else "KVTC_ERR_"), "name %s" % name)
    expect(kvtc.KvtcError(99, "x").name == "KVTC_ERR_UNKNOWN_99", "unknown code name")
    expect(issubclass(kvtc.KvtcError, RuntimeError), "KvtcError is a RuntimeError")


def test_header_reader(blob):
    """kvtc/_header.py (what kvtc.cuda sizes outputs from) agrees with the
    library's kvtc_stream_get_info, and refuses damaged headers."""
    info = kvtc.stream_info(blob)
    h = _header.parse(blob[:272])
    for f in ("n_tokens", "n_sink", "n_window", "chunk_tokens", "n_chunks", "dtype", "entropy_codec", "plan_ratio"):
        expect(h[f] == info[f], "header %s: %r vs %r" % (f, h[f], info[f]))
    expect(h["total_size"] == len(blob) and h["version_major"] == info["version_major"], "header size/version")
    expect((h["n_layers"], h["n_kv_heads"], h["head_dim"]) == (L, H, D), "header geometry")
    for bad, name in ((b"\0" * 272, "KVTC_ERR_BAD_MAGIC"), (blob[:100], "KVTC_ERR_TRUNCATED"),
                      (blob[:48] + bytes([blob[48] ^ 1]) + blob[49:272], "KVTC_ERR_CORRUPT")):
        try:
            _header.parse(bad)
            expect(False, "damaged header accepted (%s)" % name)
        except kvtc.KvtcError as e:
            expect(e.name == name, "damaged header -> %s, want %s" % (e.name, name))
    expect(zlib.crc32(blob[:124]) == struct.unpack_from("<I", blob, 124)[0], "header CRC as FORMAT.md says")


def test_library_search():
    """The environment variable is used alone; then the package folder, then
    build trees, then the loader's names."""
    os.environ["KVTC_TEST_LIB"] = "/nonexistent/libkvtc.so.0"
    try:
        expect(_loader.candidates("kvtc", "KVTC_TEST_LIB") == ["/nonexistent/libkvtc.so.0"], "env var first, alone")
        try:
            _loader.open_library("kvtc", "KVTC_TEST_LIB")
            expect(False, "a missing KVTC_TEST_LIB path loaded something")
        except OSError as e:
            expect("KVTC_TEST_LIB" in str(e), "error names the variable: %s" % e)
    finally:
        del os.environ["KVTC_TEST_LIB"]
    expect(isinstance(kvtc._lib, ctypes.CDLL), "libkvtc loaded")
    cands = _loader.candidates("kvtc", "KVTC_TEST_LIB")
    expect(cands[-2:] == ["libkvtc.so.0", "libkvtc.so"], "loader names last: %r" % cands[-2:])
    # a copy installed next to the package comes before any build tree
    if not os.path.exists(kvtc.library_path):  # opened by the loader's name: nothing to copy
        return
    tmp = tempfile.mkdtemp()
    here = _loader._HERE
    try:
        os.symlink(os.path.abspath(kvtc.library_path), os.path.join(tmp, "libkvtc.so.0"))
        _loader._HERE = tmp
        cands = _loader.candidates("kvtc", "KVTC_TEST_LIB")
        expect(cands[0] == os.path.join(tmp, "libkvtc.so.0"), "package folder first: %r" % cands[:2])
        lib, path = _loader.open_library("kvtc", "KVTC_TEST_LIB")
        expect(path == cands[0], "opened %s" % path)
    finally:
        _loader._HERE = here
        shutil.rmtree(tmp)


def test_cuda_module_without_gpu():
    """kvtc.cuda imports anywhere; used where it cannot run, it says why."""
    if kvtc.cuda.available():
        print("kvtc.cuda available here: its tests are in test_kvtc_cuda.py")
        return
    try:
        kvtc.cuda.Codec(None)
        expect(False, "kvtc.cuda.Codec worked without torch/GPU")
    except kvtc.cuda.CudaUnavailableError as e:
        expect("torch" in str(e) or "kvtc_cuda" in str(e), "unclear message: %s" % e)
        print("kvtc.cuda without a GPU ->", e)
    # wrong settings are named as such, before the missing runtime
    for bad, exc, says in ((dict(projection="fp4"), ValueError, "projection must be one of"),
                           (dict(gemm="fp16"), ValueError, "gemm must be one of"),
                           (dict(fp8_fast_accum=True), ValueError, "needs an FP8 projection"),
                           (dict(projection="fp8", fp8_fast_accum="no"), TypeError, "True or False"),
                           (dict(projection="fp8", fp8_fast_accum=1), TypeError, "True or False")):
        try:
            kvtc.cuda.Codec(None, **bad)
            expect(False, "kvtc.cuda.Codec(%r) accepted" % bad)
        except exc as e:
            expect(says in str(e), "Codec(%r): unclear message: %s" % (bad, e))
        except Exception as e:  # noqa: BLE001 (the wrong kind is the failure)
            expect(False, "Codec(%r) raised %r, not %s" % (bad, e, exc.__name__))


def _cpu_layout_call(fn_name, basis, *args):
    """Encoder/decoder alloc + one CPU layout call (kvtc_compress_layout or
    kvtc_decompress_layout) with kvtc.compress / kvtc.decompress's defaults."""
    from kvtc import _abi
    lib = kvtc._lib
    h = ctypes.c_void_p()
    if fn_name == "compress":
        o = _abi.EncodeOptions()
        lib.kvtc_encode_options_init(ctypes.byref(o))
        _abi.init_struct(o)
        o.ratio = 4.0
        kvtc._check(lib.kvtc_encoder_alloc(basis._h, ctypes.byref(o), ctypes.byref(h)), "kvtc_encoder_alloc")
        try:
            cl = args[0]
            cap = lib.kvtc_compress_layout_bound(h, ctypes.byref(cl))
            out = (ctypes.c_char * max(cap, 1))()
            n = ctypes.c_size_t()
            r = lib.kvtc_compress_layout(h, ctypes.byref(cl), out, cap, ctypes.byref(n))
            return r, out.raw[: n.value]
        finally:
            lib.kvtc_encoder_free(h)
    o = _abi.DecodeOptions()
    lib.kvtc_decode_options_init(ctypes.byref(o))
    _abi.init_struct(o)
    kvtc._check(lib.kvtc_decoder_alloc(basis._h, ctypes.byref(o), ctypes.byref(h)), "kvtc_decoder_alloc")
    try:
        blob, rng, cl = args
        buf = ctypes.create_string_buffer(blob, len(blob))
        return lib.kvtc_decompress_layout(h, buf, len(blob), ctypes.byref(rng), ctypes.byref(cl)), None
    finally:
        lib.kvtc_decoder_free(h)


def test_layout_on_cpu(basis, k, v):
    """kvtc.cuda.Layout needs no GPU to be built: from CPU torch tensors its
    kvtc_cache_layout goes through the CPU codec's kvtc_compress_layout /
    kvtc_decompress_layout (the struct the GPU codec reads), which must give
    kvtc.compress's bytes for every layout kind and, for a partial decode
    into shuffled paged pools, the slice of a full decode. Checks the struct
    mirror, the strides taken from the tensors and the block table fields."""
    try:
        import torch
    except ImportError:
        print("layout tests skipped: torch is not importable (Debian: python3-torch)")
        return
    import layout_testlib as pg
    from kvtc import _abi
    from kvtc.layout import Layout
    missing = _abi.bind(kvtc._lib, _abi.CPU_LAYOUT_FUNCTIONS)
    if not expect(not missing, "libkvtc lacks %s" % missing):
        return
    kt = torch.tensor(k, dtype=torch.float32).reshape(L, H, T, D)
    vt = torch.tensor(v, dtype=torch.float32).reshape(L, H, T, D)
    ref = kvtc.compress(basis, array.array("f", k), array.array("f", v), ratio=4.0, dtype="f32", n_tokens=T)
    kd, vd = kvtc.decompress(basis, ref)
    full_k = torch.frombuffer(bytearray(bytes(kd) if np is None else kd.tobytes()), dtype=torch.float32)
    full_k = full_k.reshape(L, H, T, D)
    bs, pool = 16, 64
    table = pg.shuffled_table(torch, T, bs, pool, seed=5)
    ktok, vtok = kt.permute(2, 0, 1, 3).contiguous(), vt.permute(2, 0, 1, 3).contiguous()  # [T, L, H, d] memory
    layouts = {
        "contiguous": Layout.contiguous(kt, vt),
        "hf": Layout.hf([x.unsqueeze(0) for x in kt], [x.unsqueeze(0) for x in vt]),
        "hf pairs": Layout.hf([(a.unsqueeze(0), b.unsqueeze(0)) for a, b in zip(kt, vt)]),
        "token-major view": Layout.strided(ktok.permute(1, 2, 0, 3), vtok.permute(1, 2, 0, 3), "LHTD"),
        "token-major dims": Layout.strided(ktok, vtok, "TLHD"),
        "vllm NHD": Layout.vllm_paged(pg.to_pages(torch, kt, table, bs, pool), pg.to_pages(torch, vt, table, bs, pool),
                                      table, bs, nhd=True),
        "vllm HND": Layout.vllm_paged(pg.to_pages(torch, kt, table, bs, pool, nhd=False),
                                      pg.to_pages(torch, vt, table, bs, pool, nhd=False), table, bs, nhd=False),
        "vllm NHD stacked": Layout.vllm_paged(torch.stack(pg.to_pages(torch, kt, table, bs, pool)),
                                              torch.stack(pg.to_pages(torch, vt, table, bs, pool)), table, bs),
    }
    for name, lay in layouts.items():
        cl, keep = lay.c_layout(basis.geometry, T)
        r, blob = _cpu_layout_call("compress", basis, cl)
        expect(r == 0 and blob == ref, "layout %s: compress_layout gives %s, %d bytes (want kvtc.compress's %d)"
               % (name, kvtc.result_name(r), len(blob), len(ref)))
    # partial decode (tokens [100, 400), layer 1) into other shuffled pools, from slot 0
    t0, t1 = 100, 400
    table2 = pg.shuffled_table(torch, t1 - t0, bs, pool, seed=9)
    kp = pg.empty_pages(torch, kt, L, pool, bs, nhd=False)
    vp = pg.empty_pages(torch, vt, L, pool, bs, nhd=False)
    lay = Layout.vllm_paged([None, kp[1]], [None, vp[1]], table2, bs, nhd=False)
    cl, keep = lay.c_layout(basis.geometry, t1 - t0, layer_range=(1, 2))
    r, _ = _cpu_layout_call("decompress", basis, ref, _abi.DecodeRange(t0, t1, 1, 2), cl)
    got = pg.from_pages(torch, [kp[1]], table2, bs, t1 - t0, nhd=False)
    expect(r == 0 and torch.equal(got, full_k[1:2, :, t0:t1]), "partial decode into HND pools: %s, max diff %s"
           % (kvtc.result_name(r), (got - full_k[1:2, :, t0:t1]).abs().max()))
    expect(bool(torch.isnan(kp[0]).all()), "layer 0 (outside the range) untouched")
    # a block named twice: the library's KVTC_ERR_BAD_BLOCK_TABLE (fields block_table / n_pool_blocks)
    dup = table.clone()
    dup[3] = dup[7]
    bad = Layout.vllm_paged(pg.to_pages(torch, kt, table, bs, pool), pg.to_pages(torch, vt, table, bs, pool), dup, bs)
    r, _ = _cpu_layout_call("compress", basis, bad.c_layout(basis.geometry, T)[0])
    expect(kvtc.result_name(r) == "KVTC_ERR_BAD_BLOCK_TABLE", "duplicate block -> %s" % kvtc.result_name(r))
    # host-side checks with clear errors
    pools = pg.to_pages(torch, kt, table, bs, pool)
    cases = [
        (TypeError, lambda: Layout.vllm_paged(pools, pools, table.long(), bs), "int64 block table"),
        (ValueError, lambda: Layout.vllm_paged(pools, pools, table.reshape(1, -1), bs), "2-D block table"),
        (ValueError, lambda: Layout.vllm_paged(pools, pools, table, 8), "block_size differs from the pools'"),
        (ValueError, lambda: Layout.vllm_paged(pools, pools, None, bs), "paged without a block table"),
        (TypeError, lambda: Layout.contiguous(kt, vt.half()), "k and v dtypes differ"),
        (TypeError, lambda: Layout.contiguous(kt.double(), vt.double()), "float64"),
        (ValueError, lambda: Layout.strided(kt, vt, "LHXD"), "unknown axis letter"),
        (ValueError, lambda: Layout.strided(kt, vt, "LHD"), "dims shorter than the tensor"),
        (ValueError, lambda: Layout.hf(list(kt), list(vt)), "HF tensors without the batch axis"),
        (ValueError, lambda: Layout.hf([x.unsqueeze(0) for x in kt], [kt[0].unsqueeze(0), kt[1][:, :5].unsqueeze(0)]),
         "layers of different shapes"),
        (ValueError, lambda: Layout.contiguous(kt, vt).c_layout(basis.geometry, T + 1), "more tokens than held"),
        (ValueError, lambda: Layout.contiguous(kt[:, :1], vt[:, :1]).c_layout(basis.geometry, T), "wrong heads"),
        (ValueError, lambda: Layout.vllm_paged(pools, pools, table[:3], bs).c_layout(basis.geometry, T),
         "block table shorter than the tokens"),
        (ValueError, lambda: Layout.hf([None, kt[1].unsqueeze(0)], [None, vt[1].unsqueeze(0)]).c_layout(
            basis.geometry, T), "a missing layer inside the range"),
    ]
    for exc, fn, what in cases:
        try:
            fn()
            expect(False, "layout: %s accepted" % what)
        except exc:
            pass
        except Exception as e:  # noqa: BLE001 - reported
            expect(False, "layout: %s raised %r, want %s" % (what, e, exc.__name__))
    print("layouts on the CPU codec: %d kinds give kvtc.compress's bytes; partial paged decode, bad table, %d "
          "host-side errors ok" % (len(layouts), len(cases)))


def main():
    vs, vn = kvtc.version()
    major, minor, patch = (int(x) for x in vs.split("."))
    expect(vn == major * 10000 + minor * 100 + patch, "version %r %r" % (vs, vn))

    caches = [make_cache(s) for s in (1, 2)]
    fa = [(array.array("f", k), array.array("f", v), T) for k, v in caches]
    basis = kvtc.calibrate(G, fa, [4.0, 8.0], dtype="f32")
    plans = basis.plans()
    expect(len(plans) == 2 and plans[0]["target_ratio"] == 4.0, "plans %r" % plans)
    g = basis.geometry
    expect((g.n_layers, g.n_kv_heads, g.head_dim) == (L, H, D), "geometry %r" % g)

    # serialization round trip
    blob_b = basis.to_bytes()
    b2 = kvtc.Basis.from_bytes(blob_b)
    expect(b2.fingerprint == basis.fingerprint, "fingerprint after round trip")

    k, v = make_cache(3)
    # f32 through array buffers
    s32 = kvtc.compress(b2, array.array("f", k), array.array("f", v), ratio=4.0, dtype="f32", n_tokens=T)
    info = kvtc.stream_info(s32)
    expect(info["n_tokens"] == T and info["dtype"] == kvtc.F32 and info["stream_bytes"] == len(s32), "info %r" % info)
    expect(info["geometry"]["head_dim"] == D and info["plan_ratio"] == 4.0, "info geometry/plan")
    expect(info["k_bytes"] == N * 4, "k_bytes")
    ratio = 2 * N * 4 / len(s32)  # against the f32 input
    kd, vd = kvtc.decompress(basis, s32)
    kd = kd.ravel().tolist() if np is not None else array.array("f", bytes(kd)).tolist()
    vd = vd.ravel().tolist() if np is not None else array.array("f", bytes(vd)).tolist()
    ek, ev = rel_err(k, kd), rel_err(v, vd)
    print("f32: %d bytes, ratio %.2f vs f32, relative error K %.4f V %.4f" % (len(s32), ratio, ek, ev))
    expect(ek < 0.05 and ev < 0.05, "f32 error too large")
    expect(ratio > 2.0, "ratio %.2f" % ratio)

    # f16 through struct-packed bytes, with explicit positions
    k, v = make_cache(4, pos0=100)  # keys rotated for positions 100..
    k16 = struct.pack("<%de" % N, *k)
    v16 = struct.pack("<%de" % N, *v)
    pos = list(range(100, 100 + T))
    s16 = kvtc.compress(basis, k16, v16, ratio=8.0, dtype="f16", n_tokens=T, positions=pos, codec=kvtc.CODEC_RANS)
    info = kvtc.stream_info(s16)
    expect(info["has_positions"] == 1 and info["entropy_codec"] == kvtc.CODEC_RANS, "f16 info %r" % info)
    kd, vd, pd = kvtc.decompress(basis, s16, want_positions=True)
    expect(pd == pos, "positions")
    kd = list(struct.unpack("<%de" % N, bytes(kd) if np is None else kd.tobytes()))
    ek = rel_err(k, kd)
    print("f16/rANS: %d bytes, relative error K %.4f" % (len(s16), ek))
    expect(ek < 0.1, "f16 error too large")

    k, v = make_cache(3)
    # bf16 bits in uint16
    sb = kvtc.compress(basis, to_bf16(k), to_bf16(v), ratio=4.0, dtype="bf16", n_tokens=T)
    kd, vd = kvtc.decompress(basis, sb)
    ev = rel_err(v, from_bf16(bytes(vd) if np is None else vd.tobytes()))
    print("bf16: %d bytes, relative error V %.4f" % (len(sb), ev))
    expect(ev < 0.05, "bf16 error too large")

    # errors surface as KvtcError
    try:
        kvtc.stream_info(b"not a stream at all, certainly not" * 10)
        expect(False, "garbage accepted")
    except kvtc.KvtcError as e:
        expect(e.code == 4 and e.name == "KVTC_ERR_BAD_MAGIC", "garbage -> %s" % e.name)
        print("garbage stream ->", e)
    try:
        kvtc.stream_info(s32[:-1])
        expect(False, "truncated stream accepted")
    except kvtc.KvtcError as e:
        expect(e.name == "KVTC_ERR_TRUNCATED", "truncated -> %s" % e.name)

    # positions of another length than n_tokens (a short list used to be
    # padded with zeros by ctypes and stored as the cache's positions)
    for bad in (pos[:3], pos + [1]):
        try:
            kvtc.compress(basis, k16, v16, ratio=8.0, dtype="f16", n_tokens=T, positions=bad)
            expect(False, "%d positions for %d tokens accepted" % (len(bad), T))
        except ValueError as e:
            expect("positions" in str(e), "positions length -> %s" % e)

    test_error_names()
    test_header_reader(s16)
    test_library_search()
    test_cuda_module_without_gpu()
    test_layout_on_cpu(basis, k, v)

    if np is not None:
        ka = np.asarray(k, np.float32).reshape(L, H, T, D)
        va = np.asarray(v, np.float32).reshape(L, H, T, D)
        sn = kvtc.compress(basis, ka, va, ratio=4.0)
        expect(sn == s32, "numpy and array paths give the same stream")
        kd, vd = kvtc.decompress(basis, sn)
        expect(kd.shape == (L, H, T, D) and kd.dtype == np.float32, "numpy output")
        sh = kvtc.compress(basis, ka.astype(np.float16), va.astype(np.float16), ratio=4.0)
        kd, _ = kvtc.decompress(basis, sh)
        expect(kd.dtype == np.float16, "numpy f16 output")
        print("numpy path ok")
    else:
        print("numpy not installed: tested the array/struct path only")

    basis.close()
    b2.close()
    print("%s (%d failures)" % ("FAILED" if failures else "python binding ok", failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
