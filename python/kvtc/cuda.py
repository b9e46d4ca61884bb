"""kvtc.cuda - the CUDA codec (include/kvtc_cuda.h) on torch tensors, through
ctypes (no compiled extension).

    import torch, kvtc, kvtc.cuda
    codec = kvtc.cuda.Codec(kvtc.Basis.load("model.kvtcb"), ratio=16)
    cs = codec.compress(k, v)              # k, v: [L, H, T, d] cuda tensors, bf16/f16/f32
    k2, v2 = codec.decompress(cs)          # same stream, same device, no host sync
    blob = cs.to_host()                    # pinned uint8 CPU tensor of the exact size (syncs)
    hs = cs.to_host_async()                # or: offload without a sync; hs.tensor() when done
    r = kvtc.cuda.restore_from_host(codec, blob)   # H2D copy + decode on a side stream
    torch.cuda.current_stream().wait_event(r.event); use(r.k, r.v)

    lay = kvtc.cuda.Layout.vllm_paged(k_pools, v_pools, block_table, 16)   # engine memory, in place
    cs = codec.compress(layout=lay, n_tokens=n)
    codec.decompress(cs, out=lay2, tokens=(0, 256), layers=(0, 4))         # partial decode

Stream order and synchronization
- Every call enqueues work on `stream` (a torch.cuda.Stream; default
  torch.cuda.current_stream()) and returns; none synchronizes the host
  unless it returns a host value: CompressedStream.size(), .to_host(),
  .to_bytes(), .prefix(), HostStream.tensor(), Codec.check() and
  decompress(check=True) do (they wait for that stream only). Outputs allocated by the binding come from
  torch's caching allocator on that stream.
- Decoding needs a host copy of the stream's first 296 bytes (header and
  section table, validated on the host before anything is enqueued). It is
  read without a sync from CPU tensors and bytes, and from a
  CompressedStream whose prefix was already fetched; for a stream that
  exists only on the device, pass prefix= (e.g. saved when the stream was
  offloaded) or the binding copies it, which synchronizes `stream`.
- A codec owns one device workspace (a torch uint8 tensor, grown when a
  larger cache comes; Codec.reserve() sizes it ahead, e.g. before a CUDA
  graph capture). Calls on different streams are ordered against each other
  through an event, so the workspace is never used twice at once; give each
  concurrent stream (e.g. a restore side stream) its own Codec to overlap
  them. A Codec is used by one host thread at a time (it owns a cuBLAS
  handle); codecs may share a kvtc.Basis. As with any torch work on a side stream, inputs you free before
  that stream finishes need t.record_stream(stream).
- Device-side results: the stream size (CompressedStream.size_tensor,
  int64) and the decode status (int32, 0 = OK, else a kvtc_result; the
  decoded cache is then unspecified), read on request.

Errors: kvtc.KvtcError (.code, .name as in kvtc_result) for library errors,
ValueError/TypeError for wrong tensors, CudaUnavailableError when torch,
a GPU or libkvtc_cuda.so.0 is missing (importing this module never fails
for those reasons; using it does).
"""
import collections
import ctypes as C
import os

from . import _abi, _header
from . import Basis, Geometry, _lib as _cpu_lib, library_path as _cpu_library_path, result_string
from ._loader import open_library
from .errors import KvtcError
from .layout import Layout

KVTC_ERR_INVALID_ARGUMENT = 1
KVTC_ERR_TOO_LARGE = 3
KVTC_ERR_TRUNCATED = 6
KVTC_ERR_BASIS_MISMATCH = 8
KVTC_ERR_GEOMETRY_MISMATCH = 9
KVTC_ERR_CUDA = 17

GEMM = {"bf16": _abi.GEMM_BF16, "tf32": _abi.GEMM_TF32, "fp32": _abi.GEMM_FP32}
PROJECTION = {"default": _abi.PROJ_DEFAULT, "fp8": _abi.PROJ_FP8, "fp8_decode": _abi.PROJ_FP8_DECODE,
              "fp8_encode": _abi.PROJ_FP8_ENCODE}


class CudaUnavailableError(RuntimeError):
    """kvtc.cuda cannot run here: no torch, no CUDA device, or no libkvtc_cuda."""


_runtime_cache = []


def _runtime():
    """(torch, libkvtc_cuda) loaded once; CudaUnavailableError saying what is missing."""
    if _runtime_cache:
        if isinstance(_runtime_cache[0], Exception):
            raise _runtime_cache[0]
        return _runtime_cache[0]
    try:
        try:
            import torch
        except ImportError as e:
            raise CudaUnavailableError("kvtc.cuda needs PyTorch with CUDA (%s)" % e)
        if not torch.cuda.is_available():
            raise CudaUnavailableError("kvtc.cuda: torch.cuda.is_available() is False (no GPU or no CUDA build)")
        try:
            lib, path = open_library("kvtc_cuda", "KVTC_CUDA_LIB", [os.path.dirname(_cpu_library_path)])
        except OSError as e:
            raise CudaUnavailableError("kvtc.cuda: %s" % e)
        missing = _abi.bind(lib, _abi.CUDA_FUNCTIONS)
        if missing:
            raise CudaUnavailableError("kvtc.cuda: %s lacks %s" % (path, ", ".join(missing)))
    except CudaUnavailableError as e:
        _runtime_cache.append(e)
        raise
    _runtime_cache.append((torch, lib))
    return torch, lib


def available():
    """True when torch, a CUDA device and libkvtc_cuda.so.0 are all present."""
    try:
        _runtime()
        return True
    except CudaUnavailableError:
        return False


def library_path():
    """Path or name libkvtc_cuda was opened from (loads it)."""
    _, lib = _runtime()
    return lib._name


def _check(r, what):
    if r != 0:
        raise KvtcError(r, what, result_string(r))


def _kvtc_dtype(torch, t):
    m = {torch.float32: _abi.F32, torch.float16: _abi.F16, torch.bfloat16: _abi.BF16}
    if t not in m:
        raise TypeError("dtype must be torch.float32, torch.float16 or torch.bfloat16, not %s" % t)
    return m[t]


def _torch_dtype(torch, code):
    m = {_abi.F32: torch.float32, _abi.F16: torch.float16, _abi.BF16: torch.bfloat16}
    if code not in m:
        raise KvtcError(7, "stream header", "unknown dtype %d" % code)
    return m[code]


def _host_bytes(obj, n):
    """The first n bytes of a CPU tensor / bytes-like object, without a sync
    (a CPU tensor is read in place)."""
    if hasattr(obj, "data_ptr"):
        n = min(n, obj.numel() * obj.element_size())
        return C.string_at(obj.data_ptr(), n)
    return bytes(memoryview(obj).cast("B")[:n])


class CompressedStream:
    """A stream compressed on the GPU.
    data: uint8 cuda tensor of the codec's capacity bound; the stream is
        data[:size]. size_tensor: int64 cuda tensor [1] holding the size
        (written by `stream`). Reading the size on the host syncs `stream`."""

    def __init__(self, data, size_tensor, stream, status=None):
        self.data = data
        self.size_tensor = size_tensor
        self.stream = stream
        self.status = status  # int32 device status of a layout compress (block table check), or None
        self._size = None
        self._prefix = None

    def check(self):
        """Raise KvtcError if the compress reported a device-side failure
        (a layout's bad block table: KVTC_ERR_BAD_BLOCK_TABLE; syncs)."""
        if self.status is None:
            return
        torch, _ = _runtime()
        with torch.cuda.stream(self.stream):
            code = int(self.status[0].item())
        if code:
            self._size = None
            raise KvtcError(code, "kvtc_cuda_compress_layout (device status)", result_string(code))

    @property
    def capacity(self):
        return self.data.numel()

    def size(self):
        """Exact stream size in bytes (synchronizes `stream` the first time)."""
        if self._size is None:
            torch, _ = _runtime()
            self.check()
            with torch.cuda.stream(self.stream):
                self._size = int(self.size_tensor.item())
        return self._size

    def tensor(self):
        """data[:size()] (a view; syncs for the size)."""
        return self.data[: self.size()]

    def prefix(self):
        """Host copy of the first 296 bytes (header and section table; syncs)."""
        if self._prefix is None:
            torch, _ = _runtime()
            self.check()
            with torch.cuda.stream(self.stream):
                head = self.data[: _abi.STREAM_PREFIX_BYTES].to("cpu")
            self._prefix = _host_bytes(head, _abi.STREAM_PREFIX_BYTES)
        return self._prefix

    def to_host(self, pinned=True):
        """The stream as a CPU uint8 tensor of its exact size, pinned by
        default (ready for restore_from_host); syncs `stream`."""
        torch, _ = _runtime()
        n = self.size()
        host = torch.empty(n, dtype=torch.uint8, pin_memory=pinned)
        with torch.cuda.stream(self.stream):
            host.copy_(self.data[:n], non_blocking=pinned)
        self.stream.synchronize()
        if self._prefix is None:
            self._prefix = _host_bytes(host, _abi.STREAM_PREFIX_BYTES)
        return host

    def to_bytes(self):
        """The stream as bytes (syncs)."""
        host = self.to_host(pinned=False)
        return _host_bytes(host, host.numel())

    def to_host_async(self, out=None):
        """Start the offload without waiting: copies the whole capacity (the
        bound, a little above the size) and the size tensor to pinned host
        memory on `stream` and records an event. Returns a HostStream; its
        tensor() gives the exact stream once the copy is done. out: a pinned
        uint8 CPU tensor of >= capacity bytes to copy into."""
        torch, _ = _runtime()
        if out is None:
            out = torch.empty(self.capacity, dtype=torch.uint8, pin_memory=True)
        elif out.dtype != torch.uint8 or out.device.type != "cpu" or out.numel() < self.capacity:
            raise ValueError("out must be a uint8 CPU tensor of >= %d bytes" % self.capacity)
        size = torch.empty(1, dtype=torch.int64, pin_memory=True)
        event = torch.cuda.Event()
        with torch.cuda.stream(self.stream):
            out[: self.capacity].copy_(self.data, non_blocking=True)
            size.copy_(self.size_tensor, non_blocking=True)
            event.record(self.stream)
        return HostStream(out, size, event)


class HostStream:
    """A stream on its way to (pinned) host memory (CompressedStream.to_host_async).
    buffer: the pinned tensor being filled; event: recorded after the copy."""

    def __init__(self, buffer, size_tensor, event):
        self.buffer = buffer
        self.size_tensor = size_tensor
        self.event = event

    def done(self):
        """True once the copy has finished (never blocks)."""
        return self.event.query()

    def tensor(self):
        """The stream: a view of the first size() bytes of the pinned buffer
        (waits for the copy: a host result)."""
        self.event.synchronize()
        return self.buffer[: int(self.size_tensor[0])]


class Codec:
    """The GPU codec of one basis on one device.

    basis: a kvtc.Basis (kept alive by the codec), bytes of a basis file,
        or a path to one. Bases with recomputed layers: KVTC_ERR_UNSUPPORTED.
    device: a torch device / index (default: the current CUDA device).
    ratio: the plan used by compress() (the basis' closest target ratio);
        compress(ratio=...) picks another plan per call.
    gemm: "bf16" (default), "tf32" or "fp32": the projections' arithmetic.
    projection: "default" (both GEMMs as `gemm` says), "fp8" (both with
        e4m3 operands on FP8 tensor cores), "fp8_decode" or "fp8_encode"
        (one of them): kvtc_cuda_options.projection, with gemm="bf16", a GPU
        of compute capability >= 8.9 and p, head_dim multiples of 16
        (KvtcError otherwise). Same streams, values differ by e4m3's
        precision: meant for 16x and above (README, "FP8 projections").
    fp8_fast_accum: True or False (TypeError otherwise); True needs an FP8
        projection (ValueError otherwise): cuBLASLt's fast accumulation
        (KVTC_CUDA_PROJ_FP8_FAST_ACCUM: 4-7% faster on an H200, about four
        times the e4m3 operands' added error, its KL not measured; default
        False). gemm, projection and fp8_fast_accum are checked before
        anything else, on any machine.
    n_sink, n_window, chunk_tokens: stream layout (defaults 4, 128, 256).
    max_tokens: reserve the workspace for caches of up to this many tokens
        now (otherwise it is allocated on first use and grown on demand).
    Allocation uploads the basis and synchronizes; the calls afterwards do
    not (see the module documentation)."""

    def __init__(self, basis, device=None, ratio=16.0, gemm="bf16", n_sink=4, n_window=128, chunk_tokens=256,
                 max_tokens=None, projection="default", fp8_fast_accum=False):
        # the settings are checked before the runtime, so that a wrong one is
        # named as such on any machine (test_kvtc.py checks them without a GPU)
        if gemm not in GEMM:
            raise ValueError("gemm must be one of %s" % ", ".join(sorted(GEMM)))
        if projection not in PROJECTION:
            raise ValueError("projection must be one of %s" % ", ".join(sorted(PROJECTION)))
        if not isinstance(fp8_fast_accum, bool):  # "no" or 0.0 must not mean anything
            raise TypeError("fp8_fast_accum must be True or False, not %r" % (fp8_fast_accum,))
        proj = PROJECTION[projection]
        if fp8_fast_accum:
            if proj == _abi.PROJ_DEFAULT:
                raise ValueError("fp8_fast_accum needs an FP8 projection")
            proj |= _abi.PROJ_FP8_FAST_ACCUM
        torch, lib = _runtime()
        self._torch, self._lib = torch, lib
        if isinstance(basis, (bytes, bytearray, memoryview)):
            basis = Basis.from_bytes(basis)
        elif isinstance(basis, (str, os.PathLike)):
            basis = Basis.load(basis)
        if not isinstance(basis, Basis):
            raise TypeError("basis must be a kvtc.Basis, basis file bytes or a path")
        self.basis = basis
        self.geometry = basis.geometry
        if device is None:
            device = torch.cuda.current_device()
        device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
        if device.type != "cuda":
            raise ValueError("device must be a CUDA device, not %s" % device)
        self.device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
        self.ratio = float(ratio)
        self._settings = (n_sink, n_window, chunk_tokens, GEMM[gemm], proj)
        self._handles = {}  # ratio -> kvtc_cuda_codec*; any of them decodes every plan
        self._ws = None
        self._ws_stream = None
        self._last_stream = None
        self.last_status = None
        self._handle(self.ratio)
        if max_tokens:
            self.reserve(max_tokens)

    # ---- resources ----------------------------------------------------------

    def _handle(self, ratio):
        ratio = float(ratio)
        h = self._handles.get(ratio)
        if h is None:
            o = _abi.CudaOptions()
            self._lib.kvtc_cuda_options_init(C.byref(o))
            _abi.init_struct(o)
            o.ratio = ratio
            o.n_sink, o.n_window, o.chunk_tokens, o.gemm, o.projection = self._settings
            o.device = self.device.index
            out = C.c_void_p()
            with self._torch.cuda.device(self.device):
                _check(self._lib.kvtc_cuda_codec_alloc(self.basis._h, C.byref(o), C.byref(out)),
                       "kvtc_cuda_codec_alloc")
            h = out.value
            self._handles[ratio] = h
        return h

    def close(self):
        """Free the device copies of the basis (the workspace goes with the
        tensor). Work already enqueued must be finished first: close()
        synchronizes the device."""
        if getattr(self, "_handles", None):
            self._torch.cuda.synchronize(self.device)
            for h in self._handles.values():
                self._lib.kvtc_cuda_codec_free(h)
            self._handles = {}
        self._ws = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def workspace_size(self, n_tokens, chunk_tokens=0):
        """Device bytes the workspace needs for caches of n_tokens tokens and
        streams of chunk_tokens per chunk (0 = the codec's)."""
        n = self._lib.kvtc_cuda_workspace_size(self._handle(self.ratio), int(n_tokens), int(chunk_tokens))
        if n == 0:
            raise KvtcError(KVTC_ERR_TOO_LARGE, "kvtc_cuda_workspace_size", "%d tokens overflow" % n_tokens)
        return n

    def reserve(self, max_tokens, chunk_tokens=0, stream=None):
        """Size the workspace for caches of up to max_tokens tokens now (a
        stream-ordered allocation on `stream`); call it before capturing a
        CUDA graph so no allocation happens inside."""
        s = self._stream(stream)
        self._workspace(self.workspace_size(max_tokens, chunk_tokens), s)

    def _stream(self, stream):
        torch = self._torch
        if stream is None:
            return torch.cuda.current_stream(self.device)
        if isinstance(stream, int):  # a raw cudaStream_t
            return torch.cuda.ExternalStream(stream, device=self.device)
        return stream

    def _order(self, s):
        """Make s wait for the codec's last work on another stream: the
        workspace and cuBLAS handle are used by one stream at a time."""
        last = self._last_stream
        if last is not None and last.cuda_stream != s.cuda_stream:
            ev = self._torch.cuda.Event()
            ev.record(last)
            s.wait_event(ev)
        self._last_stream = s

    def _workspace(self, need, s):
        torch = self._torch
        if self._ws is None or self._ws.numel() < need:
            with torch.cuda.stream(s):
                # the old workspace returns to the cache on its stream, after
                # the work enqueued there (record_stream below for others)
                self._ws = torch.empty(need, dtype=torch.uint8, device=self.device)
            self._ws_stream = s
        elif self._ws_stream.cuda_stream != s.cuda_stream:
            self._ws.record_stream(s)
        return self._ws

    def _call(self, h, r, what):
        """Raise KvtcError for a failed call on codec handle h, with the
        library's kvtc_cuda_last_error() text (which CUDA / cuBLAS call failed,
        where) appended to the description when there is one."""
        if r == 0:
            return
        desc = result_string(r)
        n = self._lib.kvtc_cuda_last_error(h, None, 0)
        if n:
            buf = C.create_string_buffer(n + 1)
            self._lib.kvtc_cuda_last_error(h, buf, n + 1)
            desc = "%s: %s" % (desc, buf.value.decode("utf-8", "replace"))
        raise KvtcError(r, what, desc)

    def last_error(self):
        """kvtc_cuda_last_error() of the codec: why its last call failed with
        KVTC_ERR_CUDA ("" when it did not)."""
        h = self._handle(self.ratio)
        n = self._lib.kvtc_cuda_last_error(h, None, 0)
        buf = C.create_string_buffer(n + 1)
        self._lib.kvtc_cuda_last_error(h, buf, n + 1)
        return buf.value.decode("utf-8", "replace")

    def _check_layout(self, layout):
        if not isinstance(layout, Layout):
            raise TypeError("layout must be a kvtc.cuda.Layout, not %s" % type(layout).__name__)
        if layout.device != self.device:
            raise ValueError("the layout's tensors are on %s, the codec on %s" % (layout.device, self.device))
        layout.check_geometry(self.geometry)

    def _status(self, status, s):
        torch = self._torch
        if status is None:
            with torch.cuda.stream(s):
                status = torch.empty(1, dtype=torch.int32, device=self.device)
        elif status.dtype != torch.int32 or status.device != self.device or status.numel() < 1:
            raise ValueError("status must be an int32 tensor on %s" % self.device)
        return status

    def _check_kv(self, k, v):
        torch = self._torch
        g = self.geometry
        for name, t in (("k", k), ("v", v)):
            if not isinstance(t, torch.Tensor):
                raise TypeError("%s must be a torch tensor" % name)
            if t.device != self.device:
                raise ValueError("%s is on %s, the codec on %s" % (name, t.device, self.device))
            if t.dim() != 4 or (t.shape[0], t.shape[1], t.shape[3]) != (g.n_layers, g.n_kv_heads, g.head_dim):
                raise ValueError("%s must be [L, H, T, d] = [%d, %d, T, %d], not %s"
                                 % (name, g.n_layers, g.n_kv_heads, g.head_dim, list(t.shape)))
            if not t.is_contiguous():
                raise ValueError("%s must be contiguous" % name)
        if k.shape != v.shape or k.dtype != v.dtype:
            raise ValueError("k and v must have the same shape and dtype")
        if k.shape[2] < 1:
            raise ValueError("the cache has no tokens")
        return _kvtc_dtype(torch, k.dtype), int(k.shape[2])

    def _check_positions(self, positions, n_tokens):
        if positions is None:
            return None
        torch = self._torch
        if (not isinstance(positions, torch.Tensor) or positions.dtype != torch.int64 or positions.device != self.device
                or positions.shape != (n_tokens,) or not positions.is_contiguous()):
            raise ValueError("positions must be a contiguous int64 tensor [%d] on %s" % (n_tokens, self.device))
        return positions.data_ptr()

    def _cache(self, dtype, n_tokens, k, v, positions_ptr):
        c = _abi.Cache()
        c.geometry = self.geometry
        c.dtype = dtype
        c.n_tokens = n_tokens
        c.k, c.v = k.data_ptr(), v.data_ptr()
        c.positions = positions_ptr
        return c

    # ---- encode -------------------------------------------------------------------

    def compress_bound(self, n_tokens, dtype="bf16", positions=False, ratio=None):
        """Capacity compress() allocates for such a cache (bytes)."""
        torch = self._torch
        dt = {"f32": _abi.F32, "f16": _abi.F16, "bf16": _abi.BF16}.get(dtype)
        if dt is None:
            dt = _kvtc_dtype(torch, dtype)
        c = _abi.Cache()
        c.geometry = self.geometry
        c.dtype, c.n_tokens = dt, int(n_tokens)
        c.k = c.v = 1  # compress_bound reads sizes only, never the data
        c.positions = 8 if positions else None
        cap = self._lib.kvtc_cuda_compress_bound(self._handle(ratio or self.ratio), C.byref(c))
        if cap == 0:
            raise KvtcError(KVTC_ERR_INVALID_ARGUMENT, "kvtc_cuda_compress_bound", "invalid cache or size overflow")
        return cap

    def compress(self, k=None, v=None, positions=None, stream=None, ratio=None, out=None, layout=None,
                 n_tokens=None, status=None):
        """Encode k, v ([L, H, T, d] contiguous cuda tensors of one dtype,
        keys with RoPE applied) and positions (int64 [T] cuda tensor, or None
        for 0..T-1) into a stream (entropy codec 2) on the GPU. Returns a
        CompressedStream at once; nothing synchronizes. out: a uint8 cuda
        tensor of at least compress_bound() bytes to write into (else one is
        allocated). ratio: another plan for this call (first use of a ratio
        allocates and syncs).

        layout: instead of k, v, a Layout (engine memory read in place: paged
        pools with a block table, HF per-layer lists, any strides; also
        accepted as the first argument); n_tokens: how many of its tokens to
        code (default its capacity; for paged pools, the request's length).
        The same bytes as compress() of the same values in [L, H, T, d]
        tensors. The block table is checked on the device: a bad one sets
        the int32 device status (`status`, or one allocated; kept as
        CompressedStream.status and self.last_status) to
        KVTC_ERR_BAD_BLOCK_TABLE, which CompressedStream.size() / check()
        and Codec.check() raise."""
        torch = self._torch
        if isinstance(k, Layout):
            k, layout = None, k
        if layout is not None:
            if k is not None or v is not None:
                raise TypeError("pass k, v or layout=, not both")
            return self._compress_layout(layout, n_tokens, positions, stream, ratio, out, status)
        if k is None or v is None:
            raise TypeError("compress() needs k and v, or layout=")
        dtype, n_tokens = self._check_kv(k, v)
        pos = self._check_positions(positions, n_tokens)
        h = self._handle(ratio if ratio is not None else self.ratio)
        cache = self._cache(dtype, n_tokens, k, v, pos)
        cap = self._lib.kvtc_cuda_compress_bound(h, C.byref(cache))
        if cap == 0:
            raise KvtcError(KVTC_ERR_INVALID_ARGUMENT, "kvtc_cuda_compress_bound", "invalid cache or size overflow")
        s = self._stream(stream)
        self._order(s)
        ws = self._workspace(self.workspace_size(n_tokens), s)
        with torch.cuda.stream(s):
            if out is None:
                out = torch.empty(cap, dtype=torch.uint8, device=self.device)
            elif (out.dtype != torch.uint8 or out.device != self.device or not out.is_contiguous()
                  or out.numel() < cap):
                raise ValueError("out must be a contiguous uint8 tensor of >= %d bytes on %s" % (cap, self.device))
            size = torch.empty(1, dtype=torch.int64, device=self.device)
        with torch.cuda.device(self.device):
            r = self._lib.kvtc_cuda_compress(h, C.byref(cache), out.data_ptr(), out.numel(), size.data_ptr(),
                                             ws.data_ptr(), ws.numel(), s.cuda_stream)
        self._call(h, r, "kvtc_cuda_compress")
        return CompressedStream(out, size, s)

    def _output(self, out, cap, s):
        torch = self._torch
        with torch.cuda.stream(s):
            if out is None:
                out = torch.empty(cap, dtype=torch.uint8, device=self.device)
            elif (out.dtype != torch.uint8 or out.device != self.device or not out.is_contiguous()
                  or out.numel() < cap):
                raise ValueError("out must be a contiguous uint8 tensor of >= %d bytes on %s" % (cap, self.device))
            size = torch.empty(1, dtype=torch.int64, device=self.device)
        return out, size

    def _compress_layout(self, layout, n_tokens, positions, stream, ratio, out, status):
        torch = self._torch
        self._check_layout(layout)
        n = layout.capacity if n_tokens is None else int(n_tokens)
        if n < 1:
            raise ValueError("the cache has no tokens")
        pos = self._check_positions(positions, n)
        h = self._handle(ratio if ratio is not None else self.ratio)
        cl, keep = layout.c_layout(self.geometry, n, pos)
        cap = self._lib.kvtc_cuda_compress_layout_bound(h, C.byref(cl))
        if cap == 0:
            raise KvtcError(KVTC_ERR_INVALID_ARGUMENT, "kvtc_cuda_compress_layout_bound",
                            "invalid layout or size overflow")
        s = self._stream(stream)
        self._order(s)
        ws = self._workspace(self.workspace_size(n), s)
        out, size = self._output(out, cap, s)
        status = self._status(status, s)
        self.last_status = status
        with torch.cuda.device(self.device):
            r = self._lib.kvtc_cuda_compress_layout(h, C.byref(cl), out.data_ptr(), out.numel(), size.data_ptr(),
                                                    ws.data_ptr(), ws.numel(), status.data_ptr(), s.cuda_stream)
        del keep  # the layer pointer arrays are read during the call only
        self._call(h, r, "kvtc_cuda_compress_layout")
        return CompressedStream(out, size, s, status=status)

    # ---- decode -------------------------------------------------------------------

    def _stream_source(self, src, prefix, s):
        """(device tensor of the stream, bytes available, host prefix)."""
        torch = self._torch
        if isinstance(src, CompressedStream):
            data = src.data
            if src.stream.cuda_stream != s.cuda_stream:  # made on another stream: decode after it
                s.wait_stream(src.stream)
                data.record_stream(s)
            if prefix is None:
                prefix = src._prefix if src._prefix is not None else src.prefix()
            return data, data.numel(), prefix
        if isinstance(src, (bytes, bytearray, memoryview)):
            src = torch.frombuffer(bytearray(src), dtype=torch.uint8)
        if not isinstance(src, torch.Tensor) or src.dtype != torch.uint8 or src.dim() != 1 or not src.is_contiguous():
            raise TypeError("the stream must be a CompressedStream, bytes, or a contiguous 1-D uint8 tensor")
        if src.device.type == "cpu":
            if prefix is None:
                prefix = _host_bytes(src, _abi.STREAM_PREFIX_BYTES)
            with torch.cuda.stream(s):
                data = src.to(self.device, non_blocking=src.is_pinned())
            return data, data.numel(), prefix
        if src.device != self.device:
            raise ValueError("the stream is on %s, the codec on %s" % (src.device, self.device))
        if prefix is None:  # only on the device: fetching the header syncs s
            with torch.cuda.stream(s):
                head = src[: _abi.STREAM_PREFIX_BYTES].to("cpu")
            prefix = _host_bytes(head, _abi.STREAM_PREFIX_BYTES)
        return src, src.numel(), prefix

    def stream_header(self, prefix):
        """Header fields (dict) of a stream's host prefix (docs/FORMAT.md)."""
        return _header.parse(prefix)

    def decompress(self, src, out=None, prefix=None, positions=None, stream=None, status=None, check=False,
                   tokens=None, layers=None):
        """Decode a stream into k, v on the GPU; returns (k, v), or the Layout
        given as out.

        src: a CompressedStream, a uint8 cuda tensor holding the stream (its
            first bytes; extra capacity is fine), or a CPU uint8 tensor /
            bytes (copied to the device on `stream`, asynchronously if pinned).
        out: (k, v) cuda tensors [L, H, T, d] of the stream's dtype to write
            into; a Layout (engine memory written in place: paged pools, HF
            lists, any strides; its block table is checked on the device);
            None allocates k, v (from the header's sizes).
        tokens=(a, b), layers=(a, b): decode only stream tokens [a, b) and
            layers [a, b) (partial decode: only the chunks holding those
            tokens are decoded; the values equal that slice of a full
            decode). Token i of the output is stream token a + i. Allocated
            outputs are then [layer count, H, b - a, d]; given (k, v) are
            [L, H, b - a, d] (only the range's layers written) or [layer
            count, H, b - a, d]; a Layout receives layers [a, b) (other
            layers' tensors may be None) and tokens from its slot 0.
        prefix: host bytes of the stream's first 296 bytes (see the module
            documentation for when the binding must fetch it, with a sync).
        positions: an int64 cuda tensor [T] (T = the decoded token count)
            that receives the positions.
        status: an int32 cuda tensor (>= 1 element) receiving the decode
            status; None allocates one, kept as self.last_status.
        check: synchronize and raise KvtcError if the status is not 0."""
        torch = self._torch
        s = self._stream(stream)
        data, avail, prefix = self._stream_source(src, prefix, s)
        hd = _header.parse(prefix)
        g = self.geometry
        if (hd["n_layers"], hd["n_kv_heads"], hd["head_dim"]) != (g.n_layers, g.n_kv_heads, g.head_dim):
            raise KvtcError(KVTC_ERR_BASIS_MISMATCH, "kvtc_cuda_decompress", "stream geometry differs from the basis'")
        if hd["total_size"] > avail:
            raise KvtcError(KVTC_ERR_TRUNCATED, "kvtc_cuda_decompress",
                            "stream of %d bytes, %d given" % (hd["total_size"], avail))
        n_tokens = hd["n_tokens"]
        tdtype = _torch_dtype(torch, hd["dtype"])
        if tokens is not None or layers is not None or isinstance(out, Layout):
            return self._decompress_layout(data, avail, prefix, hd, tdtype, out, positions, s, status, check,
                                           tokens, layers)
        if out is None:
            with torch.cuda.stream(s):
                shape = (g.n_layers, g.n_kv_heads, n_tokens, g.head_dim)
                out = (torch.empty(shape, dtype=tdtype, device=self.device),
                       torch.empty(shape, dtype=tdtype, device=self.device))
        k, v = out
        dtype, t = self._check_kv(k, v)
        if t != n_tokens or k.dtype != tdtype:
            raise KvtcError(KVTC_ERR_GEOMETRY_MISMATCH, "kvtc_cuda_decompress",
                            "out holds %d tokens of %s, the stream %d of %s" % (t, k.dtype, n_tokens, tdtype))
        pos = self._check_positions(positions, n_tokens)
        status = self._status(status, s)
        self.last_status = status
        cache = self._cache(dtype, n_tokens, k, v, pos)
        self._order(s)
        ws = self._workspace(self.workspace_size(n_tokens, hd["chunk_tokens"]), s)
        pre = C.create_string_buffer(bytes(prefix), len(prefix))
        h = self._handle(self.ratio)
        with torch.cuda.device(self.device):
            r = self._lib.kvtc_cuda_decompress(h, pre, len(prefix), data.data_ptr(), avail, C.byref(cache),
                                               ws.data_ptr(), ws.numel(), status.data_ptr(), s.cuda_stream)
        self._call(h, r, "kvtc_cuda_decompress")
        if check:
            self.check(status, s)
        return k, v

    def hold(self, src, prefix=None, stream=None, status=None):
        """Layer-by-layer restores (kvtc_cuda_hold): parse, checksum,
        entropy-decode and dequantize every chunk of a stream once (and check
        the section CRCs), into the codec's workspace, so that later
        decompress(held, layers=..., tokens=...) calls run only that range's
        GEMM slice and scatter (the PCA spans all layers: each layer range
        needs every coefficient); they report the hold's CRC failures too.
        src and prefix as decompress(). Returns a CompressedStream of the
        device copy of the stream: pass IT to the decodes (the hold is tied
        to that device address; a decode of another stream, any compress,
        hold of another stream or release() ends it). Stream-ordered; chunk
        and section failures set the device status (self.last_status;
        check())."""
        torch = self._torch
        s = self._stream(stream)
        data, avail, prefix = self._stream_source(src, prefix, s)
        hd = _header.parse(prefix)
        status = self._status(status, s)
        self.last_status = status
        self._order(s)
        ws = self._workspace(self.workspace_size(hd["n_tokens"], hd["chunk_tokens"]), s)
        pre = C.create_string_buffer(bytes(prefix), len(prefix))
        h = self._handle(self.ratio)
        with torch.cuda.device(self.device):
            r = self._lib.kvtc_cuda_hold(h, pre, len(prefix), data.data_ptr(), avail, ws.data_ptr(), ws.numel(),
                                         status.data_ptr(), s.cuda_stream)
        self._call(h, r, "kvtc_cuda_hold")
        with torch.cuda.stream(s):
            size = torch.full((1,), hd["total_size"], dtype=torch.int64, device=self.device)
        held = CompressedStream(data, size, s)
        held._size, held._prefix = hd["total_size"], bytes(prefix)
        return held

    def release(self):
        """End a hold (kvtc_cuda_release; host-side only)."""
        self._lib.kvtc_cuda_release(self._handle(self.ratio))

    @staticmethod
    def _span(pair, n, what):
        """(begin, end) of a decode range; KvtcError INVALID_ARGUMENT outside [0, n)."""
        if pair is None:
            return 0, n
        a, b = int(pair[0]), int(pair[1])
        if not 0 <= a < b <= n:
            raise KvtcError(KVTC_ERR_INVALID_ARGUMENT, "kvtc_cuda_decompress_layout",
                            "%s range [%d, %d) outside the stream's [0, %d)" % (what, a, b, n))
        return a, b

    def _decompress_layout(self, data, avail, prefix, hd, tdtype, out, positions, s, status, check, tokens, layers):
        torch = self._torch
        g = self.geometry
        tb, te = self._span(tokens, hd["n_tokens"], "token")
        lb, le = self._span(layers, g.n_layers, "layer")
        count, n_sel = te - tb, le - lb
        result = out
        if out is None:
            with torch.cuda.stream(s):
                shape = (n_sel, g.n_kv_heads, count, g.head_dim)
                k, v = (torch.empty(shape, dtype=tdtype, device=self.device),
                        torch.empty(shape, dtype=tdtype, device=self.device))
            out = result = (k, v)
        if not isinstance(out, Layout):
            k, v = out
            self._check_range_out(k, v, count, n_sel)
            if k.shape[0] == g.n_layers:
                layout = Layout(k, v, "LHTD")
            else:  # [layer count, ...]: layer lb + i is k[i]; layers outside the range stay NULL
                pad_l, pad_r = [None] * lb, [None] * (g.n_layers - le)
                layout = Layout(pad_l + list(k.unbind(0)) + pad_r, pad_l + list(v.unbind(0)) + pad_r, "HTD")
        else:
            layout = out
            self._check_layout(layout)
        if layout.dtype != tdtype:
            raise KvtcError(KVTC_ERR_GEOMETRY_MISMATCH, "kvtc_cuda_decompress_layout",
                            "out is %s, the stream %s" % (layout.dtype, tdtype))
        pos = self._check_positions(positions, count)
        cl, keep = layout.c_layout(g, count, pos, (lb, le))
        rng = _abi.DecodeRange(tb, te, lb, le)
        status = self._status(status, s)
        self.last_status = status
        self._order(s)
        ws = self._workspace(self.workspace_size(hd["n_tokens"], hd["chunk_tokens"]), s)
        pre = C.create_string_buffer(bytes(prefix), len(prefix))
        h = self._handle(self.ratio)
        with torch.cuda.device(self.device):
            r = self._lib.kvtc_cuda_decompress_layout(h, pre, len(prefix), data.data_ptr(), avail, C.byref(rng),
                                                      C.byref(cl), ws.data_ptr(), ws.numel(), status.data_ptr(),
                                                      s.cuda_stream)
        del keep
        self._call(h, r, "kvtc_cuda_decompress_layout")
        if check:
            self.check(status, s)
        return result

    def _check_range_out(self, k, v, count, n_sel):
        torch = self._torch
        g = self.geometry
        for name, t in (("k", k), ("v", v)):
            if not isinstance(t, torch.Tensor):
                raise TypeError("%s must be a torch tensor" % name)
            if t.device != self.device:
                raise ValueError("%s is on %s, the codec on %s" % (name, t.device, self.device))
            if (t.dim() != 4 or t.shape[0] not in (g.n_layers, n_sel)
                    or (t.shape[1], t.shape[2], t.shape[3]) != (g.n_kv_heads, count, g.head_dim)):
                raise ValueError("%s must be [%d or %d, %d, %d, %d] for this range, not %s"
                                 % (name, g.n_layers, n_sel, g.n_kv_heads, count, g.head_dim, list(t.shape)))
        if k.shape != v.shape:
            raise ValueError("k and v must have the same shape")

    def check(self, status=None, stream=None):
        """Synchronize and raise KvtcError if a decode's device status (default
        the last one) is not KVTC_OK."""
        torch = self._torch
        status = self.last_status if status is None else status
        if status is None:
            return
        s = self._stream(stream) if stream is not None else (self._last_stream or self._stream(None))
        with torch.cuda.stream(s):
            code = int(status[0].item())
        if code:
            raise KvtcError(code, "device status of the last compress_layout / decompress", result_string(code))


# ---- restore from host memory ------------------------------------------------------

Restored = collections.namedtuple("Restored", "k v event status")


def restore_from_host(codec, host_stream, out=None, side_stream=None, prefix=None, positions=None):
    """Copy a stream held in host memory (ideally a pinned uint8 CPU tensor,
    e.g. CompressedStream.to_host()) to the GPU and decode it, both on
    side_stream (default: a stream the codec keeps for restores), so that
    the caller's stream goes on computing. Nothing synchronizes the host:
    the prefix is read from host memory.

    out: (k, v) to decode into; the side stream writes them without waiting
    for the caller's stream, so pass buffers that stream is done with (or
    make side_stream wait for it first).

    Returns Restored(k, v, event, status): the caller makes its stream wait
    (torch.cuda.current_stream().wait_event(event)) before using k, v; the
    tensors are recorded on the caller's current stream, so the allocator
    keeps them until that stream is done with them. status: the int32
    device status (codec.check(status) raises on a bad stream)."""
    torch, _ = _runtime()
    consumer = torch.cuda.current_stream(codec.device)
    if side_stream is None:
        side_stream = getattr(codec, "_restore_stream", None)
        if side_stream is None:
            side_stream = codec._restore_stream = torch.cuda.Stream(device=codec.device)
    if hasattr(host_stream, "device") and host_stream.device.type != "cpu":
        raise ValueError("restore_from_host takes a stream in host memory")
    k, v = codec.decompress(host_stream, out=out, prefix=prefix, positions=positions, stream=side_stream)
    status = codec.last_status
    event = torch.cuda.Event()
    event.record(side_stream)
    if out is None:  # allocated on side_stream, used on the consumer's
        for t in (k, v, status):
            t.record_stream(consumer)
    return Restored(k, v, event, status)


# ---- calibration --------------------------------------------------------------------

def _calib_options(geometry, n_sink, n_window, max_rank, max_tokens, seed, remove_rope):
    o = _abi.CalibOptions()
    _cpu_lib.kvtc_calibrate_options_init(C.byref(o))
    _abi.init_struct(o)
    o.n_sink, o.n_window, o.max_rank, o.seed, o.remove_rope = n_sink, n_window, max_rank, seed, int(remove_rope)
    if max_tokens:
        o.max_tokens = max_tokens
    return o


def _gpu_options(lib, rank, gemm, device):
    o = _abi.CudaCalibOptions()
    lib.kvtc_cuda_calib_options_init(C.byref(o))
    _abi.init_struct(o)
    if rank:
        o.rank = rank
    o.gemm = GEMM[gemm]
    if device is not None:
        o.device = device
    return o


def _stats_dict(st):
    return {f: getattr(st, f) for f, _ in _abi.CudaCalibStats._fields_}


def _basis_from(lib, handle):
    """A kvtc.Basis from a basis made by libkvtc_cuda: serialized by the
    library that made it and loaded by libkvtc, so each library frees only
    what it allocated (they may be separate copies of the code)."""
    owner = lib if hasattr(lib, "kvtc_basis_serialize") else _cpu_lib
    for name, spec in (("kvtc_basis_serialized_size", _abi.CPU_FUNCTIONS["kvtc_basis_serialized_size"]),
                       ("kvtc_basis_serialize", _abi.CPU_FUNCTIONS["kvtc_basis_serialize"]),
                       ("kvtc_basis_free", _abi.CPU_FUNCTIONS["kvtc_basis_free"])):
        f = getattr(owner, name)
        f.restype, f.argtypes = spec[0], list(spec[1])
    try:
        n = owner.kvtc_basis_serialized_size(handle)
        buf = C.create_string_buffer(n)
        written = C.c_size_t()
        _check(owner.kvtc_basis_serialize(handle, buf, n, C.byref(written)), "kvtc_basis_serialize")
        return Basis.from_bytes(buf.raw[: written.value])
    finally:
        owner.kvtc_basis_free(handle)


def _dims_of(geometry):
    return geometry.n_layers, geometry.n_kv_heads, geometry.head_dim


def calibrate(geometry, caches, ratios, n_sink=4, n_window=128, max_rank=0, max_tokens=0, seed=1, rank=0,
              gemm="fp32", device=None, stats=None):
    """Calibrate a basis on the GPU from torch caches: an iterable of (k, v)
    or (k, v, positions) tensors [L, H, T, d] (any device, f32/f16/bf16).
    Each cache goes through kvtc_calibrator_add (which removes RoPE and
    drops sinks and window; it reads host memory, so GPU tensors are copied
    to the host one cache at a time), then kvtc_cuda_calibrator_finish does
    the covariance, PCA and DP statistics on the GPU. Synchronizes.
    stats: a dict that receives the phase times (kvtc_cuda_calib_stats)."""
    torch, lib = _runtime()
    h = C.c_void_p()
    o = _calib_options(geometry, n_sink, n_window, max_rank, max_tokens, seed, True)
    _check(_cpu_lib.kvtc_calibrator_alloc(C.byref(geometry), C.byref(o), C.byref(h)), "kvtc_calibrator_alloc")
    try:
        for item in caches:
            k, v = item[0].detach().contiguous().cpu(), item[1].detach().contiguous().cpu()
            pos = item[2].detach().to(torch.int64).contiguous().cpu() if len(item) > 2 and item[2] is not None else None
            dims = _dims_of(geometry)
            if k.dim() != 4 or (k.shape[0], k.shape[1], k.shape[3]) != dims or k.shape != v.shape or k.dtype != v.dtype:
                raise ValueError("caches must be (k, v) of [L, H, T, d] = [%d, %d, T, %d]" % dims)
            c = _abi.Cache()
            c.geometry = geometry
            c.dtype = _kvtc_dtype(torch, k.dtype)
            c.n_tokens = k.shape[2]
            c.k, c.v = k.data_ptr(), v.data_ptr()
            c.positions = pos.data_ptr() if pos is not None else None
            _check(_cpu_lib.kvtc_calibrator_add(h, C.byref(c)), "kvtc_calibrator_add")
        r = (C.c_double * len(ratios))(*ratios)
        out = C.c_void_p()
        st = _abi.CudaCalibStats()
        go = _gpu_options(lib, rank, gemm, device)
        _check(lib.kvtc_cuda_calibrator_finish(h, r, len(ratios), C.byref(go), C.byref(out), C.byref(st)),
               "kvtc_cuda_calibrator_finish")
        if stats is not None:
            stats.update(_stats_dict(st))
        return _basis_from(lib, out.value)
    finally:
        _cpu_lib.kvtc_calibrator_free(h)


def rows_from_cache(geometry, k, v, positions=None, n_sink=4, n_window=128, remove_rope=True):
    """Calibration rows of one cache, computed in torch on the cache's device:
    (k_rows, v_rows) float32 [n, p] with p = L*H*d (layer, then head, then
    dim), one row per token outside the n_sink first and n_window last
    tokens, keys un-rotated (RoPE removed as lib/transform/rope.c does:
    angles in float64, pairs (2i, 2i+1) for ROPE_NORM, (i, i + rope_dim/2)
    for ROPE_NEOX)."""
    import torch
    L, H, T, d = k.shape
    t0, t1 = min(n_sink, T), max(min(n_sink, T), T - n_window)
    kk = k[:, :, t0:t1].to(torch.float32)
    vv = v[:, :, t0:t1].to(torch.float32)
    if remove_rope and geometry.rope_type != _abi.ROPE_NONE and t1 > t0:
        rd = geometry.rope_dim or geometry.head_dim
        n = rd // 2
        if positions is None:
            pos = torch.arange(t0, t1, dtype=torch.float64, device=k.device)
        else:
            pos = positions[t0:t1].to(device=k.device, dtype=torch.float64)
        i = torch.arange(n, dtype=torch.float64, device=k.device)
        inv_freq = torch.tensor(float(geometry.rope_theta), dtype=torch.float64, device=k.device) ** (-2.0 * i / rd)
        ang = pos[:, None] * inv_freq[None, :]
        c, s = torch.cos(ang).to(torch.float32), torch.sin(ang).to(torch.float32)
        kk = kk.clone()
        if geometry.rope_type == _abi.ROPE_NORM:
            a, b = kk[..., 0:rd:2], kk[..., 1:rd:2]
        else:
            a, b = kk[..., :n], kk[..., n:rd]
        x0, x1 = a.clone(), b.clone()
        a.copy_(x0 * c + x1 * s)   # rotate by -angle
        b.copy_(-x0 * s + x1 * c)
    k_rows = kk.permute(2, 0, 1, 3).reshape(t1 - t0, L * H * d).contiguous()
    v_rows = vv.permute(2, 0, 1, 3).reshape(t1 - t0, L * H * d).contiguous()
    return k_rows, v_rows


def _on_gpu(t):
    return t.device.type == "cuda"


class _CudaArray:
    """__cuda_array_interface__ over a raw device pointer, so torch can wrap
    the calibrator's row buffer without a copy."""

    def __init__(self, ptr, rows, cols):
        self.__cuda_array_interface__ = {"shape": (rows, cols), "typestr": "<f4", "data": (ptr, False),
                                         "version": 2, "strides": None}


def calibrate_rows(geometry, k_rows, v_rows, ratios, n_sink=4, n_window=128, max_rank=0, seed=1, rank=0,
                   gemm="fp32", device=None, stats=None):
    """Calibrate from calibration rows that stay on the GPU: k_rows, v_rows
    float32 cuda tensors [n, p] (keys with RoPE already removed, e.g. from
    rows_from_cache; concatenate several caches' rows with torch.cat). The
    GPU calibrator pulls batches of rows through a ctypes callback that
    copies them on its stream (kvtc_cuda_calibrate_rows). Synchronizes.
    n_sink and n_window are recorded in the options as for any calibration;
    the rows themselves are taken as given."""
    torch, lib = _runtime()
    g = geometry
    p = g.n_layers * g.n_kv_heads * g.head_dim
    for name, t in (("k_rows", k_rows), ("v_rows", v_rows)):
        if (not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or not _on_gpu(t) or t.dim() != 2
                or t.shape[1] != p or not t.is_contiguous()):
            raise ValueError("%s must be a contiguous float32 cuda tensor [n, %d]" % (name, p))
    if k_rows.shape[0] != v_rows.shape[0] or k_rows.shape[0] == 0:
        raise ValueError("k_rows and v_rows must have the same, non-zero number of rows")
    n_rows = int(k_rows.shape[0])
    failures = []

    def fill(user, is_key, row0, n, d_rows, stream):
        try:
            src = (k_rows if is_key else v_rows)[row0:row0 + n]
            dst = torch.as_tensor(_CudaArray(d_rows, n, p), device=src.device)
            if stream:
                with torch.cuda.stream(torch.cuda.ExternalStream(stream, device=src.device)):
                    dst.copy_(src)
            else:  # the legacy default stream: copy, then wait for it
                dst.copy_(src)
                torch.cuda.current_stream(src.device).synchronize()
            return 0
        except Exception as e:  # an exception must not cross the C frames
            failures.append(e)
            return 1

    cb = _abi.CUDA_ROW_FN(fill)
    o = _calib_options(g, n_sink, n_window, max_rank, 0, seed, True)
    go = _gpu_options(lib, rank, gemm, device if device is not None else k_rows.device.index)
    r = (C.c_double * len(ratios))(*ratios)
    out = C.c_void_p()
    st = _abi.CudaCalibStats()
    with torch.cuda.device(k_rows.device):
        res = lib.kvtc_cuda_calibrate_rows(C.byref(g), C.byref(o), n_rows, cb, None, r, len(ratios), C.byref(go),
                                           C.byref(out), C.byref(st))
    if failures:
        raise failures[0]
    _check(res, "kvtc_cuda_calibrate_rows")
    if stats is not None:
        stats.update(_stats_dict(st))
    return _basis_from(lib, out.value)


__all__ = ["Codec", "CompressedStream", "CudaUnavailableError", "Geometry", "HostStream", "KvtcError", "Layout",
           "Restored",
           "available",
           "calibrate", "calibrate_rows", "library_path", "restore_from_host", "rows_from_cache"]
