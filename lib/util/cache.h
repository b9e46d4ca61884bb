/* cache.h - validation of geometries and caches, and element access
 * (lib/util/cache_check.c). Moving tokens between engine memory and the
 * codec's rows is transform/rows.h. */
#ifndef KVTC_UTIL_CACHE_H
#define KVTC_UTIL_CACHE_H

#include <stdint.h>

#include "kvtc.h"

/* Format limits: a row of one stream holds at most KVTC_MAX_ROW values
 * (p = 80 layers x 8 heads x 128 dims = 81920 for a 70B model). */
#define KVTC_MAX_ROW (1u << 20)
#define KVTC_MAX_HEAD_DIM 4096u
#define KVTC_MAX_TOKENS (1ull << 40)

/* KVTC_OK if g is usable (dimensions in range, rope fields consistent). */
kvtc_result kvi_geometry_check(const kvtc_geometry *g);
/* rope_dim with 0 resolved to head_dim. */
uint32_t kvi_geometry_rope_dim(const kvtc_geometry *g);
int kvi_geometry_equal(const kvtc_geometry *a, const kvtc_geometry *b);
/* Values per token of one stream over layers [first_layer, n_layers). */
uint64_t kvi_row_width(const kvtc_geometry *g, uint32_t first_layer);

/* Checks a cache for encoding/decoding: geometry, dtype, pointers, sizes. */
kvtc_result kvi_cache_check(const kvtc_cache *c);

float kvi_load_elem(const void *base, kvtc_dtype t, uint64_t i);
void kvi_store_elem(void *base, kvtc_dtype t, uint64_t i, float x);

/* Position of token t (explicit or implicit). */
static inline int64_t kvi_cache_position(const kvtc_cache *c, uint64_t t) {
    return c->positions ? c->positions[t] : (int64_t)t;
}

#endif
