"""lmcache_serde.py - a kvtc serializer/deserializer pair with the shape of
LMCache's serde interface: serialize one chunk of one request's KV to bytes,
deserialize the bytes back into the engine's layout.

The chunk layout is LMCache's "KV_2LTD": one tensor [2, num_layers,
num_tokens, num_kv_heads * head_dim] (keys first), on the GPU. On the GPU
the codec reads and writes it in place through a kvtc.cuda.Layout (axes
"LTHD" of the [2, L, T, H, d] view: no copy either way); the CPU path
converts to kvtc's [L, H, T, d] around the codec (one copy each way).

Chunks are stored independently (LMCache keys each 256-token chunk by its
prefix hash), so the stream of a chunk keeps no raw sink/window tokens by
default (n_sink = n_window = 0): every token is transform-coded; the RoPE
positions of the chunk (its offset in the request) are stored in the stream
so keys are un-rotated correctly.

On a GPU the pair uses kvtc.cuda (compress on the device, one sync to learn
the size; decompress from host bytes without a sync); on the CPU (no GPU or
no torch CUDA) it uses the CPU codec with the same stream format (entropy
codec 2), so a chunk serialized on one decodes on the other.
"""
import ctypes

import torch

import kvtc

_TORCH_DTYPE = {kvtc.F32: torch.float32, kvtc.F16: torch.float16, kvtc.BF16: torch.bfloat16}


def _host_bytes(t):
    t = t.contiguous().cpu()
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())


class KvtcSerializer:
    """serialize(kv, start=0) -> bytes; kv: [2, L, T, H*d] (f32/f16/bf16)."""

    def __init__(self, basis, ratio=16.0, n_sink=0, n_window=0, device=None):
        self.basis = basis
        self.g = basis.geometry
        self.ratio = ratio
        self.n_sink, self.n_window = n_sink, n_window
        self._codec = None
        self._device = device

    def _gpu_codec(self, device):
        from kvtc import cuda as kvtc_cuda
        if self._codec is None:
            self._codec = kvtc_cuda.Codec(self.basis, device=device, ratio=self.ratio, n_sink=self.n_sink,
                                          n_window=self.n_window)
        return self._codec

    def heads_view(self, kv):
        """[2, L, T, H*d] -> a [2, L, T, H, d] view (no copy when the last axis is dense)."""
        g = self.g
        if kv.dim() != 4 or kv.shape[0] != 2 or kv.shape[1] != g.n_layers or kv.shape[3] != g.n_kv_heads * g.head_dim:
            raise ValueError("kv must be [2, %d, T, %d]" % (g.n_layers, g.n_kv_heads * g.head_dim))
        return kv.unflatten(3, (g.n_kv_heads, g.head_dim))

    def split(self, kv):
        """[2, L, T, H*d] -> k, v as contiguous [L, H, T, d]."""
        x = self.heads_view(kv).permute(0, 1, 3, 2, 4).contiguous()
        return x[0], x[1]

    def serialize(self, kv, start=0):
        if kv.is_cuda:
            from kvtc import cuda as kvtc_cuda
            x = self.heads_view(kv)
            n_tokens = x.shape[2]
            pos = torch.arange(start, start + n_tokens, dtype=torch.int64, device=kv.device)
            layout = kvtc_cuda.Layout.strided(x[0], x[1], "LTHD")  # read in place
            return self._gpu_codec(kv.device).compress(layout=layout, positions=pos).to_bytes()
        k, v = self.split(kv)
        n_tokens = k.shape[2]
        dtype = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}[k.dtype]
        return kvtc.compress(self.basis, _host_bytes(k), _host_bytes(v), ratio=self.ratio, dtype=dtype,
                             n_tokens=n_tokens, positions=range(start, start + n_tokens), n_sink=self.n_sink,
                             n_window=self.n_window, codec=kvtc.CODEC_RANS)

    # LMCache's older serde names
    to_bytes = serialize


class KvtcDeserializer:
    """deserialize(b, device) -> kv [2, L, T, H*d] in the stream's dtype."""

    def __init__(self, basis):
        self.basis = basis
        self.g = basis.geometry
        self._codec = None

    def deserialize(self, blob, device="cpu"):
        device = torch.device(device)
        g = self.g
        if device.type == "cuda":
            from kvtc import cuda as kvtc_cuda
            if self._codec is None:
                self._codec = kvtc_cuda.Codec(self.basis, device=device)
            hd = self._codec.stream_header(blob)  # from the host bytes: no sync
            kv = torch.empty(2, g.n_layers, hd["n_tokens"], g.n_kv_heads * g.head_dim,
                             dtype=_TORCH_DTYPE[hd["dtype"]], device=device)
            x = kv.view(2, g.n_layers, hd["n_tokens"], g.n_kv_heads, g.head_dim)
            self._codec.decompress(blob, out=kvtc_cuda.Layout.strided(x[0], x[1], "LTHD"))  # written in place
            return kv
        else:
            info = kvtc.stream_info(blob)
            dtype = _TORCH_DTYPE[info["dtype"]]
            kb, vb = kvtc.decompress(self.basis, blob)
            raw = (lambda x: bytes(x)) if isinstance(kb, bytearray) else (lambda x: x.tobytes())
            shape = (g.n_layers, g.n_kv_heads, info["n_tokens"], g.head_dim)
            k = torch.frombuffer(bytearray(raw(kb)), dtype=dtype).reshape(shape)
            v = torch.frombuffer(bytearray(raw(vb)), dtype=dtype).reshape(shape)
        n_tokens = k.shape[2]
        kv = torch.stack((k, v)).permute(0, 1, 3, 2, 4)  # [2, L, T, H, d]
        return kv.reshape(2, g.n_layers, n_tokens, g.n_kv_heads * g.head_dim)

    from_bytes = deserialize
