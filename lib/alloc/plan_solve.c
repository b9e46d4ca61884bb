/* plan_solve.c - see plan_solve.h. */
#include "alloc/plan_solve.h"

#include "alloc/dp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* E[(max - min)^2] of n i.i.d. standard normal samples for the DP's group
 * sizes 16, 64, 256, 1024 (Monte Carlo, 4000/4000/4000/1500 draws; the
 * Python one-liner in the commit that added this file reproduces them to
 * within 1%). */
static const double gauss_range2[DP_N_SIZES] = {13.00, 22.44, 32.27, 42.54};

int basis_find_exact_plan(const kvtc_basis *b, double ratio) {
    /* inf would match every plan: |r - inf| <= 1e-9 * inf */
    if (!isfinite(ratio)) return -1;
    for (uint32_t i = 0; i < b->n_plans; i++)
        if (fabs(b->plans[i].target_ratio - ratio) <= 1e-9 * ratio) return (int)i;
    return -1;
}

/* DP statistics of one stream from its eigenvalues (p = stored rank). */
static kvtc_result stats_from_eigenvalues(const basis_stream *s, dp_stats *st) {
    memset(st, 0, sizeof *st);
    uint32_t p = s->rank;
    st->p = p;
    if (!p) return KVTC_OK;
    st->var = malloc(sizeof(double) * p);
    double *prefix = malloc(sizeof(double) * (p + 1));
    kvtc_result r = KVTC_ERR_OUT_OF_MEMORY;
    if (!st->var || !prefix) goto done;
    prefix[0] = 0;
    for (uint32_t i = 0; i < p; i++) {
        double v = s->eigenvalues[i] > 0 ? s->eigenvalues[i] : 0.0;
        st->var[i] = v;
        prefix[i + 1] = prefix[i] + v;
    }
    for (int c = 0; c < DP_N_SIZES; c++) {
        uint32_t size = dp_size_of_class(c);
        if (!(st->range2[c] = calloc(p, sizeof(double)))) goto done;
        for (uint32_t i = 0; i + size <= p; i++)
            st->range2[c][i] = gauss_range2[c] * (prefix[i + size] - prefix[i]) / size;
    }
    r = KVTC_OK;
done:
    free(prefix);
    if (r) dp_stats_free(st);
    return r;
}

/* Groups over [0, p) from a DP plan over the first st->p coordinates. */
static kvtc_result plan_for_budget(const dp_curve *cv, const dp_stats *st, uint64_t units, uint32_t p,
                                   plan_stream *out) {
    dp_plan dpl = {0};
    dp_group tail = {p, 0};
    kvtc_result r;
    if (!st->p) return plan_stream_from_groups(&tail, 1, p, 0, out);
    if ((r = dp_plan_extract(cv, st, units, &dpl))) return r;
    dp_group *g = malloc(sizeof(dp_group) * (dpl.n_groups + 1));
    if (!g) { dp_plan_free(&dpl); return KVTC_ERR_OUT_OF_MEMORY; }
    memcpy(g, dpl.groups, sizeof(dp_group) * dpl.n_groups);
    uint32_t n = dpl.n_groups;
    if (st->p < p) {
        if (n && g[n - 1].bits == 0) g[n - 1].size += p - st->p;
        else g[n++] = (dp_group){p - st->p, 0};
    }
    r = plan_stream_from_groups(g, n, p, st->p, out);
    if (!r) out->error = dpl.error;
    free(g);
    dp_plan_free(&dpl);
    return r;
}

kvtc_result basis_solve_plan(const kvtc_basis *b, double ratio, basis_plan *out) {
    memset(out, 0, sizeof *out);
    if (!(ratio > 0) || !isfinite(ratio)) return KVTC_ERR_INVALID_ARGUMENT;
    if (b->n_plans == 0) return KVTC_ERR_NO_PLAN;
    double min_ratio = INFINITY;
    for (uint32_t i = 0; i < b->n_plans; i++)
        if (b->plans[i].target_ratio < min_ratio) min_ratio = b->plans[i].target_ratio;
    if (ratio < min_ratio * (1 - 1e-9)) return KVTC_ERR_NO_PLAN;
    /* the budget as the calibrator computes it (lib/transform/calibrate.c) */
    double units = floor(basis_reference_bits_per_token(b) / ratio / 16.0) - (b->recompute_layers ? 2.0 : 0.0);
    uint64_t total = units > 0 ? (uint64_t)units : 0;
    dp_stats sk, sv;
    dp_curve ck = {0}, cv = {0};
    kvtc_result r = stats_from_eigenvalues(&b->k, &sk);
    if (r) return r;
    if ((r = stats_from_eigenvalues(&b->v, &sv))) { dp_stats_free(&sk); return r; }
    uint64_t cap_k = total < sk.p ? total : sk.p, cap_v = total < sv.p ? total : sv.p;
    uint64_t uk = cap_k, uv = cap_v;
    if (sk.p && (r = dp_solve(&sk, cap_k, 15u, 1, &ck))) goto done;
    if (sv.p && (r = dp_solve(&sv, cap_v, 15u, 1, &cv))) goto done;
    if (sk.p && sv.p) dp_split_budget(&ck, &cv, total, &uk, &uv);
    if ((r = plan_for_budget(&ck, &sk, uk, b->k.p, &out->k))) goto done;
    if ((r = plan_for_budget(&cv, &sv, uv, b->v.p, &out->v))) goto done;
    out->target_ratio = ratio;
    basis_plan_update_fingerprint(b, out);
done:
    if (r) { plan_stream_free(&out->k); plan_stream_free(&out->v); }
    dp_curve_free(&ck); dp_curve_free(&cv);
    dp_stats_free(&sk); dp_stats_free(&sv);
    return r;
}
