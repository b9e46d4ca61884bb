/* test_codec.c - end to end through the public API (the acceptance test of
 * the core codec): synthetic correlated caches -> calibrator (ratios 8, 16,
 * 32) -> basis serialize/load -> compress -> stream info -> decompress.
 * Checks: raw sink/window tokens bit-exact; achieved ratio over coded tokens
 * >= 95% of the target; measured error per coded token within 1.5x the
 * plan's predicted error; error falls as the ratio falls; f16/bf16 caches;
 * explicit gapped positions; tiny and empty caches; size bound and
 * BUFFER_TOO_SMALL; byte-identical output for any thread count. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"
#include "test.h"
#include "util/cache.h"

#define N_SINK 4
#define N_WINDOW 16
#define CHUNK 64

static const double ratios[3] = {8, 16, 32};

typedef struct run_result {
    kvtc_result r_compress, r_info, r_decompress;
    kvtc_stream_info info;
    size_t size;
    double err_k, err_v;      /* mean squared error per coded token (sum over coords) */
    double energy_k, energy_v;/* mean squared norm per coded token of the input */
    int raw_exact;            /* sink and window tokens bit-identical */
    uint8_t *bytes;           /* the stream (owned) */
    kvtc_cache out;           /* the decoded cache (owned) */
} run_result;

static void run_free(run_result *rr) {
    free(rr->bytes);
    synth_cache_free(&rr->out);
    memset(rr, 0, sizeof *rr);
}

static void encode_options(kvtc_encode_options *o, double ratio, uint32_t chunk, uint32_t threads) {
    kvtc_encode_options_init(o);
    o->ratio = ratio;
    o->n_sink = N_SINK;
    o->n_window = N_WINDOW;
    o->chunk_tokens = chunk;
    o->n_threads = threads;
}

/* Compress c, read the info, decompress into a fresh cache, measure. */
static void run(const kvtc_basis *b, const kvtc_encode_options *eo, uint32_t dec_threads, const kvtc_cache *c,
                int want_positions, run_result *rr) {
    memset(rr, 0, sizeof *rr);
    rr->r_compress = synth_compress(b, eo, c, &rr->bytes, &rr->size);
    if (rr->r_compress) return;
    rr->info.struct_size = sizeof rr->info;
    rr->r_info = kvtc_stream_get_info(rr->bytes, rr->size, &rr->info);
    if (rr->r_info) return;
    if (synth_alloc_like(&rr->info.geometry, rr->info.dtype, rr->info.n_tokens, want_positions, &rr->out)) return;
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.n_threads = dec_threads;
    kvtc_decoder *d = NULL;
    rr->r_decompress = kvtc_decoder_alloc(b, &dopt, &d);
    if (!rr->r_decompress) rr->r_decompress = kvtc_decompress(d, rr->bytes, rr->size, &rr->out);
    kvtc_decoder_free(d);
    if (rr->r_decompress) return;
    uint64_t n = c->n_tokens, s = rr->info.n_sink, w = rr->info.n_window;
    rr->raw_exact = 1;
    for (uint64_t t = 0; t < s; t++) rr->raw_exact &= synth_token_equal(c, &rr->out, t);
    for (uint64_t t = n - w; t < n; t++) rr->raw_exact &= synth_token_equal(c, &rr->out, t);
    kvtc_cache zc; /* all zeros: the error against it is the energy */
    synth_alloc_like(&c->geometry, c->dtype, n, 0, &zc);
    for (uint64_t t = s; t < n - w; t++) {
        rr->err_k += synth_token_sqerr(c, &rr->out, 1, t);
        rr->err_v += synth_token_sqerr(c, &rr->out, 0, t);
        rr->energy_k += synth_token_sqerr(c, &zc, 1, t);
        rr->energy_v += synth_token_sqerr(c, &zc, 0, t);
    }
    synth_cache_free(&zc);
    uint64_t coded = n - s - w;
    if (coded) {
        rr->err_k /= (double)coded;
        rr->err_v /= (double)coded;
        rr->energy_k /= (double)coded;
        rr->energy_v /= (double)coded;
    }
}

static int plan_info_equal(const kvtc_plan_info *a, const kvtc_plan_info *b) {
    return a->target_ratio == b->target_ratio && a->bits_per_token == b->bits_per_token &&
           a->expected_error_k == b->expected_error_k && a->expected_error_v == b->expected_error_v &&
           a->n_groups_k == b->n_groups_k && a->n_groups_v == b->n_groups_v && a->rank_k == b->rank_k &&
           a->rank_v == b->rank_v;
}

/* Calibrate on the model of sp; serialize, reload, compare; return the reloaded basis. */
static kvtc_basis *calibrate_and_reload(const synth_params *sp, const char *name) {
    kvtc_basis *b0 = NULL, *b1 = NULL;
    kvtc_result r = synth_calibrate(sp, 4, N_SINK, N_WINDOW, ratios, 3, &b0);
    CHECK_MSG(r == KVTC_OK, "%s: calibrate: %s", name, kvtc_result_string(r));
    if (r) return NULL;
    CHECK(kvtc_basis_plan_count(b0) == 3);
    CHECK(kvi_geometry_check(kvtc_basis_geometry(b0)) == KVTC_OK);
    CHECK(kvtc_basis_geometry(b0)->n_layers == sp->g.n_layers);
    CHECK(kvtc_basis_recomputed_layers(b0) == 0);
    size_t n = 0;
    void *bytes = synth_basis_bytes(b0, &n);
    CHECK(bytes != NULL);
    r = kvtc_basis_load(bytes, n, &b1);
    CHECK_MSG(r == KVTC_OK, "%s: basis reload: %s", name, kvtc_result_string(r));
    if (r) { free(bytes); kvtc_basis_free(b0); return NULL; }
    /* the loaded basis does not depend on the buffer */
    memset(bytes, 0xA5, n);
    free(bytes);
    CHECK(kvtc_basis_fingerprint(b0) == kvtc_basis_fingerprint(b1));
    CHECK(kvtc_basis_fingerprint(b0) != 0);
    CHECK(kvtc_basis_plan_count(b1) == 3);
    double p = (double)synth_p(&sp->g);
    double prev_err = -1.0;
    for (uint32_t i = 0; i < 3; i++) {
        kvtc_plan_info a = {.struct_size = sizeof a}, c = {.struct_size = sizeof c};
        CHECK(kvtc_basis_plan_info(b0, i, &a) == KVTC_OK);
        CHECK(kvtc_basis_plan_info(b1, i, &c) == KVTC_OK);
        CHECK_MSG(plan_info_equal(&a, &c), "%s: plan %u info differs after reload", name, i);
        CHECK(a.target_ratio == ratios[i]);
        /* the plan fits its budget: 2 streams x 16 bits x p / ratio */
        CHECK_MSG(a.bits_per_token <= 2.0 * 16.0 * p / ratios[i], "%s: plan %u: %g bits > budget %g", name, i,
                  a.bits_per_token, 2.0 * 16.0 * p / ratios[i]);
        CHECK(a.bits_per_token >= 0.9 * 2.0 * 16.0 * p / ratios[i]); /* and uses most of it */
        CHECK(a.rank_k > 0 && a.rank_v > 0 && a.rank_k <= p && a.rank_v <= p);
        /* ratios ascend: fewer bits -> higher predicted error */
        double e = a.expected_error_k + a.expected_error_v;
        CHECK_MSG(e > prev_err, "%s: expected error not increasing with the ratio", name);
        prev_err = e;
        CHECK(isfinite(a.expected_error_k) && a.expected_error_k >= 0);
    }
    kvtc_plan_info dummy = {.struct_size = sizeof dummy};
    CHECK(kvtc_basis_plan_info(b1, 3, &dummy) == KVTC_ERR_NO_PLAN);
    uint32_t idx = 99;
    CHECK(kvtc_basis_find_plan(b1, 20.0, &idx) == KVTC_OK && idx == 1);
    CHECK(kvtc_basis_find_plan(b1, 12.0, &idx) == KVTC_OK && idx == 1);
    CHECK(kvtc_basis_find_plan(b1, 2.0, &idx) == KVTC_OK && idx == 0);
    CHECK(kvtc_basis_find_plan(b1, 1000.0, &idx) == KVTC_OK && idx == 2);
    CHECK(kvtc_basis_find_plan(b1, 0.0, &idx) == KVTC_ERR_INVALID_ARGUMENT);
    /* infinity made every distance infinite: KVTC_OK with idx unwritten */
    CHECK(kvtc_basis_find_plan(b1, INFINITY, &idx) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_basis_find_plan(b1, NAN, &idx) == KVTC_ERR_INVALID_ARGUMENT);
    idx = 77;
    CHECK(kvtc_basis_find_plan(b1, 1e-320, &idx) == KVTC_OK && idx == 0); /* denormal: the smallest plan */
    /* serialization is canonical: reload -> serialize gives the same bytes */
    size_t n0 = 0, n1 = 0;
    void *s0 = synth_basis_bytes(b0, &n0), *s1 = synth_basis_bytes(b1, &n1);
    CHECK(s0 && s1 && n0 == n1 && memcmp(s0, s1, n0) == 0);
    size_t wr = 0;
    CHECK(kvtc_basis_serialize(b0, s0, n0 - 1, &wr) == KVTC_ERR_BUFFER_TOO_SMALL);
    free(s0);
    free(s1);
    kvtc_basis_free(b0);
    return b1;
}

/* The acceptance test on one model (geometry), at ratios 8 / 16 / 32. */
static void acceptance(const kvtc_geometry *g, const char *name, kvtc_basis **keep) {
    synth_params sp;
    synth_params_init(&sp, g, KVTC_DTYPE_F32, 1100);
    kvtc_basis *b = calibrate_and_reload(&sp, name);
    if (!b) return;
    synth_params tp = sp;
    tp.n_tokens = 600;
    tp.data_seed = 7; /* held out: not a calibration cache */
    synth_cache sc;
    CHECK(synth_make(&tp, &sc) == 0);

    double p = (double)synth_p(g);
    double total_err[3];
    for (int i = 0; i < 3; i++) {
        kvtc_encode_options eo;
        encode_options(&eo, ratios[i], CHUNK, 2);
        run_result rr;
        run(b, &eo, 2, &sc.c, 0, &rr);
        CHECK_MSG(rr.r_compress == KVTC_OK, "%s@%g: compress: %s", name, ratios[i], kvtc_result_string(rr.r_compress));
        CHECK_MSG(rr.r_info == KVTC_OK, "%s@%g: info: %s", name, ratios[i], kvtc_result_string(rr.r_info));
        CHECK_MSG(rr.r_decompress == KVTC_OK, "%s@%g: decompress: %s", name, ratios[i],
                  kvtc_result_string(rr.r_decompress));
        const kvtc_stream_info *in = &rr.info;
        uint64_t coded = 600 - N_SINK - N_WINDOW;
        /* info */
        CHECK(in->version_major == KVTC_FORMAT_VERSION_MAJOR && in->version_minor == KVTC_FORMAT_VERSION_MINOR);
        CHECK(in->geometry.n_layers == g->n_layers && in->geometry.n_kv_heads == g->n_kv_heads &&
              in->geometry.head_dim == g->head_dim && in->geometry.rope_type == g->rope_type &&
              in->geometry.rope_theta == g->rope_theta);
        CHECK(in->geometry.rope_dim == (g->rope_dim ? g->rope_dim : g->head_dim));
        CHECK(in->dtype == KVTC_DTYPE_F32);
        CHECK(in->n_tokens == 600 && in->n_sink == N_SINK && in->n_window == N_WINDOW);
        CHECK(in->n_coded_tokens == coded);
        CHECK(in->chunk_tokens == CHUNK && in->n_chunks == (coded + CHUNK - 1) / CHUNK);
        CHECK(in->recompute_layers == 0 && in->entropy_codec == 1);
        CHECK(in->has_positions == 0 && in->has_token_ids == 0);
        CHECK(in->basis_fingerprint == kvtc_basis_fingerprint(b));
        CHECK(in->plan_ratio == ratios[i]);
        CHECK(in->k_bytes == kvtc_cache_tensor_bytes(g, KVTC_DTYPE_F32, 600) && in->v_bytes == in->k_bytes);
        CHECK(in->stream_bytes == rr.size);
        CHECK(in->raw_bytes == 2ull * (N_SINK + N_WINDOW) * (uint64_t)p * 4);
        CHECK(in->coded_bytes > 0 && in->coded_bytes + in->raw_bytes < rr.size);
        /* the header, tables and index are small next to the data */
        CHECK(rr.size - in->coded_bytes - in->raw_bytes <= 128 + 6 * 24 + 24ull * in->n_chunks);

        CHECK_MSG(rr.raw_exact, "%s@%g: sink/window tokens not bit-exact", name, ratios[i]);
        /* achieved ratio over coded tokens vs fp16 */
        double fp16_bits = (double)coded * 2.0 * p * 16.0;
        double achieved = fp16_bits / (8.0 * (double)in->coded_bytes);
        CHECK_MSG(achieved >= ratios[i] * 0.95, "%s@%g: achieved ratio %.2f", name, ratios[i], achieved);

        /* measured error vs the plan's prediction */
        kvtc_plan_info pi = {.struct_size = sizeof pi};
        uint32_t idx;
        CHECK(kvtc_basis_find_plan(b, ratios[i], &idx) == KVTC_OK);
        CHECK(kvtc_basis_plan_info(b, idx, &pi) == KVTC_OK);
        double slack_k = 1e-5 * rr.energy_k, slack_v = 1e-5 * rr.energy_v;
        CHECK_MSG(rr.err_k <= 1.5 * pi.expected_error_k + slack_k, "%s@%g: K error %.4g > 1.5 x expected %.4g", name,
                  ratios[i], rr.err_k, pi.expected_error_k);
        CHECK_MSG(rr.err_v <= 1.5 * pi.expected_error_v + slack_v, "%s@%g: V error %.4g > 1.5 x expected %.4g", name,
                  ratios[i], rr.err_v, pi.expected_error_v);
        /* and the codec is not trivially lossless-or-broken: the error is a
         * small fraction of the signal */
        CHECK_MSG(rr.err_k < 0.2 * rr.energy_k && rr.err_v < 0.2 * rr.energy_v, "%s@%g: error %.3g/%.3g of energy %.3g/%.3g",
                  name, ratios[i], rr.err_k, rr.err_v, rr.energy_k, rr.energy_v);
        total_err[i] = rr.err_k + rr.err_v;
        printf("%s @%gx: %zu B, coded ratio %.2fx, err K %.4g (exp %.4g) V %.4g (exp %.4g), energy K %.4g V %.4g\n",
               name, ratios[i], rr.size, achieved, rr.err_k, pi.expected_error_k, rr.err_v, pi.expected_error_v,
               rr.energy_k, rr.energy_v);
        run_free(&rr);
    }
    CHECK_MSG(total_err[0] < total_err[1] && total_err[1] < total_err[2],
              "%s: error must fall with the ratio: %.4g (8x) %.4g (16x) %.4g (32x)", name, total_err[0], total_err[1],
              total_err[2]);
    synth_free(&sc);
    if (keep) *keep = b;
    else kvtc_basis_free(b);
}

/* f16 / bf16 caches with a basis calibrated on f32 caches. */
static void test_dtypes(const kvtc_basis *b, const kvtc_geometry *g) {
    const kvtc_dtype dts[2] = {KVTC_DTYPE_F16, KVTC_DTYPE_BF16};
    for (int i = 0; i < 2; i++) {
        synth_params sp;
        synth_params_init(&sp, g, dts[i], 333);
        sp.data_seed = 8 + i;
        synth_cache sc;
        CHECK(synth_make(&sp, &sc) == 0);
        kvtc_encode_options eo;
        encode_options(&eo, 16, CHUNK, 1);
        run_result rr;
        run(b, &eo, 1, &sc.c, 0, &rr);
        CHECK_MSG(rr.r_compress == KVTC_OK && rr.r_info == KVTC_OK && rr.r_decompress == KVTC_OK,
                  "dtype %d: %s / %s / %s", (int)dts[i], kvtc_result_string(rr.r_compress),
                  kvtc_result_string(rr.r_info), kvtc_result_string(rr.r_decompress));
        CHECK(rr.info.dtype == dts[i]);
        CHECK(rr.info.raw_bytes == 2ull * (N_SINK + N_WINDOW) * synth_p(g) * 2);
        CHECK(rr.info.k_bytes == synth_p(g) * 333 * 2);
        CHECK_MSG(rr.raw_exact, "dtype %d: sink/window not bit-exact", (int)dts[i]);
        kvtc_plan_info pi = {.struct_size = sizeof pi};
        CHECK(kvtc_basis_plan_info(b, 1, &pi) == KVTC_OK);
        /* output rounding to 16 bits adds at most ~2^-16 (bf16) of the energy */
        CHECK_MSG(rr.err_k <= 1.5 * pi.expected_error_k + 2e-5 * rr.energy_k, "dtype %d: K err %.4g exp %.4g",
                  (int)dts[i], rr.err_k, pi.expected_error_k);
        CHECK_MSG(rr.err_v <= 1.5 * pi.expected_error_v + 2e-5 * rr.energy_v, "dtype %d: V err %.4g exp %.4g",
                  (int)dts[i], rr.err_v, pi.expected_error_v);
        double achieved = (double)rr.info.n_coded_tokens * 2.0 * synth_p(g) * 16.0 / (8.0 * rr.info.coded_bytes);
        CHECK_MSG(achieved >= 16 * 0.95, "dtype %d: achieved %.2f", (int)dts[i], achieved);
        run_free(&rr);
        synth_free(&sc);
    }
}

/* Explicit positions starting at 1000 with gaps: stored, restored, and used
 * for RoPE (a wrong position would show as a large key error). */
static void test_positions(const kvtc_basis *b, const kvtc_geometry *g) {
    const uint64_t n = 250;
    int64_t *pos = malloc(sizeof(int64_t) * n);
    for (uint64_t t = 0; t < n; t++) pos[t] = 1000 + (int64_t)t + 13 * (int64_t)(t / 7) + (t > 200 ? 100000 : 0);
    synth_params sp;
    synth_params_init(&sp, g, KVTC_DTYPE_F32, n);
    sp.positions = pos;
    sp.data_seed = 11;
    synth_cache sc;
    CHECK(synth_make(&sp, &sc) == 0);
    kvtc_encode_options eo;
    encode_options(&eo, 16, 50, 2);
    run_result rr;
    run(b, &eo, 2, &sc.c, 1, &rr);
    CHECK(rr.r_compress == KVTC_OK && rr.r_info == KVTC_OK && rr.r_decompress == KVTC_OK);
    CHECK(rr.info.has_positions == 1);
    CHECK(rr.out.positions && memcmp(rr.out.positions, pos, sizeof(int64_t) * n) == 0);
    CHECK(rr.raw_exact);
    kvtc_plan_info pi = {.struct_size = sizeof pi};
    CHECK(kvtc_basis_plan_info(b, 1, &pi) == KVTC_OK);
    CHECK_MSG(rr.err_k <= 1.5 * pi.expected_error_k + 1e-4 * rr.energy_k, "positions: K err %.4g exp %.4g", rr.err_k,
              pi.expected_error_k);
    CHECK(rr.err_v <= 1.5 * pi.expected_error_v + 1e-4 * rr.energy_v);
    /* decoding without a positions buffer works too */
    kvtc_cache o2;
    CHECK(synth_alloc_like(g, KVTC_DTYPE_F32, n, 0, &o2) == 0);
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(b, NULL, &d) == KVTC_OK);
    CHECK(kvtc_decompress(d, rr.bytes, rr.size, &o2) == KVTC_OK);
    CHECK(memcmp(o2.k, rr.out.k, (size_t)rr.info.k_bytes) == 0);
    CHECK(memcmp(o2.v, rr.out.v, (size_t)rr.info.v_bytes) == 0);
    kvtc_decoder_free(d);
    synth_cache_free(&o2);
    run_free(&rr);

    /* explicit positions equal to 0..n-1 are implicit: not stored */
    for (uint64_t t = 0; t < n; t++) pos[t] = (int64_t)t;
    synth_free(&sc);
    sp.positions = pos;
    CHECK(synth_make(&sp, &sc) == 0);
    run(b, &eo, 1, &sc.c, 1, &rr);
    CHECK(rr.r_decompress == KVTC_OK);
    CHECK(rr.info.has_positions == 0);
    CHECK(rr.out.positions && memcmp(rr.out.positions, pos, sizeof(int64_t) * n) == 0);
    /* ...and the same bytes as a cache without positions */
    uint8_t *b2 = NULL;
    size_t s2 = 0;
    kvtc_cache nopos = sc.c;
    nopos.positions = NULL;
    CHECK(synth_compress(b, &eo, &nopos, &b2, &s2) == KVTC_OK);
    CHECK(s2 == rr.size && memcmp(b2, rr.bytes, s2) == 0);
    free(b2);
    run_free(&rr);
    synth_free(&sc);
    free(pos);
}

/* Caches with no or few coded tokens. */
static void test_small(const kvtc_basis *b, const kvtc_geometry *g) {
    const uint64_t sizes[] = {1, 3, 4, 5, 15, 19, 20, 21, 22, 84, 85};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint64_t n = sizes[i];
        synth_params sp;
        synth_params_init(&sp, g, KVTC_DTYPE_BF16, n);
        sp.data_seed = 100 + i;
        synth_cache sc;
        CHECK(synth_make(&sp, &sc) == 0);
        kvtc_encode_options eo;
        encode_options(&eo, 32, CHUNK, 3);
        run_result rr;
        run(b, &eo, 3, &sc.c, 1, &rr);
        CHECK_MSG(rr.r_compress == KVTC_OK && rr.r_info == KVTC_OK && rr.r_decompress == KVTC_OK,
                  "n=%llu: %s / %s / %s", (unsigned long long)n, kvtc_result_string(rr.r_compress),
                  kvtc_result_string(rr.r_info), kvtc_result_string(rr.r_decompress));
        uint64_t sink = n < N_SINK ? n : N_SINK;
        uint64_t win = n - sink < N_WINDOW ? n - sink : N_WINDOW;
        uint64_t coded = n - sink - win;
        CHECK(rr.info.n_tokens == n && rr.info.n_sink == sink && rr.info.n_window == win);
        CHECK(rr.info.n_coded_tokens == coded);
        CHECK(rr.info.n_chunks == (coded + CHUNK - 1) / CHUNK);
        if (!coded) {
            CHECK(rr.info.coded_bytes == 0);
            CHECK_MSG(memcmp(sc.c.k, rr.out.k, (size_t)rr.info.k_bytes) == 0 &&
                          memcmp(sc.c.v, rr.out.v, (size_t)rr.info.v_bytes) == 0,
                      "n=%llu (all raw) must round trip exactly", (unsigned long long)n);
        }
        CHECK(rr.raw_exact);
        for (uint64_t t = 0; t < n; t++) CHECK(rr.out.positions[t] == (int64_t)t);
        run_free(&rr);
        synth_free(&sc);
    }

    /* n_tokens == 0 */
    kvtc_cache c0;
    memset(&c0, 0, sizeof c0);
    c0.geometry = *g;
    c0.dtype = KVTC_DTYPE_F16;
    kvtc_encode_options eo;
    encode_options(&eo, 16, CHUNK, 2);
    uint8_t *buf = NULL;
    size_t size = 0;
    CHECK(synth_compress(b, &eo, &c0, &buf, &size) == KVTC_OK);
    kvtc_stream_info in = {.struct_size = sizeof in};
    CHECK(kvtc_stream_get_info(buf, size, &in) == KVTC_OK);
    CHECK(in.n_tokens == 0 && in.n_coded_tokens == 0 && in.n_chunks == 0 && in.n_sink == 0 && in.n_window == 0);
    CHECK(in.k_bytes == 0 && in.coded_bytes == 0 && in.raw_bytes == 0 && in.stream_bytes == size);
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(b, NULL, &d) == KVTC_OK);
    kvtc_cache o0 = c0;
    CHECK(kvtc_decompress(d, buf, size, &o0) == KVTC_OK);
    kvtc_decoder_free(d);
    free(buf);
}

/* compress_bound, BUFFER_TOO_SMALL, determinism over threads and chunks. */
static void test_bound_determinism(const kvtc_basis *b, const kvtc_geometry *g) {
    synth_params sp;
    synth_params_init(&sp, g, KVTC_DTYPE_F16, 617);
    sp.data_seed = 21;
    synth_cache sc;
    CHECK(synth_make(&sp, &sc) == 0);
    const uint32_t chunks[3] = {37, 64, 100}; /* 597 coded tokens: none divides */
    for (int ci = 0; ci < 3; ci++) {
        uint8_t *ref = NULL;
        size_t ref_size = 0;
        uint8_t *ref_out = NULL;
        for (uint32_t th = 1; th <= 4; th++) {
            if (th == 3) continue;
            kvtc_encode_options eo;
            encode_options(&eo, 16, chunks[ci], th);
            kvtc_encoder *e = NULL;
            CHECK(kvtc_encoder_alloc(b, &eo, &e) == KVTC_OK);
            size_t cap = kvtc_compress_bound(e, &sc.c);
            CHECK(cap > 0);
            uint8_t *buf = malloc(cap);
            size_t w = 0;
            CHECK(kvtc_compress(e, &sc.c, buf, cap, &w) == KVTC_OK);
            CHECK(w <= cap);
            if (!ref) {
                ref = malloc(w);
                memcpy(ref, buf, w);
                ref_size = w;
                /* cap = size - 1 (and smaller) fails cleanly; cap = size works */
                size_t w2 = 12345;
                uint8_t *tight = malloc(w);
                CHECK(kvtc_compress(e, &sc.c, tight, w - 1, &w2) == KVTC_ERR_BUFFER_TOO_SMALL);
                CHECK(kvtc_compress(e, &sc.c, tight, w / 2, &w2) == KVTC_ERR_BUFFER_TOO_SMALL);
                CHECK(kvtc_compress(e, &sc.c, tight, 100, &w2) == KVTC_ERR_BUFFER_TOO_SMALL);
                CHECK(kvtc_compress(e, &sc.c, tight, 0, &w2) == KVTC_ERR_BUFFER_TOO_SMALL);
                CHECK(kvtc_compress(e, &sc.c, tight, w, &w2) == KVTC_OK && w2 == w && memcmp(tight, ref, w) == 0);
                free(tight);
            } else {
                CHECK_MSG(w == ref_size && memcmp(buf, ref, w) == 0, "chunk %u: %u threads gives other bytes",
                          chunks[ci], th);
            }
            /* decoding is also thread-count independent */
            kvtc_decode_options dopt;
            kvtc_decode_options_init(&dopt);
            dopt.n_threads = 5 - th;
            kvtc_decoder *d = NULL;
            CHECK(kvtc_decoder_alloc(b, &dopt, &d) == KVTC_OK);
            kvtc_cache o;
            CHECK(synth_alloc_like(g, KVTC_DTYPE_F16, 617, 0, &o) == 0);
            CHECK(kvtc_decompress(d, buf, w, &o) == KVTC_OK);
            size_t tb = (size_t)kvtc_cache_tensor_bytes(g, KVTC_DTYPE_F16, 617);
            if (!ref_out) {
                ref_out = malloc(2 * tb);
                memcpy(ref_out, o.k, tb);
                memcpy(ref_out + tb, o.v, tb);
            } else {
                CHECK_MSG(memcmp(ref_out, o.k, tb) == 0 && memcmp(ref_out + tb, o.v, tb) == 0,
                          "chunk %u: decode with %u threads differs", chunks[ci], 5 - th);
            }
            synth_cache_free(&o);
            kvtc_decoder_free(d);
            free(buf);
            kvtc_encoder_free(e);
        }
        free(ref);
        free(ref_out);
    }
    synth_free(&sc);

    /* more than one batch (4096 coded tokens per batch in lib/cpu): a long
     * cache, odd chunk size, 1 vs 3 threads */
    synth_params lp;
    synth_params_init(&lp, g, KVTC_DTYPE_F16, 4700);
    lp.data_seed = 22;
    CHECK(synth_make(&lp, &sc) == 0);
    uint8_t *s1 = NULL, *s3 = NULL;
    size_t n1 = 0, n3 = 0;
    kvtc_encode_options eo;
    encode_options(&eo, 16, 1000, 1);
    CHECK(synth_compress(b, &eo, &sc.c, &s1, &n1) == KVTC_OK);
    eo.n_threads = 3;
    CHECK(synth_compress(b, &eo, &sc.c, &s3, &n3) == KVTC_OK);
    CHECK(n1 == n3 && s1 && s3 && memcmp(s1, s3, n1) == 0);
    run_result rr;
    run(b, &eo, 3, &sc.c, 0, &rr);
    CHECK(rr.r_decompress == KVTC_OK && rr.raw_exact);
    CHECK(rr.info.n_chunks == 5);
    kvtc_plan_info pi = {.struct_size = sizeof pi};
    CHECK(kvtc_basis_plan_info(b, 1, &pi) == KVTC_OK);
    CHECK_MSG(rr.err_k <= 1.5 * pi.expected_error_k + 2e-5 * rr.energy_k, "long: K err %.4g exp %.4g", rr.err_k,
              pi.expected_error_k);
    CHECK(rr.err_v <= 1.5 * pi.expected_error_v + 2e-5 * rr.energy_v);
    run_free(&rr);
    free(s1);
    free(s3);
    synth_free(&sc);
}

/* Both entropy codecs code the same payload: identical decoded caches, a
 * bound that holds, thread-count independent bytes. */
static void test_entropy_codecs(const kvtc_basis *b, const kvtc_geometry *g) {
    synth_params sp;
    synth_params_init(&sp, g, KVTC_DTYPE_BF16, 900);
    sp.data_seed = 31;
    synth_cache sc;
    CHECK(synth_make(&sp, &sc) == 0);
    run_result rd, rr;
    kvtc_encode_options eo;
    encode_options(&eo, 16, 100, 2);
    eo.entropy_codec = KVTC_CODEC_DEFLATE;
    run(b, &eo, 2, &sc.c, 0, &rd);
    eo.entropy_codec = KVTC_CODEC_RANS;
    run(b, &eo, 1, &sc.c, 0, &rr);
    CHECK_MSG(rr.r_compress == KVTC_OK && rr.r_decompress == KVTC_OK, "rANS: %s / %s",
              kvtc_result_string(rr.r_compress), kvtc_result_string(rr.r_decompress));
    CHECK(rd.r_decompress == KVTC_OK && rr.info.entropy_codec == KVTC_CODEC_RANS && rd.info.entropy_codec == KVTC_CODEC_DEFLATE);
    if (!rr.r_decompress && !rd.r_decompress) {
        CHECK_MSG(memcmp(rr.out.k, rd.out.k, (size_t)rd.info.k_bytes) == 0 &&
                      memcmp(rr.out.v, rd.out.v, (size_t)rd.info.v_bytes) == 0,
                  "rANS and DEFLATE streams decode differently");
        double a = (double)rr.info.n_coded_tokens * 2.0 * synth_p(g) * 16.0 / (8.0 * rr.info.coded_bytes);
        CHECK_MSG(a >= 16 * 0.95, "rANS achieved ratio %.2f", a);
        printf("coded ratio at 16x: DEFLATE %.2fx, rANS %.2fx\n",
               (double)rd.info.n_coded_tokens * 2.0 * synth_p(g) * 16.0 / (8.0 * rd.info.coded_bytes), a);
    }
    /* rANS: bound, determinism over threads, BUFFER_TOO_SMALL */
    uint8_t *ref = NULL;
    size_t ref_n = 0;
    for (uint32_t th = 1; th <= 4; th += 3) {
        eo.n_threads = th;
        kvtc_encoder *e = NULL;
        CHECK(kvtc_encoder_alloc(b, &eo, &e) == KVTC_OK);
        if (!e) break;
        size_t cap = kvtc_compress_bound(e, &sc.c), w = 0;
        uint8_t *buf = malloc(cap ? cap : 1);
        CHECK(cap > 0 && kvtc_compress(e, &sc.c, buf, cap, &w) == KVTC_OK && w <= cap);
        if (!ref) {
            ref = buf;
            ref_n = w;
            size_t w2;
            uint8_t *tight = malloc(w);
            CHECK(kvtc_compress(e, &sc.c, tight, w - 1, &w2) == KVTC_ERR_BUFFER_TOO_SMALL);
            free(tight);
        } else {
            CHECK_MSG(w == ref_n && memcmp(buf, ref, w) == 0, "rANS: %u threads give other bytes", th);
            free(buf);
        }
        kvtc_encoder_free(e);
    }
    free(ref);
    eo.entropy_codec = 3;
    kvtc_encoder *e = NULL;
    CHECK(kvtc_encoder_alloc(b, &eo, &e) == KVTC_ERR_INVALID_ARGUMENT);
    kvtc_encoder_free(e);
    run_free(&rd);
    run_free(&rr);
    synth_free(&sc);
}

/* Options and arguments the API must refuse. */
static void test_arguments(const kvtc_basis *b, const kvtc_geometry *g) {
    kvtc_encode_options eo;
    kvtc_encoder *e = (kvtc_encoder *)(uintptr_t)1;
    encode_options(&eo, 16, 0, 1);
    CHECK(kvtc_encoder_alloc(b, &eo, &e) == KVTC_ERR_INVALID_ARGUMENT && e == NULL);
    encode_options(&eo, 16, 65537, 1);
    CHECK(kvtc_encoder_alloc(b, &eo, &e) == KVTC_ERR_INVALID_ARGUMENT);
    encode_options(&eo, 16, 64, 1);
    eo.deflate_level = 13;
    CHECK(kvtc_encoder_alloc(b, &eo, &e) == KVTC_ERR_INVALID_ARGUMENT);
    encode_options(&eo, -1, 64, 1);
    CHECK(kvtc_encoder_alloc(b, &eo, &e) == KVTC_ERR_INVALID_ARGUMENT);
    encode_options(&eo, 16, 64, 1);
    eo.struct_size = 8;
    CHECK(kvtc_encoder_alloc(b, &eo, &e) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_encoder_alloc(NULL, NULL, &e) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_encoder_alloc(b, NULL, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.struct_size = 4;
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(b, &dopt, &d) == KVTC_ERR_INVALID_ARGUMENT);
    /* level 0 (stored blocks) still decodes */
    encode_options(&eo, 16, 64, 1);
    eo.deflate_level = 0;
    synth_params sp;
    synth_params_init(&sp, g, KVTC_DTYPE_F32, 100);
    synth_cache sc;
    CHECK(synth_make(&sp, &sc) == 0);
    run_result rr;
    run(b, &eo, 1, &sc.c, 0, &rr);
    CHECK(rr.r_decompress == KVTC_OK && rr.raw_exact);
    run_free(&rr);
    /* NULL pointers */
    CHECK(kvtc_encoder_alloc(b, NULL, &e) == KVTC_OK);
    size_t w;
    uint8_t tmp[16];
    CHECK(kvtc_compress(e, NULL, tmp, sizeof tmp, &w) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_compress(e, &sc.c, NULL, 16, &w) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_compress(e, &sc.c, tmp, sizeof tmp, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_compress_bound(NULL, &sc.c) == 0);
    CHECK(kvtc_compress_bound(e, NULL) == 0);
    kvtc_cache nok = sc.c;
    nok.k = NULL;
    CHECK(kvtc_compress(e, &nok, tmp, sizeof tmp, &w) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_compress_bound(e, &nok) == 0);
    kvtc_encoder_free(e);
    kvtc_stream_info in = {.struct_size = sizeof in};
    CHECK(kvtc_stream_get_info(NULL, 10, &in) == KVTC_ERR_INVALID_ARGUMENT);
    synth_free(&sc);
}

/* The calibrator: a second finish must give the same basis (or refuse), the
 * reservoir keeps max_tokens rows, too few rows are refused, a basis without
 * plans round trips but cannot encode. */
static void test_calibrator(const kvtc_geometry *g) {
    synth_params sp;
    synth_params_init(&sp, g, KVTC_DTYPE_F32, 400);
    synth_cache sc;
    CHECK(synth_make(&sp, &sc) == 0);
    kvtc_calibrate_options o;
    kvtc_calibrate_options_init(&o);
    o.n_sink = N_SINK;
    o.n_window = N_WINDOW;
    kvtc_calibrator *c = NULL;
    CHECK(kvtc_calibrator_alloc(g, &o, &c) == KVTC_OK);
    CHECK(kvtc_calibrator_add(c, &sc.c) == KVTC_OK);
    CHECK(kvtc_calibrator_rows(c) == 400 - N_SINK - N_WINDOW);
    kvtc_basis *b1 = NULL, *b2 = NULL;
    CHECK(kvtc_calibrator_finish(c, ratios, 3, &b1) == KVTC_OK);
    /* Regression guard: finish centers the stored rows in place, so a second
     * finish must refuse rather than compute another mean (~0) and basis. */
    kvtc_result r2 = kvtc_calibrator_finish(c, ratios, 3, &b2);
    CHECK_MSG(r2 != KVTC_OK || kvtc_basis_fingerprint(b1) == kvtc_basis_fingerprint(b2),
              "a second kvtc_calibrator_finish returned a different basis (fingerprint %016llx vs %016llx)",
              (unsigned long long)kvtc_basis_fingerprint(b1), (unsigned long long)kvtc_basis_fingerprint(b2));
    if (r2 == KVTC_OK && b2) {
        synth_params tp = sp;
        tp.data_seed = 5;
        synth_cache tc;
        CHECK(synth_make(&tp, &tc) == 0);
        kvtc_encode_options eo;
        encode_options(&eo, 16, CHUNK, 1);
        run_result rr;
        run(b2, &eo, 1, &tc.c, 0, &rr);
        kvtc_plan_info pi = {.struct_size = sizeof pi};
        CHECK(kvtc_basis_plan_info(b1, 1, &pi) == KVTC_OK);
        CHECK_MSG(rr.r_decompress == KVTC_OK && rr.err_k <= 1.5 * pi.expected_error_k + 1e-5 * rr.energy_k,
                  "basis of a second finish: K error %.4g vs %.4g expected of the first", rr.err_k, pi.expected_error_k);
        run_free(&rr);
        synth_free(&tc);
    }
    kvtc_basis_free(b1);
    kvtc_basis_free(b2);
    kvtc_calibrator_free(c);

    /* reservoir: at most max_tokens rows */
    o.max_tokens = 100;
    CHECK(kvtc_calibrator_alloc(g, &o, &c) == KVTC_OK);
    CHECK(kvtc_calibrator_add(c, &sc.c) == KVTC_OK);
    CHECK(kvtc_calibrator_add(c, &sc.c) == KVTC_OK);
    CHECK(kvtc_calibrator_rows(c) == 100);
    kvtc_basis *b = NULL;
    CHECK(kvtc_calibrator_finish(c, ratios, 3, &b) == KVTC_OK);
    kvtc_basis_free(b);
    b = NULL;
    /* ratios must be > 1 and finite */
    const double bad_ratio[2] = {16, 1.0};
    CHECK(kvtc_calibrator_finish(c, bad_ratio, 2, &b) == KVTC_ERR_INVALID_ARGUMENT && b == NULL);
    kvtc_calibrator_free(c);

    /* a cache shorter than sink + window adds no rows; finish refuses */
    o.max_tokens = 0;
    CHECK(kvtc_calibrator_alloc(g, &o, &c) == KVTC_OK);
    kvtc_cache shortc = sc.c;
    shortc.n_tokens = N_SINK + N_WINDOW; /* same buffers, fewer tokens: a valid (smaller) view */
    CHECK(kvtc_calibrator_add(c, &shortc) == KVTC_OK && kvtc_calibrator_rows(c) == 0);
    CHECK(kvtc_calibrator_finish(c, ratios, 3, &b) == KVTC_ERR_INVALID_ARGUMENT && b == NULL);
    /* geometry mismatch */
    kvtc_cache other = sc.c;
    other.geometry.rope_theta = 20000.0f;
    CHECK(kvtc_calibrator_add(c, &other) == KVTC_ERR_GEOMETRY_MISMATCH);
    kvtc_calibrator_free(c);

    /* no plans: serializes, loads, cannot encode */
    CHECK(kvtc_calibrator_alloc(g, &o, &c) == KVTC_OK);
    CHECK(kvtc_calibrator_add(c, &sc.c) == KVTC_OK);
    CHECK(kvtc_calibrator_finish(c, NULL, 0, &b) == KVTC_OK);
    kvtc_calibrator_free(c);
    size_t n = 0;
    void *bytes = b ? synth_basis_bytes(b, &n) : NULL;
    kvtc_basis *bl = NULL;
    CHECK(bytes && kvtc_basis_load(bytes, n, &bl) == KVTC_OK && kvtc_basis_plan_count(bl) == 0);
    kvtc_encoder *e = NULL;
    CHECK(bl && kvtc_encoder_alloc(bl, NULL, &e) == KVTC_ERR_NO_PLAN && e == NULL);
    uint32_t idx;
    CHECK(bl && kvtc_basis_find_plan(bl, 16, &idx) == KVTC_ERR_NO_PLAN);
    free(bytes);
    kvtc_basis_free(bl);
    kvtc_basis_free(b);
    synth_free(&sc);
}

/* Recomputed first layer: the decoder asks the caller's callback for layer 0. */
typedef struct recompute_ctx {
    const synth_cache *src;
    int calls, fail;
    int ids_ok, pos_ok;
} recompute_ctx;

static int recompute_cb(void *user, uint32_t n_layers, const int32_t *ids, const int64_t *pos, uint64_t n,
                        float *k_out, float *v_out) {
    recompute_ctx *rc = user;
    rc->calls++;
    if (rc->fail) return 1;
    const kvtc_cache *c = &rc->src->c;
    const kvtc_geometry *g = &c->geometry;
    rc->ids_ok = n == c->n_tokens && n_layers == 1;
    rc->pos_ok = 1;
    for (uint64_t t = 0; t < n; t++) {
        rc->ids_ok &= ids[t] == (int32_t)(7 * t + 1);
        rc->pos_ok &= pos[t] == (c->positions ? c->positions[t] : (int64_t)t);
    }
    for (uint32_t l = 0; l < n_layers; l++)
        for (uint32_t h = 0; h < g->n_kv_heads; h++)
            for (uint64_t t = 0; t < n; t++)
                for (uint32_t j = 0; j < g->head_dim; j++) {
                    uint64_t i = (((uint64_t)l * g->n_kv_heads + h) * n + t) * g->head_dim + j;
                    k_out[i] = (float)synth_elem(c, 1, l, h, t, j);
                    v_out[i] = (float)synth_elem(c, 0, l, h, t, j);
                }
    return 0;
}

static void test_recompute(const kvtc_geometry *g) {
    synth_params sp;
    synth_params_init(&sp, g, KVTC_DTYPE_F32, 800);
    kvtc_calibrate_options o;
    kvtc_calibrate_options_init(&o);
    o.n_sink = N_SINK;
    o.n_window = N_WINDOW;
    o.recompute_layers = 1;
    kvtc_calibrator *c = NULL;
    CHECK(kvtc_calibrator_alloc(g, &o, &c) == KVTC_OK);
    for (int i = 0; i < 2; i++) {
        synth_cache cc;
        sp.data_seed = 300 + i;
        CHECK(synth_make(&sp, &cc) == 0);
        CHECK(kvtc_calibrator_add(c, &cc.c) == KVTC_OK);
        synth_free(&cc);
    }
    kvtc_basis *b = NULL;
    CHECK(kvtc_calibrator_finish(c, ratios, 3, &b) == KVTC_OK);
    kvtc_calibrator_free(c);
    if (!b) return;
    CHECK(kvtc_basis_recomputed_layers(b) == 1);
    int64_t pos[200];
    for (int t = 0; t < 200; t++) pos[t] = 40 + 5 * t;
    synth_params tp = sp;
    tp.n_tokens = 200;
    tp.data_seed = 9;
    tp.positions = pos;
    synth_cache sc;
    CHECK(synth_make(&tp, &sc) == 0);
    sc.c.token_ids = malloc(sizeof(int32_t) * 200);
    for (int t = 0; t < 200; t++) sc.c.token_ids[t] = 7 * t + 1;
    kvtc_encode_options eo;
    encode_options(&eo, 16, CHUNK, 2);
    /* token ids are required to encode */
    kvtc_cache noids = sc.c;
    noids.token_ids = NULL;
    uint8_t *buf = NULL;
    size_t size = 0;
    CHECK(synth_compress(b, &eo, &noids, &buf, &size) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(synth_compress(b, &eo, &sc.c, &buf, &size) == KVTC_OK);
    kvtc_stream_info in = {.struct_size = sizeof in};
    CHECK(kvtc_stream_get_info(buf, size, &in) == KVTC_OK);
    CHECK(in.recompute_layers == 1 && in.has_token_ids && in.has_positions);
    double achieved = (double)in.n_coded_tokens * 2.0 * synth_p(g) * 16.0 / (8.0 * in.coded_bytes);
    CHECK_MSG(achieved >= 16 * 0.95, "recompute: achieved %.2f", achieved);

    kvtc_cache out;
    CHECK(synth_alloc_like(g, KVTC_DTYPE_F32, 200, 1, &out) == 0);
    out.token_ids = calloc(200, sizeof(int32_t));
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(b, NULL, &d) == KVTC_OK);
    CHECK(kvtc_decompress(d, buf, size, &out) == KVTC_ERR_NEEDS_MODEL);
    kvtc_decoder_free(d);
    recompute_ctx rc = {&sc, 0, 1, 0, 0};
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.recompute = recompute_cb;
    dopt.recompute_user = &rc;
    CHECK(kvtc_decoder_alloc(b, &dopt, &d) == KVTC_OK);
    CHECK(kvtc_decompress(d, buf, size, &out) == KVTC_ERR_CALLBACK);
    rc.fail = 0;
    CHECK(kvtc_decompress(d, buf, size, &out) == KVTC_OK);
    CHECK(rc.ids_ok && rc.pos_ok);
    CHECK(memcmp(out.token_ids, sc.c.token_ids, sizeof(int32_t) * 200) == 0);
    CHECK(memcmp(out.positions, pos, sizeof pos) == 0);
    /* layer 0 is exactly what the callback produced; every raw token exact */
    size_t l0 = (size_t)g->n_kv_heads * 200 * g->head_dim * 4;
    CHECK(memcmp(out.k, sc.c.k, l0) == 0 && memcmp(out.v, sc.c.v, l0) == 0);
    int exact = 1;
    for (uint64_t t = 0; t < N_SINK; t++) exact &= synth_token_equal(&sc.c, &out, t);
    for (uint64_t t = 200 - N_WINDOW; t < 200; t++) exact &= synth_token_equal(&sc.c, &out, t);
    CHECK(exact);
    double err = 0;
    for (uint64_t t = N_SINK; t < 200 - N_WINDOW; t++) err += synth_token_sqerr(&sc.c, &out, 1, t);
    err /= 200 - N_SINK - N_WINDOW;
    kvtc_plan_info pi = {.struct_size = sizeof pi};
    CHECK(kvtc_basis_plan_info(b, 1, &pi) == KVTC_OK);
    CHECK_MSG(err <= 1.5 * pi.expected_error_k + 1e-3, "recompute: K err %.4g exp %.4g", err, pi.expected_error_k);
    kvtc_decoder_free(d);
    synth_cache_free(&out);
    free(buf);
    free(sc.c.token_ids);
    sc.c.token_ids = NULL;
    synth_free(&sc);
    kvtc_basis_free(b);
}

int main(void) {
    kvtc_geometry gn = synth_geometry(4, 2, 32, KVTC_ROPE_NORM, 0, 10000.0f);
    kvtc_geometry gx = synth_geometry(4, 2, 32, KVTC_ROPE_NEOX, 16, 500000.0f);
    kvtc_basis *b = NULL;
    acceptance(&gn, "norm 4x2x32", &b);
    acceptance(&gx, "neox 4x2x32 rope_dim16", NULL);
    kvtc_geometry g0 = synth_geometry(2, 4, 16, KVTC_ROPE_NONE, 0, 0.0f);
    acceptance(&g0, "none 2x4x16", NULL);
    if (b) {
        test_dtypes(b, &gn);
        test_positions(b, &gn);
        test_small(b, &gn);
        test_bound_determinism(b, &gn);
        test_arguments(b, &gn);
        test_entropy_codecs(b, &gn);
    }
    test_calibrator(&gn);
    test_recompute(&gn);
    kvtc_basis_free(b);
    return TEST_REPORT();
}
