/* test_any_ratio.c - opts.ratio for ratios the basis stores no plan for
 * (issue 11): the encoder solves the DP from the basis' eigenvalues, the
 * stream carries the plan's groups (plan section, flag bit 2, container
 * 1.1), and the decoder uses them. Also: container 1.0 streams still
 * decode, and hostile plan sections are rejected without a crash. */
#include <libdeflate.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc.h"
#include "synth.h"
#include "test.h"
#include "util/endian.h"

enum { N_TOK = 600, SINK = 4, WIN = 16, CHUNK = 64 };

static kvtc_basis *g_basis;
static synth_cache g_src;

typedef struct coded {
    uint8_t *bytes;
    size_t size;
    double err;   /* squared error over the coded tokens, K and V */
    kvtc_result r;
} coded;

static kvtc_result decode(const kvtc_basis *b, const uint8_t *s, size_t n, kvtc_cache *out) {
    kvtc_stream_info in = {.struct_size = sizeof in};
    kvtc_result r = kvtc_stream_get_info(s, n, &in);
    if (r) return r;
    synth_alloc_like(&in.geometry, in.dtype, in.n_tokens, 0, out);
    kvtc_decoder *d = NULL;
    if ((r = kvtc_decoder_alloc(b, NULL, &d))) return r;
    r = kvtc_decompress(d, s, n, out);
    kvtc_decoder_free(d);
    return r;
}

static coded code_at(double ratio) {
    coded c = {0};
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = ratio;
    eo.n_sink = SINK;
    eo.n_window = WIN;
    eo.chunk_tokens = CHUNK;
    c.r = synth_compress(g_basis, &eo, &g_src.c, &c.bytes, &c.size);
    if (c.r) return c;
    kvtc_cache out;
    c.r = decode(g_basis, c.bytes, c.size, &out);
    for (uint64_t t = SINK; !c.r && t < N_TOK - WIN; t++)
        c.err += synth_token_sqerr(&g_src.c, &out, 1, t) + synth_token_sqerr(&g_src.c, &out, 0, t);
    synth_cache_free(&out);
    return c;
}

static uint32_t stream_flags(const coded *c) { return kvi_load_u32(c->bytes + 16); }

/* Re-seal a stream after editing bytes of its plan section (section 6):
 * section CRC, table CRC, header CRC. */
static void reseal(uint8_t *s) {
    uint32_t n_sec = kvi_load_u32(s + 104);
    uint8_t *tab = s + 128;
    if (n_sec == 7) {
        uint8_t *e = tab + 6 * 24;
        uint64_t off = kvi_load_u64(e), size = kvi_load_u64(e + 8);
        kvi_store_u32(e + 16, (uint32_t)libdeflate_crc32(0, s + off, (size_t)size));
    }
    kvi_store_u32(s + 108, (uint32_t)libdeflate_crc32(0, tab, n_sec * 24));
    kvi_store_u32(s + 124, (uint32_t)libdeflate_crc32(0, s, 124));
}

static void test_between_neighbours(void) {
    coded c8 = code_at(8), c12 = code_at(12), c16 = code_at(16), c24 = code_at(24), c32 = code_at(32);
    CHECK(c8.r == KVTC_OK && c12.r == KVTC_OK && c16.r == KVTC_OK && c24.r == KVTC_OK && c32.r == KVTC_OK);
    printf("ratio: bytes, squared error\n");
    coded *all[5] = {&c8, &c12, &c16, &c24, &c32};
    const double rs[5] = {8, 12, 16, 24, 32};
    for (int i = 0; i < 5; i++) printf("  %4.0f: %zu, %.4g\n", rs[i], all[i]->size, all[i]->err);
    /* stored plans (8, 32) carry no plan section; solved ones do, at 1.1 */
    CHECK(!(stream_flags(&c8) & 4u) && !(stream_flags(&c32) & 4u));
    CHECK((stream_flags(&c12) & 4u) && (stream_flags(&c16) & 4u) && (stream_flags(&c24) & 4u));
    CHECK(kvi_load_u16(c16.bytes + 10) == 1);
    /* size and error are monotone in the ratio */
    for (int i = 0; i + 1 < 5; i++) {
        CHECK_MSG(all[i]->size > all[i + 1]->size, "size %g > %g", rs[i], rs[i + 1]);
        CHECK_MSG(all[i]->err < all[i + 1]->err, "error %g < %g", rs[i], rs[i + 1]);
    }
    kvtc_stream_info in = {.struct_size = sizeof in};
    CHECK(kvtc_stream_get_info(c24.bytes, c24.size, &in) == KVTC_OK && in.plan_ratio == 24.0);

    /* hostile plan sections (CRCs fixed up): every single-byte change is
     * rejected (the groups must hash to the header's plan fingerprint) or,
     * if accepted, decodes like the original */
    kvtc_cache ref;
    CHECK(decode(g_basis, c16.bytes, c16.size, &ref) == KVTC_OK);
    uint8_t *e = c16.bytes + 128 + 6 * 24;
    uint64_t off = kvi_load_u64(e), size = kvi_load_u64(e + 8);
    uint8_t *copy = malloc(c16.size);
    int rejected = 0, same = 0, other = 0;
    for (uint64_t i = 0; i < size; i++)
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(copy, c16.bytes, c16.size);
            copy[off + i] ^= (uint8_t)(1u << bit);
            reseal(copy);
            kvtc_cache out;
            kvtc_result r = decode(g_basis, copy, c16.size, &out);
            if (r == KVTC_ERR_CORRUPT || r == KVTC_ERR_BASIS_MISMATCH) rejected++;
            else if (r == KVTC_OK && !memcmp(out.k, ref.k, in.k_bytes) && !memcmp(out.v, ref.v, in.v_bytes)) same++;
            else other++;
            synth_cache_free(&out);
        }
    printf("plan section bit flips: %d rejected, %d decode identically (the informative ratio), %d other\n",
           rejected, same, other);
    CHECK(other == 0 && rejected > 0);
    /* a plan section whose declared group counts disagree with its size */
    memcpy(copy, c16.bytes, c16.size);
    kvi_store_u32(copy + off + 8, 0xffffffffu);
    reseal(copy);
    kvtc_cache out;
    CHECK(decode(g_basis, copy, c16.size, &out) == KVTC_ERR_CORRUPT);
    synth_cache_free(&out);
    /* the flag without the 1.1 minor version */
    memcpy(copy, c16.bytes, c16.size);
    kvi_store_u16(copy + 10, 0);
    reseal(copy);
    CHECK(kvtc_stream_get_info(copy, c16.size, &in) == KVTC_ERR_CORRUPT);
    free(copy);
    synth_cache_free(&ref);
    for (int i = 0; i < 5; i++) free(all[i]->bytes);
}

/* A container 1.0 stream (what the library wrote before the plan section:
 * the same bytes with minor version 0) still decodes, identically. */
static void test_old_version(void) {
    coded c = code_at(8);
    CHECK(c.r == KVTC_OK);
    kvtc_cache now, old;
    CHECK(decode(g_basis, c.bytes, c.size, &now) == KVTC_OK);
    kvi_store_u16(c.bytes + 10, 0);
    reseal(c.bytes);
    kvtc_stream_info in = {.struct_size = sizeof in};
    CHECK(kvtc_stream_get_info(c.bytes, c.size, &in) == KVTC_OK && in.version_minor == 0);
    CHECK(decode(g_basis, c.bytes, c.size, &old) == KVTC_OK);
    CHECK(!memcmp(now.k, old.k, in.k_bytes) && !memcmp(now.v, old.v, in.v_bytes));
    synth_cache_free(&now);
    synth_cache_free(&old);
    free(c.bytes);
}

static void test_limits(void) {
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    kvtc_encoder *e = NULL;
    eo.ratio = 7.9; /* below the smallest calibrated ratio: not enough stored components */
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &e) == KVTC_ERR_NO_PLAN && !e);
    eo.ratio = 1.0;
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &e) == KVTC_ERR_NO_PLAN && !e);
    /* not a ratio: an infinite one matched every stored plan (|r - inf| <=
     * 1e-9 * inf) and silently coded at the first plan's ratio */
    static const double not_ratios[] = {INFINITY, -INFINITY, NAN, 0, -8};
    for (size_t i = 0; i < sizeof not_ratios / sizeof not_ratios[0]; i++) {
        eo.ratio = not_ratios[i];
        CHECK_MSG(kvtc_encoder_alloc(g_basis, &eo, &e) == KVTC_ERR_INVALID_ARGUMENT && !e, "ratio %g", not_ratios[i]);
    }
    eo.ratio = 1000; /* anything above works: few or no components */
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &e) == KVTC_OK);
    kvtc_encoder_free(e);
    coded c = code_at(1000);
    CHECK(c.r == KVTC_OK);
    free(c.bytes);
}

int main(void) {
    kvtc_geometry g = synth_geometry(4, 2, 32, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, N_TOK);
    sp.rank = 24;
    sp.noise = 0.05;
    static const double ratios[] = {8, 32};
    if (synth_calibrate(&sp, 3, SINK, WIN, ratios, 2, &g_basis) != KVTC_OK || synth_make(&sp, &g_src)) {
        fprintf(stderr, "set-up failed\n");
        return 1;
    }
    double t0 = test_now();
    kvtc_encoder *e = NULL;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = 17;
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &e) == KVTC_OK);
    printf("encoder with a solved plan: %.1f ms\n", 1e3 * (test_now() - t0));
    kvtc_encoder_free(e);
    test_between_neighbours();
    test_old_version();
    test_limits();
    synth_free(&g_src);
    kvtc_basis_free(g_basis);
    return TEST_REPORT();
}
