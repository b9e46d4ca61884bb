/* test_llama_wrap.c - compressed llama.cpp state files (lib/io/lcpp_wrap.h)
 * on the real llama.cpp fixtures: compress + decompress gives a file with
 * every non-K/V byte identical, the raw sink/window cells exact, and the
 * K/V error of the coded cells within the bound the basis predicts (below)
 * (raw cells of q8_0 caches: within the requantization step);
 * several streams; damaged wrappers get specific errors.
 *
 * The error bound: per coded cell, the squared error summed over K (or V)
 * values is at most 1.5 x the plan's expected error (the bound
 * tests/test_codec.c holds the codec to) plus the requantization to the
 * file's type: for q8_0, at most (d/2)^2 per value, d the block scale, and
 * for f16/bf16 a relative 2^-9 (bf16 half-ulp) of each value. Bases are
 * calibrated here on one fixture of the model (the 2026 q8_0 slot for
 * eval-llama, the 448-token f16 slot for stories260K): the fixtures are
 * prefixes of one text, so this is not a held-out measurement; bench/RESULTS.md
 * has that. */
#include <libdeflate.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/lcpp_state.h"
#include "io/lcpp_wrap.h"
#include "kv_geometry.h"
#include "lcpp_fixtures.h"
#include "test.h"
#include "util/endian.h"

typedef struct model_basis {
    const char *prefix;   /* fixture file-name prefix of the model */
    const char *gguf;
    const char *calib;    /* fixture the basis is calibrated on */
    kvtc_basis *basis;
} model_basis;

static kvtc_basis *calibrate_on(const char *gguf, const char *fixture) {
    kvtc_geometry g;
    char err[256];
    if (eng_gguf_kv_geometry_file(gguf, &g, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", gguf, err);
        return NULL;
    }
    size_t n;
    char *b = lcpp_fixture_read(fixture, &n, NULL, NULL);
    lcpp_state s;
    if (!b || lcpp_state_parse(b, n, &s)) { free(b); return NULL; }
    kvtc_calibrator *cal = NULL;
    kvtc_basis *basis = NULL;
    kvtc_cache c;
    uint32_t rot = LCPP_ROT_AUTO;
    static const double ratios[2] = {8, 20};
    if (kvtc_calibrator_alloc(&g, NULL, &cal) == KVTC_OK &&
        lcpp_wrap_stream_cache(&s, (const uint8_t *)b, 0, &g, 0, &rot, &c) == KVTC_OK) {
        kvtc_calibrator_add(cal, &c);
        lcpp_wrap_cache_free(&c);
        kvtc_calibrator_finish(cal, ratios, 2, &basis);
    }
    kvtc_calibrator_free(cal);
    lcpp_state_free(&s);
    free(b);
    return basis;
}

static float *read_all(const lcpp_state *s, const uint8_t *b, int key, size_t *n) {
    const lcpp_stream *st = &s->streams[0];
    *n = (size_t)st->cell_count * st->k[0].n_embd * st->n_layer;
    float *f = malloc(sizeof(float) * (*n + 1));
    lcpp_state_read_float(s, b, 0, key, f);
    return f;
}

/* Squared requantization error bound of one value x of a row. */
static double requant_slack(int32_t type, const float *row, uint32_t j) {
    if (type == LCPP_GGML_Q8_0) {
        float amax = 0;
        for (uint32_t i = j / 32 * 32; i < j / 32 * 32 + 32; i++) amax = fmaxf(amax, fabsf(row[i]));
        double h = amax / 127.0 / 2.0;
        return h * h * 1.05;
    }
    if (type == LCPP_GGML_F32) return 0;
    double h = fabs(row[j]) * (1.0 / 512.0);
    return h * h;
}

static void roundtrip(const char *name, const uint8_t *b, size_t n, const kvtc_basis *basis) {
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo); /* ratio 20, 4 sinks, 128 window */
    void *z = NULL, *back = NULL;
    size_t zn = 0, bn = 0;
    kvtc_result r = lcpp_wrap_compress(basis, &eo, LCPP_ROT_AUTO, b, n, &z, &zn);
    CHECK_MSG(r == KVTC_OK, "%s: compress: %s", name, kvtc_result_string(r));
    if (r) return;
    lcpp_wrap w;
    CHECK(lcpp_wrap_parse(z, zn, &w) == KVTC_OK && w.full_size == n && w.n_sets == 1);
    /* llama.cpp rotates quantized caches since 2026-04 (the 2026 q8_0 file) */
    uint32_t want_rot = strstr(name, "3f545be") && strstr(name, "q8_0") ? LCPP_ROT_K | LCPP_ROT_V : 0;
    CHECK_MSG(w.set_rotation && w.set_rotation[0] == want_rot, "%s: rotation %u", name, w.set_rotation ? w.set_rotation[0] : 99);
    lcpp_wrap_free(&w);
    r = lcpp_wrap_decompress(basis, NULL, z, zn, &back, &bn);
    CHECK_MSG(r == KVTC_OK && bn == n, "%s: decompress: %s", name, kvtc_result_string(r));
    if (r || bn != n) { free(z); free(back); return; }
    lcpp_state s0, s1;
    CHECK(lcpp_state_parse(b, n, &s0) == KVTC_OK);
    CHECK(lcpp_state_parse(back, bn, &s1) == KVTC_OK);
    /* every non-K/V byte identical: the hollow files are */
    size_t h0 = lcpp_state_hollow_size(&s0), h1 = lcpp_state_hollow_size(&s1);
    uint8_t *hb0 = malloc(h0), *hb1 = malloc(h1);
    lcpp_state_make_hollow(&s0, b, hb0);
    lcpp_state_make_hollow(&s1, back, hb1);
    CHECK_MSG(h0 == h1 && memcmp(hb0, hb1, h0) == 0, "%s: non-K/V bytes differ", name);
    free(hb0);
    free(hb1);
    uint32_t idx;
    kvtc_plan_info pi = {.struct_size = sizeof pi};
    kvtc_basis_find_plan(basis, 20, &idx);
    kvtc_basis_plan_info(basis, idx, &pi);
    const lcpp_stream *st = &s0.streams[0];
    uint32_t cells = st->cell_count, E = st->k[0].n_embd, L = st->n_layer;
    for (int key = 1; key >= 0; key--) {
        size_t nv;
        float *a = read_all(&s0, b, key, &nv), *c = read_all(&s1, back, key, &nv);
        int32_t type = key ? st->k[0].type : st->v[0].type;
        int raw_exact = 1;
        double err = 0, slack = 0;
        uint32_t coded = 0;
        for (uint32_t t = 0; t < cells; t++) {
            int raw = t < 4 || t + 128 >= cells;
            double e = 0;
            for (uint32_t l = 0; l < L; l++) {
                const float *ra = a + ((size_t)l * cells + t) * E, *rc = c + ((size_t)l * cells + t) * E;
                for (uint32_t j = 0; j < E; j++) {
                    double d = (double)ra[j] - rc[j];
                    e += d * d;
                    /* raw cells: exact, but for q8_0 caches within the requantization */
                    if (raw) raw_exact &= type == LCPP_GGML_Q8_0 ? d * d <= requant_slack(type, ra, j) : d == 0;
                    else slack += requant_slack(type, ra, j);
                }
            }
            if (!raw) { err += e; coded++; }
        }
        CHECK_MSG(raw_exact, "%s: %s sink/window cells not exact", name, key ? "K" : "V");
        double expected = key ? pi.expected_error_k : pi.expected_error_v;
        if (coded) {
            err /= coded;
            slack /= coded;
            CHECK_MSG(err <= 1.5 * expected + slack, "%s: %s error %.4g per cell > 1.5 x %.4g + %.4g", name,
                      key ? "K" : "V", err, expected, slack);
            CHECK_MSG(err > 0, "%s: coded cells came back exact: nothing was coded?", name);
            printf("  %s %s: err/cell %.4g (expected %.4g, requant slack %.3g)\n", name, key ? "K" : "V", err,
                   expected, slack);
        }
        free(a);
        free(c);
    }
    printf("  %s: %zu -> %zu bytes (%.2fx)\n", name, n, zn, (double)n / (double)zn);
    CHECK_MSG(cells <= 132 || zn * 2 < n, "%s: no compression", name);
    lcpp_state_free(&s0);
    lcpp_state_free(&s1);
    free(z);
    free(back);
}

/* A kv-C file of three streams (stream 1 empty) from a one-stream fixture. */
static uint8_t *three_streams(const uint8_t *b, size_t n, size_t *out_n) {
    lcpp_state s;
    if (lcpp_state_parse(b, n, &s) || s.layout != LCPP_LAYOUT_KV_C) return NULL;
    size_t kv = s.tokens_off + 4ull * s.n_token_count, part = n - (kv + 4);
    lcpp_state_free(&s);
    uint8_t *o = malloc(n + part + 8);
    memcpy(o, b, kv);
    kvi_store_u32(o + kv, 3);
    memcpy(o + kv + 4, b + kv + 4, part);
    kvi_store_u32(o + kv + 4 + part, 0);
    memcpy(o + kv + 8 + part, b + kv + 4, part);
    *out_n = n + part + 4;
    return o;
}

static void test_multistream(const kvtc_basis *basis) {
    size_t n, mn;
    char *b = lcpp_fixture_read("3f545be/stories260k-f16-vtrans0.ggsq", &n, NULL, NULL);
    uint8_t *m = b ? three_streams((const uint8_t *)b, n, &mn) : NULL;
    CHECK(m != NULL);
    if (!m) { free(b); return; }
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    void *z = NULL, *back = NULL;
    size_t zn, bn;
    CHECK(lcpp_wrap_compress(basis, &eo, LCPP_ROT_AUTO, m, mn, &z, &zn) == KVTC_OK);
    lcpp_wrap w;
    CHECK(lcpp_wrap_parse(z, zn, &w) == KVTC_OK && w.n_sets == 2 && w.set_stream[0] == 0 && w.set_stream[1] == 2);
    lcpp_wrap_free(&w);
    CHECK(lcpp_wrap_decompress(basis, NULL, z, zn, &back, &bn) == KVTC_OK && bn == mn);
    lcpp_state s0, s1;
    if (back && lcpp_state_parse(m, mn, &s0) == KVTC_OK) {
        CHECK(s0.n_stream == 3);
        CHECK(lcpp_state_parse(back, bn, &s1) == KVTC_OK);
        /* the two coded streams hold the same cells, so decode to the same values */
        size_t nv = (size_t)s1.streams[0].cell_count * s1.streams[0].k[0].n_embd * s1.streams[0].n_layer;
        float *x = malloc(sizeof(float) * nv), *y = malloc(sizeof(float) * nv);
        lcpp_state_read_float(&s1, back, 0, 1, x);
        lcpp_state_read_float(&s1, back, 2, 1, y);
        CHECK(memcmp(x, y, sizeof(float) * nv) == 0);
        free(x);
        free(y);
        lcpp_state_free(&s0);
        lcpp_state_free(&s1);
    }
    free(z);
    free(back);
    free(m);
    free(b);
}

/* A slot no longer than sink + window is stored raw: f16 and bf16 files
 * come back byte for byte (q8_0 ones are stored as f16: within the
 * requantization, checked in roundtrip()). */
static void test_all_raw(const kvtc_basis *stories, const kvtc_basis *eval) {
    static const char *const names[] = {"3f545be/stories260k-bf16-vtrans0.ggsq", "c392e50/stories260k-f16-vtrans1.ggsq",
                                        "3f545be/eval27m-f16-vtrans1-capi.ggsn", "c392e50/eval27m-f16-vtrans1-capi.ggsn"};
    for (int i = 0; i < 4; i++) {
        size_t n, zn, bn;
        char *b = lcpp_fixture_read(names[i], &n, NULL, NULL);
        void *z = NULL, *back = NULL;
        kvtc_encode_options eo;
        kvtc_encode_options_init(&eo);
        eo.n_window = 1000;
        CHECK(b != NULL);
        if (!b) continue;
        const kvtc_basis *basis = strstr(names[i], "eval27m") ? eval : stories;
        CHECK(lcpp_wrap_compress(basis, &eo, LCPP_ROT_AUTO, b, n, &z, &zn) == KVTC_OK);
        CHECK(lcpp_wrap_decompress(basis, NULL, z, zn, &back, &bn) == KVTC_OK);
        CHECK_MSG(back && bn == n && memcmp(back, b, n) == 0, "%s: all-raw round trip not byte-identical", names[i]);
        free(z);
        free(back);
        free(b);
    }
    /* an empty slot (kv-C, one stream of 0 cells): no kvtc stream at all */
    size_t n, zn, bn;
    char *b = lcpp_fixture_read("3f545be/stories260k-f16-vtrans0.ggsq", &n, NULL, NULL);
    lcpp_state s;
    if (b && lcpp_state_parse(b, n, &s) == KVTC_OK) {
        size_t kv = s.tokens_off + 4ull * s.n_token_count;
        lcpp_state_free(&s);
        kvi_store_u32((uint8_t *)b + kv + 4, 0);
        void *z = NULL, *back = NULL;
        kvtc_encode_options eo;
        kvtc_encode_options_init(&eo);
        lcpp_wrap w;
        CHECK(lcpp_wrap_compress(stories, &eo, LCPP_ROT_AUTO, b, kv + 8, &z, &zn) == KVTC_OK);
        CHECK(lcpp_wrap_parse(z, zn, &w) == KVTC_OK && w.n_sets == 0);
        lcpp_wrap_free(&w);
        CHECK(lcpp_wrap_decompress(stories, NULL, z, zn, &back, &bn) == KVTC_OK && bn == kv + 8 &&
              memcmp(back, b, bn) == 0);
        free(z);
        free(back);
    } else {
        CHECK(0);
    }
    free(b);
}

/* Cells at positions other than 0..n-1 (a shifted context, a second
 * sequence): the stream carries them, decoding checks them against the
 * cells, and the restored file has every non-K/V byte. */
static void test_positions(const kvtc_basis *basis) {
    size_t n, zn, bn;
    char *b = lcpp_fixture_read("3f545be/stories260k-f16-vtrans0.ggsq", &n, NULL, NULL);
    lcpp_state s;
    CHECK(b && lcpp_state_parse(b, n, &s) == KVTC_OK);
    if (!b) return;
    for (uint32_t c = 0; c < s.streams[0].cell_count; c++)
        kvi_store_u32((uint8_t *)b + s.streams[0].cells_off + 12 * c, 5000 + 3 * c);
    lcpp_state_free(&s);
    void *z = NULL, *back = NULL;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    CHECK(lcpp_wrap_compress(basis, &eo, LCPP_ROT_AUTO, b, n, &z, &zn) == KVTC_OK);
    CHECK(lcpp_wrap_decompress(basis, NULL, z, zn, &back, &bn) == KVTC_OK && bn == n);
    if (back && lcpp_state_parse(back, bn, &s) == KVTC_OK) {
        CHECK(s.streams[0].pos[0] == 5000 && s.streams[0].pos[10] == 5030);
        size_t hn = lcpp_state_hollow_size(&s);
        uint8_t *h1 = malloc(hn), *h2 = malloc(hn);
        lcpp_state_make_hollow(&s, back, h1);
        lcpp_state_make_hollow(&s, (uint8_t *)b, h2);
        CHECK(memcmp(h1, h2, hn) == 0);
        free(h1);
        free(h2);
        lcpp_state_free(&s);
    } else {
        CHECK(0);
    }
    free(z);
    free(back);
    free(b);
}

static kvtc_result decomp(const kvtc_basis *basis, const uint8_t *z, size_t zn) {
    void *o = NULL;
    size_t on;
    kvtc_result r = lcpp_wrap_decompress(basis, NULL, z, zn, &o, &on);
    free(o);
    return r;
}

/* The wrapper header's CRC (bytes 60-63, over bytes 0-59) after a test edits the header. */
static void reseal_header(uint8_t *c) { kvi_store_u32(c + 60, (uint32_t)libdeflate_crc32(0, c, 60)); }

static void test_hostile(const kvtc_basis *basis, const kvtc_basis *other) {
    size_t n;
    char *b = lcpp_fixture_read("3f545be/stories260k-f16-vtrans1.ggsq", &n, NULL, NULL);
    CHECK(b != NULL);
    if (!b) return;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    void *zv = NULL;
    size_t zn;
    CHECK(lcpp_wrap_compress(basis, &eo, LCPP_ROT_AUTO, b, n, &zv, &zn) == KVTC_OK);
    uint8_t *z = zv, *c = malloc(zn + 1);
    int trunc_ok = 1;
    for (size_t len = 0; len < zn; len += len < 300 ? 1 : 61) {
        kvtc_result r = decomp(basis, z, len);
        if (r != KVTC_ERR_TRUNCATED) { trunc_ok = 0; fprintf(stderr, "cut at %zu: %s\n", len, kvtc_result_string(r)); break; }
    }
    CHECK(trunc_ok);
    memcpy(c, z, zn);
    c[zn] = 0;
    CHECK(decomp(basis, c, zn + 1) == KVTC_ERR_CORRUPT); /* trailing byte */
    c[0] ^= 1;
    CHECK(decomp(basis, c, zn) == KVTC_ERR_BAD_MAGIC);
    memcpy(c, z, zn);
    kvi_store_u16(c + 8, 2);
    CHECK(decomp(basis, c, zn) == KVTC_ERR_UNSUPPORTED_VERSION);
    memcpy(c, z, zn);
    c[30] ^= 1; /* full size: header CRC */
    CHECK(decomp(basis, c, zn) == KVTC_ERR_CORRUPT);
    /* a later minor version (fields an older reader may skip) still reads */
    memcpy(c, z, zn);
    kvi_store_u16(c + 10, 7);
    reseal_header(c);
    CHECK(decomp(basis, c, zn) == KVTC_OK);
    /* the skeleton's recorded shape: unknown bits, or another layout */
    memcpy(c, z, zn);
    kvi_store_u32(c + 56, 4);
    reseal_header(c);
    CHECK(decomp(basis, c, zn) == KVTC_ERR_CORRUPT);
    kvi_store_u32(c + 56, 0); /* kv-C skeleton parsed as kv-A */
    reseal_header(c);
    CHECK(decomp(basis, c, zn) == KVTC_ERR_CORRUPT);
    lcpp_wrap w;
    CHECK(lcpp_wrap_parse(z, zn, &w) == KVTC_OK);
    /* the skeleton is stored DEFLATE'd (wrapper 1.1, flag bit 0) */
    size_t skel = LCPP_WRAP_HEADER_SIZE + 16 * (size_t)w.n_sets, set0 = (size_t)(w.set_data[0] - z);
    size_t skel_stored = w.skeleton_stored, skel_raw = w.skeleton_size;
    CHECK(kvi_load_u32(z + 16) == LCPP_WRAP_FLAG_SKELETON_DEFLATE && w.skeleton_owned && skel_stored < skel_raw);
    /* the same wrapper as 1.0 wrote it (flags 0, the skeleton as is) reads
     * and restores the same file */
    size_t on0 = zn - skel_stored + skel_raw;
    uint8_t *z0 = malloc(on0);
    if (z0) {
        memcpy(z0, z, skel);
        memcpy(z0 + skel, w.skeleton, skel_raw);
        memcpy(z0 + skel + skel_raw, z + skel + skel_stored, zn - skel - skel_stored);
        kvi_store_u16(z0 + 10, 0);
        kvi_store_u32(z0 + 16, 0);
        kvi_store_u64(z0 + 32, skel_raw);
        kvi_store_u64(z0 + 40, on0);
        kvi_store_u32(z0 + 48, (uint32_t)libdeflate_crc32(0, z0 + skel, skel_raw));
        reseal_header(z0);
        void *r1 = NULL, *r0 = NULL;
        size_t n1 = 0, n0 = 0;
        CHECK(lcpp_wrap_decompress(basis, NULL, z, zn, &r1, &n1) == KVTC_OK);
        CHECK(lcpp_wrap_decompress(basis, NULL, z0, on0, &r0, &n0) == KVTC_OK);
        CHECK(r1 && r0 && n1 == n0 && !memcmp(r1, r0, n0));
        free(r1);
        free(r0);
        free(z0);
    } else
        CHECK(0);
    lcpp_wrap_free(&w);
    memcpy(c, z, zn);
    c[skel + 20] ^= 1; /* skeleton CRC */
    CHECK(decomp(basis, c, zn) == KVTC_ERR_CORRUPT);
    /* a sound CRC over a DEFLATE skeleton that claims another raw size, or
     * more than the restored file */
    for (int k = 0; k < 2; k++) {
        memcpy(c, z, zn);
        kvi_store_u64(c + skel, k ? (uint64_t)n + 1 : skel_raw - 1);
        kvi_store_u32(c + 48, (uint32_t)libdeflate_crc32(0, c + skel, skel_stored));
        reseal_header(c);
        CHECK(decomp(basis, c, zn) == KVTC_ERR_CORRUPT);
    }
    /* unknown flag bits */
    memcpy(c, z, zn);
    kvi_store_u32(c + 16, 3);
    reseal_header(c);
    CHECK(decomp(basis, c, zn) == KVTC_ERR_CORRUPT);
    memcpy(c, z, zn);
    c[zn - 5] ^= 0x40; /* inside the embedded stream's last chunk */
    CHECK(decomp(basis, c, zn) == KVTC_ERR_CORRUPT);
    memcpy(c, z, zn);
    c[set0 + 20] ^= 1; /* embedded stream header */
    CHECK(decomp(basis, c, zn) == KVTC_ERR_CORRUPT);
    CHECK(decomp(other, z, zn) == KVTC_ERR_BASIS_MISMATCH);
    /* a basis of another geometry cannot compress the file */
    void *o = NULL;
    size_t on;
    CHECK(lcpp_wrap_compress(other, &eo, LCPP_ROT_AUTO, b, n, &o, &on) == KVTC_ERR_GEOMETRY_MISMATCH && !o);
    free(c);
    free(z);
    free(b);
}

int main(void) {
    double t0 = test_now();
    model_basis models[2] = {
        {"eval27m", "data/eval-llama-27m-q8_0.gguf", "3f545be/eval27m-q8_0-vtrans0.ggsq", NULL},
        {"stories260k", "data/stories260K.gguf", "3f545be/stories260k-f16-vtrans0.ggsq", NULL},
    };
    for (int m = 0; m < 2; m++) {
        models[m].basis = calibrate_on(models[m].gguf, models[m].calib);
        CHECK_MSG(models[m].basis != NULL, "basis for %s", models[m].prefix);
    }
    if (!models[0].basis || !models[1].basis) return TEST_REPORT();
    int done = 0;
    for (size_t i = 0; i < LCPP_N_FIXTURES; i++) {
        const char *name = lcpp_fixture_names[i];
        size_t n;
        char *b = lcpp_fixture_read(name, &n, NULL, NULL);
        if (!b) { printf("  skipped %s (not on this machine)\n", name); continue; }
        const kvtc_basis *basis = strstr(name, "eval27m") ? models[0].basis : models[1].basis;
        roundtrip(name, (const uint8_t *)b, n, basis);
        done++;
        free(b);
    }
    CHECK(done >= 9);
    test_multistream(models[1].basis);
    test_all_raw(models[1].basis, models[0].basis);
    test_positions(models[1].basis);
    test_hostile(models[1].basis, models[0].basis);
    kvtc_basis_free(models[0].basis);
    kvtc_basis_free(models[1].basis);
    printf("(%.2f s)\n", test_now() - t0);
    return TEST_REPORT();
}
