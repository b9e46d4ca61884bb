/* test_layout.c - engine layouts and partial decode (issue 11):
 * - compressing through each kvtc_cache_layout (per-layer HF tensors, vLLM
 *   NHD/HND paged pools with a shuffled block table, an SGLang token pool,
 *   llama.cpp rows with transposed V) gives the same bytes as the contiguous
 *   cache, and decoding into each layout gives the same values;
 * - hostile block tables give KVTC_ERR_BAD_BLOCK_TABLE before anything is
 *   read or written;
 * - partial decodes (first N tokens, a token range, a layer range, both)
 *   equal the matching slice of a full decode bit for bit.
 * Element addresses are computed here from the formula documented in
 * kvtc.h, independently of lib/util/layout.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc.h"
#include "synth.h"
#include "test.h"

enum { L = 4, H = 2, D = 16, N_TOK = 700, SINK = 4, WIN = 32, CHUNK = 64 };

/* ---- the documented address formula ------------------------------------- */

static uint8_t *elem_addr(const kvtc_cache_layout *c, int is_key, uint32_t l, uint64_t t, uint32_t h, uint32_t j) {
    const kvtc_tensor_layout *tl = is_key ? &c->k : &c->v;
    int64_t es = (int64_t)kvtc_dtype_size(c->dtype);
    uint8_t *base = tl->layers ? (uint8_t *)tl->layers[l] : (uint8_t *)tl->base + es * (int64_t)l * tl->layer_stride;
    int64_t slot = c->block_size ? (int64_t)c->block_table[t / c->block_size] * tl->block_stride +
                                       (int64_t)(t % c->block_size) * tl->token_stride
                                 : (int64_t)t * tl->token_stride;
    return base + es * (slot + (int64_t)h * tl->head_stride + (int64_t)j * tl->dim_stride);
}

static uint8_t *cache_addr(const kvtc_cache *c, int is_key, uint32_t l, uint64_t t, uint32_t h, uint32_t j) {
    size_t es = kvtc_dtype_size(c->dtype);
    uint64_t off = (((uint64_t)l * H + h) * c->n_tokens + t) * D + j;
    return (uint8_t *)(is_key ? c->k : c->v) + off * es;
}

/* Copy tokens [0, n) of every layer of src into the layout. */
static void fill_layout(const kvtc_cache *src, const kvtc_cache_layout *dst) {
    size_t es = kvtc_dtype_size(src->dtype);
    for (int s = 0; s < 2; s++)
        for (uint32_t l = 0; l < L; l++)
            for (uint64_t t = 0; t < dst->n_tokens; t++)
                for (uint32_t h = 0; h < H; h++)
                    for (uint32_t j = 0; j < D; j++) memcpy(elem_addr(dst, !s, l, t, h, j), cache_addr(src, !s, l, t, h, j), es);
}

/* 1 if layers [la, lb) of layout tokens [0, n) equal ref tokens [t0, t0+n). */
static int layout_equals(const kvtc_cache_layout *c, const kvtc_cache *ref, uint64_t t0, uint32_t la, uint32_t lb) {
    size_t es = kvtc_dtype_size(ref->dtype);
    for (int s = 0; s < 2; s++)
        for (uint32_t l = la; l < lb; l++)
            for (uint64_t t = 0; t < c->n_tokens; t++)
                for (uint32_t h = 0; h < H; h++)
                    for (uint32_t j = 0; j < D; j++)
                        if (memcmp(elem_addr(c, !s, l, t, h, j), cache_addr(ref, !s, l, t0 + t, h, j), es)) return 0;
    return 1;
}

/* ---- engine layouts ------------------------------------------------------- */

typedef struct engine_mem {
    kvtc_cache_layout lay;
    void *k_layers[L], *v_layers[L];
    void *pool_k, *pool_v;
    int32_t *table;
} engine_mem;

static void engine_free(engine_mem *m) {
    free(m->pool_k);
    free(m->pool_v);
    free(m->table);
    memset(m, 0, sizeof *m);
}

static void shuffled_table(int32_t *t, uint64_t n_used, uint64_t n_pool, uint64_t seed) {
    int32_t *all = malloc(sizeof(int32_t) * n_pool);
    for (uint64_t i = 0; i < n_pool; i++) all[i] = (int32_t)i;
    synth_rng r = {seed};
    for (uint64_t i = n_pool - 1; i > 0; i--) {
        uint64_t j = synth_next(&r) % (i + 1);
        int32_t x = all[i]; all[i] = all[j]; all[j] = x;
    }
    memcpy(t, all, sizeof(int32_t) * n_used);
    free(all);
}

typedef enum { LAY_HF, LAY_NHD, LAY_HND, LAY_SGLANG, LAY_LLAMA, LAY_COUNT } layout_kind;
static const char *layout_names[LAY_COUNT] = {"HF [batch,H,T,d]", "vLLM NHD paged", "vLLM HND paged",
                                             "SGLang token pool", "llama.cpp rows, V transposed"};

/* Engine memory for n tokens in layout `kind`, zeroed. Per-layer pointers
 * (layers[]) for HF, llama.cpp and SGLang; one allocation with a layer
 * stride for the vLLM pools. */
static int engine_alloc(layout_kind kind, kvtc_dtype dt, uint64_t n, uint64_t seed, engine_mem *m) {
    memset(m, 0, sizeof *m);
    kvtc_cache_layout *c = &m->lay;
    c->geometry = synth_geometry(L, H, D, KVTC_ROPE_NORM, 0, 10000.0f);
    c->dtype = dt;
    c->n_tokens = n;
    size_t es = kvtc_dtype_size(dt);
    uint64_t per_layer = 0;
    switch (kind) {
    case LAY_HF: { /* [batch=2][H][Tcap][d], this sequence is batch row 1 */
        uint64_t tcap = n + 37;
        per_layer = 2 * H * tcap * D;
        kvtc_tensor_layout t = {m->k_layers, NULL, 0, D, (int64_t)(tcap * D), 1, 0};
        c->k = t;
        c->v = t;
        c->v.layers = m->v_layers;
        /* bases point at batch row 1 */
        m->pool_k = calloc(L * per_layer, es);
        m->pool_v = calloc(L * per_layer, es);
        for (uint32_t l = 0; l < L; l++) {
            m->k_layers[l] = (uint8_t *)m->pool_k + es * (l * per_layer + H * tcap * D);
            m->v_layers[l] = (uint8_t *)m->pool_v + es * (l * per_layer + H * tcap * D);
        }
        return m->pool_k && m->pool_v ? 0 : -1;
    }
    case LAY_NHD:
    case LAY_HND: { /* per layer [2][B][S][H][d] (NHD) or [2][B][H][S][d] (HND) */
        uint32_t S = 16;
        uint64_t used = (n + S - 1) / S, pool = used + 9;
        m->table = malloc(sizeof(int32_t) * used);
        shuffled_table(m->table, used, pool, seed);
        per_layer = 2 * pool * S * H * D;
        m->pool_k = calloc(L * per_layer, es);
        if (!m->pool_k || !m->table) return -1;
        int nhd = kind == LAY_NHD;
        kvtc_tensor_layout t = {NULL, m->pool_k, (int64_t)per_layer, nhd ? H * D : D, nhd ? D : S * D, 1,
                                (int64_t)S * H * D};
        c->k = t;
        c->v = t;
        c->v.base = (uint8_t *)m->pool_k + es * pool * S * H * D; /* the V half of each layer */
        c->block_size = S;
        c->block_table = m->table;
        c->n_pool_blocks = pool;
        return 0;
    }
    case LAY_SGLANG: { /* per layer [slots][H][d], token t in slot table[t] */
        uint64_t slots = n + 100;
        m->table = malloc(sizeof(int32_t) * n);
        shuffled_table(m->table, n, slots, seed);
        m->pool_k = calloc(L * slots * H * D, es);
        m->pool_v = calloc(L * slots * H * D, es);
        if (!m->pool_k || !m->pool_v || !m->table) return -1;
        for (uint32_t l = 0; l < L; l++) {
            m->k_layers[l] = (uint8_t *)m->pool_k + es * l * slots * H * D;
            m->v_layers[l] = (uint8_t *)m->pool_v + es * l * slots * H * D;
        }
        kvtc_tensor_layout t = {m->k_layers, NULL, 0, H * D, D, 1, H * D};
        c->k = t;
        c->v = t;
        c->v.layers = m->v_layers;
        c->block_size = 1;
        c->block_table = m->table;
        c->n_pool_blocks = slots;
        return 0;
    }
    case LAY_LLAMA: { /* K [cells][H*d]; V transposed [H*d][cells]; sequence at cell 5 */
        uint64_t cells = n + 20, first = 5;
        m->pool_k = calloc(L * cells * H * D, es);
        m->pool_v = calloc(L * cells * H * D, es);
        if (!m->pool_k || !m->pool_v) return -1;
        for (uint32_t l = 0; l < L; l++) {
            m->k_layers[l] = (uint8_t *)m->pool_k + es * (l * cells * H * D + first * H * D);
            m->v_layers[l] = (uint8_t *)m->pool_v + es * (l * cells * H * D + first);
        }
        kvtc_tensor_layout tk = {m->k_layers, NULL, 0, H * D, D, 1, 0};
        kvtc_tensor_layout tv = {m->v_layers, NULL, 0, 1, (int64_t)(D * cells), (int64_t)cells, 0};
        c->k = tk;
        c->v = tv;
        return 0;
    }
    default: return -1;
    }
}

/* ---- fixtures -------------------------------------------------------------- */

static kvtc_basis *g_basis;
static synth_cache g_src;
static uint8_t *g_stream;
static size_t g_size;
static kvtc_cache g_full; /* full decode of g_stream */

static void encode_opts(kvtc_encode_options *o) {
    kvtc_encode_options_init(o);
    o->ratio = 16;
    o->n_sink = SINK;
    o->n_window = WIN;
    o->chunk_tokens = CHUNK;
    o->n_threads = 2;
}

static kvtc_result decode_into(const kvtc_decode_range *rg, kvtc_cache_layout *out, uint32_t threads) {
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.n_threads = threads;
    kvtc_decoder *d = NULL;
    kvtc_result r = kvtc_decoder_alloc(g_basis, &dopt, &d);
    if (!r) r = kvtc_decompress_layout(d, g_stream, g_size, rg, out);
    kvtc_decoder_free(d);
    return r;
}

static void test_layouts_round_trip(void) {
    kvtc_encode_options eo;
    encode_opts(&eo);
    kvtc_encoder *e = NULL;
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &e) == KVTC_OK);
    for (int k = 0; k < LAY_COUNT; k++) {
        engine_mem m;
        CHECK(engine_alloc((layout_kind)k, g_src.c.dtype, N_TOK, 77 + k, &m) == 0);
        fill_layout(&g_src.c, &m.lay);
        size_t cap = kvtc_compress_layout_bound(e, &m.lay), w = 0;
        CHECK_MSG(cap == kvtc_compress_bound(e, &g_src.c), "%s", layout_names[k]);
        uint8_t *buf = malloc(cap);
        CHECK_MSG(kvtc_compress_layout(e, &m.lay, buf, cap, &w) == KVTC_OK, "%s", layout_names[k]);
        CHECK_MSG(w == g_size && memcmp(buf, g_stream, w) == 0, "%s: same bytes as the contiguous cache",
                  layout_names[k]);
        free(buf);
        engine_mem o;
        CHECK(engine_alloc((layout_kind)k, g_src.c.dtype, N_TOK, 991 + k, &o) == 0);
        CHECK_MSG(decode_into(NULL, &o.lay, 2) == KVTC_OK, "%s", layout_names[k]);
        CHECK_MSG(layout_equals(&o.lay, &g_full, 0, 0, L), "%s: decode equals the contiguous decode", layout_names[k]);
        engine_free(&o);
        engine_free(&m);
    }
    kvtc_encoder_free(e);
}

static void test_hostile_tables(void) {
    kvtc_encode_options eo;
    encode_opts(&eo);
    kvtc_encoder *e = NULL;
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &e) == KVTC_OK);
    size_t cap = kvtc_compress_bound(e, &g_src.c), w = 0;
    uint8_t *buf = malloc(cap);
    engine_mem m;
    CHECK(engine_alloc(LAY_NHD, g_src.c.dtype, N_TOK, 5, &m) == 0);
    fill_layout(&g_src.c, &m.lay);
    uint64_t used = (N_TOK + 15) / 16;
    struct { const char *what; uint64_t i; int32_t v; } bad[] = {
        {"block past the pool", 3, (int32_t)m.lay.n_pool_blocks},
        {"negative block", 0, -1},
        {"duplicate block", used - 1, 0},
        {"huge block", 7, INT32_MAX},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t keep = m.table[bad[i].i];
        m.table[bad[i].i] = bad[i].v == 0 ? m.table[1] : bad[i].v; /* duplicate: repeat entry 1 */
        CHECK_MSG(kvtc_compress_layout(e, &m.lay, buf, cap, &w) == KVTC_ERR_BAD_BLOCK_TABLE, "encode: %s",
                  bad[i].what);
        CHECK_MSG(kvtc_compress_layout_bound(e, &m.lay) == 0, "bound: %s", bad[i].what);
        CHECK_MSG(decode_into(NULL, &m.lay, 1) == KVTC_ERR_BAD_BLOCK_TABLE, "decode: %s", bad[i].what);
        m.table[bad[i].i] = keep;
    }
    /* the table is checked only as far as the tokens reach: a shorter cache
     * ignores later (bad) entries */
    m.table[used - 1] = -5;
    m.lay.n_tokens = (used - 1) * 16;
    CHECK(kvtc_compress_layout(e, &m.lay, buf, cap, &w) == KVTC_OK);
    m.lay.n_tokens = N_TOK;
    CHECK(kvtc_compress_layout(e, &m.lay, buf, cap, &w) == KVTC_ERR_BAD_BLOCK_TABLE);
    /* paged without a table or pool */
    m.lay.block_table = NULL;
    CHECK(kvtc_compress_layout(e, &m.lay, buf, cap, &w) == KVTC_ERR_INVALID_ARGUMENT);
    m.lay.block_table = m.table;
    m.lay.n_pool_blocks = 0;
    CHECK(kvtc_compress_layout(e, &m.lay, buf, cap, &w) == KVTC_ERR_INVALID_ARGUMENT);
    engine_free(&m);
    /* a NULL layer pointer */
    CHECK(engine_alloc(LAY_HF, g_src.c.dtype, N_TOK, 5, &m) == 0);
    m.v_layers[2] = NULL;
    CHECK(kvtc_compress_layout(e, &m.lay, buf, cap, &w) == KVTC_ERR_INVALID_ARGUMENT);
    engine_free(&m);
    free(buf);
    kvtc_encoder_free(e);
}

/* A contiguous output cache for a partial decode: n tokens. */
static void alloc_out(uint64_t n, kvtc_cache *c, kvtc_cache_layout *lay) {
    synth_alloc_like(&g_src.c.geometry, g_src.c.dtype, n, 1, c);
    kvtc_cache_layout_from_cache(c, lay);
}

static void test_partial(void) {
    struct { uint64_t b, e; uint32_t la, lb; } cases[] = {
        {0, 1, 0, 0},                       /* one sink token, no chunk */
        {0, SINK, 0, 0},
        {0, SINK + 1, 0, 0},                /* the first coded token: one chunk */
        {0, SINK + 5 * CHUNK, 0, 0},        /* exactly 5 chunks */
        {0, SINK + 5 * CHUNK + 7, 0, 0},
        {0, N_TOK - 10, 0, 0},              /* into the window */
        {0, N_TOK, 0, 0},
        {200, 450, 0, 0},                   /* a middle range */
        {SINK + 3 * CHUNK, SINK + 4 * CHUNK, 0, 0}, /* chunk 3 exactly */
        {N_TOK - WIN, N_TOK, 0, 0},         /* the window only */
        {0, 0, 1, 3},                       /* layers 1..2, all tokens */
        {0, 0, 3, 4},
        {0, 0, 0, 1},
        {0, 300, 2, 3},                     /* both */
        {123, 650, 1, 2},
        {0, 0, 2, 2},                       /* an empty layer range: nothing but positions */
        {100, 300, L, L},                   /* ... at the end (kvtc_cuda_decompress_layout agrees) */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kvtc_decode_range rg;
        kvtc_decode_range_init(&rg);
        rg.token_begin = cases[i].b;
        rg.token_end = cases[i].e;
        rg.layer_begin = cases[i].la;
        rg.layer_end = cases[i].lb;
        uint64_t e = rg.token_end ? rg.token_end : N_TOK;
        uint32_t lb = rg.layer_end ? rg.layer_end : L;
        kvtc_cache c;
        kvtc_cache_layout lay;
        alloc_out(e - rg.token_begin, &c, &lay);
        kvtc_result r = decode_into(&rg, &lay, 1 + (uint32_t)(i % 2));
        CHECK_MSG(r == KVTC_OK, "case %zu: %s", i, kvtc_result_string(r));
        CHECK_MSG(layout_equals(&lay, &g_full, rg.token_begin, rg.layer_begin, lb),
                  "case %zu: tokens [%llu, %llu) layers [%u, %u) equal the full decode", i,
                  (unsigned long long)rg.token_begin, (unsigned long long)e, rg.layer_begin, lb);
        /* layers outside the range are untouched (still zero) */
        int untouched = 1;
        for (uint32_t l = 0; l < L; l++) {
            if (l >= rg.layer_begin && l < lb) continue;
            for (uint64_t t = 0; t < c.n_tokens && untouched; t++)
                for (uint32_t j = 0; j < D; j++) untouched &= *cache_addr(&c, 1, l, t, 0, j) == 0;
        }
        CHECK_MSG(untouched, "case %zu: other layers untouched", i);
        int pos_ok = 1;
        for (uint64_t t = 0; t < c.n_tokens; t++) pos_ok &= c.positions[t] == (int64_t)(rg.token_begin + t);
        CHECK(pos_ok);
        synth_cache_free(&c);
    }
    /* ranges outside the stream, and an output of the wrong size */
    kvtc_cache c;
    kvtc_cache_layout lay;
    alloc_out(10, &c, &lay);
    kvtc_decode_range rg;
    kvtc_decode_range_init(&rg);
    rg.token_begin = N_TOK - 5;
    rg.token_end = N_TOK + 5;
    CHECK(decode_into(&rg, &lay, 1) == KVTC_ERR_INVALID_ARGUMENT);
    rg.token_begin = 20;
    rg.token_end = 10;
    CHECK(decode_into(&rg, &lay, 1) == KVTC_ERR_INVALID_ARGUMENT);
    kvtc_decode_range_init(&rg);
    rg.token_end = 10;
    rg.layer_begin = 2;
    rg.layer_end = L + 1;
    CHECK(decode_into(&rg, &lay, 1) == KVTC_ERR_INVALID_ARGUMENT);
    rg.layer_end = 0;
    rg.token_end = 11; /* 11 tokens into a 10-token cache */
    CHECK(decode_into(&rg, &lay, 1) == KVTC_ERR_GEOMETRY_MISMATCH);
    synth_cache_free(&c);
}


/* ---- recomputed layers in partial decodes ---------------------------------- */

typedef struct recompute_ctx {
    const kvtc_cache *src;
    uint64_t last_n;
    int calls;
} recompute_ctx;

/* The "model": the source cache's values of layers [0, n_layers), tokens [0, n). */
static int recompute_cb(void *user, uint32_t n_layers, const int32_t *ids, const int64_t *pos, uint64_t n,
                        float *k_out, float *v_out) {
    recompute_ctx *rc = user;
    (void)ids;
    (void)pos;
    rc->calls++;
    rc->last_n = n;
    const kvtc_cache *c = rc->src;
    for (uint32_t l = 0; l < n_layers; l++)
        for (uint32_t h = 0; h < H; h++)
            for (uint64_t t = 0; t < n; t++)
                for (uint32_t j = 0; j < D; j++) {
                    uint64_t i = (((uint64_t)l * H + h) * n + t) * D + j;
                    k_out[i] = (float)synth_elem(c, 1, l, h, t, j);
                    v_out[i] = (float)synth_elem(c, 0, l, h, t, j);
                }
    return 0;
}

static void test_partial_recompute(void) {
    kvtc_geometry g = synth_geometry(L, H, D, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F32, 400);
    kvtc_calibrate_options o;
    kvtc_calibrate_options_init(&o);
    o.n_sink = SINK;
    o.n_window = WIN;
    o.recompute_layers = 1;
    kvtc_calibrator *cal = NULL;
    CHECK(kvtc_calibrator_alloc(&g, &o, &cal) == KVTC_OK);
    for (int i = 0; i < 2; i++) {
        synth_cache cc;
        sp.data_seed = 500 + i;
        CHECK(synth_make(&sp, &cc) == 0);
        CHECK(kvtc_calibrator_add(cal, &cc.c) == KVTC_OK);
        synth_free(&cc);
    }
    static const double r16[] = {16};
    kvtc_basis *b = NULL;
    CHECK(kvtc_calibrator_finish(cal, r16, 1, &b) == KVTC_OK);
    kvtc_calibrator_free(cal);
    if (!b) return;
    synth_cache sc;
    sp.data_seed = 9;
    CHECK(synth_make(&sp, &sc) == 0);
    sc.c.token_ids = malloc(sizeof(int32_t) * 400);
    for (int t = 0; t < 400; t++) sc.c.token_ids[t] = 3 * t;
    kvtc_encode_options eo;
    encode_opts(&eo);
    uint8_t *s = NULL;
    size_t n = 0;
    CHECK(synth_compress(b, &eo, &sc.c, &s, &n) == KVTC_OK);
    recompute_ctx rc = {&sc.c, 0, 0};
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.recompute = recompute_cb;
    dopt.recompute_user = &rc;
    kvtc_decoder *dm = NULL, *dn = NULL;
    CHECK(kvtc_decoder_alloc(b, &dopt, &dm) == KVTC_OK && kvtc_decoder_alloc(b, NULL, &dn) == KVTC_OK);
    kvtc_cache full;
    kvtc_cache_layout fl;
    synth_alloc_like(&g, KVTC_DTYPE_F32, 400, 1, &full);
    kvtc_cache_layout_from_cache(&full, &fl);
    CHECK(kvtc_decompress_layout(dm, s, n, NULL, &fl) == KVTC_OK && rc.last_n == 400);
    struct { uint64_t b, e; uint32_t la, lb; int model; uint64_t want_n; } cases[] = {
        {0, 150, 0, 2, 1, 150},   /* the model sees the 150 tokens */
        {50, 120, 0, 1, 1, 120},  /* ... the prefix up to the range's end */
        {0, 0, 1, L, 0, 0},       /* stored layers only: no model needed */
        {0, SINK, 0, 1, 0, 0},    /* raw tokens only: no model needed */
        {0, 150, 2, 2, 0, 0},     /* an empty layer range: nothing to recompute */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kvtc_decode_range rg = {cases[i].b, cases[i].e, cases[i].la, cases[i].lb};
        uint64_t e = rg.token_end ? rg.token_end : 400;
        kvtc_cache c;
        kvtc_cache_layout lay;
        synth_alloc_like(&g, KVTC_DTYPE_F32, e - rg.token_begin, 1, &c);
        kvtc_cache_layout_from_cache(&c, &lay);
        rc.calls = 0;
        kvtc_result r = kvtc_decompress_layout(cases[i].model ? dm : dn, s, n, &rg, &lay);
        CHECK_MSG(r == KVTC_OK, "recompute case %zu: %s", i, kvtc_result_string(r));
        CHECK_MSG(rc.calls == cases[i].model && (!cases[i].model || rc.last_n == cases[i].want_n),
                  "recompute case %zu: %d calls, n %llu", i, rc.calls, (unsigned long long)rc.last_n);
        int same = 1;
        for (int st = 0; st < 2; st++)
            for (uint32_t l = rg.layer_begin; l < rg.layer_end; l++)
                for (uint32_t h = 0; h < H; h++)
                    for (uint64_t t = 0; t < c.n_tokens; t++)
                        same &= !memcmp(cache_addr(&c, !st, l, t, h, 0),
                                        cache_addr(&full, !st, l, rg.token_begin + t, h, 0), sizeof(float) * D);
        CHECK_MSG(same, "recompute case %zu equals the full decode", i);
        synth_cache_free(&c);
    }
    /* a recomputed layer without the model */
    kvtc_decode_range rg = {0, 100, 0, 1};
    kvtc_cache c;
    kvtc_cache_layout lay;
    synth_alloc_like(&g, KVTC_DTYPE_F32, 100, 1, &c);
    kvtc_cache_layout_from_cache(&c, &lay);
    CHECK(kvtc_decompress_layout(dn, s, n, &rg, &lay) == KVTC_ERR_NEEDS_MODEL);
    synth_cache_free(&c);
    synth_cache_free(&full);
    kvtc_decoder_free(dm);
    kvtc_decoder_free(dn);
    free(s);
    free(sc.c.token_ids);
    sc.c.token_ids = NULL;
    synth_free(&sc);
    kvtc_basis_free(b);
}

/* kvtc_decoder_hold: layer-by-layer decodes from held coefficients equal the
 * full decode; chunks outside the hold and other buffers decode as usual. */
static void test_hold(void) {
    kvtc_decoder *d = NULL;
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.n_threads = 2;
    CHECK(kvtc_decoder_alloc(g_basis, &dopt, &d) == KVTC_OK);
    CHECK(kvtc_decoder_hold(d, g_stream, g_size, 0, 300) == KVTC_OK);
    uint8_t *copy = malloc(g_size);
    memcpy(copy, g_stream, g_size);
    for (int pass = 0; pass < 3; pass++) {
        const uint8_t *s = pass == 2 ? copy : g_stream; /* pass 2: another buffer, nothing held for it */
        for (uint32_t l = 0; l < L; l++) {
            kvtc_decode_range rg = {0, pass == 0 ? 250 : N_TOK, l, l + 1};
            uint64_t n = rg.token_end;
            kvtc_cache c;
            kvtc_cache_layout lay;
            alloc_out(n, &c, &lay);
            CHECK(kvtc_decompress_layout(d, s, g_size, &rg, &lay) == KVTC_OK);
            CHECK_MSG(layout_equals(&lay, &g_full, 0, l, l + 1), "hold pass %d layer %u", pass, l);
            synth_cache_free(&c);
        }
    }
    CHECK(kvtc_decoder_hold(d, g_stream, g_size, 0, N_TOK + 1) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_decoder_hold(d, g_stream, g_size - 1, 0, 0) == KVTC_ERR_TRUNCATED);
    kvtc_decoder_release(d);
    kvtc_decoder_release(d);
    free(copy);
    kvtc_decoder_free(d);
}

/* A decoder that holds a stream must not serve its coefficients for another
 * stream the engine later places in the same buffer. With DEFLATE level 0
 * (stored blocks) two caches of one geometry give streams of the same size,
 * so address and size alone matched and the decode returned the first
 * cache's values. */
static void test_hold_reused_buffer(void) {
    kvtc_encode_options eo;
    encode_opts(&eo);
    eo.deflate_level = 0;
    synth_params sp;
    synth_params_init(&sp, &g_src.c.geometry, g_src.c.dtype, N_TOK);
    sp.data_seed = 99;
    synth_cache other;
    uint8_t *s1 = NULL, *s2 = NULL;
    size_t n1 = 0, n2 = 0;
    CHECK(synth_make(&sp, &other) == 0);
    CHECK(synth_compress(g_basis, &eo, &g_src.c, &s1, &n1) == KVTC_OK);
    CHECK(synth_compress(g_basis, &eo, &other.c, &s2, &n2) == KVTC_OK);
    CHECK_MSG(n1 == n2, "level-0 streams of %zu and %zu bytes", n1, n2);
    kvtc_decoder *d = NULL, *fresh = NULL;
    CHECK(kvtc_decoder_alloc(g_basis, NULL, &d) == KVTC_OK && kvtc_decoder_alloc(g_basis, NULL, &fresh) == KVTC_OK);
    if (n1 == n2 && d && fresh) {
        uint8_t *buf = malloc(n1);
        memcpy(buf, s1, n1);
        CHECK(kvtc_decoder_hold(d, buf, n1, 0, 0) == KVTC_OK);
        memcpy(buf, s2, n2); /* the next conversation, same buffer */
        kvtc_cache got, want;
        kvtc_cache_layout lg, lw;
        alloc_out(N_TOK, &got, &lg);
        alloc_out(N_TOK, &want, &lw);
        CHECK(kvtc_decompress_layout(d, buf, n2, NULL, &lg) == KVTC_OK);
        CHECK(kvtc_decompress_layout(fresh, s2, n2, NULL, &lw) == KVTC_OK);
        uint64_t bytes = kvtc_cache_tensor_bytes(&want.geometry, want.dtype, N_TOK);
        CHECK_MSG(!memcmp(got.k, want.k, bytes) && !memcmp(got.v, want.v, bytes),
                  "a held decoder decoded the buffer's new stream with the old stream's coefficients");
        synth_cache_free(&got);
        synth_cache_free(&want);
        free(buf);
    }
    kvtc_decoder_free(d);
    kvtc_decoder_free(fresh);
    free(s1);
    free(s2);
    synth_free(&other);
}

int main(void) {
    kvtc_geometry g = synth_geometry(L, H, D, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, N_TOK);
    static const double ratios[] = {8, 16};
    if (synth_calibrate(&sp, 3, SINK, WIN, ratios, 2, &g_basis) != KVTC_OK || synth_make(&sp, &g_src)) {
        fprintf(stderr, "set-up failed\n");
        return 1;
    }
    kvtc_encode_options eo;
    encode_opts(&eo);
    CHECK(synth_compress(g_basis, &eo, &g_src.c, &g_stream, &g_size) == KVTC_OK);
    kvtc_cache_layout full;
    alloc_out(N_TOK, &g_full, &full);
    CHECK(decode_into(NULL, &full, 2) == KVTC_OK);

    test_layouts_round_trip();
    test_hostile_tables();
    test_partial();
    test_partial_recompute();
    test_hold();
    test_hold_reused_buffer();

    synth_cache_free(&g_full);
    free(g_stream);
    synth_free(&g_src);
    kvtc_basis_free(g_basis);
    return TEST_REPORT();
}
