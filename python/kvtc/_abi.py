"""_abi.py - the C ABI of libkvtc as ctypes sees it: every struct, enum value,
callback type and function signature mirrored from include/kvtc.h and
include/kvtc_cuda.h, in this one file, so a header change is one edit here.

Structs whose C definition starts with `size_t struct_size` are filled by the
library's *_init function and then have struct_size set by init_struct()
(the library rejects a wrong size), so adding that first field to a struct
here is the only change such a header change needs.
"""
import ctypes as C

# ---- kvtc.h: results ------------------------------------------------------
# Index = the kvtc_result value (enum kvtc_result, in declaration order).
RESULT_NAMES = (
    "KVTC_OK",
    "KVTC_ERR_INVALID_ARGUMENT",
    "KVTC_ERR_OUT_OF_MEMORY",
    "KVTC_ERR_TOO_LARGE",
    "KVTC_ERR_BAD_MAGIC",
    "KVTC_ERR_UNSUPPORTED_VERSION",
    "KVTC_ERR_TRUNCATED",
    "KVTC_ERR_CORRUPT",
    "KVTC_ERR_BASIS_MISMATCH",
    "KVTC_ERR_GEOMETRY_MISMATCH",
    "KVTC_ERR_NO_PLAN",
    "KVTC_ERR_BUFFER_TOO_SMALL",
    "KVTC_ERR_NEEDS_MODEL",
    "KVTC_ERR_UNSUPPORTED",
    "KVTC_ERR_NUMERIC",
    "KVTC_ERR_IO",
    "KVTC_ERR_CALLBACK",
    "KVTC_ERR_CUDA",
    "KVTC_ERR_OUT_OF_RANGE",
    "KVTC_ERR_MODEL_MISMATCH",
    "KVTC_ERR_BAD_BLOCK_TABLE",
)

# ---- kvtc.h: enums and constants -------------------------------------------
F32, F16, BF16 = 0, 1, 2                      # kvtc_dtype
DTYPE_SIZE = {F32: 4, F16: 2, BF16: 2}
ROPE_NONE, ROPE_NORM, ROPE_NEOX = 0, 1, 2     # kvtc_rope_type
CODEC_DEFLATE, CODEC_RANS = 1, 2              # KVTC_CODEC_*

# ---- kvtc_cuda.h: enums ------------------------------------------------------
GEMM_BF16, GEMM_TF32, GEMM_FP32 = 0, 1, 2     # kvtc_cuda_gemm
PROJ_DEFAULT, PROJ_FP8_DECODE, PROJ_FP8_ENCODE, PROJ_FP8, PROJ_FP8_FAST_ACCUM = 0, 1, 2, 3, 4  # kvtc_cuda_projection

# Bytes of a stream's header + section table, including the plan section's
# entry of container 1.1 streams that carry a solved plan (272 + 24): what
# kvtc_cuda_decompress needs on the host once the codec holds the stream's
# plan (docs/FORMAT.md section 3; include/kvtc_cuda.h). Shorter streams are
# read whole.
STREAM_PREFIX_BYTES = 296


class Geometry(C.Structure):
    _fields_ = [("n_layers", C.c_uint32), ("n_kv_heads", C.c_uint32), ("head_dim", C.c_uint32),
                ("rope_dim", C.c_uint32), ("rope_type", C.c_int), ("rope_theta", C.c_float)]

    def __repr__(self):
        return "Geometry(L=%d, H=%d, d=%d, rope_dim=%d, rope_type=%d, theta=%g)" % (
            self.n_layers, self.n_kv_heads, self.head_dim, self.rope_dim, self.rope_type, self.rope_theta)


class Cache(C.Structure):
    _fields_ = [("geometry", Geometry), ("dtype", C.c_int), ("n_tokens", C.c_uint64), ("k", C.c_void_p),
                ("v", C.c_void_p), ("positions", C.c_void_p), ("token_ids", C.c_void_p)]


class TensorLayout(C.Structure):
    """kvtc_tensor_layout: where one of K or V lives (strides in elements)."""
    _fields_ = [("layers", C.POINTER(C.c_void_p)), ("base", C.c_void_p), ("layer_stride", C.c_int64),
                ("token_stride", C.c_int64), ("head_stride", C.c_int64), ("dim_stride", C.c_int64),
                ("block_stride", C.c_int64)]


class CacheLayout(C.Structure):
    """kvtc_cache_layout: a cache in engine memory (K and V share the block table)."""
    _fields_ = [("geometry", Geometry), ("dtype", C.c_int), ("n_tokens", C.c_uint64), ("k", TensorLayout),
                ("v", TensorLayout), ("block_size", C.c_uint32), ("block_table", C.c_void_p),
                ("n_pool_blocks", C.c_uint64), ("positions", C.c_void_p), ("token_ids", C.c_void_p)]


class DecodeRange(C.Structure):
    """kvtc_decode_range: stream tokens [token_begin, token_end), layers [layer_begin, layer_end)."""
    _fields_ = [("token_begin", C.c_uint64), ("token_end", C.c_uint64), ("layer_begin", C.c_uint32),
                ("layer_end", C.c_uint32)]


class PlanInfo(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("target_ratio", C.c_double), ("bits_per_token", C.c_double), ("expected_error_k", C.c_double),
                ("expected_error_v", C.c_double), ("n_groups_k", C.c_uint32), ("n_groups_v", C.c_uint32),
                ("rank_k", C.c_uint32), ("rank_v", C.c_uint32)]


class CalibOptions(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("n_sink", C.c_uint32), ("n_window", C.c_uint32),
                ("recompute_layers", C.c_uint32), ("pca_method", C.c_int), ("max_rank", C.c_uint32),
                ("max_tokens", C.c_uint64), ("seed", C.c_uint64), ("remove_rope", C.c_int),
                ("weights_k", C.POINTER(C.c_float)), ("weights_v", C.POINTER(C.c_float)),
                ("group_size_mask", C.c_uint32), ("joint_kv_budget", C.c_int), ("pca_per_layer", C.c_int),
                ("uniform_allocation", C.c_int)]


class EncodeOptions(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("ratio", C.c_double), ("n_sink", C.c_uint32),
                ("n_window", C.c_uint32), ("chunk_tokens", C.c_uint32), ("n_threads", C.c_uint32),
                ("deflate_level", C.c_int), ("entropy_codec", C.c_uint32), ("model_fingerprint", C.c_uint64)]


RECOMPUTE_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_uint32, C.c_void_p, C.c_void_p, C.c_uint64, C.c_void_p,
                           C.c_void_p)


class DecodeOptions(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("n_threads", C.c_uint32), ("recompute", RECOMPUTE_FN),
                ("recompute_user", C.c_void_p), ("model_fingerprint", C.c_uint64)]


class StreamInfo(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("version_major", C.c_uint32), ("version_minor", C.c_uint32), ("geometry", Geometry),
                ("dtype", C.c_int), ("n_tokens", C.c_uint64), ("n_sink", C.c_uint32), ("n_window", C.c_uint32),
                ("n_coded_tokens", C.c_uint64), ("n_chunks", C.c_uint32), ("chunk_tokens", C.c_uint32),
                ("recompute_layers", C.c_uint32), ("entropy_codec", C.c_uint32), ("has_positions", C.c_int),
                ("has_token_ids", C.c_int), ("basis_fingerprint", C.c_uint64), ("plan_ratio", C.c_double),
                ("k_bytes", C.c_uint64), ("v_bytes", C.c_uint64), ("stream_bytes", C.c_uint64),
                ("coded_bytes", C.c_uint64), ("raw_bytes", C.c_uint64),
                ("has_model_fingerprint", C.c_int), ("model_fingerprint", C.c_uint64)]


# ---- kvtc_cuda.h -----------------------------------------------------------------

class CudaOptions(C.Structure):
    # the whole struct of include/kvtc_cuda.h (72 bytes): kvtc_cuda_options_init
    # writes all of it, so a shorter mirror would be overrun
    _fields_ = [("struct_size", C.c_size_t), ("ratio", C.c_double), ("n_sink", C.c_uint32),
                ("n_window", C.c_uint32), ("chunk_tokens", C.c_uint32), ("gemm", C.c_int), ("device", C.c_int),
                ("profile", C.c_int), ("model_fingerprint", C.c_uint64), ("recompute", C.c_void_p),
                ("recompute_user", C.c_void_p), ("projection", C.c_int)]


class CudaCalibOptions(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("rank", C.c_uint32), ("oversample", C.c_uint32),
                ("power_iters", C.c_uint32), ("batch_rows", C.c_uint32), ("gemm", C.c_int), ("device", C.c_int)]


class CudaCalibStats(C.Structure):
    _fields_ = [("covariance_s", C.c_double), ("eigen_s", C.c_double), ("dp_stats_s", C.c_double),
                ("plans_s", C.c_double), ("total_s", C.c_double), ("rank", C.c_uint32), ("subspace", C.c_uint32),
                ("rows", C.c_uint64)]


# int (*kvtc_cuda_row_fn)(void *user, int is_key, uint64_t row0, uint64_t n, float *d_rows, cudaStream_t stream)
CUDA_ROW_FN = C.CFUNCTYPE(C.c_int, C.c_void_p, C.c_int, C.c_uint64, C.c_uint64, C.c_void_p, C.c_void_p)


def init_struct(s):
    """Set struct_size (when the struct has one) after the library's *_init."""
    if any(name == "struct_size" for name, _ in type(s)._fields_):
        s.struct_size = C.sizeof(s)
    return s


_P = C.c_void_p
_PP = C.POINTER(C.c_void_p)
_SIZE = C.c_size_t

# name: (restype, argtypes)
CPU_FUNCTIONS = {
    "kvtc_result_string": (C.c_char_p, [C.c_int]),
    "kvtc_version_string": (C.c_char_p, []),
    "kvtc_version_number": (C.c_uint, []),
    "kvtc_basis_load": (C.c_int, [_P, _SIZE, _PP]),
    "kvtc_basis_serialized_size": (_SIZE, [_P]),
    "kvtc_basis_serialize": (C.c_int, [_P, _P, _SIZE, C.POINTER(_SIZE)]),
    "kvtc_basis_free": (None, [_P]),
    "kvtc_basis_geometry": (C.POINTER(Geometry), [_P]),
    "kvtc_basis_plan_count": (C.c_uint32, [_P]),
    "kvtc_basis_plan_info": (C.c_int, [_P, C.c_uint32, C.POINTER(PlanInfo)]),
    "kvtc_basis_fingerprint": (C.c_uint64, [_P]),
    "kvtc_basis_recomputed_layers": (C.c_uint32, [_P]),
    "kvtc_calibrate_options_init": (None, [C.POINTER(CalibOptions)]),
    "kvtc_calibrator_alloc": (C.c_int, [C.POINTER(Geometry), C.POINTER(CalibOptions), _PP]),
    "kvtc_calibrator_add": (C.c_int, [_P, C.POINTER(Cache)]),
    "kvtc_calibrator_rows": (C.c_uint64, [_P]),
    "kvtc_calibrator_finish": (C.c_int, [_P, C.POINTER(C.c_double), C.c_uint32, _PP]),
    "kvtc_calibrator_free": (None, [_P]),
    "kvtc_encode_options_init": (None, [C.POINTER(EncodeOptions)]),
    "kvtc_encoder_alloc": (C.c_int, [_P, C.POINTER(EncodeOptions), _PP]),
    "kvtc_encoder_free": (None, [_P]),
    "kvtc_compress_bound": (_SIZE, [_P, C.POINTER(Cache)]),
    "kvtc_compress": (C.c_int, [_P, C.POINTER(Cache), _P, _SIZE, C.POINTER(_SIZE)]),
    "kvtc_stream_get_info": (C.c_int, [_P, _SIZE, C.POINTER(StreamInfo)]),
    "kvtc_decode_options_init": (None, [C.POINTER(DecodeOptions)]),
    "kvtc_decoder_alloc": (C.c_int, [_P, C.POINTER(DecodeOptions), _PP]),
    "kvtc_decoder_free": (None, [_P]),
    "kvtc_decompress": (C.c_int, [_P, _P, _SIZE, C.POINTER(Cache)]),
}

# Engine layouts through the CPU codec (host pointers). The binding's CPU API
# does not use them; tests bind them (bind() is optional per table) to check
# the CacheLayout mirror and the Layout strides against kvtc_compress.
CPU_LAYOUT_FUNCTIONS = {
    "kvtc_compress_layout_bound": (_SIZE, [_P, C.POINTER(CacheLayout)]),
    "kvtc_compress_layout": (C.c_int, [_P, C.POINTER(CacheLayout), _P, _SIZE, C.POINTER(_SIZE)]),
    "kvtc_decompress_layout": (C.c_int, [_P, _P, _SIZE, C.POINTER(DecodeRange), C.POINTER(CacheLayout)]),
}

# cudaStream_t is a pointer: passed as c_void_p (0 = the legacy default stream).
CUDA_FUNCTIONS = {
    "kvtc_cuda_options_init": (None, [C.POINTER(CudaOptions)]),
    "kvtc_cuda_codec_alloc": (C.c_int, [_P, C.POINTER(CudaOptions), _PP]),
    "kvtc_cuda_codec_free": (None, [_P]),
    "kvtc_cuda_workspace_size": (_SIZE, [_P, C.c_uint64, C.c_uint32]),
    "kvtc_cuda_compress_bound": (_SIZE, [_P, C.POINTER(Cache)]),
    "kvtc_cuda_compress": (C.c_int, [_P, C.POINTER(Cache), _P, _SIZE, _P, _P, _SIZE, _P]),
    "kvtc_cuda_decompress": (C.c_int, [_P, _P, _SIZE, _P, _SIZE, C.POINTER(Cache), _P, _SIZE, _P, _P]),
    "kvtc_cuda_last_error": (_SIZE, [_P, C.c_char_p, _SIZE]),
    "kvtc_cuda_stream_workspace_size": (C.c_int, [_P, _P, _SIZE, C.POINTER(_SIZE)]),
    "kvtc_cuda_compress_layout_bound": (_SIZE, [_P, C.POINTER(CacheLayout)]),
    # (codec, layout, d_out, cap, d_written, d_ws, ws_size, d_status, stream)
    "kvtc_cuda_compress_layout": (C.c_int, [_P, C.POINTER(CacheLayout), _P, _SIZE, _P, _P, _SIZE, _P, _P]),
    # (codec, h_prefix, prefix_size, d_stream, size, range, out, d_ws, ws_size, d_status, stream)
    "kvtc_cuda_decompress_layout": (C.c_int, [_P, _P, _SIZE, _P, _SIZE, C.POINTER(DecodeRange),
                                              C.POINTER(CacheLayout), _P, _SIZE, _P, _P]),
    # (codec, h_prefix, prefix_size, d_stream, size, d_ws, ws_size, d_status, stream)
    "kvtc_cuda_hold": (C.c_int, [_P, _P, _SIZE, _P, _SIZE, _P, _SIZE, _P, _P]),
    "kvtc_cuda_release": (None, [_P]),
    "kvtc_cuda_calib_options_init": (None, [C.POINTER(CudaCalibOptions)]),
    "kvtc_cuda_calibrator_finish": (C.c_int, [_P, C.POINTER(C.c_double), C.c_uint32, C.POINTER(CudaCalibOptions),
                                              _PP, C.POINTER(CudaCalibStats)]),
    "kvtc_cuda_calibrate_rows": (C.c_int, [C.POINTER(Geometry), C.POINTER(CalibOptions), C.c_uint64, CUDA_ROW_FN,
                                           _P, C.POINTER(C.c_double), C.c_uint32, C.POINTER(CudaCalibOptions), _PP,
                                           C.POINTER(CudaCalibStats)]),
}


def bind(lib, table):
    """Set restype/argtypes of every function of `table` on a loaded CDLL;
    returns the names the library lacks (the caller decides if that is fatal)."""
    missing = []
    for name, (res, args) in table.items():
        try:
            f = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        f.restype = res
        f.argtypes = list(args)
    return missing
