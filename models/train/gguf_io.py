"""gguf_io.py - the few GGUF v3 pieces the training kit needs, in plain Python
and NumPy (no gguf package on the device machine): read the metadata and
tensors of a file, write a file with F32 and Q8_0 tensors.

Layout (llama.cpp's gguf.md): "GGUF", u32 version 3, u64 tensor count, u64
metadata count, metadata (key string, u32 type, value), tensor infos (name,
u32 n_dims, u64 ne[n_dims] fastest first, u32 ggml type, u64 offset from the
data start), padding to general.alignment (32), tensor data (each aligned).
Strings are u64 length + UTF-8 bytes; everything little-endian.
"""
import struct

import numpy as np

GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
ALIGN = 32
# metadata value types
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
_SCALAR = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
           T_F32: "<f", T_BOOL: "<?", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}


class _Reader:
    def __init__(self, buf):
        self.b, self.o = buf, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.o)[0]
        self.o += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        if n > len(self.b) - self.o:
            raise ValueError("GGUF string runs past the end of the file")
        s = bytes(self.b[self.o:self.o + n]).decode("utf-8")
        self.o += n
        return s

    def value(self, t):
        if t in _SCALAR:
            return self.take(_SCALAR[t])
        if t == T_STR:
            return self.string()
        if t == T_ARR:
            et, n = self.take("<I"), self.take("<Q")
            return (et, [self.value(et) for _ in range(n)])
        raise ValueError("unknown GGUF metadata type %d" % t)


def read(path, meta_only=False):
    """(metadata {key: (type, value)}, tensors {name: float32 array shaped
    [ne[-1], ..., ne[0]]}, empty when meta_only). Arrays are values
    (elem_type, [items])."""
    with open(path, "rb") as f:
        buf = f.read()
    r = _Reader(buf)
    if buf[:4] != b"GGUF":
        raise ValueError("%s: not a GGUF file" % path)
    r.o = 4
    version, n_t, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
    if version != 3:
        raise ValueError("GGUF version %d (want 3)" % version)
    meta = {}
    for _ in range(n_kv):
        k = r.string()
        t = r.take("<I")
        meta[k] = (t, r.value(t))
    infos = []
    if meta_only:
        return meta, {}
    for _ in range(n_t):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        infos.append((name, ne, r.take("<I"), r.take("<Q")))
    align = meta.get("general.alignment", (T_U32, ALIGN))[1]
    data0 = (r.o + align - 1) // align * align
    tensors = {}
    for name, ne, typ, off in infos:
        n = int(np.prod(ne))
        p = data0 + off
        if typ == GGML_F32:
            a = np.frombuffer(buf, np.float32, n, p)
        elif typ == GGML_F16:
            a = np.frombuffer(buf, np.float16, n, p).astype(np.float32)
        elif typ == GGML_Q8_0:
            blk = np.frombuffer(buf, np.uint8, n // 32 * 34, p).reshape(-1, 34)
            d = blk[:, :2].copy().view(np.float16).astype(np.float32)
            q = blk[:, 2:].copy().view(np.int8).astype(np.float32)
            a = (d * q).reshape(-1)
        else:
            raise ValueError("tensor %s: ggml type %d not handled" % (name, typ))
        tensors[name] = a.reshape(list(reversed(ne)))
    return meta, tensors


def quantize_q8_0(x):
    """float32 array (last dim a multiple of 32) -> Q8_0 bytes, as llama.cpp's
    quantize_row_q8_0_ref: d = max|x| / 127, q = round-half-away(x / d)."""
    b = np.ascontiguousarray(x, np.float32).reshape(-1, 32)
    amax = np.abs(b).max(axis=1, keepdims=True)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    v = b * inv
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)
    out = np.empty((b.shape[0], 34), np.uint8)
    out[:, :2] = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def _pack_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _pack_value(t, v):
    if t in _SCALAR:
        return struct.pack(_SCALAR[t], v)
    if t == T_STR:
        return _pack_string(v)
    if t == T_ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(_pack_value(et, i) for i in items)
    raise ValueError("unknown GGUF metadata type %d" % t)


def write(path, meta, tensors):
    """meta: list of (key, type, value); tensors: list of (name, float32 array
    in PyTorch shape [out, in] or [n], ggml type F32 or Q8_0)."""
    parts = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(meta))]
    for k, t, v in meta:
        parts += [_pack_string(k), struct.pack("<I", t), _pack_value(t, v)]
    blobs, off = [], 0
    for name, a, typ in tensors:
        a = np.ascontiguousarray(a, np.float32)
        ne = list(reversed(a.shape))
        blob = quantize_q8_0(a) if typ == GGML_Q8_0 else a.tobytes()
        parts += [_pack_string(name), struct.pack("<I", len(ne))]
        parts += [struct.pack("<Q", n) for n in ne]
        parts += [struct.pack("<IQ", typ, off)]
        pad = (-len(blob)) % ALIGN
        blobs.append(blob + b"\0" * pad)
        off += len(blob) + pad
    head = b"".join(parts)
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(path, "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)
