/* test_engine_hostile.c - review of the engine-facing codec (issue 11) as an
 * attacker would use it: appends of zero tokens (also to a stream whose
 * coded tokens end on a chunk boundary with no raw window), layouts whose
 * strides overflow the address arithmetic, decode ranges that are empty,
 * inverted or outside the stream, NULL per-layer pointers. Every case must
 * give a specific error (or a correct result), never a crash or UB. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc.h"
#include "synth.h"
#include "test.h"

enum { N_SRC = 300, SINK = 4, CHUNK = 64 };

static kvtc_basis *g_basis;
static synth_cache g_src;

static kvtc_encoder *encoder(uint32_t window) {
    kvtc_encode_options o;
    kvtc_encode_options_init(&o);
    o.ratio = 8;
    o.n_sink = SINK;
    o.n_window = window;
    o.chunk_tokens = CHUNK;
    kvtc_encoder *e = NULL;
    CHECK(kvtc_encoder_alloc(g_basis, &o, &e) == KVTC_OK);
    return e;
}

static uint8_t *encode_first(kvtc_encoder *e, uint64_t n, size_t *size) {
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(&g_src.c, &l);
    l.n_tokens = n; /* the first n tokens: strides of the whole source */
    size_t cap = kvtc_compress_layout_bound(e, &l);
    uint8_t *out = malloc(cap ? cap : 1);
    CHECK(cap && kvtc_compress_layout(e, &l, out, cap, size) == KVTC_OK);
    return out;
}

/* Decode a whole stream; 0 on success. */
static int decode_all(const uint8_t *s, size_t n, kvtc_cache *out) {
    kvtc_stream_info in = {.struct_size = sizeof in};
    if (kvtc_stream_get_info(s, n, &in)) return -1;
    synth_alloc_like(&in.geometry, in.dtype, in.n_tokens, 0, out);
    kvtc_decoder *d = NULL;
    if (kvtc_decoder_alloc(g_basis, NULL, &d)) return -1;
    kvtc_result r = kvtc_decompress(d, s, n, out);
    kvtc_decoder_free(d);
    return r ? -1 : 0;
}

/* Appending no tokens is a valid request: the result decodes to the same
 * tokens as the input. With no raw window and coded tokens ending on a
 * chunk boundary the "tail" to re-encode is empty, which used to be
 * reported as KVTC_ERR_TOO_LARGE. */
static void test_append_zero_tokens(uint32_t window, uint64_t n_tokens) {
    kvtc_encoder *e = encoder(window);
    size_t ns = 0, na = 0;
    uint8_t *s = encode_first(e, n_tokens, &ns);
    kvtc_cache_layout more;
    kvtc_cache_layout_from_cache(&g_src.c, &more);
    more.n_tokens = 0;
    more.positions = NULL;
    more.token_ids = NULL;
    size_t cap = kvtc_append_bound(e, s, ns, &more);
    CHECK_MSG(cap > 0, "append bound of 0 tokens (window %u, %llu tokens)", window, (unsigned long long)n_tokens);
    uint8_t *a = malloc(cap ? cap : 1);
    kvtc_result r = kvtc_append(e, s, ns, &more, a, cap, &na);
    CHECK_MSG(r == KVTC_OK, "append of 0 tokens (window %u, %llu tokens): %s", window,
              (unsigned long long)n_tokens, kvtc_result_string(r));
    if (r == KVTC_OK) {
        kvtc_cache x = {0}, y = {0};
        CHECK(decode_all(s, ns, &x) == 0 && decode_all(a, na, &y) == 0);
        CHECK(x.n_tokens == y.n_tokens && y.n_tokens == n_tokens);
        uint64_t bytes = kvtc_cache_tensor_bytes(&x.geometry, x.dtype, x.n_tokens);
        CHECK(x.k && y.k && !memcmp(x.k, y.k, bytes) && !memcmp(x.v, y.v, bytes));
        free(x.k); free(x.v); free(y.k); free(y.v);
    }
    free(a);
    free(s);
    kvtc_encoder_free(e);
}

/* Strides whose byte offsets do not fit in int64 cannot address memory;
 * computing them would be signed overflow (UB) and, wrapped, an address
 * inside the caller's buffers or anywhere else. Refused up front. (Strides
 * that fit but point outside the caller's allocation cannot be detected:
 * kvtc.h makes that the caller's guarantee.) */
static void test_overflowing_strides(void) {
    kvtc_encoder *e = encoder(16);
    /* each overflows int64 once multiplied by the element size (2) and
     * the largest index of its dimension (>= 1 here) */
    static const int64_t bad[] = {INT64_MAX, INT64_MIN, INT64_MAX / 2 + 1, -(INT64_MAX / 2) - 2, (int64_t)1 << 62};
    uint8_t out[64];
    size_t w = 0;
    for (int field = 0; field < 5; field++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            kvtc_cache_layout l;
            kvtc_cache_layout_from_cache(&g_src.c, &l);
            int32_t table[N_SRC];
            for (int t = 0; t < N_SRC; t++) table[t] = t;
            if (field == 4) { /* block stride of a paged layout */
                l.block_size = 1;
                l.block_table = table;
                l.n_pool_blocks = N_SRC;
            }
            int64_t *f = field == 0 ? &l.k.token_stride : field == 1 ? &l.v.head_stride
                       : field == 2 ? &l.k.dim_stride : field == 3 ? &l.v.layer_stride : &l.k.block_stride;
            *f = bad[i];
            kvtc_result r = kvtc_compress_layout(e, &l, out, sizeof out, &w);
            CHECK_MSG(r == KVTC_ERR_INVALID_ARGUMENT, "stride field %d = %lld: %s", field, (long long)bad[i],
                      kvtc_result_string(r));
            CHECK(kvtc_compress_layout_bound(e, &l) == 0);
            kvtc_decoder *d = NULL;
            CHECK(kvtc_decoder_alloc(g_basis, NULL, &d) == KVTC_OK);
            size_t ns = 0;
            uint8_t *s = encode_first(e, N_SRC, &ns);
            kvtc_decode_range rg;
            kvtc_decode_range_init(&rg);
            r = kvtc_decompress_layout(d, s, ns, &rg, &l);
            CHECK_MSG(r == KVTC_ERR_INVALID_ARGUMENT, "decode, stride field %d = %lld: %s", field,
                      (long long)bad[i], kvtc_result_string(r));
            free(s);
            kvtc_decoder_free(d);
        }
    }
    kvtc_encoder_free(e);
}

/* Ranges: inverted, past the end, empty; NULL layer pointers inside and
 * outside the layer range. */
static void test_ranges(void) {
    kvtc_encoder *e = encoder(16);
    size_t ns = 0;
    uint8_t *s = encode_first(e, N_SRC, &ns);
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(g_basis, NULL, &d) == KVTC_OK);
    kvtc_cache out = {0};
    synth_alloc_like(&g_src.c.geometry, g_src.c.dtype, N_SRC, 0, &out);
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(&out, &l);
    uint32_t L = g_src.c.geometry.n_layers;
    struct { kvtc_decode_range rg; uint64_t n; kvtc_result want; } cases[] = {
        {{10, 5, 0, 0}, 5, KVTC_ERR_INVALID_ARGUMENT},            /* inverted tokens */
        {{0, N_SRC + 1, 0, 0}, N_SRC + 1, KVTC_ERR_INVALID_ARGUMENT}, /* past the end */
        {{N_SRC, N_SRC + 5, 0, 0}, 5, KVTC_ERR_INVALID_ARGUMENT},
        {{UINT64_MAX - 1, UINT64_MAX, 0, 0}, 1, KVTC_ERR_INVALID_ARGUMENT},
        {{0, 0, 2, 1}, N_SRC, KVTC_ERR_INVALID_ARGUMENT},          /* inverted layers */
        {{0, 0, 0, L + 1}, N_SRC, KVTC_ERR_INVALID_ARGUMENT},
        {{0, 0, L, UINT32_MAX}, N_SRC, KVTC_ERR_INVALID_ARGUMENT},
        {{0, 10, 0, 0}, 9, KVTC_ERR_GEOMETRY_MISMATCH},            /* out->n_tokens differs */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        l.n_tokens = cases[i].n;
        kvtc_result r = kvtc_decompress_layout(d, s, ns, &cases[i].rg, &l);
        CHECK_MSG(r == cases[i].want, "range case %zu: %s", i, kvtc_result_string(r));
    }
    /* per-layer pointers: NULL outside the range is fine, inside refused */
    void *kl[8] = {0}, *vl[8] = {0};
    size_t layer_bytes = (size_t)(kvtc_cache_tensor_bytes(&out.geometry, out.dtype, N_SRC) / L);
    kl[1] = (uint8_t *)out.k + layer_bytes;
    vl[1] = (uint8_t *)out.v + layer_bytes;
    l.k.layers = kl;
    l.v.layers = vl;
    l.n_tokens = N_SRC;
    kvtc_decode_range one = {0, 0, 1, 2}, two = {0, 0, 1, 3};
    CHECK(kvtc_decompress_layout(d, s, ns, &one, &l) == KVTC_OK);
    CHECK(kvtc_decompress_layout(d, s, ns, &two, &l) == KVTC_ERR_INVALID_ARGUMENT);
    free(out.k); free(out.v);
    free(s);
    kvtc_decoder_free(d);
    kvtc_encoder_free(e);
}

/* Appending without positions continues the stream's positions: after a
 * stream at positions 1000..1199 the new tokens are at 1200.. (they used to
 * get 200.., going backwards). A stream ending at INT64_MAX cannot be
 * continued that way: KVTC_ERR_INVALID_ARGUMENT, not signed overflow. */
static void test_append_continues_positions(void) {
    kvtc_encoder *e = encoder(16);
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(g_basis, NULL, &d) == KVTC_OK);
    for (int at_max = 0; at_max < 2; at_max++) {
        int64_t pos[200];
        for (int t = 0; t < 200; t++) pos[t] = at_max ? INT64_MAX - 199 + t : 1000 + t;
        kvtc_cache_layout l;
        kvtc_cache_layout_from_cache(&g_src.c, &l);
        l.n_tokens = 200;
        l.positions = pos;
        size_t cap = kvtc_compress_layout_bound(e, &l), ns = 0, na = 0;
        uint8_t *s = malloc(cap);
        CHECK(kvtc_compress_layout(e, &l, s, cap, &ns) == KVTC_OK);
        kvtc_cache_layout more;
        kvtc_cache_layout_from_cache(&g_src.c, &more);
        more.n_tokens = 10;
        more.positions = NULL;
        cap = kvtc_append_bound(e, s, ns, &more);
        CHECK(at_max ? cap == 0 : cap > 0);
        uint8_t *a = malloc(cap ? cap : 1);
        kvtc_result r = kvtc_append(e, s, ns, &more, a, cap, &na);
        CHECK_MSG(r == (at_max ? KVTC_ERR_INVALID_ARGUMENT : KVTC_OK), "append (at_max %d): %s", at_max,
                  kvtc_result_string(r));
        if (!at_max && r == KVTC_OK) {
            kvtc_cache x = {0};
            synth_alloc_like(&g_src.c.geometry, g_src.c.dtype, 210, 1, &x);
            CHECK(kvtc_decompress(d, a, na, &x) == KVTC_OK);
            for (int t = 0; t < 210; t++) CHECK_MSG(x.positions[t] == 1000 + t, "position %d: %lld", t, (long long)x.positions[t]);
            free(x.k); free(x.v); free(x.positions);
        }
        free(s); free(a);
    }
    kvtc_decoder_free(d);
    kvtc_encoder_free(e);
}

/* A block size larger than the cache (one block holds every token) is a
 * valid table of one entry: the same bytes as the contiguous layout. A
 * table with no pool, or a NULL table, is refused. */
static void test_huge_block_size(void) {
    kvtc_encoder *e = encoder(16);
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(&g_src.c, &l);
    size_t cap = kvtc_compress_layout_bound(e, &l), n1 = 0, n2 = 0;
    uint8_t *s1 = malloc(cap), *s2 = malloc(cap);
    CHECK(kvtc_compress_layout(e, &l, s1, cap, &n1) == KVTC_OK);
    int32_t table[1] = {0};
    l.block_size = UINT32_MAX;
    l.block_table = table;
    l.n_pool_blocks = 1;
    l.k.block_stride = l.v.block_stride = INT64_MAX; /* never multiplied: only block 0 exists */
    CHECK(kvtc_compress_layout(e, &l, s2, cap, &n2) == KVTC_OK);
    CHECK(n1 == n2 && !memcmp(s1, s2, n1));
    l.n_pool_blocks = 0;
    CHECK(kvtc_compress_layout(e, &l, s2, cap, &n2) == KVTC_ERR_INVALID_ARGUMENT);
    l.n_pool_blocks = 1;
    l.block_table = NULL;
    CHECK(kvtc_compress_layout(e, &l, s2, cap, &n2) == KVTC_ERR_INVALID_ARGUMENT);
    free(s1); free(s2);
    kvtc_encoder_free(e);
}

int main(void) {
    kvtc_geometry g = synth_geometry(3, 2, 16, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, N_SRC);
    static const double ratios[] = {8};
    if (synth_calibrate(&sp, 1, SINK, 16, ratios, 1, &g_basis) != KVTC_OK || synth_make(&sp, &g_src)) {
        fprintf(stderr, "set-up failed\n");
        return 1;
    }
    test_append_zero_tokens(16, N_SRC);
    test_append_zero_tokens(0, SINK + 2 * CHUNK); /* coded tokens end on a chunk boundary */
    test_append_zero_tokens(0, SINK + 2 * CHUNK + 5);
    test_append_zero_tokens(16, 10); /* all raw */
    test_append_zero_tokens(16, 0);  /* an empty stream */
    test_overflowing_strides();
    test_ranges();
    test_append_continues_positions();
    test_huge_block_size();
    synth_free(&g_src);
    kvtc_basis_free(g_basis);
    return TEST_REPORT();
}
