/* test_rans.c - entropy codec 2 (interleaved static rANS, lib/entropy/rans.c):
 * round trips on random, skewed, constant, tiny and empty inputs and at lane
 * boundaries; rejection of hostile blocks (truncation, bit flips, bad
 * tables, lane counts, states and stream lengths) without crashes; size
 * against DEFLATE and the order-0 entropy on a realistic payload (quantized
 * Laplacian symbols, bit-packed, with fp16 shift/scale parameters); and the
 * whole codec through the public API with KVTC_CODEC_RANS: decodes to the
 * same cache as the DEFLATE stream, and a damaged chunk is refused. */
#include <libdeflate.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "entropy/rans.h"
#include "synth.h"
#include "test.h"
#include "util/endian.h"
#include "util/half.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Encode + decode; returns the block size (0 on failure, with a CHECK). */
static size_t roundtrip_segs(const uint8_t *in, size_t n, const rans_segment *segs, uint32_t ns, const char *what) {
    size_t cap = rans_bound(n, ns);
    uint8_t *z = malloc(cap + 1), *back = malloc(n + 1);
    size_t zs = 0;
    kvtc_result r = rans_encode(in, n, segs, ns, z, cap, &zs);
    CHECK_MSG(r == KVTC_OK && (zs > 0 || n == 0) && zs <= cap, "%s: encode n=%zu gave %zu (%s)", what, n, zs,
              kvtc_result_string(r));
    if (!r && zs > 1) {
        size_t zs2 = 0;
        CHECK(rans_encode(in, n, segs, ns, z, zs - 1, &zs2) == KVTC_ERR_BUFFER_TOO_SMALL);
        CHECK(rans_encode(in, n, segs, ns, z, cap, &zs2) == KVTC_OK && zs2 == zs);
    }
    r = r ? r : rans_decode(z, zs, back, n);
    CHECK_MSG(r == KVTC_OK, "%s: decode n=%zu: %s", what, n, kvtc_result_string(r));
    CHECK_MSG(r != KVTC_OK || n == 0 || memcmp(in, back, n) == 0, "%s: n=%zu differs", what, n);
    /* a wrong expected size is refused (except for one-symbol data, whose
     * rANS lanes never change state: the container fixes the size) */
    int single = 1;
    for (size_t i = 1; i < n; i++) single &= in[i] == in[0];
    if (zs && !single) {
        uint8_t *big = malloc(n + 2);
        CHECK_MSG(rans_decode(z, zs, big, n + 1) != KVTC_OK, "%s: n+1 accepted", what);
        if (n) CHECK_MSG(rans_decode(z, zs, big, n - 1) != KVTC_OK, "%s: n-1 accepted", what);
        free(big);
    }
    free(z);
    free(back);
    return zs;
}

static size_t roundtrip(const uint8_t *in, size_t n, const char *what) { return roundtrip_segs(in, n, NULL, 0, what); }

static void fill_geometric(synth_rng *g, uint8_t *p, size_t n, double q) {
    for (size_t i = 0; i < n; i++) {
        uint32_t s = 0;
        while (s < 255 && synth_uniform(g) < q) s++;
        p[i] = (uint8_t)s;
    }
}

static void test_roundtrips(void) {
    synth_rng g = {42};
    size_t sizes[] = {0, 1, 2, 31, 32, 33, 63, 64, 65, 100, 255, 1000, 4095, 4096, 4097, 32768 + 7,
                      131072, 131072 + 4096 * 32 + 5, 1u << 20};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        size_t n = sizes[si];
        uint8_t *p = malloc(n + 1);
        for (size_t i = 0; i < n; i++) p[i] = (uint8_t)synth_next(&g);
        size_t zs = roundtrip(p, n, "uniform");
        CHECK_MSG(zs == (n ? n + RANS_STORED_HEADER : 0), "uniform bytes should be stored (n=%zu, got %zu)", n, zs);
        fill_geometric(&g, p, n, 0.5);
        zs = roundtrip(p, n, "geometric");
        if (n >= 4096) CHECK_MSG(zs < n / 3, "geometric(0.5) n=%zu: %zu bytes", n, zs);
        memset(p, 7, n);
        zs = roundtrip(p, n, "constant");
        if (n >= 4096) CHECK_MSG(zs < 2000 + n / 200, "constant n=%zu: %zu bytes", n, zs);
        for (size_t i = 0; i < n; i++) p[i] = (synth_next(&g) % 100) ? 3 : 200; /* two symbols, one rare */
        roundtrip(p, n, "two-symbol");
        for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(synth_next(&g) % 256 < 250 ? synth_next(&g) % 4 : synth_next(&g));
        roundtrip(p, n, "skewed with a rare tail");
        free(p);
    }
}

static void test_normalize(void) {
    uint32_t c[256], f[256];
    synth_rng g = {7};
    for (int trial = 0; trial < 200; trial++) {
        uint64_t n = 0;
        for (int s = 0; s < 256; s++) {
            uint64_t r = synth_next(&g);
            c[s] = (r % 3 == 0) ? 0 : (uint32_t)((r >> 8) % (trial % 2 ? 1000000 : 10));
            n += c[s];
        }
        if (!n) continue;
        rans_normalize(c, n, f);
        uint32_t sum = 0;
        int ok = 1;
        for (int s = 0; s < 256; s++) {
            sum += f[s];
            ok &= (c[s] == 0) == (f[s] == 0);
        }
        CHECK(sum == RANS_PROB_SCALE && ok);
    }
    /* a single symbol takes the whole range */
    memset(c, 0, sizeof c);
    c[9] = 5;
    rans_normalize(c, 5, f);
    CHECK(f[9] == RANS_PROB_SCALE);
}

/* A valid rANS-mode block of a skewed payload, for the corruption tests. */
static uint8_t *valid_block(size_t n, size_t *zs, uint8_t **payload) {
    synth_rng g = {99};
    uint8_t *p = malloc(n);
    fill_geometric(&g, p, n, 0.6);
    uint8_t *z = malloc(rans_bound(n, 1));
    rans_encode(p, n, NULL, 0, z, rans_bound(n, 1), zs);
    *payload = p;
    return z;
}

static void test_corrupt(void) {
    size_t n = 20000, zs = 0;
    uint8_t *p = NULL;
    uint8_t *z = valid_block(n, &zs, &p);
    CHECK(zs > 0 && z[4] == RANS_MODE_RANS && z[5] == 1);
    uint8_t *out = malloc(n), *bad = malloc(zs + 16);
    CHECK(rans_decode(z, zs, out, n) == KVTC_OK && memcmp(out, p, n) == 0);
    /* every truncation is refused */
    int trunc_ok = 1;
    for (size_t len = 0; len < zs; len++) trunc_ok &= rans_decode(z, len, out, n) == KVTC_ERR_CORRUPT;
    CHECK_MSG(trunc_ok, "a truncated block was accepted");
    /* an extra byte is refused */
    memcpy(bad, z, zs);
    bad[zs] = 0;
    CHECK(rans_decode(bad, zs + 1, out, n) == KVTC_ERR_CORRUPT);
    /* bit flips: never a crash; nearly all caught here (the chunk CRC
     * catches the rest in the container) */
    uint32_t flips = 0, caught = 0;
    synth_rng g = {5};
    for (int i = 0; i < 4000; i++) {
        memcpy(bad, z, zs);
        size_t at = (size_t)(synth_next(&g) % zs);
        bad[at] ^= (uint8_t)(1u << (synth_next(&g) % 8));
        kvtc_result r = rans_decode(bad, zs, out, n);
        flips++;
        caught += r != KVTC_OK || memcmp(out, p, n) == 0 ? 1 : 0;
    }
    CHECK_MSG(caught >= flips * 99 / 100, "only %u of %u flips caught", caught, flips);
    printf("  bit flips detected by rANS alone: %u / %u\n", caught, flips);
    /* hostile headers */
    uint32_t lanes = kvi_load_u16(z + 6);
    size_t npres = 0;
    const size_t bm = RANS_SEG_HEADER, f0 = bm + 32;
    for (int b = 0; b < 32; b++)
        for (int k = 0; k < 8; k++) npres += (z[bm + b] >> k) & 1;
    size_t st = f0 + 2 * npres, wc = st + 4 * (size_t)lanes;
    memcpy(bad, z, zs); bad[4] = 2; /* mode */
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); bad[5] = 3; /* period */
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); bad[5] = 0;
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); kvi_store_u32(bad, 0); /* segment size */
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); kvi_store_u32(bad, (uint32_t)n + 1);
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); kvi_store_u32(bad, (uint32_t)n - 1);
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); kvi_store_u16(bad + 6, 0);
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); kvi_store_u16(bad + 6, 4097);
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); kvi_store_u16(bad + 6, 65535);
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); kvi_store_u16(bad + f0, (uint16_t)(kvi_load_u16(z + f0) + 1));
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT); /* sum 4097 */
    memcpy(bad, z, zs); kvi_store_u16(bad + f0, 0);
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT); /* a present symbol with freq 0 */
    memcpy(bad, z, zs); kvi_store_u16(bad + f0, 60000);
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); memset(bad + bm, 0xff, 32); /* all symbols present: table overruns */
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); memset(bad + bm, 0, 32); /* no symbol: sum 0 */
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); kvi_store_u32(bad + st, 5); /* state below L */
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); kvi_store_u32(bad + st, 0xffffffffu);
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); kvi_store_u32(bad + wc, 0xffffffffu); /* word count overflow */
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); /* move a word from lane 0 to lane 1: sizes still add up */
    kvi_store_u32(bad + wc, kvi_load_u32(z + wc) - 1);
    kvi_store_u32(bad + wc + 4, kvi_load_u32(z + wc + 4) + 1);
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    memcpy(bad, z, zs); kvi_store_u32(bad + wc, 0); /* a lane that runs out of words */
    CHECK(rans_decode(bad, zs, out, n) == KVTC_ERR_CORRUPT);
    /* stored segments: sizes must add up exactly */
    uint8_t sb[16] = {3, 0, 0, 0, RANS_MODE_STORED, 1, 2, 3};
    CHECK(rans_decode(sb, 8, out, 3) == KVTC_OK && out[0] == 1 && out[2] == 3);
    CHECK(rans_decode(sb, 8, out, 4) == KVTC_ERR_CORRUPT);
    CHECK(rans_decode(sb, 8, out, 2) == KVTC_ERR_CORRUPT);
    CHECK(rans_decode(sb, 7, out, 3) == KVTC_ERR_CORRUPT);
    CHECK(rans_decode(sb, 9, out, 3) == KVTC_ERR_CORRUPT);
    CHECK(rans_decode(sb, 0, out, 0) == KVTC_OK); /* the empty payload is the empty block */
    CHECK(rans_decode(sb, 0, out, 1) == KVTC_ERR_CORRUPT);
    free(z); free(p); free(out); free(bad);
}

/* A realistic chunk payload: 256 tokens x 64 groups of 16 coordinates, each
 * group per token an fp16 shift and scale, then 4-bit (first half) and 2-bit
 * (second half) codes of Laplacian coordinates, bit-packed LSB first. */
static size_t realistic_payload(uint8_t *out) {
    synth_rng g = {2024};
    const uint32_t tokens = 256, groups = 64, size = 16;
    uint8_t *pp = out;
    size_t param_bytes = (size_t)tokens * groups * 4;
    uint8_t *cp = out + param_bytes;
    uint64_t acc = 0;
    unsigned nb = 0;
    for (uint32_t gi = 0; gi < groups; gi++) {
        unsigned bits = gi < groups / 2 ? 4 : 2;
        double sigma = 1.0 / sqrt(1.0 + gi);
        for (uint32_t t = 0; t < tokens; t++) {
            double x[16], mn = 1e300, mx = -1e300;
            for (uint32_t j = 0; j < size; j++) {
                double u = synth_uniform(&g) - 0.5;
                x[j] = -sigma * (u < 0 ? -1 : 1) * log(1 - 2 * fabs(u) + 1e-300);
                mn = x[j] < mn ? x[j] : mn;
                mx = x[j] > mx ? x[j] : mx;
            }
            uint16_t hs = kvi_f32_to_f16((float)mn), hc = kvi_f32_to_f16((float)((mx - mn) / ((1 << bits) - 1)));
            kvi_store_u16(pp, hs);
            kvi_store_u16(pp + 2, hc);
            pp += 4;
            double sc = kvi_f16_to_f32(hc), sh = kvi_f16_to_f32(hs);
            for (uint32_t j = 0; j < size; j++) {
                double q = sc > 0 ? floor((x[j] - sh) / sc + 0.5) : 0;
                uint32_t c = q < 0 ? 0 : (q > (1 << bits) - 1 ? (1u << bits) - 1 : (uint32_t)q);
                acc |= (uint64_t)c << nb;
                nb += bits;
                while (nb >= 8) { *cp++ = (uint8_t)acc; acc >>= 8; nb -= 8; }
            }
        }
    }
    if (nb) *cp++ = (uint8_t)acc;
    return (size_t)(cp - out);
}

static double order0_bytes(const uint8_t *p, size_t n) {
    uint64_t c[256] = {0};
    for (size_t i = 0; i < n; i++) c[p[i]]++;
    double bits = 0;
    for (int s = 0; s < 256; s++)
        if (c[s]) bits -= (double)c[s] * log2((double)c[s] / (double)n);
    return bits / 8;
}

static void test_vs_deflate(void) {
    uint8_t *p = malloc(1 << 20);
    size_t n = realistic_payload(p);
    size_t zs1 = roundtrip(p, n, "realistic payload, one segment");
    rans_segment segs[3] = {{65536, 4}, {65536, 1}, {32768, 1}};
    CHECK(n == 65536 + 65536 + 32768);
    size_t zs = roundtrip_segs(p, n, segs, 3, "realistic payload, segmented");
    double hs = order0_bytes(p, 65536) + order0_bytes(p + 65536, 65536) + order0_bytes(p + 131072, 32768);
    double hp = 0; /* params with the period-4 context */
    for (int c = 0; c < 4; c++) {
        uint8_t *q = malloc(16384);
        for (int i = 0; i < 16384; i++) q[i] = p[4 * i + c];
        hp += order0_bytes(q, 16384);
        free(q);
    }
    hs += hp - order0_bytes(p, 65536);
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
    size_t dcap = libdeflate_deflate_compress_bound(c, n);
    uint8_t *dz = malloc(dcap), *rz = malloc(rans_bound(n, 3)), *back = malloc(n);
    size_t ds = libdeflate_deflate_compress(c, p, n, dz, dcap);
    double h0 = order0_bytes(p, n);
    /* speed, for information (one thread, this machine) */
    int reps = 5;
    double t0 = now_s();
    size_t tmp = 0;
    for (int i = 0; i < reps; i++) rans_encode(p, n, segs, 3, rz, rans_bound(n, 3), &tmp);
    double t1 = now_s();
    for (int i = 0; i < reps; i++) rans_decode(rz, zs, back, n);
    double t2 = now_s();
    for (int i = 0; i < reps; i++) libdeflate_deflate_compress(c, p, n, dz, dcap);
    double t3 = now_s();
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    size_t got = 0;
    for (int i = 0; i < reps; i++) libdeflate_deflate_decompress(d, dz, ds, back, n, &got);
    double t4 = now_s();
    double mb = (double)n * reps / 1e6;
    printf("  realistic payload %zu bytes: order-0 entropy %.0f (segmented, period-4 params: %.0f); rANS one segment %zu, "
           "segmented %zu (%.3f of payload, +%.2f%% over its entropy); DEFLATE-6 %zu (%.3f)\n",
           n, h0, hs, zs1, zs, (double)zs / n, 100.0 * (zs / hs - 1), ds, (double)ds / n);
    printf("  one thread: rANS enc %.0f MB/s dec %.0f MB/s; DEFLATE-6 enc %.0f MB/s dec %.0f MB/s\n", mb / (t1 - t0),
           mb / (t2 - t1), mb / (t3 - t2), mb / (t4 - t3));
    CHECK_MSG(zs < ds, "rANS %zu not smaller than DEFLATE %zu", zs, ds);
    CHECK_MSG((double)zs < hs * 1.01 + 4096, "rANS %zu too far above the entropy %.0f", zs, hs);
    CHECK_MSG((double)zs1 < h0 * 1.01 + 4096, "rANS %zu too far above the entropy %.0f", zs1, h0);
    libdeflate_free_compressor(c);
    libdeflate_free_decompressor(d);
    free(p); free(dz); free(rz); free(back);
}

/* The whole codec with codec 2: same decoded cache as with DEFLATE. */
static void test_end_to_end(void) {
    kvtc_geometry g = synth_geometry(4, 2, 64, KVTC_ROPE_NEOX, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, 600);
    sp.rank = 24;
    double ratios[1] = {16};
    kvtc_basis *b = NULL;
    kvtc_result r = synth_calibrate(&sp, 2, 4, 16, ratios, 1, &b);
    CHECK_MSG(r == KVTC_OK, "calibrate: %s", kvtc_result_string(r));
    if (r) return;
    synth_cache sc;
    sp.data_seed = 7;
    CHECK(synth_make(&sp, &sc) == 0);
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    CHECK(eo.entropy_codec == KVTC_CODEC_DEFLATE);
    eo.n_sink = 4;
    eo.n_window = 16;
    eo.chunk_tokens = 128;
    uint8_t *sd = NULL, *sr = NULL;
    size_t nd = 0, nr = 0;
    CHECK(synth_compress(b, &eo, &sc.c, &sd, &nd) == KVTC_OK);
    eo.entropy_codec = KVTC_CODEC_RANS;
    eo.n_threads = 3;
    CHECK(synth_compress(b, &eo, &sc.c, &sr, &nr) == KVTC_OK);
    eo.entropy_codec = 3;
    kvtc_encoder *bad = NULL;
    CHECK(kvtc_encoder_alloc(b, &eo, &bad) == KVTC_ERR_INVALID_ARGUMENT && bad == NULL);
    kvtc_stream_info id, ir;
    CHECK(kvtc_stream_get_info(sd, nd, &id) == KVTC_OK && id.entropy_codec == KVTC_CODEC_DEFLATE);
    CHECK(kvtc_stream_get_info(sr, nr, &ir) == KVTC_OK && ir.entropy_codec == KVTC_CODEC_RANS);
    printf("  end to end (p=512, 16x, f16): DEFLATE stream %zu bytes (chunks %llu), rANS stream %zu (chunks %llu)\n", nd,
           (unsigned long long)id.coded_bytes, nr, (unsigned long long)ir.coded_bytes);
    kvtc_cache od, orr;
    synth_alloc_like(&g, KVTC_DTYPE_F16, sp.n_tokens, 0, &od);
    synth_alloc_like(&g, KVTC_DTYPE_F16, sp.n_tokens, 0, &orr);
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(b, NULL, &d) == KVTC_OK);
    CHECK(kvtc_decompress(d, sd, nd, &od) == KVTC_OK);
    CHECK(kvtc_decompress(d, sr, nr, &orr) == KVTC_OK);
    uint64_t bytes = kvtc_cache_tensor_bytes(&g, KVTC_DTYPE_F16, sp.n_tokens);
    CHECK_MSG(memcmp(od.k, orr.k, bytes) == 0 && memcmp(od.v, orr.v, bytes) == 0,
              "rANS and DEFLATE streams decode differently");
    /* a flipped byte inside the chunk data is refused (chunk CRC) */
    uint64_t data_off = nr - ir.coded_bytes;
    sr[data_off + ir.coded_bytes / 2] ^= 0x10;
    CHECK(kvtc_decompress(d, sr, nr, &orr) == KVTC_ERR_CORRUPT);
    kvtc_decoder_free(d);
    synth_cache_free(&od);
    synth_cache_free(&orr);
    free(sd);
    free(sr);
    synth_free(&sc);
    kvtc_basis_free(b);
}

int main(void) {
    test_normalize();
    test_roundtrips();
    test_corrupt();
    test_vs_deflate();
    test_end_to_end();
    return TEST_REPORT();
}
