/* result.c - names of kvtc_result values and small shared helpers. */
#include "kvtc.h"

const char *kvtc_result_string(kvtc_result r) {
    switch (r) {
    case KVTC_OK: return "success";
    case KVTC_ERR_INVALID_ARGUMENT: return "invalid argument";
    case KVTC_ERR_OUT_OF_MEMORY: return "out of memory";
    case KVTC_ERR_TOO_LARGE: return "size too large (overflow or beyond format limits)";
    case KVTC_ERR_BAD_MAGIC: return "not a kvtc stream, basis or safetensors file (bad magic)";
    case KVTC_ERR_UNSUPPORTED_VERSION: return "unsupported format version";
    case KVTC_ERR_TRUNCATED: return "input truncated";
    case KVTC_ERR_CORRUPT: return "input corrupt (checksum mismatch or inconsistent field)";
    case KVTC_ERR_BASIS_MISMATCH: return "stream was written with a different basis or plan";
    case KVTC_ERR_GEOMETRY_MISMATCH: return "cache geometry does not match";
    case KVTC_ERR_NO_PLAN: return "basis has no plan for the requested ratio";
    case KVTC_ERR_BUFFER_TOO_SMALL: return "output buffer too small";
    case KVTC_ERR_NEEDS_MODEL: return "stream needs the model to recompute its first layers";
    case KVTC_ERR_UNSUPPORTED: return "not supported by this build";
    case KVTC_ERR_NUMERIC: return "non-finite value or failed numerical decomposition";
    case KVTC_ERR_IO: return "file input/output error";
    case KVTC_ERR_CALLBACK: return "user callback failed";
    case KVTC_ERR_CUDA: return "CUDA error";
    case KVI_RESULT_COUNT: break;
    }
    return "unknown result code";
}

size_t kvtc_dtype_size(kvtc_dtype t) {
    switch (t) {
    case KVTC_DTYPE_F32: return 4;
    case KVTC_DTYPE_F16: return 2;
    case KVTC_DTYPE_BF16: return 2;
    }
    return 0;
}
