"""layout.py - kvtc.cuda.Layout: an engine's KV memory described from torch
tensors, for the C kvtc_cache_layout (include/kvtc.h) read and written in
place by the GPU codec (kvtc_cuda_compress_layout / _decompress_layout).

A Layout holds the tensors (views are fine) and takes every stride from
them: torch strides are in elements, as kvtc_tensor_layout's are. Nothing is
copied. The axes of the K (and V) tensors are named by a string of letters:

    L  layer            (a single tensor for all layers; absent for a list of
                         per-layer tensors)
    H  kv head          D  head dim
    T  token            (contiguous token axis: the token count is its size)
    B  block, S  slot   (a paged pool: token t lives in block
                         block_table[t // S], slot t % S; needs block_table)
    1  an axis of size 1 (e.g. HF's batch)

Examples: kvtc's [L, H, T, d] is "LHTD"; HF per-layer [1, H, T, d] lists are
"1HTD"; vLLM per-layer pools [num_blocks, block_size, H, d] are "BSHD" (NHD)
and [num_blocks, H, block_size, d] "BHSD" (HND); llama.cpp's transposed V
viewed as [H, d, cells] is "HDT".

Because every axis size is checked against the basis' geometry and the
token count against the T axis or the block table's length, every element
the codec addresses lies inside the given tensors; block table entries
outside [0, num_blocks) or repeated are caught on the device
(KVTC_ERR_BAD_BLOCK_TABLE in the call's device status).

This module imports without torch (it reads tensors by duck typing and
imports torch only to name dtypes).
"""
import ctypes as C

from . import _abi

_LETTERS = set("LHTDBS1")


def _dtype_code(dtype):
    import torch
    m = {torch.float32: _abi.F32, torch.float16: _abi.F16, torch.bfloat16: _abi.BF16}
    if dtype not in m:
        raise TypeError("K/V dtype must be torch.float32, torch.float16 or torch.bfloat16, not %s" % dtype)
    return m[dtype]


def _is_tensor(x):
    return hasattr(x, "data_ptr") and hasattr(x, "stride") and hasattr(x, "shape")


class _Side:
    """One of K or V: per-layer base pointers or base + layer stride, and the
    element strides of each named axis."""

    def __init__(self, name, x, dims):
        self.name = name
        if isinstance(x, (list, tuple)):
            if "L" in dims:
                raise ValueError("dims %r: a list of per-layer tensors has no L axis" % dims)
            tensors = [t for t in x if t is not None]
            if not tensors:
                raise ValueError("%s: the list of layers holds no tensor" % name)
            ref = tensors[0]
            for i, t in enumerate(x):
                if t is None:
                    continue
                if not _is_tensor(t):
                    raise TypeError("%s[%d] is not a torch tensor" % (name, i))
                if (tuple(t.shape) != tuple(ref.shape) or tuple(t.stride()) != tuple(ref.stride())
                        or t.dtype != ref.dtype or t.device != ref.device):
                    raise ValueError("%s[%d]: every layer must have the shape, strides, dtype and device of the "
                                     "first (%s %s %s on %s)" % (name, i, list(ref.shape), list(ref.stride()),
                                                                 ref.dtype, ref.device))
            self.tensors = list(x)
            self.n_layers = len(x)
            self.per_layer = True
        else:
            if not _is_tensor(x):
                raise TypeError("%s must be a torch tensor or a list of per-layer tensors" % name)
            if "L" not in dims:
                raise ValueError("dims %r: a single tensor for all layers needs an L axis" % dims)
            ref = x
            self.tensors = [x]
            self.per_layer = False
        if ref.dim() != len(dims):
            raise ValueError("%s has %d axes, dims %r names %d" % (name, ref.dim(), dims, len(dims)))
        self.dtype, self.device = ref.dtype, ref.device
        self.size, self.stride = {}, {}
        for axis, (n, st) in enumerate(zip(ref.shape, ref.stride())):
            letter = dims[axis]
            if letter == "1":
                if n != 1:
                    raise ValueError("%s: axis %d is marked 1 but has size %d" % (name, axis, n))
                continue
            self.size[letter], self.stride[letter] = int(n), int(st)
        if not self.per_layer:
            self.n_layers = self.size["L"]

    def fill(self, tl, layer_range):
        """Set a kvtc_tensor_layout; returns what must outlive the C call."""
        s = self.stride
        tl.token_stride = s["T"] if "T" in s else s["S"]
        tl.head_stride, tl.dim_stride = s["H"], s["D"]
        tl.block_stride = s.get("B", 0)
        if not self.per_layer:
            tl.base = self.tensors[0].data_ptr()
            tl.layer_stride = s["L"]
            tl.layers = None
            return None
        lb, le = layer_range
        for i in range(lb, le):
            if self.tensors[i] is None:
                raise ValueError("%s: layer %d is None but inside the layer range [%d, %d)" % (self.name, i, lb, le))
        ptrs = (C.c_void_p * self.n_layers)(*[t.data_ptr() if t is not None else None for t in self.tensors])
        tl.layers = C.cast(ptrs, C.POINTER(C.c_void_p))
        tl.base, tl.layer_stride = None, 0
        return ptrs


class Layout:
    """K and V of a cache in an engine's memory (see the module documentation).
    Build it with Layout.strided, .contiguous, .hf or .vllm_paged.

    Attributes: dtype, device (of the tensors), n_layers, n_kv_heads,
    head_dim, capacity (the most tokens it can hold: the T axis' size, or
    block_table entries x block_size), block_size (0 if not paged),
    block_table (int32 tensor or None), n_pool_blocks."""

    def __init__(self, k, v, dims, block_table=None):
        dims = str(dims).upper()
        bad = set(dims) - _LETTERS
        if bad or any(dims.count(c) > 1 for c in "LHTDBS"):
            raise ValueError("dims %r: letters L, H, T, D, B, S (each at most once) and 1" % dims)
        paged = "B" in dims or "S" in dims
        if "H" not in dims or "D" not in dims:
            raise ValueError("dims %r must name the H and D axes" % dims)
        if paged and ("B" not in dims or "S" not in dims or "T" in dims):
            raise ValueError("dims %r: a paged pool has B and S axes and no T axis" % dims)
        if not paged and "T" not in dims:
            raise ValueError("dims %r must name a T axis (or B and S for a paged pool)" % dims)
        self.dims = dims
        self.k, self.v = _Side("k", k, dims), _Side("v", v, dims)
        a, b = self.k, self.v
        if a.dtype != b.dtype or a.device != b.device:
            raise TypeError("k and v must have one dtype and device (%s on %s, %s on %s)"
                            % (a.dtype, a.device, b.dtype, b.device))
        self.dtype, self.device = a.dtype, a.device
        self._dtype_code = _dtype_code(self.dtype)
        if a.n_layers != b.n_layers or a.size.get("H") != b.size.get("H") or a.size.get("D") != b.size.get("D"):
            raise ValueError("k and v differ in layers, heads or head_dim")
        self.n_layers, self.n_kv_heads, self.head_dim = a.n_layers, a.size["H"], a.size["D"]
        self.block_table = None
        self.block_size = 0
        self.n_pool_blocks = 0
        if paged:
            if a.size["S"] != b.size["S"]:
                raise ValueError("k and v pools have different block sizes (%d, %d)" % (a.size["S"], b.size["S"]))
            if block_table is None:
                raise ValueError("a paged layout needs block_table")
            import torch
            if not _is_tensor(block_table) or block_table.dtype != torch.int32:
                raise TypeError("block_table must be an int32 tensor, not %s"
                                % getattr(block_table, "dtype", type(block_table).__name__))
            if block_table.dim() != 1 or not block_table.is_contiguous():
                raise ValueError("block_table must be a contiguous 1-D tensor (one request's row), not %s"
                                 % list(block_table.shape))
            if block_table.device != self.device:
                raise ValueError("block_table is on %s, the pools on %s" % (block_table.device, self.device))
            self.block_table = block_table
            self.block_size = a.size["S"]
            self.n_pool_blocks = min(a.size["B"], b.size["B"])  # an entry must address both pools
            self.capacity = block_table.numel() * self.block_size
        else:
            if block_table is not None:
                raise ValueError("block_table given, but dims %r has no B and S axes" % dims)
            self.capacity = min(a.size["T"], b.size["T"])

    # ---- constructors ---------------------------------------------------------------

    @classmethod
    def strided(cls, k, v, dims, block_table=None):
        """K and V as tensors (or per-layer lists) whose axes `dims` names."""
        return cls(k, v, dims, block_table)

    @classmethod
    def contiguous(cls, k, v):
        """kvtc's own [L, H, T, d] tensors (any strides)."""
        return cls(k, v, "LHTD")

    @classmethod
    def hf(cls, k_layers, v_layers=None):
        """Hugging Face per-layer caches: lists of [1, heads, tokens, dim]
        tensors (one request), or, with v_layers None, a sequence of (k, v)
        pairs (the legacy past_key_values tuple)."""
        if v_layers is None:
            pairs = list(k_layers)
            k_layers, v_layers = [p[0] for p in pairs], [p[1] for p in pairs]
        return cls(list(k_layers), list(v_layers), "1HTD")

    @classmethod
    def vllm_paged(cls, k_caches, v_caches, block_table, block_size, nhd=True):
        """vLLM paged pools: per-layer lists (or one [L, ...] tensor) of
        [num_blocks, block_size, kv_heads, head_dim] (nhd=True) or
        [num_blocks, kv_heads, block_size, head_dim] (nhd=False) tensors, and
        one request's block table (an int32 tensor on the pools' device;
        token t is in block block_table[t // block_size])."""
        dims = "BSHD" if nhd else "BHSD"
        if not isinstance(k_caches, (list, tuple)):
            dims = "L" + dims
        out = cls(k_caches, v_caches, dims, block_table)
        if out.block_size != int(block_size):
            raise ValueError("block_size %d, but the pools' %s axis holds %d slots"
                             % (block_size, "second" if nhd else "third", out.block_size))
        return out

    # ---- for the codec ----------------------------------------------------------------

    def check_geometry(self, geometry):
        """ValueError unless the layout has the geometry's layers, heads, dims."""
        want = (geometry.n_layers, geometry.n_kv_heads, geometry.head_dim)
        have = (self.n_layers, self.n_kv_heads, self.head_dim)
        if have != want:
            raise ValueError("layout has %d layers, %d kv heads, head_dim %d; the basis %d, %d, %d"
                             % (have + want))

    def c_layout(self, geometry, n_tokens, positions_ptr=None, layer_range=None):
        """The kvtc_cache_layout of the first n_tokens tokens (only layers in
        layer_range = (begin, end) need tensors), and a list of objects that
        must stay alive until the C call returns."""
        self.check_geometry(geometry)
        n_tokens = int(n_tokens)
        if n_tokens < 0 or n_tokens > self.capacity:
            raise ValueError("%d tokens do not fit the layout (capacity %d%s)"
                             % (n_tokens, self.capacity, ", the block table's entries x block_size"
                                if self.block_size else ""))
        layer_range = layer_range or (0, self.n_layers)
        cl = _abi.CacheLayout()
        cl.geometry = geometry
        cl.dtype = self._dtype_code
        cl.n_tokens = n_tokens
        keep = [self.k.fill(cl.k, layer_range), self.v.fill(cl.v, layer_range)]
        if self.block_size:
            cl.block_size = self.block_size
            cl.block_table = self.block_table.data_ptr()
            cl.n_pool_blocks = self.n_pool_blocks
        cl.positions = positions_ptr
        cl.token_ids = None
        return cl, keep

    def __repr__(self):
        return "Layout(%s, %s on %s, L=%d H=%d d=%d, capacity %d%s)" % (
            self.dims, self.dtype, self.device, self.n_layers, self.n_kv_heads, self.head_dim, self.capacity,
            ", blocks of %d from a pool of %d" % (self.block_size, self.n_pool_blocks) if self.block_size else "")
