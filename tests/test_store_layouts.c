/* test_store_layouts.c - kvtc_store_get_layout into engine layouts (issue 12):
 * vLLM NHD and HND paged pools (a block size that divides the chunk, decoded
 * in place, and one that does not, copied), SGLang's token pool (block
 * size 1), llama.cpp rows with the transposed V, HF per-layer tensors with
 * spare capacity and the contiguous layout, each equal bit for bit to the
 * contiguous get, never touching memory outside the named elements; the raw
 * codec the same way; only the chunks covering the first n tokens are
 * fetched; hostile layouts and block tables give the codec's errors before
 * anything is fetched or written; kvtc_store_get_chunks with a decoder of
 * our own: what it is handed, and which of its errors delete a record;
 * kvtc_store_info_get. */
#define _XOPEN_SOURCE 700 /* nftw (store_fixture.h) */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store_fixture.h"

#define N_PUT 128u  /* 4 chunks of FX_C = 32 */
#define N_GET 100u  /* 3 whole chunks and 4 tokens of the fourth */
#define GUARD 0x7b7bu

/* Element (l, t, h, j) of one tensor of a layout, addressed from the
 * definition in kvtc.h (not the library's code). */
static uint16_t *elem(const kvtc_cache_layout *c, int is_key, uint32_t l, uint64_t t, uint32_t h, uint32_t j) {
    const kvtc_tensor_layout *x = is_key ? &c->k : &c->v;
    char *base = x->layers ? (char *)x->layers[l] : (char *)x->base + 2 * (int64_t)l * x->layer_stride;
    int64_t slot = c->block_size ? (int64_t)c->block_table[t / c->block_size] * x->block_stride +
                                       (int64_t)(t % c->block_size) * x->token_stride
                                 : (int64_t)t * x->token_stride;
    return (uint16_t *)(base + 2 * (slot + (int64_t)h * x->head_stride + (int64_t)j * x->dim_stride));
}

/* A destination: the layout, its memory (one block per tensor and layer,
 * filled with GUARD) and per-layer pointers. */
typedef struct dest {
    const char *name;
    kvtc_cache_layout lay;
    uint16_t *mem[2];       /* K, V: n_layers x layer_elems */
    uint64_t layer_elems;
    void *kl[8], *vl[8];
    int32_t table[256];
    int64_t pos[N_PUT];
    int32_t ids[N_PUT];
} dest;

static void dest_alloc(dest *d, const kvtc_geometry *g, uint64_t layer_elems, int per_layer) {
    d->layer_elems = layer_elems;
    for (int s = 0; s < 2; s++) {
        d->mem[s] = malloc(2 * layer_elems * g->n_layers);
        for (uint64_t i = 0; i < layer_elems * g->n_layers; i++) d->mem[s][i] = GUARD;
    }
    d->lay.geometry = *g;
    d->lay.dtype = KVTC_DTYPE_F16;
    d->lay.n_tokens = N_GET;
    d->lay.positions = d->pos;
    d->lay.token_ids = d->ids;
    for (uint32_t l = 0; l < g->n_layers; l++) {
        d->kl[l] = d->mem[0] + l * layer_elems;
        d->vl[l] = d->mem[1] + l * layer_elems;
    }
    if (per_layer) {
        d->lay.k.layers = d->kl;
        d->lay.v.layers = d->vl;
    } else {
        d->lay.k.base = d->mem[0];
        d->lay.v.base = d->mem[1];
        d->lay.k.layer_stride = d->lay.v.layer_stride = (int64_t)layer_elems;
    }
}

static void dest_free(dest *d) {
    free(d->mem[0]);
    free(d->mem[1]);
}

/* A shuffled table of n entries over a pool of n + 3 blocks. */
static void shuffled_table(dest *d, uint32_t n, uint64_t seed) {
    synth_rng r = {seed};
    int32_t perm[256];
    for (uint32_t i = 0; i < n + 3; i++) perm[i] = (int32_t)i;
    for (uint32_t i = n + 2; i > 0; i--) {
        uint32_t j = (uint32_t)(synth_next(&r) % (i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    memcpy(d->table, perm, sizeof(int32_t) * n);
    d->lay.block_table = d->table;
    d->lay.n_pool_blocks = n + 3;
}

/* vLLM NHD [B][S][H][d] or HND [B][H][S][d] per layer, block size S. */
static void make_vllm(dest *d, const kvtc_geometry *g, uint32_t S, int hnd, int per_layer) {
    uint32_t H = g->n_kv_heads, D = g->head_dim, nb = (N_GET + S - 1) / S;
    d->name = hnd ? "vLLM HND" : "vLLM NHD";
    dest_alloc(d, g, (uint64_t)(nb + 3) * S * H * D, per_layer);
    kvtc_tensor_layout t = d->lay.k;
    t.token_stride = hnd ? D : (int64_t)H * D;
    t.head_stride = hnd ? (int64_t)S * D : D;
    t.dim_stride = 1;
    t.block_stride = (int64_t)S * H * D;
    t.layers = d->lay.k.layers;
    t.base = d->lay.k.base;
    d->lay.k = t;
    t.layers = d->lay.v.layers;
    t.base = d->lay.v.base;
    d->lay.v = t;
    d->lay.block_size = S;
    shuffled_table(d, nb, 7 + S + (uint64_t)hnd);
}

/* SGLang token pool [slots][H][d]: block size 1, one slot per token. */
static void make_sglang(dest *d, const kvtc_geometry *g) {
    uint32_t H = g->n_kv_heads, D = g->head_dim;
    d->name = "SGLang token pool";
    dest_alloc(d, g, (uint64_t)(N_GET + 3) * H * D, 1);
    kvtc_tensor_layout t = {NULL, NULL, 0, (int64_t)H * D, D, 1, (int64_t)H * D};
    t.layers = d->kl;
    d->lay.k = t;
    t.layers = d->vl;
    d->lay.v = t;
    d->lay.block_size = 1;
    shuffled_table(d, N_GET, 99);
}

/* llama.cpp: K rows [cells][H*d], V transposed [H*d][cells], cells > n. */
static void make_llama(dest *d, const kvtc_geometry *g) {
    uint32_t H = g->n_kv_heads, D = g->head_dim, cells = N_GET + 20;
    d->name = "llama.cpp rows + transposed V";
    dest_alloc(d, g, (uint64_t)cells * H * D, 1);
    kvtc_tensor_layout k = {d->kl, NULL, 0, (int64_t)H * D, D, 1, 0};
    kvtc_tensor_layout v = {d->vl, NULL, 0, 1, (int64_t)D * cells, cells, 0};
    d->lay.k = k;
    d->lay.v = v;
}

/* HF per-layer [1][H][T_cap][d] (capacity beyond n), base + layer stride. */
static void make_hf(dest *d, const kvtc_geometry *g) {
    uint32_t H = g->n_kv_heads, D = g->head_dim, cap = N_GET + 28;
    d->name = "HF per-layer with capacity";
    dest_alloc(d, g, (uint64_t)cap * H * D, 0);
    d->lay.k.token_stride = d->lay.v.token_stride = D;
    d->lay.k.head_stride = d->lay.v.head_stride = (int64_t)cap * D;
    d->lay.k.dim_stride = d->lay.v.dim_stride = 1;
}

/* The contiguous layout of kvtc.h over a [L][H][n][d] buffer. */
static void make_contiguous(dest *d, const kvtc_geometry *g) {
    uint32_t H = g->n_kv_heads, D = g->head_dim;
    d->name = "contiguous layout";
    dest_alloc(d, g, (uint64_t)N_GET * H * D, 0);
    d->lay.k.token_stride = d->lay.v.token_stride = D;
    d->lay.k.head_stride = d->lay.v.head_stride = (int64_t)N_GET * D;
    d->lay.k.dim_stride = d->lay.v.dim_stride = 1;
}

/* 1 when tokens [0, n) of d equal ref's bit for bit and every element the
 * layout does not name still holds GUARD. */
static int dest_matches(const dest *d, const kvtc_cache *ref, uint64_t n) {
    const kvtc_geometry *g = &d->lay.geometry;
    uint64_t total = d->layer_elems * g->n_layers;
    uint8_t *named[2] = {calloc(total, 1), calloc(total, 1)};
    int ok = 1;
    for (int s = 0; s < 2; s++)
        for (uint32_t l = 0; l < g->n_layers; l++)
            for (uint32_t h = 0; h < g->n_kv_heads; h++)
                for (uint64_t t = 0; t < n; t++)
                    for (uint32_t j = 0; j < g->head_dim; j++) {
                        uint16_t *e = elem(&d->lay, s == 0, l, t, h, j);
                        const uint16_t *want = (const uint16_t *)(s == 0 ? ref->k : ref->v) +
                                               ((((uint64_t)l * g->n_kv_heads + h) * ref->n_tokens + t) * g->head_dim + j);
                        if (*e != *want) ok = 0;
                        named[s][e - d->mem[s]] = 1;
                    }
    for (int s = 0; s < 2; s++)
        for (uint64_t i = 0; i < total; i++)
            if (!named[s][i] && d->mem[s][i] != GUARD) ok = 0;
    free(named[0]);
    free(named[1]);
    return ok;
}

static int all_guard(const dest *d) {
    uint64_t total = d->layer_elems * d->lay.geometry.n_layers;
    for (int s = 0; s < 2; s++)
        for (uint64_t i = 0; i < total; i++)
            if (d->mem[s][i] != GUARD) return 0;
    return 1;
}

static kvtc_result get_engine(kvtc_store *s, const int32_t *tokens, dest *d, uint64_t *got) {
    return kvtc_store_get_layout(s, tokens, N_PUT, &d->lay, got);
}

/* Every layout kind against the contiguous get of the same store. */
static void check_layouts(kvtc_store *s, const int32_t *tokens, const kvtc_cache *ref, const char *codec) {
    const kvtc_geometry *g = &ref->geometry;
    for (int k = 0; k < 8; k++) {
        dest d;
        memset(&d, 0, sizeof d);
        switch (k) {
        case 0: make_vllm(&d, g, 16, 0, 1); break;   /* 16 divides C: in place */
        case 1: make_vllm(&d, g, 16, 1, 0); break;
        case 2: make_vllm(&d, g, 12, 0, 0); break;   /* 12 does not: decode + copy */
        case 3: make_vllm(&d, g, 12, 1, 1); break;
        case 4: make_sglang(&d, g); break;
        case 5: make_llama(&d, g); break;
        case 6: make_hf(&d, g); break;
        default: make_contiguous(&d, g); break;
        }
        uint64_t got = 0;
        kvtc_result r = get_engine(s, tokens, &d, &got);
        int ok = r == KVTC_OK && got == N_GET && dest_matches(&d, ref, N_GET);
        for (uint64_t t = 0; t < N_GET; t++) ok = ok && d.pos[t] == (int64_t)t && d.ids[t] == tokens[t];
        if (!ok) fprintf(stderr, "  %s codec, %s (block size %u): r=%d got=%llu\n", codec, d.name, d.lay.block_size, r,
                         (unsigned long long)got);
        CHECK(ok);
        dest_free(&d);
    }
}

/* Hostile layouts: the codec's error, nothing fetched or written. */
static void check_hostile(kvtc_store *s, const int32_t *tokens, const kvtc_geometry *g) {
    kvtc_store_stats before = {.struct_size = sizeof before}, after = {.struct_size = sizeof after};
    CHECK(kvtc_store_stats_get(s, &before) == KVTC_OK);
    for (int k = 0; k < 10; k++) {
        dest d;
        memset(&d, 0, sizeof d);
        make_vllm(&d, g, 16, 0, 1);
        kvtc_result want = KVTC_ERR_BAD_BLOCK_TABLE;
        switch (k) {
        case 0: d.table[3] = (int32_t)d.lay.n_pool_blocks; break;  /* one past the pool */
        case 1: d.table[0] = -1; break;
        case 2: d.table[6] = d.table[1]; break;                     /* a block twice */
        case 3: d.lay.block_table = NULL; want = KVTC_ERR_INVALID_ARGUMENT; break;
        case 4: d.kl[1] = NULL; want = KVTC_ERR_INVALID_ARGUMENT; break;
        case 5: d.lay.v.head_stride = INT64_MAX / 2; /* offsets overflow int64 bytes */ want = KVTC_ERR_INVALID_ARGUMENT; break;
        case 6: d.lay.geometry.head_dim = 16; want = KVTC_ERR_GEOMETRY_MISMATCH; break;
        case 7: d.lay.dtype = KVTC_DTYPE_BF16; want = KVTC_ERR_GEOMETRY_MISMATCH; break;
        case 8: d.lay.n_pool_blocks = 0; want = KVTC_ERR_INVALID_ARGUMENT; break;
        default: /* 129 tokens: chunk 4 is not whole in the 128 tokens given (refused before any write) */
            dest_free(&d);
            memset(&d, 0, sizeof d);
            make_contiguous(&d, g);
            d.lay.n_tokens = N_PUT + 1;
            want = KVTC_ERR_INVALID_ARGUMENT;
            break;
        }
        uint64_t got = 99;
        kvtc_result r = get_engine(s, tokens, &d, &got);
        if (r != want) fprintf(stderr, "  hostile case %d: %d, expected %d\n", k, r, want);
        CHECK(r == want && got == 0 && all_guard(&d));
        dest_free(&d);
    }
    uint64_t got = 0;
    CHECK(kvtc_store_get_layout(s, tokens, N_PUT, NULL, &got) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_store_stats_get(s, &after) == KVTC_OK);
    CHECK(after.bytes_read == before.bytes_read && after.hit_chunks == before.hit_chunks &&
          after.miss_chunks == before.miss_chunks && after.errors == before.errors);
}

/* ---- kvtc_store_get_chunks with a decoder of our own --------------------- */

typedef struct my_decoder {
    uint64_t calls, n_chunks;
    int ok;                  /* what it was handed is as documented */
    kvtc_result answer;      /* its result for chunk `bad` */
    uint64_t bad;
    uint32_t codec;
} my_decoder;

static void my_decode(void *user, const kvtc_store_chunk *chunks, uint64_t n_chunks, kvtc_result *results) {
    my_decoder *m = user;
    m->calls++;
    m->n_chunks = n_chunks;
    for (uint64_t i = 0; i < n_chunks; i++) {
        const kvtc_store_chunk *c = &chunks[i];
        uint32_t want_n = (uint32_t)(N_GET - i * FX_C < FX_C ? N_GET - i * FX_C : FX_C);
        if (c->index != i || c->token_begin != i * FX_C || c->n_tokens != want_n || c->codec != m->codec || !c->payload)
            m->ok = 0;
        if (m->codec == KVTC_STORE_CODEC_KVTC) {
            kvtc_stream_info info = {.struct_size = sizeof info};
            if (kvtc_stream_get_info(c->payload, c->payload_size, &info) != KVTC_OK || info.n_tokens != FX_C) m->ok = 0;
        }
        results[i] = i == m->bad ? m->answer : KVTC_OK;
    }
}

static void check_get_chunks(kvtc_store *s, const int32_t *tokens) {
    uint64_t got = 0, hit = 0;
    kvtc_store_stats st0 = {.struct_size = sizeof st0}, st1 = {.struct_size = sizeof st1};
    CHECK(kvtc_store_stats_get(s, &st0) == KVTC_OK);
    /* a decoder that cannot decode (a GPU given DEFLATE streams): its error, no record lost */
    my_decoder m = {0, 0, 1, KVTC_ERR_UNSUPPORTED, 0, KVTC_STORE_CODEC_KVTC};
    CHECK(kvtc_store_get_chunks(s, tokens, N_PUT, N_GET, my_decode, &m, &got) == KVTC_ERR_UNSUPPORTED && got == 0);
    CHECK(m.calls == 1 && m.n_chunks == 4 && m.ok);
    CHECK(kvtc_store_lookup(s, tokens, N_PUT, &hit) == KVTC_OK && hit == N_PUT);
    m.answer = KVTC_ERR_CUDA;
    m.bad = 2;
    CHECK(kvtc_store_get_chunks(s, tokens, N_PUT, N_GET, my_decode, &m, &got) == KVTC_ERR_CUDA && got == 0);
    CHECK(kvtc_store_lookup(s, tokens, N_PUT, &hit) == KVTC_OK && hit == N_PUT);
    m.answer = KVTC_ERR_BASIS_MISMATCH; /* a decoder set up with another basis */
    m.bad = 0;
    CHECK(kvtc_store_get_chunks(s, tokens, N_PUT, N_GET, my_decode, &m, &got) == KVTC_ERR_BASIS_MISMATCH && got == 0);
    CHECK(kvtc_store_lookup(s, tokens, N_PUT, &hit) == KVTC_OK && hit == N_PUT);
    CHECK(kvtc_store_stats_get(s, &st1) == KVTC_OK && st1.errors == st0.errors);
    /* only the chunks covering n are handed over */
    m.answer = KVTC_OK;
    CHECK(kvtc_store_get_chunks(s, tokens, N_PUT, 33, my_decode, &m, &got) == KVTC_OK && got == 33);
    CHECK(m.n_chunks == 2);
    CHECK(kvtc_store_get_chunks(s, tokens, N_PUT, 0, my_decode, &m, &got) == KVTC_OK && got == 0 && m.calls == 4); /* n = 0: not called */
    CHECK(kvtc_store_get_chunks(s, tokens, N_PUT, N_GET, NULL, &m, &got) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_store_get_chunks(s, tokens, 64, 65, my_decode, &m, &got) == KVTC_ERR_INVALID_ARGUMENT);
    /* a decoder that finds chunk 1 corrupt: a miss there, counted, deleted */
    m.answer = KVTC_ERR_CORRUPT;
    m.bad = 1;
    CHECK(kvtc_store_get_chunks(s, tokens, N_PUT, N_GET, my_decode, &m, &got) == KVTC_OK && got == FX_C);
    CHECK(kvtc_store_stats_get(s, &st1) == KVTC_OK && st1.errors == st0.errors + 1);
    CHECK(kvtc_store_lookup(s, tokens, N_PUT, &hit) == KVTC_OK && hit == FX_C);
}

/* A get of n tokens fetches only the chunks covering n and writes only
 * tokens [0, n). */
static void check_partial_fetch(kvtc_store *s, const int32_t *tokens, const kvtc_cache *ref) {
    kvtc_store_stats a = {.struct_size = sizeof a}, b = {.struct_size = sizeof b};
    dest d;
    memset(&d, 0, sizeof d);
    make_vllm(&d, &ref->geometry, 16, 0, 1);
    d.lay.n_tokens = 40;
    CHECK(kvtc_store_stats_get(s, &a) == KVTC_OK);
    uint64_t got = 0;
    CHECK(get_engine(s, tokens, &d, &got) == KVTC_OK && got == 40);
    CHECK(kvtc_store_stats_get(s, &b) == KVTC_OK && b.hit_chunks == a.hit_chunks + 2);
    CHECK(dest_matches(&d, ref, 40)); /* tokens 40.. keep their guard values */
    dest_free(&d);
}

/* kvtc_store_info_get reports what the store was opened with. */
static void check_info(const kvtc_store *s, const fixture *fx, uint32_t codec) {
    kvtc_store_info info = {.struct_size = sizeof info};
    CHECK(kvtc_store_info_get(s, &info) == KVTC_OK);
    CHECK(info.geometry.n_layers == fx->sp.g.n_layers && info.geometry.head_dim == fx->sp.g.head_dim &&
          info.dtype == KVTC_DTYPE_F16 && info.chunk_tokens == FX_C && info.codec == codec);
    CHECK(codec == KVTC_STORE_CODEC_RAW ? info.basis == NULL && info.entropy_codec == 0
                                        : info.basis == fx->basis && info.entropy_codec == KVTC_CODEC_DEFLATE);
    kvtc_store_info bad = {.struct_size = sizeof bad + 8};
    CHECK(kvtc_store_info_get(s, &bad) == KVTC_ERR_INVALID_ARGUMENT && bad.codec == 0);
    CHECK(kvtc_store_info_get(NULL, &info) == KVTC_ERR_INVALID_ARGUMENT);
}

static void run(const fixture *fx, uint32_t codec) {
    const char *name = codec == KVTC_STORE_CODEC_RAW ? "raw" : "kvtc";
    char dir[64], uri[96];
    CHECK(fixture_tmpdir(dir, sizeof dir, "store_layouts") == 0);
    snprintf(uri, sizeof uri, "file:%s", dir);
    kvtc_store_options o;
    fixture_options(&o);
    o.codec = codec;
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, codec == KVTC_STORE_CODEC_RAW ? NULL : fx->basis, &fx->sp.g, KVTC_DTYPE_F16, &o, &s) ==
          KVTC_OK);
    synth_cache sc;
    CHECK(fixture_cache(fx, N_PUT, 3, &sc) == 0);
    int32_t tokens[N_PUT];
    fixture_tokens(tokens, N_PUT, 11);
    uint64_t stored = 0;
    CHECK(kvtc_store_put(s, tokens, N_PUT, &sc.c, &stored) == KVTC_OK && stored == 4);
    check_info(s, fx, codec);

    /* the reference: a CONTIGUOUS get, itself the codec's decode of each chunk */
    kvtc_cache ref;
    kvtc_store_layout lay;
    CHECK(fixture_out(fx, N_GET, &ref, &lay) == 0);
    uint64_t got = 0;
    CHECK(kvtc_store_get(s, tokens, N_PUT, &lay, &got) == KVTC_OK && got == N_GET);
    if (codec == KVTC_STORE_CODEC_KVTC) {
        kvtc_cache expect;
        CHECK(fixture_reference_decode(fx, &sc.c, N_GET, &expect) == KVTC_OK);
        CHECK(fixture_prefix_equal(&ref, &expect, N_GET));
        synth_cache_free(&expect);
    } else {
        CHECK(fixture_prefix_equal(&ref, &sc.c, N_GET));
    }

    check_layouts(s, tokens, &ref, name);
    check_hostile(s, tokens, &ref.geometry);
    check_partial_fetch(s, tokens, &ref);

    /* a missing chunk: the prefix before it, into a paged pool (the same KV
     * was put under other ids, so it decodes to ref's values); nothing past
     * it is written */
    int32_t other[N_PUT];
    fixture_tokens(other, N_PUT, 12);
    CHECK(kvtc_store_put(s, other, N_PUT, &sc.c, NULL) == KVTC_OK);
    CHECK(kvtc_store_delete(s, other, 3 * FX_C) == KVTC_OK); /* chunks 0-2 gone */
    CHECK(kvtc_store_put(s, other, 2 * FX_C, &sc.c, NULL) == KVTC_OK); /* chunks 0-1 back */
    dest d;
    memset(&d, 0, sizeof d);
    make_vllm(&d, &sc.c.geometry, 16, 1, 0);
    CHECK(get_engine(s, other, &d, &got) == KVTC_OK && got == 2 * FX_C);
    CHECK(dest_matches(&d, &ref, 2 * FX_C));
    dest_free(&d);

    if (codec == KVTC_STORE_CODEC_KVTC) check_get_chunks(s, tokens);

    kvtc_store_close(s);
    synth_cache_free(&ref);
    synth_free(&sc);
    fixture_rmtree(dir);
}

int main(void) {
    fixture fx;
    CHECK(fixture_init(&fx) == 0);
    run(&fx, KVTC_STORE_CODEC_KVTC);
    run(&fx, KVTC_STORE_CODEC_RAW);
    fixture_free(&fx);
    return TEST_REPORT();
}
