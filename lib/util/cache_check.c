/* cache_check.c - validation of geometries and caches, and element access
 * (util/cache.h). */
#include "util/cache.h"

#include <math.h>

#include "util/half.h"

kvtc_result kvi_geometry_check(const kvtc_geometry *g) {
    if (!g) return KVTC_ERR_INVALID_ARGUMENT;
    if (g->n_layers == 0 || g->n_kv_heads == 0 || g->head_dim == 0) return KVTC_ERR_INVALID_ARGUMENT;
    if (g->head_dim > KVTC_MAX_HEAD_DIM) return KVTC_ERR_TOO_LARGE;
    /* bound the factors first: 2^31 x 2^31 x 4 would wrap the product to 0 */
    if (g->n_layers > KVTC_MAX_ROW || g->n_kv_heads > KVTC_MAX_ROW) return KVTC_ERR_TOO_LARGE;
    uint64_t p = (uint64_t)g->n_layers * g->n_kv_heads * g->head_dim;
    if (p > KVTC_MAX_ROW) return KVTC_ERR_TOO_LARGE;
    if (g->rope_type != KVTC_ROPE_NONE && g->rope_type != KVTC_ROPE_NORM &&
        g->rope_type != KVTC_ROPE_NEOX)
        return KVTC_ERR_INVALID_ARGUMENT;
    if (g->rope_type != KVTC_ROPE_NONE) {
        uint32_t rd = kvi_geometry_rope_dim(g);
        if (rd > g->head_dim || rd % 2 != 0) return KVTC_ERR_INVALID_ARGUMENT;
        if (!(g->rope_theta > 0.0f) || !isfinite(g->rope_theta)) return KVTC_ERR_INVALID_ARGUMENT;
    }
    return KVTC_OK;
}

uint32_t kvi_geometry_rope_dim(const kvtc_geometry *g) { return g->rope_dim ? g->rope_dim : g->head_dim; }

int kvi_geometry_equal(const kvtc_geometry *a, const kvtc_geometry *b) {
    if (a->n_layers != b->n_layers || a->n_kv_heads != b->n_kv_heads || a->head_dim != b->head_dim)
        return 0;
    if (a->rope_type != b->rope_type) return 0;
    if (a->rope_type == KVTC_ROPE_NONE) return 1;
    return kvi_geometry_rope_dim(a) == kvi_geometry_rope_dim(b) && a->rope_theta == b->rope_theta;
}

uint64_t kvi_row_width(const kvtc_geometry *g, uint32_t first_layer) {
    if (first_layer >= g->n_layers) return 0;
    return (uint64_t)(g->n_layers - first_layer) * g->n_kv_heads * g->head_dim;
}

uint64_t kvtc_cache_tensor_bytes(const kvtc_geometry *g, kvtc_dtype dtype, uint64_t n_tokens) {
    if (!g) return 0;
    size_t es = kvtc_dtype_size(dtype);
    if (!es) return 0;
    uint64_t p = (uint64_t)g->n_layers * g->n_kv_heads * g->head_dim;
    if (p == 0) return 0;
    if (n_tokens > UINT64_MAX / p / es) return 0;
    return p * n_tokens * es;
}

kvtc_result kvi_cache_check(const kvtc_cache *c) {
    if (!c) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = kvi_geometry_check(&c->geometry);
    if (r) return r;
    if (!kvtc_dtype_size(c->dtype)) return KVTC_ERR_INVALID_ARGUMENT;
    if (c->n_tokens > KVTC_MAX_TOKENS) return KVTC_ERR_TOO_LARGE;
    if (c->n_tokens == 0) return KVTC_OK;
    if (!c->k || !c->v) return KVTC_ERR_INVALID_ARGUMENT;
    uint64_t bytes = kvtc_cache_tensor_bytes(&c->geometry, c->dtype, c->n_tokens);
    if (bytes == 0 || bytes > (uint64_t)SIZE_MAX) return KVTC_ERR_TOO_LARGE;
    return KVTC_OK;
}

float kvi_load_elem(const void *base, kvtc_dtype t, uint64_t i) {
    switch (t) {
    case KVTC_DTYPE_F32: return ((const float *)base)[i];
    case KVTC_DTYPE_F16: return kvi_f16_to_f32(((const uint16_t *)base)[i]);
    case KVTC_DTYPE_BF16: return kvi_bf16_to_f32(((const uint16_t *)base)[i]);
    }
    return 0.0f;
}

void kvi_store_elem(void *base, kvtc_dtype t, uint64_t i, float x) {
    switch (t) {
    case KVTC_DTYPE_F32: ((float *)base)[i] = x; break;
    case KVTC_DTYPE_F16: ((uint16_t *)base)[i] = kvi_f32_to_f16(x); break;
    case KVTC_DTYPE_BF16: ((uint16_t *)base)[i] = kvi_f32_to_bf16(x); break;
    }
}
