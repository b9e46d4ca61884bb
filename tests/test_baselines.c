/* test_baselines.c - the baseline KV-cache quantizers in tools/eval/baselines.c:
 * scalar fp16 / e4m3 conversions, hand-computed blocks, error bounds, costs,
 * sink/window protection, invalid geometry, and the error ordering. */
#include "test.h"

#include "eval/baselines.c" /* tests do not link tools/ sources */
#include "util/half.h"      /* independent fp16 conversion to cross-check */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(void) { return ((double)(rng_next() >> 11) + 0.5) * 0x1p-53; }

static float rng_gauss(void) {
    double u1 = rng_uniform(), u2 = rng_uniform();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static void fill_gauss(float *x, size_t n, float sigma) {
    for (size_t i = 0; i < n; i++) x[i] = sigma * rng_gauss();
}

static float *dup_floats(const float *x, size_t n) {
    float *y = malloc(n * sizeof *y);
    if (y) memcpy(y, x, n * sizeof *y);
    return y;
}

static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static double rms_rel(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)a[i] * (double)a[i];
    }
    return den > 0 ? sqrt(num / den) : 0.0;
}

/* ---- fp16 --------------------------------------------------------------- */

static void test_f16_edges(void) {
    CHECK(baseline_f32_to_f16(0.0f) == 0x0000);
    CHECK(baseline_f32_to_f16(-0.0f) == 0x8000);
    CHECK(baseline_f32_to_f16(1.0f) == 0x3c00);
    CHECK(baseline_f32_to_f16(-2.0f) == 0xc000);
    CHECK(baseline_f32_to_f16(65504.0f) == 0x7bff);              /* max */
    CHECK(baseline_f32_to_f16(65519.996f) == 0x7bff);            /* just below the midpoint */
    CHECK(baseline_f32_to_f16(65520.0f) == 0x7c00);              /* midpoint to "65536": inf */
    CHECK(baseline_f32_to_f16(1e10f) == 0x7c00);
    CHECK(baseline_f32_to_f16(-1e10f) == 0xfc00);
    CHECK(baseline_f32_to_f16(INFINITY) == 0x7c00);
    CHECK(baseline_f32_to_f16(-INFINITY) == 0xfc00);
    uint16_t hn = baseline_f32_to_f16(NAN);
    CHECK((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    CHECK(isnan(baseline_f16_to_f32(hn)));
    CHECK(isnan(baseline_f16_to_f32(baseline_f32_to_f16(-NAN))));
    CHECK(baseline_f32_to_f16(0x1p-14f) == 0x0400);              /* smallest normal */
    CHECK(baseline_f32_to_f16(0x1p-24f) == 0x0001);              /* smallest subnormal */
    CHECK(baseline_f32_to_f16(0x1p-25f) == 0x0000);              /* tie 0 / 1 -> even 0 */
    CHECK(baseline_f32_to_f16(-0x1p-25f) == 0x8000);
    CHECK(baseline_f32_to_f16(0x1.000002p-25f) == 0x0001);       /* just above the tie */
    CHECK(baseline_f32_to_f16(0x1p-26f) == 0x0000);
    CHECK(baseline_f32_to_f16(3.0f * 0x1p-25f) == 0x0002);       /* tie 1 / 2 -> even 2 */
    CHECK(baseline_f32_to_f16(5.0f * 0x1p-25f) == 0x0002);       /* tie 2 / 3 -> even 2 */
    CHECK(baseline_f32_to_f16(0x3ffp-24f) == 0x03ff);            /* largest subnormal */
    CHECK(baseline_f32_to_f16(0x7ffp-25f) == 0x0400);            /* tie 0x3ff / 0x400 -> even */
    CHECK(baseline_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);       /* tie -> even */
    CHECK(baseline_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02);   /* tie -> even (up) */
    CHECK(baseline_f32_to_f16(nextafterf(1.0f + 0x1p-11f, 2.0f)) == 0x3c01);
    CHECK(baseline_f32_to_f16(2047.0f * 0x1p-10f) == 0x3fff);    /* 1.9990234375: exact */
    CHECK(baseline_f32_to_f16(4095.0f * 0x1p-11f) == 0x4000);    /* tie 0x3fff / 0x4000 -> even */
    CHECK(baseline_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(baseline_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(baseline_f16_to_f32(0x8000) == 0.0f && signbit(baseline_f16_to_f32(0x8000)));
    CHECK(baseline_f16_to_f32(0x7c00) == INFINITY);
    CHECK(baseline_f16_to_f32(0xfc00) == -INFINITY);
    CHECK(baseline_f16_to_f32(0x3555) == 0x1.554p-2f);

    /* every half value round-trips; every midpoint goes to the even neighbour */
    int bad_rt = 0, bad_mid = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = baseline_f16_to_f32((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            if (!isnan(f) || (baseline_f32_to_f16(f) & 0x7fff) <= 0x7c00) bad_rt++;
            continue;
        }
        if (baseline_f32_to_f16(f) != h) bad_rt++;
        if ((h & 0x7fff) < 0x7bff) { /* midpoint to the next larger magnitude */
            float g = baseline_f16_to_f32((uint16_t)(h + 1));
            float mid = (float)(((double)f + (double)g) / 2.0); /* exact in float */
            uint16_t want = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
            if (baseline_f32_to_f16(mid) != want) bad_mid++;
            /* one float ulp either side of the midpoint goes to the nearer */
            float below = nextafterf(mid, f), above = nextafterf(mid, g);
            if (baseline_f32_to_f16(below) != h || baseline_f32_to_f16(above) != h + 1) bad_mid++;
        }
    }
    CHECK_MSG(bad_rt == 0, "%d half values did not round-trip", bad_rt);
    CHECK_MSG(bad_mid == 0, "%d midpoints rounded wrongly", bad_mid);

    /* agree with lib/util/half.h on a sweep of float bit patterns (non-NaN) */
    int bad_lib = 0;
    for (uint64_t u = 0; u < 0x100000000ull; u += 257) {
        float f = bitsf((uint32_t)u);
        if (isnan(f)) continue;
        if (baseline_f32_to_f16(f) != kvi_f32_to_f16(f)) bad_lib++;
    }
    CHECK_MSG(bad_lib == 0, "%d disagreements with kvi_f32_to_f16", bad_lib);
}

/* ---- e4m3 --------------------------------------------------------------- */

/* Reference by exhaustive search: nearest finite e4m3 code, ties to the code
 * with an even mantissa, saturating beyond 448. */
static uint8_t e4m3_ref(float f) {
    if (isnan(f)) return signbit(f) ? 0xff : 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0x00;
    double a = fabs((double)f);
    if (a >= 448.0) return sign | 0x7e;
    uint8_t best = 0;
    double bestd = INFINITY;
    for (unsigned c = 0; c <= 0x7e; c++) {
        double d = fabs((double)baseline_e4m3_to_f32((uint8_t)c) - a);
        if (d < bestd || (d == bestd && (c & 1u) == 0)) {
            bestd = d;
            best = (uint8_t)c;
        }
    }
    return sign | best;
}

static void test_e4m3_edges(void) {
    CHECK(baseline_f32_to_e4m3(0.0f) == 0x00);
    CHECK(baseline_f32_to_e4m3(-0.0f) == 0x80);
    CHECK(baseline_f32_to_e4m3(1.0f) == 0x38);
    CHECK(baseline_f32_to_e4m3(-1.0f) == 0xb8);
    CHECK(baseline_f32_to_e4m3(448.0f) == 0x7e);
    CHECK(baseline_f32_to_e4m3(-448.0f) == 0xfe);
    CHECK(baseline_f32_to_e4m3(449.0f) == 0x7e);    /* saturate */
    CHECK(baseline_f32_to_e4m3(464.0f) == 0x7e);
    CHECK(baseline_f32_to_e4m3(1e30f) == 0x7e);
    CHECK(baseline_f32_to_e4m3(INFINITY) == 0x7e);
    CHECK(baseline_f32_to_e4m3(-INFINITY) == 0xfe);
    CHECK(baseline_f32_to_e4m3(NAN) == 0x7f);
    CHECK(baseline_f32_to_e4m3(-NAN) == 0xff);
    CHECK(baseline_f32_to_e4m3(0x1p-6f) == 0x08);   /* smallest normal */
    CHECK(baseline_f32_to_e4m3(0x1p-9f) == 0x01);   /* smallest subnormal */
    CHECK(baseline_f32_to_e4m3(0x1p-10f) == 0x00);  /* tie 0 / 1 -> 0 */
    CHECK(baseline_f32_to_e4m3(-0x1p-10f) == 0x80);
    CHECK(baseline_f32_to_e4m3(0x1.000002p-10f) == 0x01);
    CHECK(baseline_f32_to_e4m3(3 * 0x1p-10f) == 0x02); /* tie 1 / 2 -> 2 */
    CHECK(baseline_f32_to_e4m3(15 * 0x1p-10f) == 0x08); /* tie 7 (subnormal) / 8 -> 8 */
    CHECK(baseline_f32_to_e4m3(1.0625f) == 0x38);   /* tie 1 / 1.125 -> 1 */
    CHECK(baseline_f32_to_e4m3(1.1875f) == 0x3a);   /* tie 1.125 / 1.25 -> 1.25 */
    CHECK(baseline_f32_to_e4m3(1.9375f) == 0x40);   /* tie 1.875 / 2 -> 2 */
    CHECK(baseline_f32_to_e4m3(432.0f) == 0x7e);    /* tie 416 / 448 -> 448 (even) */
    CHECK(baseline_f32_to_e4m3(431.9f) == 0x7d);
    CHECK(baseline_e4m3_to_f32(0x7e) == 448.0f);
    CHECK(baseline_e4m3_to_f32(0x01) == 0x1p-9f);
    CHECK(baseline_e4m3_to_f32(0x08) == 0x1p-6f);
    CHECK(baseline_e4m3_to_f32(0x07) == 7 * 0x1p-9f);
    CHECK(baseline_e4m3_to_f32(0x6f) == 120.0f);
    CHECK(baseline_e4m3_to_f32(0x77) == 240.0f);
    CHECK(isnan(baseline_e4m3_to_f32(0x7f)) && isnan(baseline_e4m3_to_f32(0xff)));
    CHECK(baseline_e4m3_to_f32(0x80) == 0.0f && signbit(baseline_e4m3_to_f32(0x80)));

    /* all codes: NaN only at 0x7F/0xFF, finite codes round-trip and are ordered,
     * midpoints go to the even code */
    int bad = 0;
    for (unsigned c = 0; c < 256; c++) {
        float f = baseline_e4m3_to_f32((uint8_t)c);
        if ((c & 0x7f) == 0x7f) {
            if (!isnan(f)) bad++;
            continue;
        }
        if (isnan(f) || isinf(f) || fabsf(f) > 448.0f) bad++;
        if (baseline_f32_to_e4m3(f) != c) bad++;
        if ((c & 0x7f) < 0x7e) {
            float g = baseline_e4m3_to_f32((uint8_t)(c + 1));
            if (!(fabsf(g) > fabsf(f))) bad++;
            float mid = (f + g) / 2; /* exact */
            unsigned want = (c & 1u) ? c + 1 : c;
            if (baseline_f32_to_e4m3(mid) != want) bad++;
            if (baseline_f32_to_e4m3(nextafterf(mid, g)) != c + 1) bad++;
            if (baseline_f32_to_e4m3(nextafterf(mid, f)) != c) bad++;
        }
    }
    CHECK_MSG(bad == 0, "%d e4m3 code checks failed", bad);

    /* random floats against the exhaustive-search reference */
    int bad_ref = 0;
    for (int i = 0; i < 200000; i++) {
        double mag = ldexp(1.0 + rng_uniform(), (int)(rng_next() % 26) - 16); /* 2^-16 .. 2^10 */
        float f = (float)((rng_next() & 1) ? -mag : mag);
        if (baseline_f32_to_e4m3(f) != e4m3_ref(f)) bad_ref++;
    }
    CHECK_MSG(bad_ref == 0, "%d e4m3 conversions differ from the reference", bad_ref);
}

/* ---- hand-computed blocks ------------------------------------------------ */

static int rt1(baseline_kind kind, float *k, uint64_t n_tokens, uint32_t head_dim,
               uint32_t n_sink, uint32_t n_window) {
    size_t n = (size_t)n_tokens * head_dim;
    float *v = calloc(n, sizeof *v);
    if (!v) return -100;
    int rc = baseline_roundtrip(kind, k, v, 1, 1, n_tokens, head_dim, n_sink, n_window, NULL);
    free(v);
    return rc;
}

static void test_q8_0_hand(void) {
    /* amax 127 -> d = 1 exactly; roundf rounds halves away from zero */
    float x[32] = {127, 0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 0.49f, -126.6f, 3.25f, -0.0f};
    float want[32] = {127, 1, -1, 2, 3, -3, 0, -127, 3, 0};
    CHECK(rt1(BASELINE_Q8_0, x, 1, 32, 0, 0) == 0);
    int bad = 0;
    for (int j = 0; j < 32; j++) bad += x[j] != want[j];
    CHECK_MSG(bad == 0, "q8_0 hand block (d=1): %d wrong", bad);

    /* x_j = j - 16: amax 16, d = 16/127, fp16(d) = 0.1259765625 (0x3008) */
    float y[32];
    for (int j = 0; j < 32; j++) y[j] = (float)(j - 16);
    CHECK(baseline_f32_to_f16(16.0f / 127.0f) == 0x3008);
    CHECK(rt1(BASELINE_Q8_0, y, 1, 32, 0, 0) == 0);
    CHECK(y[0] == -127 * 0.1259765625f);  /* -15.9990234375 */
    CHECK(y[16] == 0.0f);
    CHECK(y[17] == 8 * 0.1259765625f);    /* 1 * 7.9375 = 7.9375 -> 8 */
    CHECK(y[18] == 16 * 0.1259765625f);   /* 15.875 -> 16 */
    CHECK(y[19] == 24 * 0.1259765625f);   /* 23.8125 -> 24 */
    CHECK(y[20] == 32 * 0.1259765625f);   /* 31.75 -> 32 */
    CHECK(y[31] == 119 * 0.1259765625f);  /* 15 * 7.9375 = 119.0625 -> 119 */

    /* an all-zero block stays zero (d = 0, id = 0) */
    float z[32] = {0};
    CHECK(rt1(BASELINE_Q8_0, z, 1, 32, 0, 0) == 0);
    int nz = 0;
    for (int j = 0; j < 32; j++) nz += z[j] != 0.0f;
    CHECK(nz == 0);
}

static void test_q4_0_hand(void) {
    /* max (signed) = -8 -> d = 1, id = 1; q = min(15, (int8)(x + 8.5)) */
    float x[32] = {-8, 3, 0.5f, -0.5f, 7.9f, 8, 0.49f, -7.6f, 2.5f, -2.5f, 1.2f, 0};
    float want[32] = {-8, 3, 1, 0, 7, 7, 0, -8, 3, -2, 1, 0};
    CHECK(rt1(BASELINE_Q4_0, x, 1, 32, 0, 0) == 0);
    int bad = 0;
    for (int j = 0; j < 32; j++) bad += x[j] != want[j];
    CHECK_MSG(bad == 0, "q4_0 hand block (d=1): %d wrong", bad);

    /* max = +4 -> d = -0.5, id = -2 */
    float y[32] = {4, -4, 1, 0.25f, 0.3f, -1.1f, 3.9f};
    float wy[32] = {4, -3.5f, 1, 0, 0.5f, -1.0f, 4};
    /* -1.1: -2*-1.1 = 2.2 + 8.5 = 10.7 -> 10 -> 2 * -0.5 = -1
     * 3.9: -7.8 + 8.5 = 0.7 -> 0 -> -8 * -0.5 = 4; the zeros: 8.5 -> 8 -> 0 */
    CHECK(rt1(BASELINE_Q4_0, y, 1, 32, 0, 0) == 0);
    bad = 0;
    for (int j = 0; j < 32; j++) bad += y[j] != wy[j];
    CHECK_MSG(bad == 0, "q4_0 hand block (d=-0.5): %d wrong", bad);

    /* first of equal magnitudes wins: +8 then -8 -> max = +8, d = -1 */
    float w[32] = {8, -8, 5};
    CHECK(rt1(BASELINE_Q4_0, w, 1, 32, 0, 0) == 0);
    CHECK(w[0] == 8 && w[1] == -7 && w[2] == 5);

    /* d rounded to fp16 for dequantization: max = -3.3, d = 0.4125 */
    float u[32] = {-3.3f, 1.0f};
    float d16 = baseline_f16_to_f32(baseline_f32_to_f16(-3.3f / -8));
    CHECK(d16 == 0.41259765625f);
    CHECK(rt1(BASELINE_Q4_0, u, 1, 32, 0, 0) == 0);
    CHECK(u[0] == -8 * d16);
    CHECK(u[1] == 2 * d16);  /* 1/0.4125 = 2.424 + 8.5 = 10.92 -> 10 -> 2 */
    CHECK(u[2] == 0.0f);
}

static void test_kivi_hand(void) {
    /* one head, head_dim 32, 32 tokens: one key group per channel, one value
     * group per token */
    enum { T = 32, D = 32 };
    float k[T * D], v[T * D];
    /* keys: channel c over tokens t = t % 4 (min 0, max 3, scale 1: exact),
     * except channel 1 which holds 0..3 plus halves */
    for (int t = 0; t < T; t++)
        for (int c = 0; c < D; c++) k[t * D + c] = (float)(t % 4);
    k[0 * D + 1] = 0.0f;
    k[1 * D + 1] = 3.0f;
    k[2 * D + 1] = 1.5f;  /* tie -> 2 */
    k[3 * D + 1] = 2.5f;  /* tie -> 2 */
    k[4 * D + 1] = 0.5f;  /* tie -> 0 */
    k[5 * D + 1] = 1.4f;  /* -> 1 */
    /* values: token 0 = 0, 3, 1.5, 2.5, 0.5, 2.6, rest 1 */
    for (int i = 0; i < T * D; i++) v[i] = (float)(i % 4);
    float tv[6] = {0, 3, 1.5f, 2.5f, 0.5f, 2.6f};
    for (int j = 0; j < 6; j++) v[j] = tv[j];
    for (int j = 6; j < D; j++) v[j] = 1.0f;
    CHECK(baseline_roundtrip(BASELINE_KIVI2, k, v, 1, 1, T, D, 0, 0, NULL) == 0);
    CHECK(k[0 * D + 1] == 0 && k[1 * D + 1] == 3 && k[2 * D + 1] == 2 && k[3 * D + 1] == 2);
    CHECK(k[4 * D + 1] == 0 && k[5 * D + 1] == 1);
    int bad = 0;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < D; c++)
            if (c != 1 && k[t * D + c] != (float)(t % 4)) bad++;
    CHECK_MSG(bad == 0, "kivi exact key channels changed: %d", bad);
    CHECK(v[0] == 0 && v[1] == 3 && v[2] == 2 && v[3] == 2 && v[4] == 0 && v[5] == 3);
    CHECK(v[6] == 1 && v[31] == 1);

    /* scale not representable: values 0 .. 1 -> scale 1/3 rounds to fp16 */
    float k2[T * D], v2[T * D];
    for (int i = 0; i < T * D; i++) k2[i] = v2[i] = 0.0f;
    v2[0] = 1.0f;
    v2[1] = 0.5f;
    CHECK(baseline_roundtrip(BASELINE_KIVI2, k2, v2, 1, 1, T, D, 0, 0, NULL) == 0);
    float sc16 = baseline_f16_to_f32(baseline_f32_to_f16(1.0f / 3.0f));
    CHECK(sc16 == 0.333251953125f);
    CHECK(v2[0] == 3 * sc16); /* 1 / sc16 = 3.0007 -> clamp 3 */
    CHECK(v2[1] == 2 * sc16); /* 0.5 / sc16 = 1.5004 -> 2 */
    CHECK(v2[2] == 0.0f);
}

/* ---- error bounds on random data ---------------------------------------- */

enum { EL = 2, EH = 2, ET = 200, ED = 64 };

static void test_bounds(void) {
    size_t n = (size_t)EL * EH * ET * ED;
    float *k0 = malloc(n * sizeof *k0), *v0 = malloc(n * sizeof *v0);
    CHECK(k0 && v0);
    if (!k0 || !v0) {
        free(k0);
        free(v0);
        return;
    }
    fill_gauss(k0, n, 1.0f);
    fill_gauss(v0, n, 0.05f);
    k0[123] = 9.0f; /* an outlier */
    v0[77] = 1e-7f; /* small values */
    for (size_t i = 1000; i < 1064; i++) k0[i] = 0.0f; /* zero blocks */

    for (int kind = 0; kind < BASELINE_COUNT; kind++) {
        float *k = dup_floats(k0, n), *v = dup_floats(v0, n);
        CHECK(k && v);
        if (!k || !v) {
            free(k);
            free(v);
            continue;
        }
        uint32_t ns = 3, nw = 40;
        int rc = baseline_roundtrip((baseline_kind)kind, k, v, EL, EH, ET, ED, ns, nw, NULL);
        CHECK(rc == 0);
        long bad = 0, checked = 0;
        for (int which = 0; which < 2; which++) {
            const float *x0 = which ? v0 : k0;
            const float *x1 = which ? v : k;
            switch ((baseline_kind)kind) {
            case BASELINE_F16:
                for (size_t i = 0; i < n; i++) {
                    float a = fabsf(x0[i]), e = fabsf(x1[i] - x0[i]);
                    float lim = a >= 0x1p-14f ? a * 0x1p-11f : 0x1p-25f;
                    checked++;
                    bad += !(e <= lim) || (x1[i] != bl_round_f16(x1[i]));
                }
                break;
            case BASELINE_FP8_E4M3:
                for (uint32_t l = 0; l < EL; l++) {
                    size_t per = n / EL, o = (size_t)l * per;
                    float amax = 0;
                    for (size_t i = 0; i < per; i++) amax = fmaxf(amax, fabsf(x0[o + i]));
                    float scale = amax / 448.0f;
                    for (size_t i = 0; i < per; i++) {
                        float a = fabsf(x0[o + i]), e = fabsf(x1[o + i] - x0[o + i]);
                        float lim = a / scale >= 0x1p-6f ? a * 0x1p-4f * 1.00001f
                                                         : scale * 0x1p-10f * 1.00001f;
                        checked++;
                        bad += !(e <= lim);
                        /* the output is an e4m3 value times the scale */
                        float c = baseline_e4m3_to_f32(baseline_f32_to_e4m3(x1[o + i] / scale));
                        bad += fabsf(c * scale - x1[o + i]) > 1e-6f * fabsf(x1[o + i]);
                    }
                }
                break;
            case BASELINE_Q8_0:
                for (size_t b = 0; b < n; b += 32) {
                    float amax = 0;
                    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x0[b + j]));
                    float d = amax / 127, d16 = bl_round_f16(d);
                    float lim = d * 0.5001f + 127 * fabsf(d - d16) + 1e-6f * amax;
                    for (int j = 0; j < 32; j++) {
                        float e = fabsf(x1[b + j] - x0[b + j]);
                        float q = d16 != 0 ? x1[b + j] / d16 : 0;
                        checked++;
                        bad += !(e <= lim) || q != roundf(q) || fabsf(q) > 127;
                    }
                }
                break;
            case BASELINE_Q4_0:
                for (size_t b = 0; b < n; b += 32) {
                    float amax = 0, mx = 0;
                    for (int j = 0; j < 32; j++)
                        if (amax < fabsf(x0[b + j])) {
                            amax = fabsf(x0[b + j]);
                            mx = x0[b + j];
                        }
                    float d = fabsf(mx / -8), d16 = fabsf(bl_round_f16(mx / -8));
                    float slack = 8 * fabsf(d - d16) + 1e-6f * amax;
                    for (int j = 0; j < 32; j++) {
                        float e = fabsf(x1[b + j] - x0[b + j]);
                        /* within half a step unless clamped at q = 15 (x/d in [7.5, 8]) */
                        float r = d != 0 ? x0[b + j] / (mx / -8) : 0;
                        float lim = (r < 7.49f ? d * 0.5001f : d * 1.0001f) + slack;
                        float q = d16 != 0 ? x1[b + j] / bl_round_f16(mx / -8) + 8 : 8;
                        checked++;
                        bad += !(e <= lim) || q != roundf(q) || q < 0 || q > 15;
                    }
                }
                break;
            case BASELINE_KIVI2:
                break; /* below */
            }
        }
        if (kind == BASELINE_KIVI2) {
            uint64_t b0 = ns, e0 = ET - nw, kg = (e0 - b0) / 32;
            for (size_t lh = 0; lh < (size_t)EL * EH; lh++) {
                const float *ka = k0 + lh * ET * ED, *kb = k + lh * ET * ED;
                const float *va = v0 + lh * ET * ED, *vb = v + lh * ET * ED;
                for (size_t t = 0; t < ET; t++) {
                    int kq = t >= b0 && t < b0 + 32 * kg, vq = t >= b0 && t < e0;
                    for (size_t c = 0; c < ED; c++) {
                        if (!kq) bad += memcmp(&ka[t * ED + c], &kb[t * ED + c], 4) != 0;
                        if (!vq) bad += memcmp(&va[t * ED + c], &vb[t * ED + c], 4) != 0;
                    }
                }
                /* key groups: per channel over 32 tokens */
                for (uint64_t gi = 0; gi < kg; gi++)
                    for (size_t c = 0; c < ED; c++) {
                        size_t t0 = (size_t)(b0 + 32 * gi);
                        float mn = INFINITY, mx = -INFINITY;
                        for (int j = 0; j < 32; j++) {
                            mn = fminf(mn, ka[(t0 + j) * ED + c]);
                            mx = fmaxf(mx, ka[(t0 + j) * ED + c]);
                        }
                        float mn16 = bl_round_f16(mn), sc = (mx - mn) / 3, sc16 = bl_round_f16(sc);
                        float lim = sc16 * 0.5001f + fabsf(mn - mn16) + 3 * fabsf(sc - sc16) +
                                    1e-6f * (fabsf(mn) + fabsf(mx));
                        for (int j = 0; j < 32; j++) {
                            size_t i = (t0 + j) * ED + c;
                            float q = (kb[i] - mn16) / sc16;
                            checked++;
                            bad += !(fabsf(kb[i] - ka[i]) <= lim) ||
                                   fabsf(q - roundf(q)) > 1e-3f || q < -1e-3f || q > 3.001f;
                        }
                    }
                /* value groups: per token over 32 channels */
                for (size_t t = (size_t)b0; t < (size_t)e0; t++)
                    for (size_t c0 = 0; c0 < ED; c0 += 32) {
                        const float *xa = va + t * ED + c0, *xb = vb + t * ED + c0;
                        float mn = INFINITY, mx = -INFINITY;
                        for (int j = 0; j < 32; j++) {
                            mn = fminf(mn, xa[j]);
                            mx = fmaxf(mx, xa[j]);
                        }
                        float mn16 = bl_round_f16(mn), sc = (mx - mn) / 3, sc16 = bl_round_f16(sc);
                        float lim = sc16 * 0.5001f + fabsf(mn - mn16) + 3 * fabsf(sc - sc16) +
                                    1e-6f * (fabsf(mn) + fabsf(mx));
                        for (int j = 0; j < 32; j++) {
                            checked++;
                            bad += !(fabsf(xb[j] - xa[j]) <= lim);
                        }
                    }
            }
        }
        CHECK_MSG(bad == 0, "%s: %ld of %ld values out of bounds", baseline_name((baseline_kind)kind),
                  bad, checked);
        CHECK(checked > 0);
        free(k);
        free(v);
    }
    free(k0);
    free(v0);
}

/* KIVI: sinks, window and the key residual are untouched, values in the
 * compressed range all change; the cost follows. */
static void test_kivi_protection(void) {
    enum { T = 100, D = 32 };
    float k[T * D], v[T * D], k0[T * D], v0[T * D];
    fill_gauss(k0, T * D, 1.0f);
    fill_gauss(v0, T * D, 1.0f);
    memcpy(k, k0, sizeof k);
    memcpy(v, v0, sizeof v);
    baseline_cost c;
    CHECK(baseline_roundtrip(BASELINE_KIVI2, k, v, 1, 1, T, D, 4, 10, &c) == 0);
    /* compressed range [4, 90): keys [4, 68) quantized, [68, 90) residual */
    int k_same_prot = 1, v_same_prot = 1, k_changed = 0, v_changed = 0;
    for (int t = 0; t < T; t++)
        for (int ch = 0; ch < D; ch++) {
            int i = t * D + ch;
            if (t < 4 || t >= 68) k_same_prot &= memcmp(&k[i], &k0[i], 4) == 0;
            else k_changed += k[i] != k0[i];
            if (t < 4 || t >= 90) v_same_prot &= memcmp(&v[i], &v0[i], 4) == 0;
            else v_changed += v[i] != v0[i];
        }
    CHECK(k_same_prot && v_same_prot);
    CHECK(k_changed > 64 * 32 * 9 / 10);
    CHECK(v_changed > 86 * 32 * 9 / 10);
    CHECK(c.values_compressed == 64 * 32 + 86 * 32);
    CHECK(c.bits_compressed == 3.0 * (64 * 32 + 86 * 32));
    CHECK(c.values_total == 2 * T * D);
    CHECK(c.bits_total == 3.0 * (64 * 32 + 86 * 32) + 16.0 * (2 * T * D - 4800));

    /* sink + window cover everything: nothing changes, nothing compressed */
    memcpy(k, k0, sizeof k);
    memcpy(v, v0, sizeof v);
    CHECK(baseline_roundtrip(BASELINE_KIVI2, k, v, 1, 1, T, D, 60, 60, &c) == 0);
    CHECK(memcmp(k, k0, sizeof k) == 0 && memcmp(v, v0, sizeof v) == 0);
    CHECK(c.values_compressed == 0 && c.bits_compressed == 0.0);
    CHECK(c.values_total == 2 * T * D && c.bits_total == 16.0 * 2 * T * D);

    /* fewer than 32 compressed tokens: keys all residual, values quantized */
    memcpy(k, k0, sizeof k);
    memcpy(v, v0, sizeof v);
    CHECK(baseline_roundtrip(BASELINE_KIVI2, k, v, 1, 1, T, D, 0, 80, &c) == 0);
    CHECK(memcmp(k, k0, sizeof k) == 0);
    CHECK(memcmp(v + 20 * D, v0 + 20 * D, 80 * D * sizeof(float)) == 0);
    CHECK(memcmp(v, v0, 20 * D * sizeof(float)) != 0);
    CHECK(c.values_compressed == 20 * D);

    /* the other methods ignore n_sink / n_window */
    for (int kind = 0; kind < BASELINE_KIVI2; kind++) {
        float ka[T * D], va[T * D];
        memcpy(k, k0, sizeof k);
        memcpy(v, v0, sizeof v);
        memcpy(ka, k0, sizeof ka);
        memcpy(va, v0, sizeof va);
        baseline_cost c1, c2;
        CHECK(baseline_roundtrip((baseline_kind)kind, k, v, 1, 1, T, D, 4, 10, &c1) == 0);
        CHECK(baseline_roundtrip((baseline_kind)kind, ka, va, 1, 1, T, D, 0, 0, &c2) == 0);
        CHECK(memcmp(k, ka, sizeof k) == 0 && memcmp(v, va, sizeof v) == 0);
        CHECK(memcmp(&c1, &c2, sizeof c1) == 0);
        CHECK(c1.values_compressed == 2 * T * D);
        CHECK(memcmp(k, k0, 4) != 0); /* token 0 was quantized */
    }
}

/* ---- costs ---------------------------------------------------------------- */

static double ratio_c(const baseline_cost *c) { return 16.0 * (double)c->values_compressed / c->bits_compressed; }
static double ratio_t(const baseline_cost *c) { return 16.0 * (double)c->values_total / c->bits_total; }

static void test_costs(void) {
    baseline_cost c;
    const uint32_t L = 4, H = 2, D = 128;
    const uint64_t T = 512, N = 2ull * L * H * T * D;
    CHECK(baseline_cost_of(BASELINE_F16, L, H, T, D, 0, 0, &c) == 0);
    CHECK(c.values_total == N && c.values_compressed == N && c.bits_total == 16.0 * N);
    CHECK(ratio_c(&c) == 1.0 && ratio_t(&c) == 1.0);
    CHECK(baseline_cost_of(BASELINE_FP8_E4M3, L, H, T, D, 0, 0, &c) == 0);
    CHECK(c.bits_compressed == 8.0 * N + 32.0 * 2 * L && c.bits_total == c.bits_compressed);
    CHECK(fabs(ratio_t(&c) - 2.0) < 1e-4 && ratio_t(&c) < 2.0);
    CHECK(baseline_cost_of(BASELINE_Q8_0, L, H, T, D, 0, 0, &c) == 0);
    CHECK(c.bits_compressed == 8.5 * N && c.bits_total == 8.5 * N);
    CHECK(fabs(ratio_t(&c) - 16.0 / 8.5) < 1e-12 && fabs(ratio_t(&c) - 1.882) < 1e-3);
    CHECK(baseline_cost_of(BASELINE_Q4_0, L, H, T, D, 0, 0, &c) == 0);
    CHECK(c.bits_compressed == 4.5 * N && fabs(ratio_t(&c) - 3.556) < 1e-3);
    CHECK(baseline_cost_of(BASELINE_KIVI2, L, H, T, D, 0, 0, &c) == 0);
    CHECK(c.values_compressed == N && c.bits_compressed == 3.0 * N);
    CHECK(fabs(ratio_c(&c) - 16.0 / 3.0) < 1e-12 && fabs(ratio_t(&c) - 5.333) < 1e-3);
    /* kivi2 with a sink and a window: compressed ratio stays 5.33, total drops */
    CHECK(baseline_cost_of(BASELINE_KIVI2, L, H, T, D, 4, 128, &c) == 0);
    {
        uint64_t tc = T - 4 - 128, kt = tc / 32 * 32; /* 380 -> 352 key tokens */
        uint64_t q = (uint64_t)L * H * D * (kt + tc);
        CHECK(c.values_compressed == q && c.bits_compressed == 3.0 * (double)q);
        CHECK(c.bits_total == 3.0 * (double)q + 16.0 * (double)(N - q));
        CHECK(fabs(ratio_c(&c) - 16.0 / 3.0) < 1e-12);
        CHECK(ratio_t(&c) < 16.0 / 3.0 && ratio_t(&c) > 1.0);
    }
    /* the round trip reports the same cost as baseline_cost_of */
    {
        enum { TT = 70, DD = 64 };
        static float kk[2 * 3 * TT * DD], vv[2 * 3 * TT * DD];
        fill_gauss(kk, 2 * 3 * TT * DD, 1.0f);
        fill_gauss(vv, 2 * 3 * TT * DD, 1.0f);
        for (int kind = 0; kind < BASELINE_COUNT; kind++) {
            baseline_cost a, b;
            CHECK(baseline_roundtrip((baseline_kind)kind, kk, vv, 2, 3, TT, DD, 2, 5, &a) == 0);
            CHECK(baseline_cost_of((baseline_kind)kind, 2, 3, TT, DD, 2, 5, &b) == 0);
            CHECK(memcmp(&a, &b, sizeof a) == 0);
            CHECK(a.values_total == 2ull * 2 * 3 * TT * DD);
            CHECK(a.bits_total >= a.bits_compressed && a.values_total >= a.values_compressed);
        }
    }
}

/* ---- names and invalid arguments ------------------------------------------ */

static void test_invalid(void) {
    const char *names[BASELINE_COUNT] = {"f16", "fp8_e4m3", "q8_0", "q4_0", "kivi2"};
    for (int i = 0; i < BASELINE_COUNT; i++) {
        baseline_kind kk = BASELINE_F16;
        CHECK(baseline_name((baseline_kind)i) && strcmp(baseline_name((baseline_kind)i), names[i]) == 0);
        CHECK(baseline_from_name(names[i], &kk) == 0 && kk == (baseline_kind)i);
    }
    CHECK(baseline_name((baseline_kind)99) == NULL);
    baseline_kind kk;
    CHECK(baseline_from_name("q5_1", &kk) == -1);
    CHECK(baseline_from_name(NULL, &kk) == -1);

    enum { T = 4, D = 48 };
    float k[T * D], v[T * D], k0[T * D];
    fill_gauss(k0, T * D, 1.0f);
    baseline_cost c;
    /* head_dim 48 is not a multiple of 32 */
    baseline_kind need32[3] = {BASELINE_Q8_0, BASELINE_Q4_0, BASELINE_KIVI2};
    for (int i = 0; i < 3; i++) {
        memcpy(k, k0, sizeof k);
        memcpy(v, k0, sizeof v);
        c.bits_total = 123;
        CHECK(baseline_roundtrip(need32[i], k, v, 1, 1, T, D, 0, 0, &c) == BASELINE_ERR_GEOMETRY);
        CHECK(memcmp(k, k0, sizeof k) == 0 && memcmp(v, k0, sizeof v) == 0);
        CHECK(c.bits_total == 0.0 && c.values_total == 0);
        CHECK(baseline_cost_of(need32[i], 1, 1, T, D, 0, 0, &c) == BASELINE_ERR_GEOMETRY);
        CHECK(baseline_roundtrip(need32[i], k, v, 1, 1, T, 20, 0, 0, NULL) == BASELINE_ERR_GEOMETRY);
    }
    /* f16 and fp8 take any head_dim */
    memcpy(k, k0, sizeof k);
    memcpy(v, k0, sizeof v);
    CHECK(baseline_roundtrip(BASELINE_F16, k, v, 1, 1, T, D, 0, 0, &c) == 0);
    CHECK(c.values_total == 2 * T * D);
    CHECK(baseline_roundtrip(BASELINE_FP8_E4M3, k, v, 1, 1, T, D, 0, 0, NULL) == 0);
    /* NULL data, zero dimensions, unknown kind, overflowing sizes */
    CHECK(baseline_roundtrip(BASELINE_F16, NULL, v, 1, 1, T, D, 0, 0, &c) == BASELINE_ERR_ARG);
    CHECK(baseline_roundtrip(BASELINE_F16, k, NULL, 1, 1, T, D, 0, 0, &c) == BASELINE_ERR_ARG);
    CHECK(baseline_roundtrip(BASELINE_F16, k, v, 0, 1, T, D, 0, 0, &c) == BASELINE_ERR_ARG);
    CHECK(baseline_roundtrip(BASELINE_F16, k, v, 1, 0, T, D, 0, 0, &c) == BASELINE_ERR_ARG);
    CHECK(baseline_roundtrip(BASELINE_F16, k, v, 1, 1, 0, D, 0, 0, &c) == BASELINE_ERR_ARG);
    CHECK(baseline_roundtrip(BASELINE_F16, k, v, 1, 1, T, 0, 0, 0, &c) == BASELINE_ERR_ARG);
    CHECK(baseline_roundtrip((baseline_kind)7, k, v, 1, 1, T, 32, 0, 0, &c) == BASELINE_ERR_ARG);
    CHECK(baseline_roundtrip((baseline_kind)-1, k, v, 1, 1, T, 32, 0, 0, &c) == BASELINE_ERR_ARG);
    CHECK(baseline_roundtrip(BASELINE_Q8_0, k, v, 1u << 31, 1u << 31, 1ull << 40, 64, 0, 0, &c) ==
          BASELINE_ERR_TOO_LARGE);
    CHECK(baseline_cost_of(BASELINE_KIVI2, 1, 1, UINT64_MAX, 32, 0, 0, &c) == BASELINE_ERR_TOO_LARGE);
    CHECK(baseline_roundtrip(BASELINE_KIVI2, k, v, 1, 1, T, 32, UINT32_MAX, UINT32_MAX, &c) == 0);
    CHECK(c.values_compressed == 0);

    /* non-finite input: no crash or UB (output unspecified except f16) */
    float kn[64], vn[64];
    for (int kind = 0; kind < BASELINE_COUNT; kind++) {
        for (int i = 0; i < 64; i++) kn[i] = vn[i] = (float)i;
        kn[3] = NAN;
        kn[40] = INFINITY;
        vn[5] = -INFINITY;
        vn[33] = NAN;
        CHECK(baseline_roundtrip((baseline_kind)kind, kn, vn, 1, 1, 2, 32, 0, 0, NULL) == 0);
        if (kind == BASELINE_F16)
            CHECK(isnan(kn[3]) && kn[40] == INFINITY && vn[5] == -INFINITY && vn[34] == 34.0f);
    }
}

/* ---- error ordering and the table ---------------------------------------- */

static void test_ordering_table(void) {
    const uint32_t L = 8, H = 2, D = 64;
    const uint64_t T = 1536;
    size_t n = (size_t)L * H * T * D;
    float *k0 = malloc(n * sizeof *k0), *v0 = malloc(n * sizeof *v0);
    float *k = malloc(n * sizeof *k), *v = malloc(n * sizeof *v);
    CHECK(k0 && v0 && k && v);
    if (k0 && v0 && k && v) {
    fill_gauss(k0, n, 1.0f);
    fill_gauss(v0, n, 1.0f);
    double err[BASELINE_COUNT] = {0};
    printf("RMS relative error, Gaussian N(0,1), shape [%u][%u][%llu][%u], K and V:\n", L, H,
           (unsigned long long)T, D);
    printf("  %-10s %-6s %-6s %-10s %-10s %-10s\n", "method", "sink", "window", "ratio", "rel(K)",
           "rel(V)");
    for (int pass = 0; pass < 2; pass++)
        for (int kind = 0; kind < BASELINE_COUNT; kind++) {
            if (pass == 1 && kind != BASELINE_KIVI2) continue;
            uint32_t ns = pass ? 4 : 0, nw = pass ? 128 : 0;
            memcpy(k, k0, n * sizeof *k);
            memcpy(v, v0, n * sizeof *v);
            baseline_cost c;
            CHECK(baseline_roundtrip((baseline_kind)kind, k, v, L, H, T, D, ns, nw, &c) == 0);
            double ek = rms_rel(k0, k, n), ev = rms_rel(v0, v, n);
            if (!pass) err[kind] = sqrt((ek * ek + ev * ev) / 2);
            printf("  %-10s %-6u %-6u %-10.4f %-10.3e %-10.3e\n", baseline_name((baseline_kind)kind), ns,
                   nw, ratio_t(&c), ek, ev);
        }
    CHECK(err[BASELINE_F16] < err[BASELINE_Q8_0]);
    CHECK(err[BASELINE_Q8_0] < err[BASELINE_FP8_E4M3]);
    CHECK(err[BASELINE_FP8_E4M3] < err[BASELINE_Q4_0]);
    CHECK(err[BASELINE_Q8_0] < err[BASELINE_Q4_0]);
    CHECK(err[BASELINE_Q4_0] < err[BASELINE_KIVI2]);
    CHECK(err[BASELINE_KIVI2] < 1.0);
    }
    free(k0);
    free(v0);
    free(k);
    free(v);
}

/* Heads narrower than a block (stories260K: 4 KV heads x 8): q8_0, q4_0 and
 * kivi2 must treat a token's row of all heads as llama.cpp's cache row, i.e.
 * give exactly what one head of width H*D gives on the transposed layout. */
static void test_narrow_heads(void) {
    enum { L = 2, H = 4, D = 8, T = 80, W = H * D };
    static float k[L * H * T * D], v[L * H * T * D], kr[L * T * W], vr[L * T * W];
    baseline_kind kinds[3] = {BASELINE_Q8_0, BASELINE_Q4_0, BASELINE_KIVI2};
    for (int i = 0; i < 3; i++) {
        fill_gauss(k, L * H * T * D, 1.0f);
        fill_gauss(v, L * H * T * D, 0.5f);
        /* reference layout [L][1][T][H*D] */
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++)
                for (int t = 0; t < T; t++)
                    for (int d = 0; d < D; d++) {
                        size_t a = (((size_t)l * H + h) * T + t) * D + d;
                        size_t b = ((size_t)l * T + t) * W + (size_t)h * D + d;
                        kr[b] = k[a];
                        vr[b] = v[a];
                    }
        baseline_cost c1, c2;
        CHECK(baseline_roundtrip(kinds[i], k, v, L, H, T, D, 4, 16, &c1) == BASELINE_OK);
        CHECK(baseline_roundtrip(kinds[i], kr, vr, L, 1, T, W, 4, 16, &c2) == BASELINE_OK);
        CHECK(c1.bits_total == c2.bits_total && c1.values_compressed == c2.values_compressed);
        int same = 1, changed = 0;
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++)
                for (int t = 0; t < T; t++)
                    for (int d = 0; d < D; d++) {
                        size_t a = (((size_t)l * H + h) * T + t) * D + d;
                        size_t b = ((size_t)l * T + t) * W + (size_t)h * D + d;
                        same &= k[a] == kr[b] && v[a] == vr[b];
                    }
        for (size_t j = 0; j < (size_t)L * T * W; j++) changed |= kr[j] != 0.0f;
        CHECK_MSG(same && changed, "%s: narrow heads differ from the row layout", baseline_name(kinds[i]));
    }
    /* 3 heads x 8 = 24 values per token: no whole block, a stated error */
    CHECK(baseline_cost_of(BASELINE_Q8_0, 1, 3, T, 8, 0, 0, NULL) == BASELINE_ERR_GEOMETRY);
    CHECK(baseline_cost_of(BASELINE_KIVI2, 1, 3, T, 8, 0, 0, NULL) == BASELINE_ERR_GEOMETRY);
    CHECK(baseline_cost_of(BASELINE_FP8_E4M3, 1, 3, T, 8, 0, 0, NULL) == BASELINE_OK);
}

int main(void) {
    test_f16_edges();
    test_e4m3_edges();
    test_q8_0_hand();
    test_q4_0_hand();
    test_kivi_hand();
    test_bounds();
    test_kivi_protection();
    test_costs();
    test_invalid();
    test_narrow_heads();
    test_ordering_table();
    return TEST_REPORT();
}
