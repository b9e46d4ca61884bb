/* test_append.c - kvtc_append (issue 11): a stream extended with the
 * tokens that follow it keeps its full coded chunks byte for byte, does not
 * quantize the tokens of its partial last chunk a second time, has full
 * chunks like the direct encode of the concatenation and decodes with its
 * error (also after many small appends, with DEFLATE and rANS), keeps the
 * new window exact, and refuses mismatched encoders and corrupt chunks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc.h"
#include "synth.h"
#include "test.h"
#include "util/endian.h"

enum { N_ALL = 1000, N_OLD = 700, SINK = 4, WIN = 32, CHUNK = 64 };

static kvtc_basis *g_basis;
static uint32_t g_codec = KVTC_CODEC_DEFLATE;
static synth_cache g_src; /* all N_ALL tokens */

static void opts(kvtc_encode_options *o, double ratio) {
    kvtc_encode_options_init(o);
    o->ratio = ratio;
    o->entropy_codec = g_codec;
    o->n_sink = SINK;
    o->n_window = WIN;
    o->chunk_tokens = CHUNK;
}

/* Tokens [t0, t0+n) of the source as a layout (a view, no copy: the
 * source's strides with a shifted base). */
static kvtc_cache_layout source_tokens(uint64_t t0, uint64_t n) {
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(&g_src.c, &l);
    size_t es = kvtc_dtype_size(l.dtype);
    l.k.base = (uint8_t *)l.k.base + es * t0 * l.k.token_stride;
    l.v.base = (uint8_t *)l.v.base + es * t0 * l.v.token_stride;
    l.n_tokens = n;
    return l;
}

static kvtc_result encode_range(kvtc_encoder *e, uint64_t n, uint8_t **out, size_t *size) {
    kvtc_cache_layout l = source_tokens(0, n);
    size_t cap = kvtc_compress_layout_bound(e, &l);
    *out = malloc(cap);
    return kvtc_compress_layout(e, &l, *out, cap, size);
}

static kvtc_result append_range(kvtc_encoder *e, const uint8_t *in, size_t in_size, uint64_t t0, uint64_t n,
                                uint8_t **out, size_t *size) {
    kvtc_cache_layout more = source_tokens(t0, n);
    more.positions = NULL; /* continuing positions */
    size_t cap = kvtc_append_bound(e, in, in_size, &more);
    *out = malloc(cap ? cap : 1);
    if (!cap) return KVTC_ERR_INVALID_ARGUMENT;
    return kvtc_append(e, in, in_size, &more, *out, cap, size);
}

/* Decode and return the squared error over stream tokens [a, b) against the source. */
static double decoded_error(const uint8_t *s, size_t n, uint64_t a, uint64_t b, kvtc_cache *out) {
    kvtc_stream_info in = {.struct_size = sizeof in};
    if (kvtc_stream_get_info(s, n, &in)) return -1;
    synth_alloc_like(&in.geometry, in.dtype, in.n_tokens, 1, out);
    kvtc_decoder *d = NULL;
    kvtc_decoder_alloc(g_basis, NULL, &d);
    kvtc_result r = kvtc_decompress(d, s, n, out);
    kvtc_decoder_free(d);
    if (r) return -1;
    double e = 0;
    kvtc_cache src = g_src.c;
    for (uint64_t t = a; t < b; t++) e += synth_token_sqerr(&src, out, 1, t) + synth_token_sqerr(&src, out, 0, t);
    return e;
}

/* 1 if chunks [0, k) of a and b have equal index entries and bytes. */
static int chunks_equal(const uint8_t *a, const uint8_t *b, uint32_t k) {
    uint64_t ia = kvi_load_u64(a + 128 + 4 * 24), ib = kvi_load_u64(b + 128 + 4 * 24);
    uint64_t da = kvi_load_u64(a + 128 + 5 * 24), db = kvi_load_u64(b + 128 + 5 * 24);
    for (uint32_t i = 0; i < k; i++) {
        const uint8_t *ea = a + ia + 24 * i, *eb = b + ib + 24 * i;
        if (memcmp(ea, eb, 24)) return 0;
        if (memcmp(a + da + kvi_load_u64(ea), b + db + kvi_load_u64(eb), kvi_load_u32(ea + 8))) return 0;
    }
    return 1;
}

/* Token counts of the chunks of stream s: 1 if every chunk but the last
 * holds `chunk` tokens (and the count is n_chunks). */
static int chunks_full(const uint8_t *s, size_t n, uint32_t chunk) {
    kvtc_stream_info in = {.struct_size = sizeof in};
    if (kvtc_stream_get_info(s, n, &in)) return 0;
    uint64_t idx = kvi_load_u64(s + 128 + 4 * 24);
    for (uint32_t i = 0; i + 1 < in.n_chunks; i++)
        if (kvi_load_u32(s + idx + 24 * i + 16) != chunk) return 0;
    return in.n_chunks == (in.n_coded_tokens + chunk - 1) / chunk;
}

/* Grow a stream of the first N_OLD tokens by appends of `step` tokens to
 * N_ALL: size and error stay those of the direct encode (a partial chunk
 * is completed, never re-quantized, however many appends there are). */
static void test_small_appends(kvtc_encoder *e, uint64_t step, size_t n_direct, double e_direct) {
    uint8_t *s = NULL;
    size_t n = 0;
    CHECK(encode_range(e, N_OLD, &s, &n) == KVTC_OK);
    int ok = 1;
    for (uint64_t t = N_OLD; t < N_ALL && ok; t += step) {
        uint8_t *next = NULL;
        size_t nn = 0;
        ok = append_range(e, s, n, t, N_ALL - t < step ? N_ALL - t : step, &next, &nn) == KVTC_OK;
        free(s);
        s = next;
        n = nn;
    }
    CHECK_MSG(ok, "appends of %llu tokens", (unsigned long long)step);
    kvtc_cache d;
    double err = ok ? decoded_error(s, n, SINK, N_ALL - WIN, &d) : -1;
    printf("  %llu-token appends: %zu B, error %.5g (direct %zu B, %.5g)\n", (unsigned long long)step, n, err,
           n_direct, e_direct);
    CHECK_MSG(err >= 0 && err < 1.01 * e_direct, "error after appends of %llu: %g vs direct %g",
              (unsigned long long)step, err, e_direct);
    CHECK_MSG(n < n_direct + n_direct / 200 && chunks_full(s, n, CHUNK),
              "appends of %llu: %zu bytes vs %zu direct, full chunks", (unsigned long long)step, n, n_direct);
    if (err >= 0) synth_cache_free(&d);
    free(s);
}

static void test_append(double ratio) {
    kvtc_encode_options eo;
    opts(&eo, ratio);
    kvtc_encoder *e = NULL;
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &e) == KVTC_OK);
    uint8_t *old = NULL, *app = NULL, *direct = NULL;
    size_t n_old = 0, n_app = 0, n_direct = 0;
    CHECK(encode_range(e, N_OLD, &old, &n_old) == KVTC_OK);
    double t0 = test_now();
    CHECK(append_range(e, old, n_old, N_OLD, N_ALL - N_OLD, &app, &n_app) == KVTC_OK);
    double t_app = test_now() - t0;
    t0 = test_now();
    CHECK(encode_range(e, N_ALL, &direct, &n_direct) == KVTC_OK);
    double t_direct = test_now() - t0;
    kvtc_stream_info ia = {.struct_size = sizeof ia}, io = {.struct_size = sizeof io};
    CHECK(kvtc_stream_get_info(app, n_app, &ia) == KVTC_OK && kvtc_stream_get_info(old, n_old, &io) == KVTC_OK);
    CHECK(ia.n_tokens == N_ALL && ia.n_sink == SINK && ia.n_window == WIN && ia.plan_ratio == ratio);
    uint32_t kept = (uint32_t)(io.n_coded_tokens / CHUNK);
    CHECK_MSG(chunks_equal(old, app, kept), "the %u full chunks of the old stream are carried byte for byte", kept);
    kvtc_cache da, dd;
    double ea = decoded_error(app, n_app, SINK, N_ALL - WIN, &da);
    double ed = decoded_error(direct, n_direct, SINK, N_ALL - WIN, &dd);
    printf("ratio %g: append %zu B (%.1f ms), direct %zu B (%.1f ms); coded-token error %.4g vs %.4g\n", ratio,
           n_app, 1e3 * t_app, n_direct, 1e3 * t_direct, ea, ed);
    CHECK(ea >= 0 && ed > 0 && ea < 1.01 * ed);
    CHECK(n_app < n_direct + n_direct / 200);
    CHECK_MSG(chunks_full(app, n_app, CHUNK), "every chunk but the last is full, as in the direct encode");
    int raw_ok = 1;
    for (uint64_t t = 0; t < SINK; t++) raw_ok &= synth_token_equal(&g_src.c, &da, t);
    for (uint64_t t = N_ALL - WIN; t < N_ALL; t++) raw_ok &= synth_token_equal(&g_src.c, &da, t);
    CHECK_MSG(raw_ok, "sinks and the new window are exact");
    int pos_ok = 1;
    for (uint64_t t = 0; t < N_ALL; t++) pos_ok &= da.positions[t] == (int64_t)t;
    CHECK(pos_ok);
    /* the old full chunks decode exactly as before */
    kvtc_cache dold;
    CHECK(decoded_error(old, n_old, 0, 0, &dold) == 0);
    int same_old = 1;
    for (uint64_t t = SINK; t < SINK + (uint64_t)kept * CHUNK; t++) same_old &= synth_token_equal(&dold, &da, t);
    CHECK_MSG(same_old, "kept chunks decode to the same values");
    /* the old partial chunk's tokens keep their codes: they decode to the
     * old stream's values up to the rounding of the reconstruction GEMM
     * (a second quantization would move them by about their error) */
    double moved = 0, quant = 0;
    for (uint64_t t = SINK + (uint64_t)kept * CHUNK; t < SINK + io.n_coded_tokens; t++)
        for (int kv = 0; kv < 2; kv++) {
            moved += synth_token_sqerr(&dold, &da, kv, t);
            quant += synth_token_sqerr(&g_src.c, &dold, kv, t);
        }
    CHECK_MSG(quant > 0 && moved <= 1e-6 * quant, "old partial chunk re-quantized: moved %g vs error %g", moved,
              quant);
    synth_cache_free(&dold);
    synth_cache_free(&da);
    synth_cache_free(&dd);

    /* appending in three steps, one of them empty */
    uint8_t *s1 = NULL, *s2 = NULL, *s3 = NULL;
    size_t n1 = 0, n2 = 0, n3 = 0;
    CHECK(append_range(e, old, n_old, N_OLD, 100, &s1, &n1) == KVTC_OK);
    CHECK(append_range(e, s1, n1, N_OLD + 100, 0, &s2, &n2) == KVTC_OK);
    CHECK(append_range(e, s2, n2, N_OLD + 100, N_ALL - N_OLD - 100, &s3, &n3) == KVTC_OK);
    kvtc_cache d3;
    double e3 = decoded_error(s3, n3, SINK, N_ALL - WIN, &d3);
    printf("  three appends: error %.4g\n", e3);
    CHECK(e3 >= 0 && e3 < 1.01 * ed);
    synth_cache_free(&d3);
    test_small_appends(e, 1, n_direct, ed);
    test_small_appends(e, 7, n_direct, ed);
    free(s1); free(s2); free(s3);
    free(old); free(app); free(direct);
    kvtc_encoder_free(e);
}

static void test_small_and_mismatch(void) {
    kvtc_encode_options eo;
    opts(&eo, 16);
    kvtc_encoder *e = NULL, *other = NULL;
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &e) == KVTC_OK);
    /* an all-raw stream (20 tokens) grows into a coded one: the same bytes
     * as encoding the concatenation */
    uint8_t *s = NULL, *a = NULL, *d = NULL;
    size_t ns = 0, na = 0, nd = 0;
    CHECK(encode_range(e, 20, &s, &ns) == KVTC_OK);
    CHECK(append_range(e, s, ns, 20, 500, &a, &na) == KVTC_OK);
    CHECK(encode_range(e, 520, &d, &nd) == KVTC_OK);
    CHECK(na == nd && !memcmp(a, d, na));
    /* another plan, another window */
    opts(&eo, 8);
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &other) == KVTC_OK);
    kvtc_cache_layout more = source_tokens(520, 10);
    more.positions = NULL;
    size_t w = 0;
    uint8_t buf[64];
    CHECK(kvtc_append(other, a, na, &more, buf, sizeof buf, &w) == KVTC_ERR_BASIS_MISMATCH);
    kvtc_encoder_free(other);
    opts(&eo, 16);
    eo.n_window = WIN + 1;
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &other) == KVTC_OK);
    CHECK(kvtc_append(other, a, na, &more, buf, sizeof buf, &w) == KVTC_ERR_INVALID_ARGUMENT);
    kvtc_encoder_free(other);
    /* a too small buffer, a truncated stream */
    CHECK(kvtc_append(e, a, na, &more, buf, sizeof buf, &w) == KVTC_ERR_BUFFER_TOO_SMALL);
    CHECK(kvtc_append(e, a, na - 1, &more, buf, sizeof buf, &w) == KVTC_ERR_TRUNCATED);
    /* a kept chunk whose bytes no longer match its CRC is not carried over */
    uint64_t data = kvi_load_u64(a + 128 + 5 * 24);
    a[data + 3] ^= 0x40;
    size_t cap = kvtc_append_bound(e, a, na, &more);
    uint8_t *o = malloc(cap ? cap : 1);
    CHECK(cap && kvtc_append(e, a, na, &more, o, cap, &w) == KVTC_ERR_CORRUPT);
    a[data + 3] ^= 0x40;
    /* so is a corrupt partial last chunk, whose payload opens the first new chunk */
    kvtc_stream_info ia = {.struct_size = sizeof ia};
    CHECK(kvtc_stream_get_info(a, na, &ia) == KVTC_OK && ia.n_coded_tokens % CHUNK != 0);
    uint64_t last = data + kvi_load_u64(a + kvi_load_u64(a + 128 + 4 * 24) + 24 * (ia.n_chunks - 1));
    a[last + 1] ^= 0x01;
    CHECK(kvtc_append(e, a, na, &more, o, cap, &w) == KVTC_ERR_CORRUPT);
    a[last + 1] ^= 0x01;
    CHECK(kvtc_append(e, a, na, &more, o, cap, &w) == KVTC_OK);
    /* a hostile block table in the new tokens' layout */
    int32_t table[1] = {7};
    more.block_size = 16;
    more.block_table = table;
    more.n_pool_blocks = 4;
    CHECK(kvtc_append(e, a, na, &more, o, cap, &w) == KVTC_ERR_BAD_BLOCK_TABLE);
    free(o);
    free(s); free(a); free(d);
    kvtc_encoder_free(e);
}

/* An all-raw stream (no more tokens than sink + window) is coded afresh
 * on append, by the encoder given. An encoder without a model fingerprint
 * (kvtc append never sets one) dropped the stream's: the appended stream
 * then decoded with any model's recomputed layers unchecked. It now keeps
 * it, as appends to streams with coded chunks do, and is the stream the
 * fingerprinting encoder gives for the concatenation. */
static void test_all_raw_keeps_model_fingerprint(void) {
    kvtc_encode_options o;
    opts(&o, 16);
    kvtc_encoder *plain = NULL, *fp = NULL, *other = NULL;
    CHECK(kvtc_encoder_alloc(g_basis, &o, &plain) == KVTC_OK);
    o.model_fingerprint = 0x1234abcdull;
    CHECK(kvtc_encoder_alloc(g_basis, &o, &fp) == KVTC_OK);
    o.model_fingerprint = 0x99ull;
    CHECK(kvtc_encoder_alloc(g_basis, &o, &other) == KVTC_OK);
    uint8_t *s = NULL, *a = NULL, *d = NULL, *x = NULL;
    size_t ns = 0, na = 0, nd = 0, nx = 0;
    CHECK(encode_range(fp, SINK + 3, &s, &ns) == KVTC_OK);
    CHECK(append_range(plain, s, ns, SINK + 3, 300, &a, &na) == KVTC_OK);
    kvtc_stream_info ai = {.struct_size = sizeof ai};
    CHECK(kvtc_stream_get_info(a, na, &ai) == KVTC_OK && ai.n_coded_tokens > 0);
    CHECK_MSG(ai.has_model_fingerprint && ai.model_fingerprint == 0x1234abcdull,
              "append to an all-raw stream kept model fingerprint %d %llx", ai.has_model_fingerprint,
              (unsigned long long)ai.model_fingerprint);
    CHECK(encode_range(fp, SINK + 3 + 300, &d, &nd) == KVTC_OK);
    CHECK(na == nd && !memcmp(a, d, na));
    CHECK(append_range(other, s, ns, SINK + 3, 300, &x, &nx) == KVTC_ERR_MODEL_MISMATCH);
    free(s); free(a); free(d); free(x);
    kvtc_encoder_free(plain);
    kvtc_encoder_free(fp);
    kvtc_encoder_free(other);
}

/* Streams of fewer tokens than n_sink (0 tokens, say) are coded afresh on
 * append with new sinks that the old stream's size does not cover:
 * kvtc_append_bound was too small (BUFFER_TOO_SMALL from kvtc append).
 * And an empty stream has no ids to lack: the new tokens' are kept. */
static void test_append_to_tiny_streams(void) {
    kvtc_encode_options o;
    opts(&o, 16);
    kvtc_encoder *e = NULL;
    CHECK(kvtc_encoder_alloc(g_basis, &o, &e) == KVTC_OK);
    static const uint64_t olds[] = {0, 2, SINK};
    for (size_t i = 0; i < sizeof olds / sizeof olds[0]; i++) {
        uint64_t n0 = olds[i];
        uint8_t *s = NULL, *a = NULL, *d = NULL;
        size_t ns = 0, na = 0, nd = 0;
        CHECK(encode_range(e, n0, &s, &ns) == KVTC_OK);
        kvtc_result r = append_range(e, s, ns, n0, 300, &a, &na);
        CHECK_MSG(r == KVTC_OK, "append of 300 tokens to %llu: %s", (unsigned long long)n0, kvtc_result_string(r));
        CHECK(encode_range(e, n0 + 300, &d, &nd) == KVTC_OK);
        CHECK_MSG(r || (na == nd && !memcmp(a, d, na)), "append to %llu tokens != direct encode", (unsigned long long)n0);
        free(s); free(a); free(d);
    }
    /* with explicit positions and ids, whose bytes the bound's slack no
     * longer hides: the new sinks' raw bytes must be counted */
    static int64_t pos[SINK + 300];
    static int32_t ids[SINK + 300];
    for (int i = 0; i < SINK + 300; i++) {
        pos[i] = 5000 + 2 * i;
        ids[i] = 1000 + i;
    }
    for (uint64_t n0 = 0; n0 <= 2; n0 += 2) {
        kvtc_cache_layout old = source_tokens(0, n0), more = source_tokens(n0, 300), all = source_tokens(0, n0 + 300);
        old.positions = pos;
        old.token_ids = ids;
        more.positions = pos + n0;
        more.token_ids = ids + n0;
        all.positions = pos;
        all.token_ids = ids;
        size_t cs = kvtc_compress_layout_bound(e, &old), cd = kvtc_compress_layout_bound(e, &all), ns = 0, na = 0, nd = 0;
        uint8_t *s = malloc(cs), *d = malloc(cd);
        CHECK(kvtc_compress_layout(e, &old, s, cs, &ns) == KVTC_OK && kvtc_compress_layout(e, &all, d, cd, &nd) == KVTC_OK);
        size_t cap = kvtc_append_bound(e, s, ns, &more);
        uint8_t *a = malloc(cap ? cap : 1);
        kvtc_result r = kvtc_append(e, s, ns, &more, a, cap, &na);
        CHECK_MSG(r == KVTC_OK, "append with ids to %llu tokens: %s", (unsigned long long)n0, kvtc_result_string(r));
        kvtc_stream_info ai = {.struct_size = sizeof ai};
        CHECK(r || (kvtc_stream_get_info(a, na, &ai) == KVTC_OK && ai.has_token_ids && ai.has_positions));
        CHECK(r || (na == nd && !memcmp(a, d, na)));
        free(s); free(a); free(d);
    }
    kvtc_encoder_free(e);
}

int main(void) {
    kvtc_geometry g = synth_geometry(3, 2, 32, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, N_ALL);
    sp.rank = 16;
    static const double ratios[] = {8, 16};
    if (synth_calibrate(&sp, 2, SINK, WIN, ratios, 2, &g_basis) != KVTC_OK || synth_make(&sp, &g_src)) {
        fprintf(stderr, "set-up failed\n");
        return 1;
    }
    test_append(16);
    test_append(12); /* a solved plan: the appended stream carries it too */
    test_small_and_mismatch();
    test_all_raw_keeps_model_fingerprint();
    test_append_to_tiny_streams();
    g_codec = KVTC_CODEC_RANS; /* the partial chunk is rANS-decoded */
    test_append(16);
    test_small_and_mismatch();
    synth_free(&g_src);
    kvtc_basis_free(g_basis);
    return TEST_REPORT();
}
