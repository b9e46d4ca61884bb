/* out_struct.h - filling the caller's growable output structs
 * (kvtc_plan_info, kvtc_stream_info: first field size_t struct_size). */
#ifndef KVTC_UTIL_OUT_STRUCT_H
#define KVTC_UTIL_OUT_STRUCT_H

#include <stddef.h>
#include <string.h>

#include "kvtc.h"

/* Copy the library's complete struct `full` (full_size bytes, struct_size
 * ignored) into the caller's `out`, whose own size is its first field:
 * only the bytes that fit, struct_size kept. A size below min_size (the
 * struct of the first release) or above full_size (this library's struct:
 * usually an uninitialized struct_size) is refused before anything is
 * written. */
static inline kvtc_result kvi_out_struct_fill(void *out, const void *full, size_t full_size, size_t min_size) {
    size_t caller_size;
    memcpy(&caller_size, out, sizeof caller_size);
    /* Larger than this library's struct: refused, not filled up to a guessed
     * size. An uninitialized struct_size is the usual cause, and writing
     * past the caller's struct would corrupt its memory. */
    if (caller_size < min_size || caller_size > full_size) return KVTC_ERR_INVALID_ARGUMENT;
    size_t n = caller_size < full_size ? caller_size : full_size;
    unsigned char *o = out;
    memcpy(o + sizeof caller_size, (const unsigned char *)full + sizeof caller_size, n - sizeof caller_size);
    if (caller_size > n) memset(o + n, 0, caller_size - n);
    return KVTC_OK;
}

/* Sizes of the output structs as kvtc 0.1.0 published them. */
#define KVI_PLAN_INFO_MIN_SIZE (offsetof(kvtc_plan_info, rank_v) + sizeof(uint32_t))
#define KVI_STREAM_INFO_MIN_SIZE (offsetof(kvtc_stream_info, raw_bytes) + sizeof(uint64_t))

#endif
