/* store_fixture.h - what the store tests share: a small synthetic model and
 * basis, caches with token ids, the expected decode of a chunk computed with
 * the codec directly, and temp-directory helpers. Static: include from one
 * test file each. */
#ifndef KVTC_TESTS_STORE_FIXTURE_H
#define KVTC_TESTS_STORE_FIXTURE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvtc_store.h"
#include "synth.h"
#include "test.h"

#define FX_API static __attribute__((unused))
#define FX_C 32u /* chunk tokens of the tests: small, so that caches are small */

typedef struct fixture {
    synth_params sp;       /* the model: 2 layers x 2 heads x 32 */
    kvtc_basis *basis;
} fixture;

FX_API int fixture_init(fixture *f) {
    memset(f, 0, sizeof *f);
    kvtc_geometry g = synth_geometry(2, 2, 32, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params_init(&f->sp, &g, KVTC_DTYPE_F16, 256);
    const double ratios[] = {8.0};
    return synth_calibrate(&f->sp, 4, 4, 0, ratios, 1, &f->basis) == KVTC_OK ? 0 : -1;
}

FX_API void fixture_free(fixture *f) { kvtc_basis_free(f->basis); }

/* A cache of n tokens (data seed `seed`). Caller frees with synth_free. */
FX_API int fixture_cache(const fixture *f, uint64_t n, uint64_t seed, synth_cache *out) {
    synth_params q = f->sp;
    q.n_tokens = n;
    q.data_seed = seed;
    return synth_make(&q, out);
}

/* Token ids: seed-dependent, all distinct across seeds for practical purposes. */
FX_API void fixture_tokens(int32_t *t, uint64_t n, uint64_t seed) {
    synth_rng r = {seed * 7919 + 17};
    for (uint64_t i = 0; i < n; i++) t[i] = (int32_t)(synth_next(&r) % 32000);
}

FX_API void fixture_options(kvtc_store_options *o) {
    kvtc_store_options_init(o);
    o->chunk_tokens = FX_C;
    o->ratio = 8.0;
    o->model_name = "synthetic-2x2x32";
    o->n_threads = 2; /* chunks coded in parallel */
}

/* out = the whole chunks of the first n tokens of cache as the store codes
 * them, decoded with the codec directly (chunk 0 keeps 4 sinks raw, no
 * window, chunks after the first with their positions). out gets n tokens. */
FX_API kvtc_result fixture_reference_decode(const fixture *f, const kvtc_cache *cache, uint64_t n, kvtc_cache *out) {
    const kvtc_geometry *g = &cache->geometry;
    size_t es = kvtc_dtype_size(cache->dtype), tb = g->head_dim * es;
    uint64_t lh = (uint64_t)g->n_layers * g->n_kv_heads;
    if (synth_alloc_like(g, cache->dtype, n, 0, out)) return KVTC_ERR_OUT_OF_MEMORY;
    kvtc_cache c;
    if (synth_alloc_like(g, cache->dtype, FX_C, 1, &c)) return KVTC_ERR_OUT_OF_MEMORY;
    kvtc_result r = KVTC_OK;
    for (uint64_t i = 0; i * FX_C < n && r == KVTC_OK; i++) {
        for (uint64_t b = 0; b < lh; b++) {
            memcpy((uint8_t *)c.k + b * FX_C * tb, (uint8_t *)cache->k + (b * cache->n_tokens + i * FX_C) * tb, FX_C * tb);
            memcpy((uint8_t *)c.v + b * FX_C * tb, (uint8_t *)cache->v + (b * cache->n_tokens + i * FX_C) * tb, FX_C * tb);
        }
        for (uint32_t t = 0; t < FX_C; t++) c.positions[t] = (int64_t)(i * FX_C + t);
        int64_t *keep = c.positions;
        if (i == 0) c.positions = NULL;
        kvtc_encode_options eo;
        kvtc_encode_options_init(&eo);
        eo.ratio = 8.0;
        eo.n_sink = i == 0 ? 4 : 0;
        eo.n_window = 0;
        eo.chunk_tokens = FX_C;
        uint8_t *s = NULL;
        size_t sz = 0;
        r = synth_compress(f->basis, &eo, &c, &s, &sz);
        c.positions = NULL;
        kvtc_decoder *d = NULL;
        if (r == KVTC_OK) r = kvtc_decoder_alloc(f->basis, NULL, &d);
        if (r == KVTC_OK) r = kvtc_decompress(d, s, sz, &c);
        kvtc_decoder_free(d);
        free(s);
        c.positions = keep;
        uint64_t m = n - i * FX_C < FX_C ? n - i * FX_C : FX_C;
        for (uint64_t b = 0; b < lh && r == KVTC_OK; b++) {
            memcpy((uint8_t *)out->k + (b * n + i * FX_C) * tb, (uint8_t *)c.k + b * FX_C * tb, m * tb);
            memcpy((uint8_t *)out->v + (b * n + i * FX_C) * tb, (uint8_t *)c.v + b * FX_C * tb, m * tb);
        }
    }
    synth_cache_free(&c);
    return r;
}

/* 1 if tokens [0, n) of a and b (any token counts >= n) are bit-identical. */
FX_API int fixture_prefix_equal(const kvtc_cache *a, const kvtc_cache *b, uint64_t n) {
    for (uint64_t t = 0; t < n; t++)
        if (!synth_token_equal(a, b, t)) return 0;
    return 1;
}

/* A fresh directory under /tmp (static buffer per call site: caller copies). */
FX_API int fixture_tmpdir(char *buf, size_t cap, const char *tag) {
    snprintf(buf, cap, "/tmp/kvtc_%s_XXXXXX", tag);
    return mkdtemp(buf) ? 0 : -1;
}

static int fx_rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(p);
}

FX_API void fixture_rmtree(const char *dir) { nftw(dir, fx_rm_one, 16, FTW_DEPTH | FTW_PHYS); }

/* Open a contiguous layout over an allocated cache of n tokens. */
FX_API int fixture_out(const fixture *f, uint64_t n, kvtc_cache *c, kvtc_store_layout *l) {
    memset(l, 0, sizeof *l);
    l->struct_size = sizeof *l;
    l->kind = KVTC_STORE_LAYOUT_CONTIGUOUS;
    l->cache = c;
    return synth_alloc_like(&f->sp.g, f->sp.dtype, n, 1, c);
}

#endif
