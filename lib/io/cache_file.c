/* cache_file.c - see cache_file.h. */
#include "io/cache_file.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "util/cache.h"
#include "util/number.h"

void cache_file_free(cache_file *f) {
    if (!f) return;
    free(f->cache.k);
    free(f->cache.v);
    free(f->cache.positions);
    free(f->cache.token_ids);
    memset(f, 0, sizeof *f);
}

kvtc_result cache_file_alloc(cache_file *out, const kvtc_geometry *g, kvtc_dtype dtype, uint64_t n_tokens,
                             int with_positions, int with_token_ids) {
    memset(out, 0, sizeof *out);
    kvtc_result r = kvi_geometry_check(g);
    if (r) return r;
    if (n_tokens > KVTC_MAX_TOKENS) return KVTC_ERR_TOO_LARGE;
    uint64_t bytes = kvtc_cache_tensor_bytes(g, dtype, n_tokens);
    if ((n_tokens && !bytes) || bytes > SIZE_MAX) return KVTC_ERR_TOO_LARGE;
    out->cache.geometry = *g;
    out->cache.dtype = dtype;
    out->cache.n_tokens = n_tokens;
    out->cache.k = calloc(1, (size_t)bytes + 1);
    out->cache.v = calloc(1, (size_t)bytes + 1);
    if (with_positions) out->cache.positions = calloc(n_tokens + 1, sizeof(int64_t));
    if (with_token_ids) out->cache.token_ids = calloc(n_tokens + 1, sizeof(int32_t));
    if (!out->cache.k || !out->cache.v || (with_positions && !out->cache.positions) ||
        (with_token_ids && !out->cache.token_ids)) {
        cache_file_free(out);
        return KVTC_ERR_OUT_OF_MEMORY;
    }
    return KVTC_OK;
}

static int dtype_from_st(st_dtype t, kvtc_dtype *out) {
    switch (t) {
    case ST_F32: *out = KVTC_DTYPE_F32; return 1;
    case ST_F16: *out = KVTC_DTYPE_F16; return 1;
    case ST_BF16: *out = KVTC_DTYPE_BF16; return 1;
    default: return 0;
    }
}

static st_dtype dtype_to_st(kvtc_dtype t) {
    return t == KVTC_DTYPE_F32 ? ST_F32 : t == KVTC_DTYPE_F16 ? ST_F16 : ST_BF16;
}

static kvtc_result meta_uint(const st_file *f, const char *key, uint32_t dflt, uint32_t *out) {
    const char *s = st_meta_get(f, key);
    if (!s) { *out = dflt; return KVTC_OK; }
    uint64_t v;
    if (kvi_parse_u64(s, &v) || v > UINT32_MAX) return KVTC_ERR_CORRUPT;
    *out = (uint32_t)v;
    return KVTC_OK;
}

/* Read an I32/I64 [n] tensor into int64 (positions) or int32 (ids). */
static kvtc_result read_index_tensor(const st_tensor *t, uint64_t n, int64_t *o64, int32_t *o32) {
    if (t->n_dims != 1 || t->shape[0] != n) return KVTC_ERR_GEOMETRY_MISMATCH;
    if (t->dtype != ST_I32 && t->dtype != ST_I64) return KVTC_ERR_CORRUPT;
    const uint8_t *p = t->data;
    for (uint64_t i = 0; i < n; i++) {
        int64_t v;
        if (t->dtype == ST_I32) {
            int32_t x;
            memcpy(&x, p + 4 * i, 4);
            v = x;
        } else {
            memcpy(&v, p + 8 * i, 8);
        }
        if (o64) o64[i] = v;
        if (o32) {
            if (v < INT32_MIN || v > INT32_MAX) return KVTC_ERR_CORRUPT;
            o32[i] = (int32_t)v;
        }
    }
    return KVTC_OK;
}

kvtc_result cache_file_parse(const void *buf, size_t size, cache_file *out) {
    memset(out, 0, sizeof *out);
    st_file f;
    kvtc_result r = st_parse(buf, size, &f);
    if (r) return r;
    const st_tensor *k = st_find(&f, "k"), *v = st_find(&f, "v");
    const st_tensor *pos = st_find(&f, "positions"), *ids = st_find(&f, "token_ids");
    kvtc_geometry g;
    kvtc_dtype dt;
    memset(&g, 0, sizeof g);
    r = KVTC_ERR_CORRUPT;
    if (!k || !v) goto done;
    if (k->n_dims != 4 || v->n_dims != 4 || k->dtype != v->dtype) goto done;
    for (int i = 0; i < 4; i++)
        if (k->shape[i] != v->shape[i] || k->shape[i] > UINT32_MAX) goto done;
    if (!dtype_from_st(k->dtype, &dt)) goto done;
    g.n_layers = (uint32_t)k->shape[0];
    g.n_kv_heads = (uint32_t)k->shape[1];
    g.head_dim = (uint32_t)k->shape[3];
    const char *rt = st_meta_get(&f, "rope_type");
    if (!rt || !strcmp(rt, "norm")) g.rope_type = KVTC_ROPE_NORM;
    else if (!strcmp(rt, "neox")) g.rope_type = KVTC_ROPE_NEOX;
    else if (!strcmp(rt, "none")) g.rope_type = KVTC_ROPE_NONE;
    else goto done;
    if ((r = meta_uint(&f, "rope_dim", g.head_dim, &g.rope_dim))) goto done;
    const char *th = st_meta_get(&f, "rope_theta");
    g.rope_theta = 10000.0f;
    if (th) {
        double x;
        if (kvi_parse_decimal(th, &x) || !(x > 0)) { r = KVTC_ERR_CORRUPT; goto done; }
        g.rope_theta = (float)x;
    }
    if ((r = kvi_geometry_check(&g))) { r = r == KVTC_ERR_TOO_LARGE ? r : KVTC_ERR_CORRUPT; goto done; }
    uint64_t n = k->shape[2];
    if ((r = cache_file_alloc(out, &g, dt, n, pos != NULL, ids != NULL))) goto done;
    memcpy(out->cache.k, k->data, (size_t)k->nbytes);
    memcpy(out->cache.v, v->data, (size_t)v->nbytes);
    if (pos && (r = read_index_tensor(pos, n, out->cache.positions, NULL))) goto done;
    if (ids && (r = read_index_tensor(ids, n, NULL, out->cache.token_ids))) goto done;
    r = KVTC_OK;
done:
    st_file_free(&f);
    if (r) cache_file_free(out);
    return r;
}

kvtc_result cache_file_serialize(const kvtc_cache *c, void **buf, size_t *size) {
    *buf = NULL;
    *size = 0;
    kvtc_result r = kvi_cache_check(c);
    if (r) return r;
    st_writer *w = st_writer_alloc();
    if (!w) return KVTC_ERR_OUT_OF_MEMORY;
    const kvtc_geometry *g = &c->geometry;
    uint64_t shape[4] = {g->n_layers, g->n_kv_heads, c->n_tokens, g->head_dim};
    uint64_t shp1[1] = {c->n_tokens};
    char tmp[48];
    const char *rt = g->rope_type == KVTC_ROPE_NORM ? "norm" : g->rope_type == KVTC_ROPE_NEOX ? "neox" : "none";
    static const uint8_t empty[1] = {0};
    if ((r = st_writer_add_meta(w, "rope_type", rt))) goto done;
    kvi_format_g(tmp, sizeof tmp, 9, (double)g->rope_theta);
    if ((r = st_writer_add_meta(w, "rope_theta", tmp))) goto done;
    snprintf(tmp, sizeof tmp, "%u", kvi_geometry_rope_dim(g));
    if ((r = st_writer_add_meta(w, "rope_dim", tmp))) goto done;
    if ((r = st_writer_add_tensor(w, "k", dtype_to_st(c->dtype), 4, shape, c->k ? c->k : empty))) goto done;
    if ((r = st_writer_add_tensor(w, "v", dtype_to_st(c->dtype), 4, shape, c->v ? c->v : empty))) goto done;
    if (c->positions && (r = st_writer_add_tensor(w, "positions", ST_I64, 1, shp1, c->positions))) goto done;
    if (c->token_ids && (r = st_writer_add_tensor(w, "token_ids", ST_I32, 1, shp1, c->token_ids))) goto done;
    size_t n = st_writer_size(w);
    void *b = malloc(n ? n : 1);
    if (!b) { r = KVTC_ERR_OUT_OF_MEMORY; goto done; }
    if ((r = st_writer_write(w, b, n, size))) { free(b); goto done; }
    *buf = b;
done:
    st_writer_free(w);
    return r;
}
