/* fuzz_roundtrip.c - libFuzzer target: the input chooses a geometry (one of
 * three small calibrated bases), dtype, token count, sink/window, chunk
 * size, threads, entropy codec, DEFLATE level, plan, positions, the seed of
 * a synthetic cache and outliers written into it; the cache is encoded,
 * decoded and checked:
 *   - sink and window tokens (and every token when none is coded) come back
 *     bit-exact, positions come back as given;
 *   - every coded coordinate is within a bound derived from the plan: in the
 *     weighted, RoPE-free space y = (x - mean) * w, with d = y B^T (double),
 *     |y_i - y'_i| <= |residual_i| + sum_j err_j |B_ji|, where err_j is
 *     |d_j| for a dropped component, scale/2 (scale from the group's range,
 *     fp16-rounded up, per docs/FORMAT.md) for a quantized one and fp16
 *     rounding for a raw one; divided by w_i, combined over each RoPE pair
 *     for keys, plus float-arithmetic and output-dtype rounding slack;
 *   - a NaN in a coded token is KVTC_ERR_NUMERIC; one in a raw token is kept.
 * Any violation aborts with a description. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/container.h"
#include "fuzz_common.h"
#include "kvtc.h"
#include "model/basis.h"
#include "transform/rope.h"
#include "transform/rows.h"
#include "util/cache.h"

static kvtc_basis *g_basis[3];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    for (int i = 0; i < 3; i++) g_basis[i] = fuzz_make_basis(i);
    return 0;
}

typedef struct rd { const uint8_t *p; size_t n, i; } rd;
static uint32_t u8(rd *r) { return r->i < r->n ? r->p[r->i++] : 0; }
static uint32_t u16(rd *r) { uint32_t a = u8(r); return a | (u8(r) << 8); }

#define FAIL(...) do { fprintf(stderr, "fuzz_roundtrip: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)

static double ulp_rel(kvtc_dtype t) {
    return t == KVTC_DTYPE_F32 ? 0x1p-23 : t == KVTC_DTYPE_F16 ? 0x1p-10 : 0x1p-7;
}

/* Per-coordinate error bound of coded token t of stream S, written to bnd[p]
 * in the cache's (roped) coordinates. */
static void token_bound(const kvtc_basis *b, const basis_plan *pl, int is_key, const kvtc_cache *c,
                        const rope_table *rope, uint64_t t, float *row, double *d, double *bnd) {
    const basis_stream *bs = is_key ? &b->k : &b->v;
    const plan_stream *ps = is_key ? &pl->k : &pl->v;
    uint32_t p = bs->p;
    kvi_gather_rows(c, is_key, b->recompute_layers, t, 1, rope, is_key && b->rope_removed, row);
    double *y = bnd; /* reuse: y first, then the bound */
    double ynorm = 0;
    for (uint32_t i = 0; i < p; i++) {
        y[i] = ((double)row[i] - bs->mean[i]) * bs->weight[i];
        ynorm += y[i] * y[i];
    }
    ynorm = sqrt(ynorm);
    for (uint32_t j = 0; j < bs->rank; j++) {
        double s = 0;
        for (uint32_t i = 0; i < p; i++) s += y[i] * bs->basis[(size_t)j * p + i];
        d[j] = s;
    }
    /* err_j per component, over the plan's groups */
    double *err = d + bs->rank;
    uint32_t col = 0;
    for (uint32_t gi = 0; gi < ps->n_groups; gi++) {
        const dp_group *gr = &ps->groups[gi];
        for (uint32_t j = col; j < col + gr->size && j < bs->rank; j++) {
            if (gr->bits == 0) err[j] = fabs(d[j]);
            else if (gr->bits == DP_RAW_BITS) err[j] = fabs(d[j]) * 0x1p-11 + 0x1p-25;
            else {
                double lo = INFINITY, hi = -INFINITY;
                for (uint32_t q = col; q < col + gr->size && q < bs->rank; q++) {
                    if (d[q] < lo) lo = d[q];
                    if (d[q] > hi) hi = d[q];
                }
                double range = (hi - lo) + fabs(lo) * 0x1p-10 + 0x1p-24;
                double scale = range / (double)((1u << gr->bits) - 1) * (1 + 0x1p-10) + 0x1p-24;
                err[j] = scale / 2;
            }
        }
        col += gr->size;
    }
    /* y-space bound per coordinate: residual + sum_j err_j |B_ji| */
    double *tmp = err + bs->rank;
    for (uint32_t i = 0; i < p; i++) {
        double rec = 0, e = 0;
        for (uint32_t j = 0; j < bs->rank; j++) {
            double bji = bs->basis[(size_t)j * p + i];
            rec += d[j] * bji;
            e += err[j] * fabs(bji);
        }
        double slack = 1e-4 * (ynorm + 1.0);
        tmp[i] = (fabs(y[i] - rec) + e + slack) / bs->weight[i];
    }
    /* keys: RoPE mixes the pairs */
    const kvtc_geometry *g = &c->geometry;
    uint32_t hd = g->head_dim, rd_ = kvi_geometry_rope_dim(g);
    for (uint32_t i = 0; i < p; i++) bnd[i] = tmp[i];
    if (is_key && g->rope_type != KVTC_ROPE_NONE && b->rope_removed) {
        for (uint32_t h0 = 0; h0 < p; h0 += hd)
            for (uint32_t q = 0; q < rd_ / 2; q++) {
                uint32_t a = g->rope_type == KVTC_ROPE_NORM ? 2 * q : q;
                uint32_t bb = g->rope_type == KVTC_ROPE_NORM ? 2 * q + 1 : q + rd_ / 2;
                double m = hypot(tmp[h0 + a], tmp[h0 + bb]) * (1 + 1e-5);
                bnd[h0 + a] = bnd[h0 + bb] = m;
            }
    }
}

/* Every coded coordinate within its bound (see the top of the file). */
static void check_coded(const kvtc_basis *b, const uint8_t *stream, size_t stream_size, const kvtc_cache *in,
                        const kvtc_cache *o, uint64_t sink, uint64_t coded, int which) {
    const kvtc_geometry g = in->geometry;
    kvtc_dtype dt = in->dtype;
    uint64_t p = synth_p(&g);
    container_header sh;
    if (container_read_prefix(stream, stream_size, &sh)) FAIL("prefix");
    const basis_plan *pl = NULL;
    basis_plan solved; /* a ratio the basis has no plan for: the stream carries it */
    memset(&solved, 0, sizeof solved);
    int pi = basis_find_plan_by_fingerprint(b, sh.plan_fingerprint);
    if (pi >= 0) pl = &b->plans[pi];
    else if (container_read_plan_section(stream, &sh, b, &solved) == KVTC_OK) pl = &solved;
    if (!pl) FAIL("plan not found");
    rope_table rt;
    if (rope_table_init(&rt, &g)) FAIL("rope");
    float *row = malloc(sizeof(float) * p);
    double *dd = malloc(sizeof(double) * 3 * (p + 1));
    double *bnd = malloc(sizeof(double) * p);
    double ur = ulp_rel(dt);
    for (uint64_t t = sink; t < sink + coded; t++)
        for (int is_key = 0; is_key < 2; is_key++) {
            token_bound(b, pl, is_key, in, &rt, t, row, dd, bnd);
            for (uint32_t l = 0; l < g.n_layers; l++)
                for (uint32_t h = 0; h < g.n_kv_heads; h++)
                    for (uint32_t j = 0; j < g.head_dim; j++) {
                        double x = synth_elem(in, is_key, l, h, t, j);
                        double y = synth_elem(o, is_key, l, h, t, j);
                        uint64_t i = ((uint64_t)l * g.n_kv_heads + h) * g.head_dim + j;
                        double lim = bnd[i] + (fabs(x) + bnd[i]) * ur + 1e-6;
                        if (!(fabs(x - y) <= lim))
                            FAIL("token %llu %s l%u h%u d%u: |%g - %g| = %g > bound %g (basis %d, dtype %d)",
                                 (unsigned long long)t, is_key ? "K" : "V", l, h, j, x, y, fabs(x - y), lim,
                                 which, (int)dt);
                    }
        }
    free(row); free(dd); free(bnd);
    rope_table_free(&rt);
    plan_stream_free(&solved.k);
    plan_stream_free(&solved.v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rd r = {data, size, 0};
    int which = (int)(u8(&r) % 3);
    const kvtc_basis *b = g_basis[which];
    kvtc_geometry g = *kvtc_basis_geometry(b);
    kvtc_dtype dt = (kvtc_dtype)(u8(&r) % 3);
    uint64_t n = u16(&r) % 400;
    uint32_t a_sink = u8(&r), a_win = u8(&r);
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.n_sink = a_sink > 200 ? 1000 + a_sink : a_sink % 24;
    eo.n_window = a_win > 200 ? 5000 : a_win % 64;
    eo.chunk_tokens = 1 + u8(&r) % 100;
    eo.n_threads = 1 + u8(&r) % 2;
    eo.entropy_codec = (u8(&r) & 1) ? KVTC_CODEC_RANS : KVTC_CODEC_DEFLATE;
    eo.deflate_level = (int)(u8(&r) % 13);
    static const double ratios[5] = {2.0, 4.0, 8.0, 3.0, 1000.0};
    eo.ratio = ratios[u8(&r) % 5];
    uint32_t flags = u8(&r);
    uint64_t seed = u16(&r);
    double noise = (u8(&r) % 64) / 64.0;

    /* positions: implicit, or a walk with fuzzed steps */
    int64_t *pos = NULL;
    if ((flags & 1) && n) {
        pos = malloc(sizeof(int64_t) * n);
        int64_t at = (int64_t)(int32_t)(u16(&r) << 8);
        for (uint64_t t = 0; t < n; t++) {
            pos[t] = at;
            at += (int64_t)(int8_t)u8(&r);
        }
    }
    synth_params sp;
    synth_params_init(&sp, &g, dt, n);
    sp.model_seed = FUZZ_MODEL_SEED + (uint64_t)which;
    sp.data_seed = seed;
    sp.rank = 6;
    sp.noise = noise;
    sp.positions = pos;
    synth_cache sc;
    if (synth_make(&sp, &sc)) { free(pos); return 0; }
    uint64_t p = synth_p(&g);
    uint64_t total = p * n;
    /* outliers: (index, value) pairs from the rest of the input */
    int had_outliers = 0;
    while (total && r.i + 3 <= r.n) {
        had_outliers = 1;
        uint64_t idx = u16(&r) % total;
        double val = ((int8_t)u8(&r)) / 2.0;
        synth_store((flags & 2) ? sc.c.v : sc.c.k, dt, idx, val);
    }
    /* a NaN, in a coded or in a raw token */
    uint64_t sink = eo.n_sink < n ? eo.n_sink : n;
    uint64_t win = eo.n_window < n - sink ? eo.n_window : n - sink;
    uint64_t coded = n - sink - win;
    int nan_coded = 0;
    if ((flags & 4) && n) {
        uint64_t t = (seed * 7919u) % n;
        synth_store(sc.c.k, dt, t * g.head_dim, NAN);
        nan_coded = t >= sink && t < sink + coded;
    }

    uint8_t *s = NULL;
    size_t sn = 0;
    kvtc_result res = synth_compress(b, &eo, &sc.c, &s, &sn);
    if (nan_coded) {
        if (res != KVTC_ERR_NUMERIC) FAIL("NaN in a coded token gave %s", kvtc_result_string(res));
        goto out;
    }
    /* a token far beyond the calibrated norms is refused (encode.c) */
    if (res == KVTC_ERR_OUT_OF_RANGE && had_outliers) goto out;
    if (res != KVTC_OK) FAIL("compress failed: %s", kvtc_result_string(res));

    kvtc_stream_info info = {.struct_size = sizeof info};
    if (kvtc_stream_get_info(s, sn, &info) != KVTC_OK) FAIL("get_info failed on own stream");
    if (info.n_tokens != n || info.n_sink != sink || info.n_window != win || info.n_coded_tokens != coded ||
        info.stream_bytes != sn || info.dtype != dt)
        FAIL("stream info inconsistent");

    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.n_threads = 3 - eo.n_threads;
    kvtc_decoder *d = NULL;
    if (kvtc_decoder_alloc(b, &dopt, &d)) FAIL("decoder_alloc");
    kvtc_cache o;
    if (synth_alloc_like(&g, dt, n, 1, &o)) FAIL("alloc");
    res = kvtc_decompress(d, s, sn, &o);
    if (res != KVTC_OK) FAIL("decompress failed: %s", kvtc_result_string(res));
    for (uint64_t t = 0; t < n; t++) {
        int64_t want = pos ? pos[t] : (int64_t)t;
        if (o.positions[t] != want) FAIL("position %llu differs", (unsigned long long)t);
        if ((t < sink || t >= n - win) && !synth_token_equal(&sc.c, &o, t))
            FAIL("raw token %llu not bit-exact", (unsigned long long)t);
    }
    if (coded) check_coded(b, s, sn, &sc.c, &o, sink, coded, which);
    synth_cache_free(&o);
    kvtc_decoder_free(d);
out:
    free(s);
    synth_free(&sc);
    free(pos);
    return 0;
}
