"""test_kvtc.py - tests of the ctypes binding (python/kvtc.py) over libkvtc.so.

Runs with the standard library alone (array/struct buffers); when numpy is
installed the numpy path ([L,H,T,d] arrays in and out) is tested too.
    KVTC_LIB=build/libkvtc.so python3 python/test_kvtc.py
"""
import array
import math
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvtc  # noqa: E402

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
        print("garbage stream ->", e)

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
