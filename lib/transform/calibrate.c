/* calibrate.c - the calibrator: collects rows (reservoir sampled), then
 * computes per stream the mean, the weighted PCA and the DP plans.
 *
 * Budget: a target ratio R allows 2 * 16 * n_layers * n_kv_heads * head_dim / R
 * bits per compressed token for K and V together (the fp16 cache of ALL
 * layers is the reference, so recomputed layers count as savings and the
 * stored token id, 32 bits, is charged against the budget). With a joint
 * budget the DP's two rate-distortion curves are combined exactly
 * (dp_split_budget); otherwise K and V get half each. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/dp.h"
#include "model/basis.h"
#include "transform/calibrate_internal.h"
#include "transform/pca.h"
#include "transform/rope.h"
#include "transform/rows.h"
#include "util/cache.h"
#include "util/rng.h"

#define CALIB_DEFAULT_MAX_TOKENS 65536u
#define CALIB_EXACT_MAX_P 4096u       /* AUTO: exact PCA up to here */
#define CALIB_OVERSAMPLE 32u
#define CALIB_POWER_ITERS 3u
#define CALIB_MAX_RATIOS 64u

struct kvtc_calibrator {
    kvtc_geometry g;
    kvtc_calibrate_options o;
    uint32_t p;            /* coordinates per stream */
    uint64_t cap;          /* rows kept */
    uint64_t n_rows;       /* rows stored (<= cap) */
    uint64_t seen;         /* rows offered */
    float *rows_k, *rows_v;/* [cap][p] */
    float *wk, *wv;        /* [p] sqrt of weights */
    rope_table rope;
    kvi_rng rng;
    int finished;          /* finish centers the rows in place: one finish per calibrator */
};

void kvtc_calibrate_options_init(kvtc_calibrate_options *o) {
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->n_sink = 4;
    o->n_window = 128;
    o->pca_method = KVTC_PCA_AUTO;
    o->max_tokens = CALIB_DEFAULT_MAX_TOKENS;
    o->seed = 1;
    o->remove_rope = 1;
    o->joint_kv_budget = 1;
}

void kvtc_calibrator_free(kvtc_calibrator *c) {
    if (!c) return;
    free(c->rows_k);
    free(c->rows_v);
    free(c->wk);
    free(c->wv);
    rope_table_free(&c->rope);
    free(c);
}

static kvtc_result copy_weights(const float *src, const kvtc_geometry *g, uint32_t first_layer, uint32_t p,
                                float **out) {
    *out = malloc(sizeof(float) * p);
    if (!*out) return KVTC_ERR_OUT_OF_MEMORY;
    uint64_t skip = (uint64_t)first_layer * g->n_kv_heads * g->head_dim;
    for (uint32_t i = 0; i < p; i++) {
        float w = src ? src[skip + i] : 1.0f;
        if (!(w > 0.0f) || !isfinite(w)) return KVTC_ERR_INVALID_ARGUMENT;
        (*out)[i] = sqrtf(w);
    }
    return KVTC_OK;
}

kvtc_result kvtc_calibrator_alloc(const kvtc_geometry *g, const kvtc_calibrate_options *opts,
                                  kvtc_calibrator **out) {
    if (!g || !out) return KVTC_ERR_INVALID_ARGUMENT;
    *out = NULL;
    kvtc_result r = kvi_geometry_check(g);
    if (r) return r;
    kvtc_calibrate_options o;
    kvtc_calibrate_options_init(&o);
    if (opts) {
        if (opts->struct_size != sizeof o) return KVTC_ERR_INVALID_ARGUMENT;
        o = *opts;
    }
    if (o.max_tokens == 0) o.max_tokens = CALIB_DEFAULT_MAX_TOKENS;
    if (o.recompute_layers >= g->n_layers || o.pca_method > KVTC_PCA_RANDOMIZED || o.group_size_mask > 31)
        return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_calibrator *c = calloc(1, sizeof *c);
    if (!c) return KVTC_ERR_OUT_OF_MEMORY;
    c->g = *g;
    c->g.rope_dim = kvi_geometry_rope_dim(g);
    c->o = o;
    c->o.weights_k = c->o.weights_v = NULL; /* copied below; the caller's arrays need not outlive us */
    c->p = (uint32_t)kvi_row_width(g, o.recompute_layers);
    c->rng.s = o.seed;
    uint64_t row_bytes = (uint64_t)c->p * sizeof(float);
    if (o.max_tokens > SIZE_MAX / 2 / row_bytes) { kvtc_calibrator_free(c); return KVTC_ERR_TOO_LARGE; }
    c->cap = o.max_tokens;
    if ((r = copy_weights(opts ? opts->weights_k : NULL, g, o.recompute_layers, c->p, &c->wk)) ||
        (r = copy_weights(opts ? opts->weights_v : NULL, g, o.recompute_layers, c->p, &c->wv)) ||
        (r = rope_table_init(&c->rope, &c->g))) {
        kvtc_calibrator_free(c);
        return r;
    }
    *out = c;
    return KVTC_OK;
}

uint64_t kvtc_calibrator_rows(const kvtc_calibrator *c) { return c ? c->n_rows : 0; }

/* Make room for `need` rows (need <= cap). */
static kvtc_result ensure_rows(kvtc_calibrator *c, uint64_t need) {
    size_t bytes = (size_t)need * c->p * sizeof(float);
    float *k = realloc(c->rows_k, bytes ? bytes : 1);
    if (!k) return KVTC_ERR_OUT_OF_MEMORY;
    c->rows_k = k;
    float *v = realloc(c->rows_v, bytes ? bytes : 1);
    if (!v) return KVTC_ERR_OUT_OF_MEMORY;
    c->rows_v = v;
    return KVTC_OK;
}

kvtc_result kvtc_calibrator_add(kvtc_calibrator *c, const kvtc_cache *cache) {
    if (!c || !cache || c->finished) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = kvi_cache_check(cache);
    if (r) return r;
    if (!kvi_geometry_equal(&cache->geometry, &c->g)) return KVTC_ERR_GEOMETRY_MISMATCH;
    uint64_t lo = c->o.n_sink, hi = cache->n_tokens > c->o.n_window ? cache->n_tokens - c->o.n_window : 0;
    if (lo >= hi) return KVTC_OK;
    if (!kvi_cache_tokens_finite(cache, lo, hi - lo)) return KVTC_ERR_NUMERIC;
    uint64_t fill = c->n_rows + (hi - lo);
    if ((r = ensure_rows(c, fill < c->cap ? fill : c->cap))) return r;
    for (uint64_t t = lo; t < hi; t++) {
        uint64_t slot;
        if (c->n_rows < c->cap) {
            slot = c->n_rows++;
        } else { /* reservoir sampling: every row offered so far kept with equal probability */
            slot = kvi_rng_next(&c->rng) % (c->seen + 1);
            if (slot >= c->cap) { c->seen++; continue; }
        }
        c->seen++;
        kvi_gather_rows(cache, 1, c->o.recompute_layers, t, 1, &c->rope, c->o.remove_rope,
                         c->rows_k + slot * c->p);
        kvi_gather_rows(cache, 0, c->o.recompute_layers, t, 1, NULL, 0, c->rows_v + slot * c->p);
    }
    return KVTC_OK;
}

void calib_get_view(const kvtc_calibrator *c, calib_view *v) {
    v->g = c->g;
    v->o = c->o;
    v->p = c->p;
    v->n_rows = c->n_rows;
    v->rows_k = c->rows_k;
    v->rows_v = c->rows_v;
    v->wk = c->wk;
    v->wv = c->wv;
}

void stream_fit_free(stream_fit *f) {
    basis_stream_free(&f->bs);
    dp_stats_free(&f->st);
    dp_curve_free(&f->cv);
}

static kvtc_result fit_stats(const float *rows, uint64_t n, uint32_t p, stream_fit *f);

/* Ablation: exact PCA of each layer's block of coordinates, merged into one
 * block-diagonal basis ordered by eigenvalue. */
static kvtc_result fit_stream_per_layer(kvtc_calibrator *c, const float *rows, stream_fit *f, uint64_t n,
                                        uint32_t p) {
    uint32_t L = c->g.n_layers - c->o.recompute_layers;
    uint32_t q = p / L; /* coordinates per layer */
    basis_stream *s = &f->bs;
    s->rank = p;
    s->basis = calloc((size_t)p * p, sizeof(float));
    s->eigenvalues = malloc(sizeof(float) * p);
    float *blk = malloc(sizeof(float) * n * q);
    float *lb = malloc(sizeof(float) * (size_t)q * q), *le = malloc(sizeof(float) * q);
    float *all_b = malloc(sizeof(float) * (size_t)p * q), *all_e = malloc(sizeof(float) * p);
    uint32_t *next = calloc(L, sizeof(uint32_t));
    kvtc_result r = KVTC_ERR_OUT_OF_MEMORY;
    if (!s->basis || !s->eigenvalues || !blk || !lb || !le || !all_b || !all_e || !next) goto done;
    for (uint32_t l = 0; l < L; l++) {
        for (uint64_t t = 0; t < n; t++) memcpy(blk + t * q, rows + t * p + (size_t)l * q, sizeof(float) * q);
        if ((r = pca_exact(blk, n, q, q, lb, le))) goto done;
        memcpy(all_b + (size_t)l * q * q, lb, sizeof(float) * (size_t)q * q);
        memcpy(all_e + (size_t)l * q, le, sizeof(float) * q);
    }
    /* merge the L descending lists */
    for (uint32_t j = 0; j < p; j++) {
        int best = -1;
        for (uint32_t l = 0; l < L; l++)
            if (next[l] < q && (best < 0 || all_e[(size_t)l * q + next[l]] > all_e[(size_t)best * q + next[best]]))
                best = (int)l;
        uint32_t k = next[best]++;
        s->eigenvalues[j] = all_e[(size_t)best * q + k];
        memcpy(s->basis + (size_t)j * p + (size_t)best * q, all_b + ((size_t)best * q + k) * q, sizeof(float) * q);
    }
    r = fit_stats(rows, n, p, f);
done:
    free(blk); free(lb); free(le); free(all_b); free(all_e); free(next);
    return r;
}

static kvtc_result fit_stream(kvtc_calibrator *c, float *rows, const float *w, stream_fit *f) {
    uint32_t p = c->p;
    uint64_t n = c->n_rows;
    basis_stream *s = &f->bs;
    s->p = p;
    s->mean = calloc(p, sizeof(float));
    s->weight = malloc(sizeof(float) * p);
    double *acc = calloc(p, sizeof(double));
    if (!s->mean || !s->weight || !acc) { free(acc); return KVTC_ERR_OUT_OF_MEMORY; }
    for (uint64_t t = 0; t < n; t++)
        for (uint32_t i = 0; i < p; i++) acc[i] += rows[t * p + i];
    for (uint32_t i = 0; i < p; i++) s->mean[i] = (float)(acc[i] / (double)n);
    free(acc);
    memcpy(s->weight, w, sizeof(float) * p);
    for (uint64_t t = 0; t < n; t++)
        for (uint32_t i = 0; i < p; i++) rows[t * p + i] = (rows[t * p + i] - s->mean[i]) * w[i];

    if (c->o.pca_per_layer) return fit_stream_per_layer(c, rows, f, n, p);
    int exact = c->o.pca_method == KVTC_PCA_EXACT ||
                (c->o.pca_method == KVTC_PCA_AUTO && p <= CALIB_EXACT_MAX_P);
    uint32_t rank = exact ? p : (c->o.max_rank ? c->o.max_rank : CALIB_AUTO_RANK);
    if (c->o.max_rank && c->o.max_rank < rank) rank = c->o.max_rank;
    if (rank > p) rank = p;
    if (!exact && rank > n) rank = (uint32_t)n;
    s->rank = rank;
    s->basis = malloc(sizeof(float) * (size_t)rank * p + 1);
    s->eigenvalues = malloc(sizeof(float) * rank + 1);
    if (!s->basis || !s->eigenvalues) return KVTC_ERR_OUT_OF_MEMORY;
    kvtc_result r = exact ? pca_exact(rows, n, p, rank, s->basis, s->eigenvalues)
                          : pca_randomized(rows, n, p, rank, CALIB_OVERSAMPLE, CALIB_POWER_ITERS, c->o.seed,
                                           s->basis, s->eigenvalues);
    if (r) return r;

    return fit_stats(rows, n, p, f);
}

/* DP statistics on (a subsample of) the projections of centered, weighted rows. */
static kvtc_result fit_stats(const float *rows, uint64_t n, uint32_t p, stream_fit *f) {
    const basis_stream *s = &f->bs;
    uint32_t rank = s->rank;
    uint64_t ns = n < CALIB_DP_MAX_ROWS ? n : CALIB_DP_MAX_ROWS;
    uint64_t step = n / ns;
    float *xs = malloc(sizeof(float) * ns * p);
    float *d = malloc(sizeof(float) * ns * rank + 1);
    if (!xs || !d) { free(xs); free(d); return KVTC_ERR_OUT_OF_MEMORY; }
    double total = 0;
    for (uint64_t i = 0; i < ns; i++) {
        memcpy(xs + i * p, rows + i * step * p, sizeof(float) * p);
        for (uint32_t j = 0; j < p; j++) total += (double)xs[i * p + j] * xs[i * p + j];
    }
    total /= (double)ns;
    if (rank)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ns, (int)rank, (int)p, 1.0f, xs, (int)p,
                    s->basis, (int)p, 0.0f, d, (int)rank);
    free(xs);
    kvtc_result r = calib_stats_from_proj(d, ns, total, f);
    free(d);
    return r;
}

kvtc_result calib_stats_from_proj(const float *d, uint64_t ns, double total, stream_fit *f) {
    uint32_t rank = f->bs.rank;
    kvtc_result r;
    if (rank) {
        r = dp_stats_compute(d, ns, rank, rank, &f->st);
    } else {
        r = KVTC_OK;
        f->st.p = 0;
    }
    if (r) return r;
    double captured = 0;
    for (uint32_t i = 0; i < rank; i++) captured += f->st.var[i];
    f->st.tail_error = total > captured ? total - captured : 0.0;
    return KVTC_OK;
}


/* Plan over [0, p) from DP groups over [0, st->p), padded with a dropped group. */
static kvtc_result plan_from_groups(const dp_group *g, uint32_t n, double error, const dp_stats *st, uint32_t p,
                                   plan_stream *out) {
    memset(out, 0, sizeof *out);
    out->groups = malloc(sizeof(dp_group) * (n + 1));
    if (!out->groups) return KVTC_ERR_OUT_OF_MEMORY;
    memcpy(out->groups, g, sizeof(dp_group) * n);
    if (st->p < p) {
        if (n && out->groups[n - 1].bits == 0) out->groups[n - 1].size += p - st->p;
        else out->groups[n++] = (dp_group){p - st->p, 0};
    }
    out->n_groups = n;
    out->error = error;
    plan_stream_finalize(out);
    return KVTC_OK;
}

static kvtc_result make_plan_stream(const dp_curve *cv, const dp_stats *st, uint64_t units, uint32_t p,
                                    plan_stream *out) {
    if (!st->p) return plan_from_groups(NULL, 0, st->tail_error, st, p, out);
    dp_plan dpl = {0};
    kvtc_result r = dp_plan_extract(cv, st, units, &dpl);
    if (r) return r;
    r = plan_from_groups(dpl.groups, dpl.n_groups, dpl.error, st, p, out);
    dp_plan_free(&dpl);
    return r;
}

/* Uniform allocation (ablation): n_groups groups of 64 coordinates at `bits`,
 * the rest dropped. Writes at most st->p / 64 + 1 groups into g. */
#define UNIFORM_GROUP 64u
static uint32_t uniform_groups(const dp_stats *st, uint32_t n_groups, uint8_t bits, dp_group *g) {
    uint32_t n = 0, kept = n_groups * UNIFORM_GROUP;
    for (uint32_t i = 0; i < n_groups; i++) g[n++] = (dp_group){UNIFORM_GROUP, bits};
    if (kept < st->p) g[n++] = (dp_group){st->p - kept, 0};
    return n;
}

/* Best uniform width and K/V split of `units` (16-bit units per token). */
static kvtc_result make_uniform_plans(const stream_fit *fk, const stream_fit *fv, uint64_t units, uint32_t p,
                                      plan_stream *pk, plan_stream *pv) {
    uint32_t mk = fk->st.p / UNIFORM_GROUP, mv = fv->st.p / UNIFORM_GROUP;
    dp_group *gk = malloc(sizeof(dp_group) * (mk + 2)), *gv = malloc(sizeof(dp_group) * (mv + 2));
    if (!gk || !gv) { free(gk); free(gv); return KVTC_ERR_OUT_OF_MEMORY; }
    double best = INFINITY;
    uint32_t bk = 0, bv = 0;
    uint8_t bb = 1;
    for (uint8_t b = 1; b <= DP_MAX_BITS; b++) {
        uint64_t cost = (uint64_t)UNIFORM_GROUP * b / 16 + 2, groups = units / cost;
        for (uint64_t a = 0; a <= groups && a <= mk; a++) {
            uint64_t c2 = groups - a < mv ? groups - a : mv;
            double e = dp_plan_model_error(&fk->st, gk, uniform_groups(&fk->st, (uint32_t)a, b, gk)) +
                       dp_plan_model_error(&fv->st, gv, uniform_groups(&fv->st, (uint32_t)c2, b, gv));
            if (e < best) { best = e; bk = (uint32_t)a; bv = (uint32_t)c2; bb = b; }
        }
    }
    uint32_t nk = uniform_groups(&fk->st, bk, bb, gk), nv = uniform_groups(&fv->st, bv, bb, gv);
    kvtc_result r = plan_from_groups(gk, nk, dp_plan_model_error(&fk->st, gk, nk), &fk->st, p, pk);
    if (!r) r = plan_from_groups(gv, nv, dp_plan_model_error(&fv->st, gv, nv), &fv->st, p, pv);
    free(gk);
    free(gv);
    return r;
}

kvtc_result calib_begin_finish(kvtc_calibrator *c, const double *ratios, uint32_t n_ratios, uint64_t min_rows) {
    if (!c || (n_ratios && !ratios) || n_ratios > CALIB_MAX_RATIOS || c->finished)
        return KVTC_ERR_INVALID_ARGUMENT;
    for (uint32_t i = 0; i < n_ratios; i++)
        if (!(ratios[i] > 1.0) || !isfinite(ratios[i])) return KVTC_ERR_INVALID_ARGUMENT;
    if (c->n_rows < min_rows) return KVTC_ERR_INVALID_ARGUMENT; /* nothing to calibrate on */
    c->finished = 1;
    return KVTC_OK;
}

kvtc_result kvtc_calibrator_finish(kvtc_calibrator *c, const double *ratios, uint32_t n_ratios,
                                   kvtc_basis **out) {
    if (!out) return KVTC_ERR_INVALID_ARGUMENT;
    *out = NULL;
    kvtc_result r = calib_begin_finish(c, ratios, n_ratios, 2);
    if (r) return r;
    stream_fit fk, fv;
    memset(&fk, 0, sizeof fk);
    memset(&fv, 0, sizeof fv);
    if ((r = fit_stream(c, c->rows_k, c->wk, &fk)) || (r = fit_stream(c, c->rows_v, c->wv, &fv))) {
        stream_fit_free(&fk);
        stream_fit_free(&fv);
        return r;
    }
    return calib_build_basis(c, ratios, n_ratios, &fk, &fv, out);
}

kvtc_result calib_build_basis(const kvtc_calibrator *c, const double *ratios, uint32_t n_ratios, stream_fit *fk_,
                              stream_fit *fv_, kvtc_basis **out) {
    *out = NULL;
    stream_fit fk = *fk_, fv = *fv_;
    memset(fk_, 0, sizeof *fk_);
    memset(fv_, 0, sizeof *fv_);
    kvtc_result r;
    uint64_t *totals = NULL;
    kvtc_basis *b = calloc(1, sizeof *b);
    if (!b) { r = KVTC_ERR_OUT_OF_MEMORY; goto fail; }
    b->geometry = c->g;
    b->recompute_layers = c->o.recompute_layers;
    b->rope_removed = c->o.remove_rope && c->g.rope_type != KVTC_ROPE_NONE;

    /* One DP per stream covers every ratio: its curve holds all budgets. */
    double ref_bits = 2.0 * 16.0 * c->g.n_layers * c->g.n_kv_heads * c->g.head_dim;
    double id_units = c->o.recompute_layers ? 2.0 : 0.0;
    uint64_t max_total = 0;
    totals = calloc(n_ratios ? n_ratios : 1, sizeof(uint64_t));
    if (!totals) { r = KVTC_ERR_OUT_OF_MEMORY; goto fail; }
    for (uint32_t i = 0; i < n_ratios; i++) {
        double u = floor(ref_bits / ratios[i] / 16.0) - id_units;
        totals[i] = u > 0 ? (uint64_t)u : 0;
        if (totals[i] > max_total) max_total = totals[i];
    }
    uint32_t mask = c->o.group_size_mask ? c->o.group_size_mask : 31u;
    uint32_t dp_mask = (mask >> 1) & 15u; /* KVTC_GROUP_16.. -> size classes 0..3 */
    int raw1 = (mask & KVTC_GROUP_1) != 0;
    /* raw storage of every coordinate (1 unit each) bounds any useful budget */
    uint64_t cap_k = max_total < fk.st.p ? max_total : fk.st.p;
    uint64_t cap_v = max_total < fv.st.p ? max_total : fv.st.p;
    if (!c->o.joint_kv_budget) {
        cap_k = cap_k < max_total / 2 ? cap_k : max_total / 2;
        cap_v = cap_v < max_total / 2 ? cap_v : max_total / 2;
    }
    if (fk.st.p && (r = dp_solve(&fk.st, cap_k, dp_mask, raw1, &fk.cv))) goto fail_t;
    if (fv.st.p && (r = dp_solve(&fv.st, cap_v, dp_mask, raw1, &fv.cv))) goto fail_t;

    b->plans = calloc(n_ratios ? n_ratios : 1, sizeof(basis_plan));
    if (!b->plans) { r = KVTC_ERR_OUT_OF_MEMORY; goto fail_t; }
    uint32_t max_rank_k = 0, max_rank_v = 0;
    for (uint32_t i = 0; i < n_ratios; i++) {
        uint64_t ck, cv;
        if (!c->o.joint_kv_budget) {
            ck = totals[i] / 2 < cap_k ? totals[i] / 2 : cap_k;
            cv = totals[i] / 2 < cap_v ? totals[i] / 2 : cap_v;
        } else if (fk.st.p && fv.st.p) {
            dp_split_budget(&fk.cv, &fv.cv, totals[i], &ck, &cv);
        } else {
            ck = totals[i] < cap_k ? totals[i] : cap_k;
            cv = totals[i] < cap_v ? totals[i] : cap_v;
        }
        basis_plan *pl = &b->plans[i];
        b->n_plans = i + 1;
        pl->target_ratio = ratios[i];
        if (c->o.uniform_allocation) {
            if ((r = make_uniform_plans(&fk, &fv, totals[i], c->p, &pl->k, &pl->v))) goto fail_t;
        } else {
            if ((r = make_plan_stream(&fk.cv, &fk.st, ck, c->p, &pl->k))) goto fail_t;
            if ((r = make_plan_stream(&fv.cv, &fv.st, cv, c->p, &pl->v))) goto fail_t;
        }
        if (pl->k.rank_used > max_rank_k) max_rank_k = pl->k.rank_used;
        if (pl->v.rank_used > max_rank_v) max_rank_v = pl->v.rank_used;
    }
    free(totals);
    totals = NULL;
    if (basis_has_degenerate_plan(b)) { /* constant calibration data: nothing to code */
        r = KVTC_ERR_NUMERIC;
        goto fail;
    }
    /* keep only the components some plan uses */
    fk.bs.rank = max_rank_k;
    fv.bs.rank = max_rank_v;
    b->k = fk.bs;
    b->v = fv.bs;
    memset(&fk.bs, 0, sizeof fk.bs);
    memset(&fv.bs, 0, sizeof fv.bs);
    dp_stats_free(&fk.st); dp_stats_free(&fv.st);
    dp_curve_free(&fk.cv); dp_curve_free(&fv.cv);
    basis_update_fingerprints(b);
    *out = b;
    return KVTC_OK;
fail_t:
    free(totals);
fail:
    basis_stream_free(&fk.bs); basis_stream_free(&fv.bs);
    dp_stats_free(&fk.st); dp_stats_free(&fv.st);
    dp_curve_free(&fk.cv); dp_curve_free(&fv.cv);
    kvtc_basis_free(b);
    return r;
}
