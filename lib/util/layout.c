/* layout.c - see layout.h. */
#include "util/layout.h"

#include <stdlib.h>
#include <string.h>

#include "util/cache.h"

void kvtc_cache_layout_from_cache(const kvtc_cache *c, kvtc_cache_layout *out) {
    memset(out, 0, sizeof *out);
    if (!c) return;
    const kvtc_geometry *g = &c->geometry;
    out->geometry = *g;
    out->dtype = c->dtype;
    out->n_tokens = c->n_tokens;
    int64_t d = g->head_dim, td = (int64_t)c->n_tokens * d;
    kvtc_tensor_layout t = {NULL, NULL, (int64_t)g->n_kv_heads * td, d, td, 1, 0};
    out->k = t;
    out->v = t;
    out->k.base = c->k;
    out->v.base = c->v;
    out->positions = c->positions;
    out->token_ids = c->token_ids;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static kvtc_result check_block_table(const kvtc_cache_layout *c) {
    uint64_t n = (c->n_tokens + c->block_size - 1) / c->block_size;
    if (!c->block_table || c->n_pool_blocks == 0) return KVTC_ERR_INVALID_ARGUMENT;
    for (uint64_t i = 0; i < n; i++)
        if (c->block_table[i] < 0 || (uint64_t)c->block_table[i] >= c->n_pool_blocks)
            return KVTC_ERR_BAD_BLOCK_TABLE;
    /* a repeated block would alias two token ranges: reads get the wrong
     * tokens, writes race between worker threads */
    if (n > SIZE_MAX / sizeof(int32_t)) return KVTC_ERR_TOO_LARGE;
    int32_t *sorted = malloc(sizeof(int32_t) * (size_t)n);
    if (!sorted) return KVTC_ERR_OUT_OF_MEMORY;
    memcpy(sorted, c->block_table, sizeof(int32_t) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(int32_t), cmp_i32);
    kvtc_result r = KVTC_OK;
    for (uint64_t i = 1; i < n && !r; i++)
        if (sorted[i] == sorted[i - 1]) r = KVTC_ERR_BAD_BLOCK_TABLE;
    free(sorted);
    return r;
}

/* *acc += |stride| * count, 0 on uint64 overflow. */
static int add_span(uint64_t *acc, int64_t stride, uint64_t count) {
    uint64_t a = stride < 0 ? -(uint64_t)stride : (uint64_t)stride;
    if (count && a > UINT64_MAX / count) return 0;
    a *= count;
    if (a > UINT64_MAX - *acc) return 0;
    *acc += a;
    return 1;
}

int kvi_layout_offsets_fit(const kvtc_cache_layout *c, uint32_t layer_begin, uint32_t layer_end) {
    const kvtc_geometry *g = &c->geometry;
    uint64_t es = kvtc_dtype_size(c->dtype);
    if (!es || c->n_tokens == 0 || layer_end <= layer_begin) return 1;
    for (int s = 0; s < 2; s++) {
        const kvtc_tensor_layout *t = s ? &c->v : &c->k;
        uint64_t span = 0;
        int ok = add_span(&span, t->head_stride, g->n_kv_heads - 1) && add_span(&span, t->dim_stride, g->head_dim - 1);
        if (c->block_size) {
            uint64_t in_block = c->n_tokens < c->block_size ? c->n_tokens : c->block_size;
            ok = ok && add_span(&span, t->token_stride, in_block - 1) &&
                 add_span(&span, t->block_stride, c->n_pool_blocks ? c->n_pool_blocks - 1 : 0);
        } else {
            ok = ok && add_span(&span, t->token_stride, c->n_tokens - 1);
        }
        if (!t->layers) ok = ok && add_span(&span, t->layer_stride, layer_end - 1);
        if (!ok || span > (uint64_t)INT64_MAX / es) return 0;
    }
    return 1;
}

kvtc_result kvi_layout_check(const kvtc_cache_layout *c, uint32_t layer_begin, uint32_t layer_end) {
    if (!c) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = kvi_geometry_check(&c->geometry);
    if (r) return r;
    if (!kvtc_dtype_size(c->dtype)) return KVTC_ERR_INVALID_ARGUMENT;
    if (c->n_tokens > KVTC_MAX_TOKENS) return KVTC_ERR_TOO_LARGE;
    if (layer_begin > layer_end || layer_end > c->geometry.n_layers) return KVTC_ERR_INVALID_ARGUMENT;
    if (c->n_tokens == 0) return KVTC_OK;
    for (int s = 0; s < 2; s++) {
        const kvtc_tensor_layout *t = s ? &c->v : &c->k;
        if (t->layers) {
            for (uint32_t l = layer_begin; l < layer_end; l++)
                if (!t->layers[l]) return KVTC_ERR_INVALID_ARGUMENT;
        } else if (!t->base) {
            return KVTC_ERR_INVALID_ARGUMENT;
        }
    }
    /* strides that could not address memory: the offset arithmetic would overflow */
    if (!kvi_layout_offsets_fit(c, layer_begin, layer_end)) return KVTC_ERR_INVALID_ARGUMENT;
    if (c->block_size) return check_block_table(c);
    return KVTC_OK;
}

void kvi_layout_copy_tokens(const kvtc_cache_layout *src, uint64_t src_t0, const kvtc_cache_layout *dst,
                             uint64_t dst_t0, uint64_t n, int is_key, uint32_t layer_begin, uint32_t layer_end) {
    const kvtc_geometry *g = &src->geometry;
    size_t es = kvtc_dtype_size(src->dtype);
    int64_t ss = (is_key ? &src->k : &src->v)->dim_stride, ds = (is_key ? &dst->k : &dst->v)->dim_stride;
    for (uint32_t l = layer_begin; l < layer_end; l++)
        for (uint32_t h = 0; h < g->n_kv_heads; h++)
            for (uint64_t t = 0; t < n; t++) {
                const char *a = layout_elem(src, is_key, l, src_t0 + t, h);
                char *b = layout_elem(dst, is_key, l, dst_t0 + t, h);
                if (ss == 1 && ds == 1) {
                    memcpy(b, a, es * g->head_dim);
                } else {
                    for (uint32_t j = 0; j < g->head_dim; j++)
                        memcpy(b + (int64_t)es * ds * j, a + (int64_t)es * ss * j, es);
                }
            }
}

/* One tensor's layout moved to token t0 (no block table). */
static void shift_tensor(kvtc_tensor_layout *t, int64_t bytes, uint32_t n_layers, void **layers) {
    if (t->layers) {
        for (uint32_t l = 0; l < n_layers; l++) layers[l] = t->layers[l] ? (char *)t->layers[l] + bytes : NULL;
        t->layers = layers;
    } else {
        t->base = (char *)t->base + bytes;
    }
}

kvtc_result kvi_layout_token_view(const kvtc_cache_layout *c, uint64_t t0, uint64_t n, void **k_layers,
                                  void **v_layers, kvtc_cache_layout *view) {
    *view = *c;
    view->n_tokens = n;
    view->positions = NULL;
    view->token_ids = NULL;
    if (c->block_size) {
        /* the table is the only thing that names blocks: start it at t0's block */
        if (t0 % c->block_size) return KVTC_ERR_UNSUPPORTED;
        view->block_table = c->block_table + t0 / c->block_size;
        return KVTC_OK;
    }
    int64_t es = (int64_t)kvtc_dtype_size(c->dtype);
    shift_tensor(&view->k, es * (int64_t)t0 * c->k.token_stride, c->geometry.n_layers, k_layers);
    shift_tensor(&view->v, es * (int64_t)t0 * c->v.token_stride, c->geometry.n_layers, v_layers);
    return KVTC_OK;
}
