/* bench_synth.c - host-side data for bench_cuda.cu: small caches and a
 * CPU-calibrated basis (tests/synth.h), and the paper-geometry basis built
 * directly from a synthetic generator whose eigenvectors are known. */
#include "bench_synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "alloc/dp.h"
#include "model/basis.h"
#include "synth.h"
#include "transform/rope.h"
#include "util/cache.h"
#include "util/half.h"
#include "util/parallel.h"

kvtc_basis *bs_calibrate_small(const kvtc_geometry *g, uint64_t n_tokens, uint32_t rank, double ratio) {
    synth_params sp;
    synth_params_init(&sp, g, KVTC_DTYPE_BF16, n_tokens);
    sp.rank = rank;
    kvtc_basis *b = NULL;
    double r[1] = {ratio};
    if (synth_calibrate(&sp, 3, 4, 128, r, 1, &b)) return NULL;
    return b;
}

int bs_make_cache(const kvtc_geometry *g, kvtc_dtype dt, uint64_t n, uint32_t rank, uint64_t seed, kvtc_cache *out) {
    synth_params sp;
    synth_params_init(&sp, g, dt, n);
    sp.rank = rank;
    sp.data_seed = seed;
    synth_cache sc;
    if (synth_make(&sp, &sc)) return -1;
    *out = sc.c;
    free(sc.k_plain);
    return 0;
}

void bs_free_cache(kvtc_cache *c) { synth_cache_free(c); }

/* ---- the paper-geometry basis ------------------------------------------------
 * Generator (per stream): x = mean + sum_i z_i sqrt(lambda_i) q_i + e, with
 * z_i, e_j i.i.d. N(0, 1) and N(0, sigma2), lambda_i = (i + 1)^-alpha for
 * i < m, sigma2 = noise_rel * lambda_{m-1}. Its covariance has eigenvectors
 * q_i (eigenvalues lambda_i + sigma2) and a flat tail sigma2 over the other
 * p - m directions, so the PCA basis of its data is q_0..q_{m-1}: we store
 * those exactly instead of estimating them. q_i are rows of an orthogonal
 * p x p matrix with p = 5 * 8192: O5 (x) H8192 / sqrt(8192), with random
 * signs and a random permutation of the columns, rows picked at random:
 * dense vectors mixing every layer and head. The DP plan comes from
 * dp_stats_compute on 2048 synthetic projections (z_i sqrt(lambda_i +
 * sigma2)) with the tail error sigma2 (p - m), the calibrator's budget
 * (16 bits x p x 2 / ratio per token), split evenly (the streams are alike). */

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_gauss(uint64_t *s) {
    double u1 = ((rng_next(s) >> 11) + 1) * 0x1p-53, u2 = (rng_next(s) >> 11) * 0x1p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int make_stream(uint32_t p, uint32_t m, double sigma2, uint64_t seed, basis_stream *s,
                       float *lambda) {
    uint64_t rs = seed;
    s->p = p;
    s->rank = m;
    s->mean = malloc(sizeof(float) * p);
    s->weight = malloc(sizeof(float) * p);
    s->basis = malloc(sizeof(float) * (size_t)m * p);
    s->eigenvalues = malloc(sizeof(float) * m);
    uint32_t *perm = malloc(sizeof(uint32_t) * p), *rowsel = malloc(sizeof(uint32_t) * p);
    float *sign = malloc(sizeof(float) * p);
    if (!s->mean || !s->weight || !s->basis || !s->eigenvalues || !perm || !rowsel || !sign) return -1;
    for (uint32_t i = 0; i < p; i++) {
        s->mean[i] = (float)(0.1 * rng_gauss(&rs));
        s->weight[i] = 1.0f;
        perm[i] = rowsel[i] = i;
        sign[i] = (rng_next(&rs) & 1) ? 1.0f : -1.0f;
    }
    for (uint32_t i = p - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(rng_next(&rs) % (i + 1)), t = perm[i];
        perm[i] = perm[j]; perm[j] = t;
        j = (uint32_t)(rng_next(&rs) % (i + 1)); t = rowsel[i]; rowsel[i] = rowsel[j]; rowsel[j] = t;
    }
    /* O5: Gram-Schmidt of a Gaussian 5x5 */
    double o5[5][5];
    for (int i = 0; i < 5; i++) {
        for (int j = 0; j < 5; j++) o5[i][j] = rng_gauss(&rs);
        for (int k = 0; k < i; k++) {
            double d = 0;
            for (int j = 0; j < 5; j++) d += o5[i][j] * o5[k][j];
            for (int j = 0; j < 5; j++) o5[i][j] -= d * o5[k][j];
        }
        double nn = 0;
        for (int j = 0; j < 5; j++) nn += o5[i][j] * o5[i][j];
        for (int j = 0; j < 5; j++) o5[i][j] /= sqrt(nn);
    }
    const uint32_t HN = p / 5;
    const double hs = 1.0 / sqrt((double)HN);
    for (uint32_t i = 0; i < m; i++) {
        uint32_t row = rowsel[i], a = row / HN, b = row % HN;
        float *q = s->basis + (size_t)i * p;
        for (uint32_t col = 0; col < p; col++) {
            uint32_t u = col / HN, v = col % HN;
            double h = (__builtin_popcount(b & v) & 1) ? -hs : hs;
            q[perm[col]] = (float)(o5[a][u] * h) * sign[col];
        }
        s->eigenvalues[i] = lambda[i] + (float)sigma2;
    }
    free(perm); free(rowsel); free(sign);
    return 0;
}

kvtc_basis *bs_paper_basis(const kvtc_geometry *g, uint32_t m, double alpha, double noise_rel, double ratio,
                           float *lambda, double *sigma2_out) {
    uint32_t p = g->n_layers * g->n_kv_heads * g->head_dim;
    if (p % 5 || ((p / 5) & (p / 5 - 1)) || m > p) return NULL; /* needs p = 5 * 2^k */
    double sigma2 = noise_rel * pow((double)m, -alpha);
    *sigma2_out = sigma2;
    for (uint32_t i = 0; i < m; i++) lambda[i] = (float)pow((double)(i + 1), -alpha);
    /* DP statistics from synthetic projections */
    uint64_t n = 2048, rs = 99;
    float *d = malloc(sizeof(float) * n * m);
    if (!d) return NULL;
    for (uint64_t t = 0; t < n; t++)
        for (uint32_t i = 0; i < m; i++) d[t * m + i] = (float)(rng_gauss(&rs) * sqrt(lambda[i] + sigma2));
    dp_stats st;
    memset(&st, 0, sizeof st);
    kvtc_result r = dp_stats_compute(d, n, m, m, &st);
    free(d);
    if (r) return NULL;
    st.tail_error = sigma2 * (double)(p - m);
    double units_total = floor(2.0 * 16.0 * p / ratio / 16.0);
    uint64_t units = (uint64_t)(units_total / 2);
    if (units > m) units = m;
    dp_curve cv;
    memset(&cv, 0, sizeof cv);
    r = dp_solve(&st, units, 15u, 1, &cv);
    dp_plan dpl;
    memset(&dpl, 0, sizeof dpl);
    if (!r) r = dp_plan_extract(&cv, &st, units, &dpl);
    dp_curve_free(&cv);
    dp_stats_free(&st);
    if (r) return NULL;
    kvtc_basis *b = calloc(1, sizeof *b);
    if (!b) { dp_plan_free(&dpl); return NULL; }
    b->geometry = *g;
    b->rope_removed = 1;
    b->n_plans = 1;
    b->plans = calloc(1, sizeof(basis_plan));
    basis_plan *pl = &b->plans[0];
    pl->target_ratio = ratio;
    plan_stream *ps[2] = {&pl->k, &pl->v};
    uint32_t rank = 0;
    for (int s = 0; s < 2; s++) {
        ps[s]->groups = malloc(sizeof(dp_group) * (dpl.n_groups + 1));
        memcpy(ps[s]->groups, dpl.groups, sizeof(dp_group) * dpl.n_groups);
        uint32_t ng = dpl.n_groups;
        if (ng && ps[s]->groups[ng - 1].bits == 0) ps[s]->groups[ng - 1].size += p - m;
        else ps[s]->groups[ng++] = (dp_group){p - m, 0};
        ps[s]->n_groups = ng;
        ps[s]->error = dpl.error;
        plan_stream_finalize(ps[s]);
        rank = ps[s]->rank_used;
    }
    dp_plan_free(&dpl);
    /* only the rows the plan uses are stored (a real basis would hold more) */
    uint32_t rows = rank ? rank : 1;
    if (make_stream(p, rows, sigma2, 11, &b->k, lambda) || make_stream(p, rows, sigma2, 12, &b->v, lambda)) {
        kvtc_basis_free(b);
        return NULL;
    }
    basis_update_fingerprints(b);
    return b;
}

void bs_plan_summary(const kvtc_basis *b, char *buf, size_t cap) {
    const plan_stream *s = &b->plans[0].k;
    size_t o = (size_t)snprintf(buf, cap, "rank_used %u, %u groups, %llu units/token/stream:", s->rank_used, s->n_groups,
                                (unsigned long long)s->units);
    uint32_t prev_bits = 999, run = 0, size = 0;
    for (uint32_t i = 0; i <= s->n_groups && o < cap; i++) {
        uint32_t bits = i < s->n_groups ? s->groups[i].bits : 1000;
        uint32_t sz = i < s->n_groups ? s->groups[i].size : 0;
        if (bits != prev_bits && run) {
            o += (size_t)snprintf(buf + o, cap - o, " %ux%ub(%u)", run, prev_bits, size / run);
            run = 0;
            size = 0;
        }
        prev_bits = bits;
        run++;
        size += sz;
    }
}

/* ---- host caches from the paper-geometry generator ---------------------------
 * The CPU twin of bench_cuda.cu's fill_cache, for the store benchmark: x =
 * mean + sum_{i < rank} z_i sqrt(lambda_i) q_i + e over the basis rows the
 * basis stores (the plan's rank), e ~ N(0, sigma2) per coordinate, keys
 * rotated by the library's own RoPE at positions 0..n-1, bf16 [L][H][n][d].
 * Blocks of 256 tokens of one stream per work item, n_threads at a time. */
#define PAPER_BLOCK 256u

typedef struct paper_job {
    const kvtc_basis *b;
    const float *lambda;
    double sigma2;
    uint64_t n, seed;
    rope_table rope;
    kvtc_cache *out;
    int failed;
} paper_job;

static int paper_item(void *ctx, uint32_t item, uint32_t worker) {
    (void)worker;
    paper_job *j = ctx;
    const kvtc_geometry *g = &j->b->geometry;
    int is_key = (int)(item & 1u);
    const basis_stream *bs = is_key ? &j->b->k : &j->b->v;
    uint64_t t0 = (uint64_t)(item >> 1) * PAPER_BLOCK, nb = j->n - t0 < PAPER_BLOCK ? j->n - t0 : PAPER_BLOCK;
    uint32_t p = bs->p, r = bs->rank, d = g->head_dim;
    float *z = malloc(sizeof(float) * nb * r), *x = malloc(sizeof(float) * nb * p);
    if (!z || !x) { free(z); free(x); j->failed = 1; return 0; }
    uint64_t rs = j->seed * 0x9e3779b97f4a7c15ull + item;
    for (uint64_t t = 0; t < nb; t++)
        for (uint32_t i = 0; i < r; i++) z[t * r + i] = (float)(rng_gauss(&rs) * sqrt((double)j->lambda[i]));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)p, (int)r, 1.0f, z, (int)r, bs->basis, (int)p,
                0.0f, x, (int)p);
    float sd = (float)sqrt(j->sigma2), cs[2 * KVTC_MAX_HEAD_DIM];
    uint16_t *dst = is_key ? j->out->k : j->out->v;
    for (uint64_t t = 0; t < nb; t++) {
        float *row = x + t * p;
        for (uint32_t c = 0; c < p; c++) row[c] += bs->mean[c] + sd * (float)rng_gauss(&rs);
        if (is_key) rope_angles(&j->rope, (int64_t)(t0 + t), cs);
        for (uint32_t lh = 0; lh < g->n_layers * g->n_kv_heads; lh++) {
            float *hv = row + (uint64_t)lh * d;
            if (is_key) rope_rotate(g, cs, +1, hv);
            uint16_t *o = dst + ((uint64_t)lh * j->n + t0 + t) * d;
            for (uint32_t c = 0; c < d; c++) o[c] = kvi_f32_to_bf16(hv[c]);
        }
    }
    free(z);
    free(x);
    return 0;
}

int bs_paper_cache_host(const kvtc_basis *b, const float *lambda, double sigma2, uint64_t n, uint64_t seed,
                        uint32_t n_threads, kvtc_cache *out) {
    const kvtc_geometry *g = &b->geometry;
    memset(out, 0, sizeof *out);
    uint64_t bytes = kvtc_cache_tensor_bytes(g, KVTC_DTYPE_BF16, n);
    out->geometry = *g;
    out->dtype = KVTC_DTYPE_BF16;
    out->n_tokens = n;
    out->k = malloc(bytes ? bytes : 1);
    out->v = malloc(bytes ? bytes : 1);
    if (!bytes || !out->k || !out->v) { bs_free_cache(out); return -1; }
    paper_job j = {b, lambda, sigma2, n, seed, {0, NULL}, out, 0};
    if (rope_table_init(&j.rope, g)) { bs_free_cache(out); return -1; }
    uint64_t items = 2 * ((n + PAPER_BLOCK - 1) / PAPER_BLOCK);
    kvi_parallel_for(n_threads ? n_threads : 1, (uint32_t)items, paper_item, &j);
    rope_table_free(&j.rope);
    if (j.failed) { bs_free_cache(out); return -1; }
    return 0;
}
