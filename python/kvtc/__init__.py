"""kvtc - ctypes binding of libkvtc (include/kvtc.h), and kvtc.cuda for torch
tensors on the GPU (include/kvtc_cuda.h; see kvtc/cuda.py).

Needs the shared library libkvtc.so.0 (CMake option KVTC_SHARED, ON by
default). Found through $KVTC_LIB, else next to this package, else a build*/
folder of the source checkout, else the system loader (kvtc/_loader.py).
Standard library only; numpy is used when installed.

    import kvtc
    basis = kvtc.Basis.load("model.kvtcb")             # or Basis.from_bytes(b)
    blob = kvtc.compress(basis, k, v, ratio=16)        # k, v: numpy [L,H,T,d]
    info = kvtc.stream_info(blob)                      # dict
    k2, v2 = kvtc.decompress(basis, blob)              # numpy arrays, same dtype

Arrays: numpy float32, float16, or uint16 holding bf16 bits (dtype="bf16"
or a uint16 array); PyTorch CPU tensors via t.numpy() (bf16 tensors:
t.view(torch.uint16).numpy()); GPU tensors: kvtc.cuda. Without numpy, pass
any buffer (bytes, bytearray, array.array, memoryview) with dtype= and
n_tokens=; decompress then returns bytearrays.

Errors raise kvtc.KvtcError (.code, .name = the kvtc_result enum name).
"""
import ctypes as C

try:
    import numpy as _np
except ImportError:  # the binding works without numpy (buffers in, bytearrays out)
    _np = None

from . import _abi
from ._abi import (BF16, CODEC_DEFLATE, CODEC_RANS, F16, F32, ROPE_NEOX, ROPE_NONE, ROPE_NORM,  # noqa: F401
                   RESULT_NAMES, Geometry)
from ._loader import open_library
from .errors import KvtcError, result_name  # noqa: F401

_DTYPE_NAMES = {"f32": F32, "float32": F32, "f16": F16, "float16": F16, "bf16": BF16, "bfloat16": BF16}
_DTYPE_SIZE = _abi.DTYPE_SIZE
_Cache, _PlanInfo, _StreamInfo = _abi.Cache, _abi.PlanInfo, _abi.StreamInfo
_CalibOptions, _EncodeOptions, _DecodeOptions = _abi.CalibOptions, _abi.EncodeOptions, _abi.DecodeOptions

_lib, library_path = open_library("kvtc", "KVTC_LIB")
_missing = _abi.bind(_lib, _abi.CPU_FUNCTIONS)
if _missing:
    raise OSError("%s lacks %s: not a libkvtc this binding knows" % (library_path, ", ".join(_missing)))


def version():
    """The loaded library's version: ("MAJOR.MINOR.PATCH", MAJOR*10000 + MINOR*100 + PATCH)."""
    return _lib.kvtc_version_string().decode(), _lib.kvtc_version_number()


def result_string(code):
    """The library's description of a kvtc_result (kvtc_result_string)."""
    return _lib.kvtc_result_string(int(code)).decode()


def _check(r, what):
    if r != 0:
        raise KvtcError(r, what, result_string(r))


class _Buf:
    """A C pointer to a Python buffer (kept alive with the object)."""

    def __init__(self, obj, writable=False):
        if _np is not None and isinstance(obj, _np.ndarray):
            if not obj.flags["C_CONTIGUOUS"]:
                raise ValueError("arrays must be C-contiguous")
            if writable and not obj.flags["WRITEABLE"]:
                raise ValueError("output array is read-only")
            self.obj = obj
            self.ptr = obj.ctypes.data
            self.nbytes = obj.nbytes
            return
        mv = memoryview(obj).cast("B")
        if writable and mv.readonly:
            raise ValueError("output buffer is read-only")
        self.obj = mv
        self.nbytes = mv.nbytes
        if mv.readonly:  # bytes: ctypes cannot take a writable view; c_char_p shares the storage
            self.keep = C.c_char_p(bytes(mv))
            self.ptr = C.cast(self.keep, C.c_void_p).value
        else:
            self.keep = (C.c_char * self.nbytes).from_buffer(mv)
            self.ptr = C.addressof(self.keep)


def _dtype_of(arr, dtype):
    if dtype is not None:
        if isinstance(dtype, int):
            return dtype
        key = dtype if isinstance(dtype, str) else str(dtype)
        if key not in _DTYPE_NAMES:
            raise ValueError("dtype must be f32, f16 or bf16")
        return _DTYPE_NAMES[key]
    if _np is not None and isinstance(arr, _np.ndarray):
        if arr.dtype == _np.float32:
            return F32
        if arr.dtype == _np.float16:
            return F16
        if arr.dtype == _np.uint16:
            return BF16
        raise ValueError("numpy dtype must be float32, float16 or uint16 (bf16 bits)")
    raise ValueError("dtype= is needed for non-numpy buffers")


def _make_cache(g, k, v, dtype, n_tokens, positions):
    dt = _dtype_of(k, dtype)
    if n_tokens is None:
        if _np is None or not isinstance(k, _np.ndarray):
            raise ValueError("n_tokens= is needed for non-numpy buffers")
        if k.ndim != 4 or tuple(k.shape) != (g.n_layers, g.n_kv_heads, k.shape[2], g.head_dim):
            raise ValueError("k must be [L, H, T, d] = [%d, %d, T, %d]" % (g.n_layers, g.n_kv_heads, g.head_dim))
        n_tokens = int(k.shape[2])
    need = g.n_layers * g.n_kv_heads * n_tokens * g.head_dim * _DTYPE_SIZE[dt]
    kb, vb = _Buf(k), _Buf(v)
    if kb.nbytes != need or vb.nbytes != need:
        raise ValueError("k and v must hold %d bytes each" % need)
    c = _Cache()
    c.geometry = g
    c.dtype = dt
    c.n_tokens = n_tokens
    c.k, c.v = kb.ptr, vb.ptr
    keep = [kb, vb]
    if positions is not None:
        positions = [int(x) for x in positions]
        if len(positions) != n_tokens:  # ctypes would pad a short list with zeros
            raise ValueError("positions must hold n_tokens = %d values, not %d" % (n_tokens, len(positions)))
        arr = (C.c_int64 * n_tokens)(*positions)
        keep.append(arr)
        c.positions = C.addressof(arr)
    return c, keep


class Basis:
    """An immutable kvtc basis (mean, weights, PCA basis, plans)."""

    def __init__(self, handle):
        self._h = C.c_void_p(handle)

    @classmethod
    def from_bytes(cls, data):
        b = _Buf(data)
        h = C.c_void_p()
        _check(_lib.kvtc_basis_load(b.ptr, b.nbytes, C.byref(h)), "kvtc_basis_load")
        return cls(h.value)

    @classmethod
    def load(cls, path):
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    def to_bytes(self):
        n = _lib.kvtc_basis_serialized_size(self._h)
        buf = bytearray(n)
        written = C.c_size_t()
        b = _Buf(buf, writable=True)
        _check(_lib.kvtc_basis_serialize(self._h, b.ptr, n, C.byref(written)), "kvtc_basis_serialize")
        return bytes(buf[: written.value])

    def save(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @property
    def geometry(self):
        g = _lib.kvtc_basis_geometry(self._h).contents
        out = Geometry()
        C.pointer(out)[0] = g
        return out

    @property
    def fingerprint(self):
        return _lib.kvtc_basis_fingerprint(self._h)

    def plans(self):
        out = []
        for i in range(_lib.kvtc_basis_plan_count(self._h)):
            pi = _abi.init_struct(_PlanInfo())
            _check(_lib.kvtc_basis_plan_info(self._h, i, C.byref(pi)), "kvtc_basis_plan_info")
            out.append({f: getattr(pi, f) for f, _ in _PlanInfo._fields_ if f != "struct_size"})
        return out

    def close(self):
        if self._h:
            _lib.kvtc_basis_free(self._h)
            self._h = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def calibrate(geometry, caches, ratios, dtype=None, max_tokens=0, n_sink=4, n_window=128, max_rank=0, seed=1):
    """Calibrate a basis from caches: an iterable of (k, v) or (k, v, n_tokens)."""
    o = _CalibOptions()
    _lib.kvtc_calibrate_options_init(C.byref(o))
    _abi.init_struct(o)
    o.n_sink, o.n_window, o.max_rank, o.seed = n_sink, n_window, max_rank, seed
    if max_tokens:
        o.max_tokens = max_tokens
    h = C.c_void_p()
    _check(_lib.kvtc_calibrator_alloc(C.byref(geometry), C.byref(o), C.byref(h)), "kvtc_calibrator_alloc")
    try:
        for item in caches:
            k, v = item[0], item[1]
            n = item[2] if len(item) > 2 else None
            c, keep = _make_cache(geometry, k, v, dtype, n, None)
            _check(_lib.kvtc_calibrator_add(h, C.byref(c)), "kvtc_calibrator_add")
            del keep
        r = (C.c_double * len(ratios))(*ratios)
        out = C.c_void_p()
        _check(_lib.kvtc_calibrator_finish(h, r, len(ratios), C.byref(out)), "kvtc_calibrator_finish")
        return Basis(out.value)
    finally:
        _lib.kvtc_calibrator_free(h)


def compress(basis, k, v, ratio=20.0, dtype=None, n_tokens=None, positions=None, n_sink=4, n_window=128,
             chunk_tokens=256, n_threads=1, deflate_level=6, codec=CODEC_DEFLATE):
    """Compress one cache; returns the stream as bytes."""
    g = basis.geometry
    c, keep = _make_cache(g, k, v, dtype, n_tokens, positions)
    o = _EncodeOptions()
    _lib.kvtc_encode_options_init(C.byref(o))
    _abi.init_struct(o)
    o.ratio, o.n_sink, o.n_window, o.chunk_tokens = ratio, n_sink, n_window, chunk_tokens
    o.n_threads, o.deflate_level, o.entropy_codec = n_threads, deflate_level, codec
    e = C.c_void_p()
    _check(_lib.kvtc_encoder_alloc(basis._h, C.byref(o), C.byref(e)), "kvtc_encoder_alloc")
    try:
        cap = _lib.kvtc_compress_bound(e, C.byref(c))
        if cap == 0:
            raise KvtcError(1, "kvtc_compress_bound", "invalid cache or size overflow")
        out = (C.c_char * cap)()
        written = C.c_size_t()
        _check(_lib.kvtc_compress(e, C.byref(c), out, cap, C.byref(written)), "kvtc_compress")
        del keep
        return out.raw[: written.value]
    finally:
        _lib.kvtc_encoder_free(e)


def stream_info(blob):
    """Header fields of a stream, as a dict (no basis needed)."""
    b = _Buf(blob)
    si = _abi.init_struct(_StreamInfo())
    _check(_lib.kvtc_stream_get_info(b.ptr, b.nbytes, C.byref(si)), "kvtc_stream_get_info")
    d = {f: getattr(si, f) for f, _ in _StreamInfo._fields_ if f not in ("geometry", "struct_size")}
    g = si.geometry
    d["geometry"] = {f: getattr(g, f) for f, _ in Geometry._fields_}
    return d


def decompress(basis, blob, n_threads=1, want_positions=False):
    """Decode a stream: (k, v) as numpy [L,H,T,d] arrays (uint16 for bf16), or
    bytearrays without numpy; with want_positions, (k, v, positions)."""
    b = _Buf(blob)
    si = _abi.init_struct(_StreamInfo())
    _check(_lib.kvtc_stream_get_info(b.ptr, b.nbytes, C.byref(si)), "kvtc_stream_get_info")
    g = si.geometry
    if _np is not None:
        npdt = {F32: _np.float32, F16: _np.float16, BF16: _np.uint16}[si.dtype]
        shape = (g.n_layers, g.n_kv_heads, si.n_tokens, g.head_dim)
        k, v = _np.empty(shape, npdt), _np.empty(shape, npdt)
    else:
        k, v = bytearray(si.k_bytes), bytearray(si.v_bytes)
    kb, vb = _Buf(k, writable=True), _Buf(v, writable=True)
    c = _Cache()
    c.geometry = g
    c.dtype = si.dtype
    c.n_tokens = si.n_tokens
    c.k, c.v = kb.ptr, vb.ptr
    pos = None
    if want_positions:
        pos = (C.c_int64 * max(1, si.n_tokens))()
        c.positions = C.addressof(pos)
    o = _DecodeOptions()
    _lib.kvtc_decode_options_init(C.byref(o))
    _abi.init_struct(o)
    o.n_threads = n_threads
    d = C.c_void_p()
    _check(_lib.kvtc_decoder_alloc(basis._h, C.byref(o), C.byref(d)), "kvtc_decoder_alloc")
    try:
        _check(_lib.kvtc_decompress(d, b.ptr, b.nbytes, C.byref(c)), "kvtc_decompress")
    finally:
        _lib.kvtc_decoder_free(d)
    del kb, vb
    if want_positions:
        return k, v, list(pos[: si.n_tokens])
    return k, v
