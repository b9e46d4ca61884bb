/* test_quant.c - per-token per-group quantization (lib/quant/group_quant.c):
 * round trips of random plans (mixed group sizes 16/64/256/1024, bits 0..8
 * and raw fp16, rank_used < p), the error bound scale/2 checked against the
 * shift/scale actually stored in the payload, dropped and raw coordinates,
 * the payload size formula, constant groups and extreme values. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/basis.h"
#include "quant/group_quant.h"
#include "synth.h"
#include "test.h"
#include "util/endian.h"
#include "util/half.h"

#define SENTINEL 12345.678f

/* ---- plans -------------------------------------------------------------- */

static const uint32_t qsizes[4] = {16, 64, 256, 1024};

/* A random plan of at most max_groups groups: quantized groups of random
 * size/bits (bits 0 = dropped), raw fp16 groups of 1..3 coordinates, and a
 * trailing dropped group so that rank_used < p. */
static void random_plan(synth_rng *r, uint32_t max_groups, int allow_big, plan_stream *ps) {
    memset(ps, 0, sizeof *ps);
    ps->groups = calloc(max_groups + 2, sizeof(dp_group));
    uint32_t n = 1 + (uint32_t)(synth_next(r) % max_groups);
    for (uint32_t i = 0; i < n; i++) {
        dp_group *g = &ps->groups[ps->n_groups++];
        uint64_t kind = synth_next(r) % 10;
        if (kind < 2) { /* raw */
            g->bits = DP_RAW_BITS;
            g->size = 1 + (uint32_t)(synth_next(r) % 3);
        } else {
            uint32_t cls = (uint32_t)(synth_next(r) % (allow_big ? 4 : 3));
            g->size = qsizes[cls];
            g->bits = (uint8_t)(synth_next(r) % 9); /* 0..8 */
        }
    }
    /* at least one coded group, then a dropped tail (rank_used < p) */
    dp_group *g = &ps->groups[ps->n_groups++];
    g->size = 16;
    g->bits = (uint8_t)(1 + synth_next(r) % 8);
    g = &ps->groups[ps->n_groups++];
    g->size = 1 + (uint32_t)(synth_next(r) % 40);
    g->bits = 0;
    plan_stream_finalize(ps);
}

static uint32_t plan_p(const plan_stream *ps) {
    uint32_t p = 0;
    for (uint32_t i = 0; i < ps->n_groups; i++) p += ps->groups[i].size;
    return p;
}

/* Independent payload size: per token 4 bytes per quantized group, 2 per raw
 * coordinate, then the codes of all tokens as one bitstream. */
static uint64_t expected_payload(const plan_stream *k, const plan_stream *v, uint64_t n) {
    uint64_t params = 0, bits = 0;
    const plan_stream *s[2] = {k, v};
    for (int j = 0; j < 2; j++)
        for (uint32_t i = 0; i < s[j]->n_groups; i++) {
            const dp_group *g = &s[j]->groups[i];
            if (g->bits >= 1 && g->bits <= 8) {
                params += 4;
                bits += (uint64_t)g->size * g->bits;
            } else if (g->bits == 16) {
                params += 2ull * g->size;
            }
        }
    return params * n + (bits * n + 7) / 8;
}

/* ---- data --------------------------------------------------------------- */

/* Coordinates with a per-column scale that decays like PCA variances, plus a
 * few per-token outliers. */
static void fill_coords(synth_rng *r, float *d, uint64_t n, uint32_t ld, uint32_t cols, uint32_t p) {
    for (uint64_t t = 0; t < n; t++) {
        for (uint32_t j = 0; j < cols; j++) {
            double sc = 30.0 / (1.0 + 0.1 * j);
            d[t * ld + j] = (float)(sc * synth_gauss(r));
        }
        if (cols) d[t * ld + synth_next(r) % cols] *= 8.0f;
        for (uint32_t j = cols; j < ld; j++) d[t * ld + j] = SENTINEL;
        (void)p;
    }
}

/* ---- checking one stream -------------------------------------------------- */

typedef struct check_stats {
    int bound_ok, dropped_ok, raw_ok, finite_ok, formula_ok, sentinel_ok, scale_ok;
    double worst_ratio; /* max |err| / (scale/2) */
} check_stats;

/* Walk stream s of the payload (params at *pp, codes through *bitpos) and
 * compare the decoded coordinates with the inputs. */
static void check_stream(const plan_stream *s, const uint8_t *payload, const uint8_t **pp, uint64_t *bitpos,
                         const float *in, const float *outd, uint64_t n, uint32_t ld, check_stats *cs) {
    uint32_t col = 0;
    for (uint32_t gi = 0; gi < s->n_groups && col < s->rank_used; gi++) {
        const dp_group *g = &s->groups[gi];
        if (g->bits >= 1 && g->bits <= 8) {
            uint32_t levels = (1u << g->bits) - 1u;
            for (uint64_t t = 0; t < n; t++) {
                float shift = kvi_f16_to_f32(kvi_load_u16(*pp));
                float scale = kvi_f16_to_f32(kvi_load_u16(*pp + 2));
                *pp += 4;
                const float *x = in + t * ld + col;
                float mn = x[0], mx = x[0];
                for (uint32_t j = 1; j < g->size; j++) {
                    mn = x[j] < mn ? x[j] : mn;
                    mx = x[j] > mx ? x[j] : mx;
                }
                /* shift is the fp16 at or below the minimum; scale covers the range */
                if (!(shift <= mn) || !(shift + (float)levels * scale >= mx * (1 - 1e-6f)) || !(scale >= 0))
                    cs->scale_ok = 0;
                /* and is not wastefully large: at most the range + shift rounding, rounded up */
                double shift_ulp = fabs((double)mn) * 0x1p-10 + 0x1p-24;
                if (scale > ((double)mx - mn + shift_ulp) / levels * (1 + 0x1p-9) + 0x1p-24) cs->scale_ok = 0;
                for (uint32_t j = 0; j < g->size; j++) {
                    uint32_t code = 0;
                    for (unsigned b = 0; b < g->bits; b++, (*bitpos)++)
                        code |= (uint32_t)((payload[*bitpos >> 3] >> (*bitpos & 7)) & 1u) << b;
                    float got = outd[t * ld + col + j];
                    if (got != shift + (float)code * scale) cs->formula_ok = 0;
                    double err = fabs((double)got - x[j]);
                    /* scale/2 plus float rounding of (x - shift) / scale and of the result */
                    double lim = 0.5 * scale * (1 + 1e-5) + 4e-7 * (fabs(x[j]) + fabs(shift));
                    if (err > lim) {
                        if (cs->bound_ok)
                            fprintf(stderr, "  group %u (%u x %u bits) t=%llu j=%u: x=%.9g got=%.9g shift=%.9g scale=%.9g\n",
                                    gi, g->size, g->bits, (unsigned long long)t, j, x[j], got, shift, scale);
                        cs->bound_ok = 0;
                    }
                    if (scale > 0) {
                        double ratio = err / (0.5 * scale);
                        if (ratio > cs->worst_ratio) cs->worst_ratio = ratio;
                    }
                    if (!isfinite(got)) cs->finite_ok = 0;
                }
            }
        } else if (g->bits == 16) {
            for (uint64_t t = 0; t < n; t++)
                for (uint32_t j = 0; j < g->size; j++) {
                    float got = outd[t * ld + col + j];
                    float want = kvi_round_f16(in[t * ld + col + j]);
                    if (got != want) cs->raw_ok = 0;
                    if (kvi_load_u16(*pp) != kvi_f32_to_f16(in[t * ld + col + j])) cs->raw_ok = 0;
                    *pp += 2;
                }
        } else {
            for (uint64_t t = 0; t < n; t++)
                for (uint32_t j = 0; j < g->size; j++)
                    if (outd[t * ld + col + j] != 0.0f) cs->dropped_ok = 0;
        }
        col += g->size;
    }
    for (uint64_t t = 0; t < n; t++)
        for (uint32_t j = s->rank_used; j < ld; j++)
            if (outd[t * ld + j] != SENTINEL) cs->sentinel_ok = 0;
}

/* Encode/decode n tokens under plans (k, v) and check everything. */
static void round_trip(const plan_stream *k, const plan_stream *v, uint64_t n, synth_rng *r, const char *what,
                       const float *fixed_k) {
    uint32_t ldk = k->rank_used + (uint32_t)(synth_next(r) % 3);
    uint32_t ldv = v->rank_used + (uint32_t)(synth_next(r) % 3);
    float *dk = malloc(sizeof(float) * (n * ldk + 1));
    float *dv = malloc(sizeof(float) * (n * ldv + 1));
    float *ok = malloc(sizeof(float) * (n * ldk + 1));
    float *ov = malloc(sizeof(float) * (n * ldv + 1));
    if (fixed_k) {
        for (uint64_t t = 0; t < n; t++)
            for (uint32_t j = 0; j < ldk; j++) dk[t * ldk + j] = j < k->rank_used ? fixed_k[t * k->rank_used + j] : SENTINEL;
    } else {
        fill_coords(r, dk, n, ldk, k->rank_used, plan_p(k));
    }
    fill_coords(r, dv, n, ldv, v->rank_used, plan_p(v));
    for (uint64_t i = 0; i < n * ldk; i++) ok[i] = SENTINEL;
    for (uint64_t i = 0; i < n * ldv; i++) ov[i] = SENTINEL;

    uint64_t size = quant_payload_size(k, v, n);
    CHECK_MSG(size == expected_payload(k, v, n), "%s: payload size %llu, formula %llu", what,
              (unsigned long long)size, (unsigned long long)expected_payload(k, v, n));
    /* exact-size buffer: ASan catches any write or read past the payload */
    uint8_t *payload = malloc(size ? size : 1);
    quant_encode(k, v, dk, ldk, dv, ldv, n, payload);
    quant_decode(k, v, payload, n, ok, ldk, ov, ldv);

    check_stats cs = {1, 1, 1, 1, 1, 1, 1, 0};
    const uint8_t *pp = payload;
    uint64_t params = 0;
    {
        /* params of K and V, then the codes */
        uint64_t bits_dummy = 0;
        (void)bits_dummy;
        for (int j = 0; j < 2; j++) {
            const plan_stream *s = j ? v : k;
            for (uint32_t i = 0; i < s->n_groups; i++) {
                const dp_group *g = &s->groups[i];
                params += (g->bits >= 1 && g->bits <= 8) ? 4 : g->bits == 16 ? 2ull * g->size : 0;
            }
        }
        params *= n;
    }
    uint64_t bitpos = params * 8;
    check_stream(k, payload, &pp, &bitpos, dk, ok, n, ldk, &cs);
    check_stream(v, payload, &pp, &bitpos, dv, ov, n, ldv, &cs);
    CHECK_MSG((uint64_t)(pp - payload) == params, "%s: params walk %lld of %llu", what, (long long)(pp - payload),
              (unsigned long long)params);
    CHECK_MSG((bitpos + 7) / 8 == size, "%s: codes end at bit %llu, payload %llu bytes", what,
              (unsigned long long)bitpos, (unsigned long long)size);
    /* zero padding of the last byte */
    if (bitpos & 7) CHECK_MSG((payload[size - 1] >> (bitpos & 7)) == 0, "%s: padding bits not zero", what);
    CHECK_MSG(cs.bound_ok, "%s: a coordinate exceeds scale/2", what);
    CHECK_MSG(cs.scale_ok, "%s: stored shift/scale do not bracket the group range tightly", what);
    CHECK_MSG(cs.formula_ok, "%s: decoded value != shift + code * scale", what);
    CHECK_MSG(cs.dropped_ok, "%s: dropped coordinates not decoded as 0", what);
    CHECK_MSG(cs.raw_ok, "%s: raw coordinates not the fp16 rounding", what);
    CHECK_MSG(cs.finite_ok, "%s: non-finite decoded value", what);
    CHECK_MSG(cs.sentinel_ok, "%s: decode wrote beyond rank_used", what);
    /* determinism: the same input encodes to the same bytes */
    uint8_t *again = malloc(size ? size : 1);
    quant_encode(k, v, dk, ldk, dv, ldv, n, again);
    CHECK_MSG(size == 0 || memcmp(again, payload, size) == 0, "%s: encode not deterministic", what);
    free(again);
    free(payload); free(dk); free(dv); free(ok); free(ov);
}

static plan_stream make_plan(const dp_group *g, uint32_t n) {
    plan_stream ps;
    memset(&ps, 0, sizeof ps);
    ps.groups = malloc(sizeof(dp_group) * n);
    memcpy(ps.groups, g, sizeof(dp_group) * n);
    ps.n_groups = n;
    plan_stream_finalize(&ps);
    return ps;
}

/* quant_payload_concat (kvtc_append's lead chunk): the payload of tokens
 * [0, na) joined with that of [na, na + nb) is the payload of all of them
 * quantized at once, byte for byte, for every split. */
static void check_concat(const plan_stream *k, const plan_stream *v, uint64_t n, synth_rng *r, const char *what) {
    uint32_t pk = plan_p(k), pv = plan_p(v);
    float *dk = malloc(sizeof(float) * n * pk), *dv = malloc(sizeof(float) * n * pv);
    fill_coords(r, dk, n, pk, k->rank_used, pk);
    fill_coords(r, dv, n, pv, v->rank_used, pv);
    size_t all = (size_t)quant_payload_size(k, v, n);
    uint8_t *whole = malloc(all + 1), *a = malloc(all + 1), *b = malloc(all + 1), *joined = malloc(all + 1);
    quant_encode(k, v, dk, pk, dv, pv, n, whole);
    int same = 1;
    for (uint64_t na = 0; na <= n; na++) {
        quant_encode(k, v, dk, pk, dv, pv, na, a);
        quant_encode(k, v, dk + na * pk, pk, dv + na * pv, pv, n - na, b);
        memset(joined, 0xa5, all + 1);
        quant_payload_concat(k, v, a, na, b, n - na, joined);
        if (memcmp(joined, whole, all) || joined[all] != 0xa5) {
            same = 0;
            fprintf(stderr, "%s: concat of %llu + %llu tokens differs\n", what, (unsigned long long)na,
                    (unsigned long long)(n - na));
            break;
        }
    }
    CHECK_MSG(same, "%s: joined payloads equal the payload of all tokens", what);
    free(dk); free(dv); free(whole); free(a); free(b); free(joined);
}

int main(void) {
    synth_rng r = {2024};

    /* 0. payload concatenation over random plans (odd bit widths, raw and
     *    dropped groups) and every split of up to 37 tokens */
    for (int it = 0; it < 20; it++) {
        plan_stream k, v;
        random_plan(&r, 6, it % 4 == 0, &k);
        random_plan(&r, 6, it % 5 == 0, &v);
        char what[64];
        snprintf(what, sizeof what, "concat plan %d", it);
        check_concat(&k, &v, 1 + synth_next(&r) % 37, &r, what);
        plan_stream_free(&k);
        plan_stream_free(&v);
    }

    /* 1. random plans, random token counts (1 token, odd counts, chunks) */
    for (int it = 0; it < 60; it++) {
        plan_stream k, v;
        random_plan(&r, 6, it % 3 == 0, &k);
        random_plan(&r, 6, it % 5 == 0, &v);
        CHECK(k.rank_used < plan_p(&k));
        CHECK(v.rank_used < plan_p(&v));
        uint64_t n = it < 4 ? (uint64_t)it + 1 : 1 + synth_next(&r) % 70;
        char what[64];
        snprintf(what, sizeof what, "random plan %d (n=%llu)", it, (unsigned long long)n);
        round_trip(&k, &v, n, &r, what, NULL);
        plan_stream_free(&k);
        plan_stream_free(&v);
    }

    /* 2. rank_used and units from plan_stream_finalize */
    {
        dp_group g[] = {{1, 16}, {1, 16}, {16, 4}, {64, 0}, {64, 2}, {256, 0}, {7, 0}};
        plan_stream ps = make_plan(g, 7);
        CHECK(ps.rank_used == 1 + 1 + 16 + 64 + 64);
        CHECK(ps.units == 2 + (16 * 4 / 16 + 2) + (64 * 2 / 16 + 2));
        plan_stream empty = make_plan((dp_group[]){{100, 0}}, 1);
        CHECK(empty.rank_used == 0);
        /* an all-dropped stream has no payload and decodes nothing */
        CHECK(quant_payload_size(&empty, &empty, 10) == 0);
        round_trip(&ps, &empty, 9, &r, "k only, v dropped", NULL);
        round_trip(&empty, &ps, 9, &r, "v only, k dropped", NULL);
        CHECK(quant_payload_size(&ps, &ps, 0) == 0);
        plan_stream_free(&ps);
        plan_stream_free(&empty);
    }

    /* 3. payload sizes, by hand: 3 tokens of one 16x3-bit group = 3*4 bytes
     * of params + ceil(3*48/8) = 18 bytes of codes; one raw coordinate = 2 B */
    {
        plan_stream a = make_plan((dp_group[]){{16, 3}, {5, 0}}, 2);
        plan_stream b = make_plan((dp_group[]){{1, 16}, {16, 1}, {3, 0}}, 3);
        CHECK(quant_payload_size(&a, &b, 3) == 3 * 4 + 18 + 3 * (2 + 4) + 6);
        CHECK(quant_payload_size(&a, &b, 1) == 4 + 6 + 2 + 4 + 2); /* 48+16 bits = 8 bytes */
        plan_stream c = make_plan((dp_group[]){{16, 1}, {16, 0}}, 2);
        plan_stream d = make_plan((dp_group[]){{16, 0}}, 1);
        CHECK(quant_payload_size(&c, &d, 1) == 4 + 2);
        CHECK(quant_payload_size(&c, &d, 3) == 12 + 6);
        plan_stream e = make_plan((dp_group[]){{16, 7}, {16, 0}}, 2); /* 112 bits per token */
        CHECK(quant_payload_size(&e, &d, 1) == 4 + 14);
        CHECK(quant_payload_size(&e, &d, 5) == 20 + 70);
        plan_stream_free(&a); plan_stream_free(&b); plan_stream_free(&c);
        plan_stream_free(&d); plan_stream_free(&e);
    }

    /* 4. constant groups: exact when the constant is an fp16 value; within
     * the bound otherwise; also the all-zero group */
    {
        plan_stream k = make_plan((dp_group[]){{16, 1}, {16, 4}, {64, 8}, {16, 3}, {8, 0}}, 5);
        plan_stream v = make_plan((dp_group[]){{16, 2}, {1, 0}}, 2);
        const float consts[] = {0.0f, 0.5f, -2.25f, 3.0f, 1024.0f, -65504.0f, 65504.0f, 6.1035156e-05f};
        const uint64_t n = sizeof consts / sizeof consts[0];
        float *fk = malloc(sizeof(float) * n * k.rank_used);
        for (uint64_t t = 0; t < n; t++)
            for (uint32_t j = 0; j < k.rank_used; j++) fk[t * k.rank_used + j] = consts[t];
        uint64_t size = quant_payload_size(&k, &v, n);
        uint8_t *payload = malloc(size);
        float *vin = calloc(n * v.rank_used, sizeof(float));
        float *out = malloc(sizeof(float) * n * k.rank_used), *vout = malloc(sizeof(float) * n * v.rank_used);
        quant_encode(&k, &v, fk, k.rank_used, vin, v.rank_used, n, payload);
        quant_decode(&k, &v, payload, n, out, k.rank_used, vout, v.rank_used);
        int exact = 1;
        for (uint64_t i = 0; i < n * k.rank_used; i++) exact &= out[i] == fk[i];
        for (uint64_t i = 0; i < n * v.rank_used; i++) exact &= vout[i] == 0.0f;
        CHECK_MSG(exact, "constant fp16-representable groups must decode exactly");
        /* non-representable constants: within the bound */
        for (uint64_t t = 0; t < n; t++)
            for (uint32_t j = 0; j < k.rank_used; j++) fk[t * k.rank_used + j] = 0.1f * (float)(t + 1) + 1e-3f;
        round_trip(&k, &v, n, &r, "constant non-fp16 groups", fk);
        free(fk); free(payload); free(vin); free(out); free(vout);
        plan_stream_free(&k);
        plan_stream_free(&v);
    }

    /* 5. extreme values: no NaN or Inf, decoded values stay in fp16 range */
    {
        plan_stream k = make_plan((dp_group[]){{1, 16}, {16, 1}, {16, 8}, {64, 3}, {2, 16}, {4, 0}}, 6);
        plan_stream v = make_plan((dp_group[]){{16, 4}, {1, 0}}, 2);
        const uint64_t n = 6;
        uint32_t rk = k.rank_used, rv = v.rank_used;
        float *fk = malloc(sizeof(float) * n * rk), *fv = malloc(sizeof(float) * n * rv);
        const float ext[] = {1e6f, -1e6f, 3e38f, -3e38f, 65519.0f, 1e-30f};
        for (uint64_t t = 0; t < n; t++) {
            for (uint32_t j = 0; j < rk; j++) {
                switch (t) {
                case 0: fk[t * rk + j] = (j & 1) ? 1e6f : -1e6f; break;     /* huge range */
                case 1: fk[t * rk + j] = 1e6f; break;                       /* huge constant */
                case 2: fk[t * rk + j] = -1e6f; break;
                case 3: fk[t * rk + j] = ext[j % 6]; break;
                case 4: fk[t * rk + j] = (j == 5) ? 1e6f : 0.25f; break;      /* one outlier */
                default: fk[t * rk + j] = (j & 1) ? 3e38f : -3e38f; break;
                }
            }
            for (uint32_t j = 0; j < rv; j++) fv[t * rv + j] = (j == 3) ? -1e6f : 1.0f;
        }
        uint64_t size = quant_payload_size(&k, &v, n);
        uint8_t *payload = malloc(size);
        float *ok = malloc(sizeof(float) * n * rk), *ov = malloc(sizeof(float) * n * rv);
        quant_encode(&k, &v, fk, rk, fv, rv, n, payload);
        quant_decode(&k, &v, payload, n, ok, rk, ov, rv);
        int finite = 1, in_range = 1;
        for (uint64_t i = 0; i < n * rk; i++) {
            finite &= isfinite(ok[i]) != 0;
            in_range &= fabsf(ok[i]) <= 65504.0f * 256.0f;
        }
        for (uint64_t i = 0; i < n * rv; i++) finite &= isfinite(ov[i]) != 0;
        CHECK_MSG(finite, "extreme inputs must not decode to NaN/Inf");
        CHECK(in_range);
        /* the stored shifts and scales are finite fp16 values */
        int params_finite = 1;
        for (uint64_t i = 0; i + 1 < size && i < 64; i += 2) {
            uint16_t h = kvi_load_u16(payload + i);
            if (((h >> 10) & 0x1f) == 0x1f) params_finite = 0;
        }
        CHECK_MSG(params_finite, "fp16 params must not be Inf/NaN");
        /* raw coordinates saturate to +-65504 instead of becoming Inf */
        CHECK(ok[0] == -65504.0f); /* token 0, j=0 is -1e6 */
        free(fk); free(fv); free(payload); free(ok); free(ov);
        plan_stream_free(&k);
        plan_stream_free(&v);
    }

    /* 6. a large plan like a real model's (p = 4096, many groups) */
    {
        plan_stream k, v;
        random_plan(&r, 24, 1, &k);
        random_plan(&r, 24, 1, &v);
        round_trip(&k, &v, 33, &r, "large random plan", NULL);
        plan_stream_free(&k);
        plan_stream_free(&v);
    }
    return TEST_REPORT();
}
