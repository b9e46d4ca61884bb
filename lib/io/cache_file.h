/* cache_file.h - the KV cache interchange file (docs/FORMAT.md): safetensors
 * with tensors k and v [n_layers, n_kv_heads, n_tokens, head_dim] (F32, F16
 * or BF16, both the same), optional positions (I32/I64 [n_tokens]), optional
 * token_ids (I32/I64 [n_tokens]), and __metadata__ rope_theta (default
 * 10000), rope_type ("norm" | "neox" | "none", default "norm") and rope_dim
 * (default head_dim). */
#ifndef KVTC_IO_CACHE_FILE_H
#define KVTC_IO_CACHE_FILE_H

#include <stddef.h>

#include "kvtc.h"

/* A cache that owns its memory. */
typedef struct cache_file {
    kvtc_cache cache; /* k, v, positions, token_ids point into owned memory */
} cache_file;

/* Parse and validate; copies the data (safetensors data need not be aligned). */
kvtc_result cache_file_parse(const void *buf, size_t size, cache_file *out);

/* Allocate an owned cache of the given shape (k, v zeroed; positions and
 * token_ids allocated when the flags ask for them). */
kvtc_result cache_file_alloc(cache_file *out, const kvtc_geometry *g, kvtc_dtype dtype, uint64_t n_tokens,
                             int with_positions, int with_token_ids);

void cache_file_free(cache_file *f);

/* Serialize any cache; *buf is malloc'd. */
kvtc_result cache_file_serialize(const kvtc_cache *c, void **buf, size_t *size);

#endif
