/* test_dp.c - the DP bit allocation against brute force. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/dp.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rng_unif(void) { return (double)(rng_u64() >> 11) * 0x1p-53; }
static double rng_range(double lo, double hi) { return lo + (hi - lo) * rng_unif(); }

static int close_rel(double a, double b, double tol)
{
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return fabs(a - b) <= tol * (m > 1.0 ? m : 1.0);
}

/* Random statistics; range2 of class s is zero where i + size > p. */
static void make_stats(dp_stats *st, uint32_t p, double tail)
{
    memset(st, 0, sizeof *st);
    st->p = p;
    st->var = malloc(p * sizeof(double));
    for (uint32_t i = 0; i < p; i++) st->var[i] = rng_range(0.05, 2.0) / (1.0 + 0.05 * i);
    for (int s = 0; s < DP_N_SIZES; s++) {
        uint32_t g = dp_size_of_class(s);
        st->range2[s] = calloc(p, sizeof(double));
        for (uint32_t i = 0; i + g <= p; i++) {
            /* plausible scale: a group's range^2 is a few times its mean var */
            double mv = 0;
            for (uint32_t j = 0; j < g; j++) mv += st->var[i + j];
            mv /= g;
            st->range2[s][i] = mv * rng_range(4.0, 12.0 + 4.0 * s);
        }
    }
    st->tail_error = tail;
}

static double sum_var(const dp_stats *st)
{
    double s = 0;
    for (uint32_t i = 0; i < st->p; i++) s += st->var[i];
    return s;
}

/* Checks every property of a curve that needs no brute force; returns the
 * number of budgets whose plan uses a group of size `probe_size`. */
static int check_curve(const dp_curve *cv, const dp_stats *st, uint32_t size_mask, int allow_raw1,
                       uint32_t probe_size)
{
    int uses = 0, fails = 0;
    CHECK(cv->p == st->p);
    CHECK(close_rel(cv->err[0], sum_var(st) + st->tail_error, 1e-12));
    for (uint64_t c = 0; c <= cv->max_units; c++) {
        if (c > 0 && !(cv->err[c] <= cv->err[c - 1])) {
            fails++;
            CHECK_MSG(0, "err not monotone at c=%llu", (unsigned long long)c);
        }
        dp_plan pl;
        kvtc_result r = dp_plan_extract(cv, st, c, &pl);
        if (r != KVTC_OK) {
            CHECK_MSG(0, "extract failed at c=%llu: %d", (unsigned long long)c, (int)r);
            continue;
        }
        uint64_t cover = 0;
        int ok = 1;
        for (uint32_t k = 0; k < pl.n_groups; k++) {
            const dp_group *g = &pl.groups[k];
            cover += g->size;
            if (g->bits == 0) {
                if (k > 0 && pl.groups[k - 1].bits == 0) ok = 0; /* unmerged drops */
            } else if (g->bits == DP_RAW_BITS) {
                if (g->size != 1 || !allow_raw1) ok = 0;
            } else {
                int s = -1;
                for (int q = 0; q < DP_N_SIZES; q++)
                    if (dp_size_of_class(q) == g->size) s = q;
                if (s < 0 || !(size_mask & (1u << s)) || g->bits > DP_MAX_BITS) ok = 0;
            }
            if (g->size == probe_size && g->bits >= 1 && g->bits <= DP_MAX_BITS) uses++;
        }
        if (!ok || cover != st->p || pl.cost_units > c ||
            pl.cost_units != dp_plan_cost_units(pl.groups, pl.n_groups) ||
            !close_rel(pl.error, cv->err[c], 1e-12) ||
            !close_rel(pl.error, dp_plan_model_error(st, pl.groups, pl.n_groups), 0)) {
            fails++;
            CHECK_MSG(0, "plan at c=%llu: ok=%d cover=%llu cost=%llu err=%.17g curve=%.17g",
                      (unsigned long long)c, ok, (unsigned long long)cover,
                      (unsigned long long)pl.cost_units, pl.error, cv->err[c]);
        }
        if (c == 0)
            CHECK(pl.n_groups == 1 && pl.groups[0].bits == 0 && pl.groups[0].size == st->p);
        dp_plan_free(&pl);
        if (fails > 5) break;
    }
    CHECK(fails == 0);
    return uses;
}

/* ---- true brute force: every plan, recursively (small p) ---------------- */

typedef struct {
    const dp_stats *st;
    uint32_t mask;
    int raw;
    double *best; /* [p + 1] least error at exactly cost k */
    uint64_t plans;
} bf_ctx;

static double qerr(uint32_t size, double r2, int b)
{
    double q = (double)((1u << b) - 1u);
    return (double)size * r2 / (12.0 * q * q);
}

static void bf_rec(bf_ctx *x, uint32_t i, uint64_t cost, double err)
{
    const dp_stats *st = x->st;
    if (i == st->p) {
        x->plans++;
        if (err < x->best[cost]) x->best[cost] = err;
        return;
    }
    bf_rec(x, i + 1, cost, err + st->var[i]);
    if (x->raw) bf_rec(x, i + 1, cost + 1, err + st->var[i] * 0x1p-24);
    for (int s = 0; s < DP_N_SIZES; s++) {
        uint32_t g = dp_size_of_class(s);
        if (!(x->mask & (1u << s)) || i + g > st->p) continue;
        for (int b = 1; b <= DP_MAX_BITS; b++)
            bf_rec(x, i + g, cost + g * b / 16 + 2, err + qerr(g, st->range2[s][i], b));
    }
}

/* ---- semi brute force: every placement of quantized groups and bits; the
 * remaining coordinates are singletons whose drop/raw choice, all raws
 * costing one unit, is solved exactly by rawing the largest variances. --- */

typedef struct {
    const dp_stats *st;
    uint32_t mask;
    int raw;
    uint64_t cmax;
    double *best;      /* [cmax + 1] least error with cost <= c */
    uint8_t *single;   /* [p] coordinate is a singleton in the current placement */
    const uint32_t *order; /* coordinates by decreasing var */
    double *pref;      /* scratch [p + 1] */
    uint64_t leaves;
} sb_ctx;

static void sb_leaf(sb_ctx *x, uint64_t qcost, double qerr_sum)
{
    const dp_stats *st = x->st;
    uint32_t m = 0;
    double total = 0;
    x->pref[0] = 0;
    for (uint32_t k = 0; k < st->p; k++) {
        uint32_t i = x->order[k];
        if (!x->single[i]) continue;
        total += st->var[i];
        x->pref[m + 1] = x->pref[m] + st->var[i];
        m++;
    }
    x->leaves++;
    for (uint64_t c = qcost; c <= x->cmax; c++) {
        uint64_t k = x->raw ? c - qcost : 0;
        if (k > m) k = m;
        double e = qerr_sum + (total - x->pref[k]) + x->pref[k] * 0x1p-24 + st->tail_error;
        if (e < x->best[c]) x->best[c] = e;
    }
}

static void sb_rec(sb_ctx *x, uint32_t i, uint64_t qcost, double qe)
{
    const dp_stats *st = x->st;
    if (qcost > x->cmax) return;
    if (i == st->p) {
        sb_leaf(x, qcost, qe);
        return;
    }
    x->single[i] = 1;
    sb_rec(x, i + 1, qcost, qe);
    x->single[i] = 0;
    for (int s = 0; s < DP_N_SIZES; s++) {
        uint32_t g = dp_size_of_class(s);
        if (!(x->mask & (1u << s)) || i + g > st->p) continue;
        for (int b = 1; b <= DP_MAX_BITS; b++)
            sb_rec(x, i + g, qcost + g * b / 16 + 2, qe + qerr(g, st->range2[s][i], b));
    }
}

static const dp_stats *sort_st;
static int cmp_var_desc(const void *a, const void *b)
{
    double va = sort_st->var[*(const uint32_t *)a], vb = sort_st->var[*(const uint32_t *)b];
    return va > vb ? -1 : va < vb ? 1 : 0;
}

/* ---- tests -------------------------------------------------------------- */

static void test_full_brute(uint32_t p, uint32_t mask, int raw)
{
    dp_stats st;
    make_stats(&st, p, 0.0);
    bf_ctx x = {&st, mask, raw, malloc((p + 1) * sizeof(double)), 0};
    for (uint32_t k = 0; k <= p; k++) x.best[k] = INFINITY;
    bf_rec(&x, 0, 0, 0.0);
    uint64_t M = p + 7;
    dp_curve cv;
    CHECK(dp_solve(&st, M, mask, raw, &cv) == KVTC_OK);
    double run = INFINITY;
    int bad = 0;
    for (uint64_t c = 0; c <= M; c++) {
        if (c <= p && x.best[c] < run) run = x.best[c];
        if (!close_rel(run, cv.err[c], 1e-12)) bad++;
    }
    CHECK_MSG(bad == 0, "full brute force p=%u mask=%u raw=%d: %d budgets differ", p, mask, raw,
              bad);
    check_curve(&cv, &st, mask, raw, 0);
    dp_curve_free(&cv);
    free(x.best);
    dp_stats_free(&st);
}

static void test_semi_brute(uint32_t p, uint32_t mask, int raw, uint64_t cmax, uint32_t probe,
                            double tail)
{
    dp_stats st;
    make_stats(&st, p, tail);
    uint32_t *order = malloc(p * sizeof *order);
    for (uint32_t i = 0; i < p; i++) order[i] = i;
    sort_st = &st;
    qsort(order, p, sizeof *order, cmp_var_desc);
    sb_ctx x = {&st, mask, raw, cmax, malloc((cmax + 1) * sizeof(double)), calloc(p, 1), order,
                malloc((p + 1) * sizeof(double)), 0};
    for (uint64_t c = 0; c <= cmax; c++) x.best[c] = INFINITY;
    sb_rec(&x, 0, 0, 0.0);
    dp_curve cv;
    CHECK(dp_solve(&st, cmax, mask, raw, &cv) == KVTC_OK);
    int bad = 0;
    for (uint64_t c = 0; c <= cmax; c++) {
        if (!close_rel(x.best[c], cv.err[c], 1e-12)) {
            if (bad < 3)
                fprintf(stderr, "  p=%u c=%llu brute %.17g dp %.17g\n", p, (unsigned long long)c,
                        x.best[c], cv.err[c]);
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "semi brute force p=%u mask=%u raw=%d: %d budgets differ", p, mask, raw,
              bad);
    int uses = check_curve(&cv, &st, mask, raw, probe);
    if (probe) CHECK_MSG(uses > 0, "no plan of p=%u uses a group of size %u", p, probe);
    dp_curve_free(&cv);
    free(x.best);
    free(x.single);
    free(x.pref);
    free(order);
    dp_stats_free(&st);
}

static void test_extremes(void)
{
    dp_stats st;
    make_stats(&st, 300, 0.25);
    double sv = sum_var(&st);
    dp_curve cv;
    /* huge budget: everything at least as good as all-raw */
    CHECK(dp_solve(&st, 400, 0xF, 1, &cv) == KVTC_OK);
    CHECK(close_rel(cv.err[0], sv + 0.25, 1e-12));
    CHECK(cv.err[400] <= sv * 0x1p-24 * (1 + 1e-9) + 0.25);
    CHECK(cv.err[400] - 0.25 < 1e-6 * sv);
    check_curve(&cv, &st, 0xF, 1, 16);
    dp_curve_free(&cv);
    /* no groups allowed at all: everything dropped at every budget */
    CHECK(dp_solve(&st, 50, 0, 0, &cv) == KVTC_OK);
    int ok = 1;
    for (int c = 0; c <= 50; c++) ok &= close_rel(cv.err[c], sv + 0.25, 1e-12);
    CHECK(ok);
    dp_plan pl;
    CHECK(dp_plan_extract(&cv, &st, 50, &pl) == KVTC_OK);
    CHECK(pl.n_groups == 1 && pl.groups[0].bits == 0 && pl.groups[0].size == 300);
    CHECK(pl.cost_units == 0);
    dp_plan_free(&pl);
    check_curve(&cv, &st, 0, 0, 0);
    dp_curve_free(&cv);
    /* max_units = 0 */
    CHECK(dp_solve(&st, 0, 0xF, 1, &cv) == KVTC_OK);
    CHECK(close_rel(cv.err[0], sv + 0.25, 1e-12));
    dp_curve_free(&cv);
    /* p smaller than every group size */
    dp_stats small;
    make_stats(&small, 5, 0);
    CHECK(dp_solve(&small, 9, 0xF, 1, &cv) == KVTC_OK);
    CHECK(close_rel(cv.err[5], sum_var(&small) * 0x1p-24, 1e-12));
    check_curve(&cv, &small, 0xF, 1, 0);
    dp_curve_free(&cv);
    dp_stats_free(&small);
    /* all four classes on a larger p: p = 2100 reaches size 1024 */
    dp_stats big;
    make_stats(&big, 2100, 0);
    for (uint32_t i = 0; i + 1024 <= 2100; i++) big.range2[3][i] *= 0.02; /* make 1024 attractive */
    CHECK(dp_solve(&big, 300, 0xF, 1, &cv) == KVTC_OK);
    CHECK(check_curve(&cv, &big, 0xF, 1, 1024) > 0);
    dp_curve_free(&cv);
    dp_stats_free(&big);
    dp_stats_free(&st);
}

static void test_split(void)
{
    for (int rep = 0; rep < 4; rep++) {
        dp_stats sa, sb;
        make_stats(&sa, 40 + 13 * rep, 0.1 * rep);
        make_stats(&sb, 70 - 9 * rep, 0);
        dp_curve a, b;
        uint64_t ma = 20 + 7 * rep, mb = 35 - 5 * rep;
        CHECK(dp_solve(&sa, ma, 0x3, rep & 1, &a) == KVTC_OK);
        CHECK(dp_solve(&sb, mb, 0x1, 1, &b) == KVTC_OK);
        int bad = 0;
        for (uint64_t total = 0; total <= ma + mb + 6; total++) {
            double best = INFINITY;
            for (uint64_t x = 0; x <= ma; x++)
                for (uint64_t y = 0; y <= mb && x + y <= total; y++)
                    if (a.err[x] + b.err[y] < best) best = a.err[x] + b.err[y];
            uint64_t ca = 99999, cb = 99999;
            dp_split_budget(&a, &b, total, &ca, &cb);
            if (ca > ma || cb > mb || ca + cb > total || !close_rel(a.err[ca] + b.err[cb], best, 0))
                bad++;
        }
        CHECK_MSG(bad == 0, "split budget rep %d: %d totals wrong", rep, bad);
        dp_curve_free(&a);
        dp_curve_free(&b);
        dp_stats_free(&sa);
        dp_stats_free(&sb);
    }
}

static void test_plan_model(void)
{
    dp_stats st;
    make_stats(&st, 100, 0.5);
    /* uniform 4-bit groups of 16, last 4 coordinates raw */
    dp_group g[10];
    uint32_t n = 0;
    for (int k = 0; k < 6; k++) g[n++] = (dp_group){16, 4};
    for (int k = 0; k < 4; k++) g[n++] = (dp_group){1, 16};
    CHECK(dp_plan_cost_units(g, n) == 6 * 6 + 4);
    double e = 0.5;
    for (int k = 0; k < 6; k++) e += 16 * st.range2[0][16 * k] / (12.0 * 15 * 15);
    for (int i = 96; i < 100; i++) e += st.var[i] * 0x1p-24;
    CHECK(close_rel(dp_plan_model_error(&st, g, n), e, 1e-12));
    /* a raw group of 4 = four raw singletons */
    dp_group g2[7];
    memcpy(g2, g, 6 * sizeof *g);
    g2[6] = (dp_group){4, 16};
    CHECK(dp_plan_cost_units(g2, 7) == 40);
    CHECK(close_rel(dp_plan_model_error(&st, g2, 7), e, 1e-12));
    /* invalid plans */
    g2[6] = (dp_group){3, 16};
    CHECK(isnan(dp_plan_model_error(&st, g2, 7))); /* does not cover p */
    g2[6] = (dp_group){4, 9};
    CHECK(isnan(dp_plan_model_error(&st, g2, 7)));
    CHECK(dp_plan_cost_units(g2, 7) == UINT64_MAX);
    g2[0] = (dp_group){0, 4};
    CHECK(dp_plan_cost_units(g2, 7) == UINT64_MAX);
    dp_group odd[2] = {{32, 4}, {68, 0}}; /* 32 is not a class size */
    CHECK(isnan(dp_plan_model_error(&st, odd, 2)));
    CHECK(dp_plan_cost_units(odd, 2) == 10);
    CHECK(isnan(dp_plan_model_error(NULL, g, n)));
    CHECK(dp_plan_cost_units(NULL, 0) == 0);
    dp_stats_free(&st);
}

static void test_invalid(void)
{
    float d[64] = {0};
    dp_stats st;
    CHECK(dp_stats_compute(NULL, 2, 4, 4, &st) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(dp_stats_compute(d, 0, 4, 4, &st) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(dp_stats_compute(d, 2, 0, 4, &st) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(dp_stats_compute(d, 2, 8, 4, &st) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(dp_stats_compute(d, 2, 4, 4, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    d[5] = NAN;
    CHECK(dp_stats_compute(d, 2, 8, 8, &st) == KVTC_ERR_NUMERIC);
    d[5] = INFINITY;
    CHECK(dp_stats_compute(d, 2, 32, 32, &st) == KVTC_ERR_NUMERIC);
    CHECK(st.var == NULL);

    dp_curve cv;
    CHECK(dp_solve(NULL, 10, 1, 1, &cv) == KVTC_ERR_INVALID_ARGUMENT);
    dp_stats z;
    memset(&z, 0, sizeof z);
    CHECK(dp_solve(&z, 10, 1, 1, &cv) == KVTC_ERR_INVALID_ARGUMENT); /* p = 0 */
    make_stats(&z, 40, 0);
    CHECK(dp_solve(&z, 10, 1, 1, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(dp_solve(&z, 10, 0x10, 1, &cv) == KVTC_ERR_INVALID_ARGUMENT); /* unknown class */
    double *r0 = z.range2[0];
    z.range2[0] = NULL;
    CHECK(dp_solve(&z, 10, 1, 1, &cv) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(dp_solve(&z, 10, 2, 1, &cv) == KVTC_OK); /* class 1 (64) > p: range2[0] unused */
    dp_curve_free(&cv);
    z.range2[0] = r0;
    CHECK(dp_solve(&z, 10, 1, 1, &cv) == KVTC_OK);
    dp_plan pl;
    CHECK(dp_plan_extract(&cv, &z, 11, &pl) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(dp_plan_extract(NULL, &z, 1, &pl) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(dp_plan_extract(&cv, NULL, 1, &pl) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(dp_plan_extract(&cv, &z, 1, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    dp_curve_free(&cv);
    dp_curve_free(&cv); /* idempotent */
    dp_curve_free(NULL);
    dp_plan_free(NULL);
    dp_stats_free(NULL);
    dp_stats_free(&z);

    /* choice table over 2 GiB: rejected before any allocation */
    dp_stats huge;
    memset(&huge, 0, sizeof huge);
    double dummy = 0;
    huge.p = 1u << 20;
    huge.var = &dummy;
    CHECK(dp_solve(&huge, 4096, 0, 1, &cv) == KVTC_ERR_TOO_LARGE);
    CHECK(dp_solve(&huge, UINT64_MAX, 0, 1, &cv) == KVTC_ERR_TOO_LARGE);
    CHECK(cv.err == NULL && cv.choice == NULL);

    uint64_t ca = 7, cb = 7;
    dp_split_budget(NULL, NULL, 10, &ca, &cb);
    CHECK(ca == 0 && cb == 0);
}

/* dp_stats_compute against the definition, windows scanned naively. */
static void test_stats_naive(void)
{
    static const uint32_t ps[] = {1, 5, 15, 16, 17, 31, 63, 64, 65, 100, 255, 257, 1024, 1030, 1100};
    for (size_t t = 0; t < sizeof ps / sizeof ps[0]; t++) {
        uint32_t p = ps[t];
        uint64_t n = 1 + rng_u64() % 23, ld = p + (t % 3) * 5;
        float *d = malloc(n * ld * sizeof(float));
        for (uint64_t k = 0; k < n * ld; k++) {
            double u = rng_range(-1, 1);
            d[k] = (float)(u * u * u * 10.0 * (1 + (k % ld) % 7)); /* heavy-ish tails */
        }
        dp_stats st;
        CHECK(dp_stats_compute(d, n, p, ld, &st) == KVTC_OK);
        CHECK(st.p == p && st.tail_error == 0.0);
        int bad = 0;
        for (uint32_t i = 0; i < p; i++) {
            double v = 0;
            for (uint64_t r = 0; r < n; r++) v += (double)d[r * ld + i] * d[r * ld + i];
            if (!close_rel(st.var[i], v / n, 1e-12)) bad++;
        }
        for (int s = 0; s < DP_N_SIZES; s++) {
            uint32_t g = dp_size_of_class(s);
            for (uint32_t i = 0; i < p; i++) {
                double acc = 0;
                if (i + g <= p) {
                    for (uint64_t r = 0; r < n; r++) {
                        const float *x = d + r * ld + i;
                        float mx = x[0], mn = x[0];
                        for (uint32_t j = 1; j < g; j++) {
                            if (x[j] > mx) mx = x[j];
                            if (x[j] < mn) mn = x[j];
                        }
                        double rr = (double)mx - (double)mn;
                        acc += rr * rr;
                    }
                    acc /= n;
                }
                if (!close_rel(st.range2[s][i], acc, 1e-12)) bad++;
            }
        }
        CHECK_MSG(bad == 0, "stats p=%u n=%llu: %d values differ", p, (unsigned long long)n, bad);
        dp_stats_free(&st);
        free(d);
    }
}

/* Stats from data through to plans. */
static void test_end_to_end(void)
{
    uint32_t p = 600;
    uint64_t n = 200;
    float *d = malloc(n * p * sizeof(float));
    for (uint64_t r = 0; r < n; r++)
        for (uint32_t i = 0; i < p; i++)
            d[r * p + i] = (float)(rng_range(-1, 1) * 30.0 / (1.0 + 0.02 * i));
    dp_stats st;
    CHECK(dp_stats_compute(d, n, p, p, &st) == KVTC_OK);
    st.tail_error = 1.5;
    dp_curve cv;
    CHECK(dp_solve(&st, 2 * p / 16 + 50, 0xF, 1, &cv) == KVTC_OK);
    CHECK(check_curve(&cv, &st, 0xF, 1, 16) > 0);
    dp_curve_free(&cv);
    dp_stats_free(&st);
    free(d);
}

int main(void)
{
    test_invalid();
    test_stats_naive();
    test_plan_model();
    /* every plan enumerated */
    test_full_brute(17, 0x1, 1);
    test_full_brute(18, 0x1, 0);
    test_full_brute(19, 0x0, 1);
    test_full_brute(20, 0x1, 1);
    /* every group partition and bit choice; budgets past p included */
    for (uint32_t p = 32; p <= 48; p += 4) {
        test_semi_brute(p, 0x1, 1, p + 12, 16, 0.0);
        test_semi_brute(p, 0x1, 0, p / 2 + 5, 16, 0.75);
    }
    test_semi_brute(68, 0x3, 1, 90, 64, 0.0);
    test_semi_brute(66, 0x3, 0, 60, 64, 0.3);
    test_extremes();
    test_split();
    test_end_to_end();
    return TEST_REPORT();
}
