/*
 * dp.c - exact dynamic-programming bit allocation (see dp.h for the cost and
 * error model).
 *
 * Statistics (dp_stats_compute)
 *   Per row, the windowed max/min over [i, i+16) is built by doubling
 *   (window 2, 4, 8, 16: m_{2w}[i] = max(m_w[i], m_w[i+w])), then each larger
 *   class from the previous one (window 4w = 4 adjacent windows of w:
 *   m_{4w}[i] = max(m_w[i], m_w[i+w], m_w[i+2w], m_w[i+3w])). That is O(p)
 *   per row per class like a monotonic deque (4 + 3*3 passes of max and of
 *   min per row in all), but branch-free and vectorizable, and exact (max and
 *   min of floats involve no rounding). (max-min) is formed in double and its
 *   square accumulated in double over rows, then divided by n.
 *
 * Solver (dp_solve)
 *   dp[i][c] = least error covering [0, i) with cost <= c, dp[0][c] = 0.
 *   A transition ending at i reads row i - g with g in {1, 16, 64, 256,
 *   1024}, so only the last G + 1 rows are kept, G the largest allowed group
 *   size (at most p): a ring of G + 1 rows of min(max_units, p) + 1 doubles
 *   (p = 8192, max_units = 1024, all sizes: 1025 rows = 8.4 MB, instead of
 *   67 MB for the full table; budgets beyond p are never needed, see
 *   dp_solve). The decisions are kept for every (i, c):
 *   (p + 1) * (max_units + 1) bytes. Each transition is one pass over c:
 *   v = src[c - cost] + e; if (v < cur[c]) take it. The pass is written
 *   branch-free with the decision carried as a double so that the compiler
 *   vectorizes it; the decision row is packed to bytes when row i is done.
 *   Ties keep the earlier transition (drop, then raw, then classes and bits
 *   in increasing order), so the plans are deterministic.
 *
 * Since dp[0][c] = 0 for every c and every transition maps a row that is
 * non-increasing in c to one that is non-increasing in c, err[c] is
 * non-increasing: "cost <= c" needs no extra prefix minimum. Dropping is
 * always possible, so every state is feasible.
 */
#include "alloc/dp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define DP_RAW_ERR_SCALE 0x1p-24
#define DP_CHOICE_DROP 0
#define DP_CHOICE_RAW1 1
#define DP_CHOICE_QUANT0 2
#define DP_MAX_CHOICE_BYTES ((uint64_t)2 << 30) /* 2 GiB */

/* The one expression for the model error of a quantized group, shared by the
 * solver and dp_plan_model_error so that both sum identical terms. */
static double quant_error(uint32_t size, double range2, int bits)
{
    double q = (double)((1u << bits) - 1u);
    return (double)size * range2 / (12.0 * q * q);
}

static uint64_t quant_cost(uint32_t size, int bits) { return (uint64_t)size * (uint64_t)bits / 16u + 2u; }

static int class_of_size(uint32_t size)
{
    for (int s = 0; s < DP_N_SIZES; s++)
        if (dp_size_of_class(s) == size) return s;
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */
/* ------------------------------------------------------------------------ */

void dp_stats_free(dp_stats *s)
{
    if (!s) return;
    free(s->var);
    for (int k = 0; k < DP_N_SIZES; k++) free(s->range2[k]);
    memset(s, 0, sizeof *s);
}

/* dst[i] = max(src[i], src[i + w0], ..., src[i + (taps-1) w0]) and the same
 * for min, for i < m. */
static void win_step(float *restrict dmx, float *restrict dmn, const float *restrict smx,
                     const float *restrict smn, size_t m, size_t w0, int taps)
{
    if (taps == 2) {
        for (size_t i = 0; i < m; i++) {
            float a = smx[i], b = smx[i + w0];
            dmx[i] = a > b ? a : b;
        }
        for (size_t i = 0; i < m; i++) {
            float a = smn[i], b = smn[i + w0];
            dmn[i] = a < b ? a : b;
        }
    } else { /* taps == 4 */
        for (size_t i = 0; i < m; i++) {
            float a = smx[i], b = smx[i + w0], c = smx[i + 2 * w0], d = smx[i + 3 * w0];
            float ab = a > b ? a : b, cd = c > d ? c : d;
            dmx[i] = ab > cd ? ab : cd;
        }
        for (size_t i = 0; i < m; i++) {
            float a = smn[i], b = smn[i + w0], c = smn[i + 2 * w0], d = smn[i + 3 * w0];
            float ab = a < b ? a : b, cd = c < d ? c : d;
            dmn[i] = ab < cd ? ab : cd;
        }
    }
}

static void accum_range2(double *restrict acc, const float *restrict mx, const float *restrict mn,
                         size_t m)
{
    for (size_t i = 0; i < m; i++) {
        double r = (double)mx[i] - (double)mn[i];
        acc[i] += r * r;
    }
}

kvtc_result dp_stats_compute(const float *d, uint64_t n, uint32_t p, uint64_t ld, dp_stats *out)
{
    if (!out) return KVTC_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (!d || n == 0 || p == 0 || ld < p) return KVTC_ERR_INVALID_ARGUMENT;
    if ((n - 1) > (UINT64_MAX - p) / ld || (n - 1) * ld + p > SIZE_MAX / sizeof(float))
        return KVTC_ERR_TOO_LARGE;

    out->p = p;
    out->var = calloc(p, sizeof(double));
    int ok = out->var != NULL;
    for (int s = 0; s < DP_N_SIZES; s++) {
        out->range2[s] = calloc(p, sizeof(double));
        ok = ok && out->range2[s] != NULL;
    }
    /* four scratch rows: max/min, ping and pong */
    float *scratch = malloc((size_t)4 * p * sizeof(float));
    if (!ok || !scratch) {
        free(scratch);
        dp_stats_free(out);
        return KVTC_ERR_OUT_OF_MEMORY;
    }
    float *mxa = scratch, *mna = scratch + p, *mxb = scratch + 2 * (size_t)p,
          *mnb = scratch + 3 * (size_t)p;
    double *var = out->var;

    for (uint64_t r = 0; r < n; r++) {
        const float *x = d + r * ld;
        for (size_t i = 0; i < p; i++) {
            double v = x[i];
            var[i] += v * v;
        }
        if (p < 16) continue;
        /* windows 2, 4, 8, 16 by doubling; valid entries: p - w + 1 */
        win_step(mxa, mna, x, x, p - 1, 1, 2);
        win_step(mxb, mnb, mxa, mna, p - 3, 2, 2);
        win_step(mxa, mna, mxb, mnb, p - 7, 4, 2);
        win_step(mxb, mnb, mxa, mna, p - 15, 8, 2);
        float *cmx = mxb, *cmn = mnb, *omx = mxa, *omn = mna;
        accum_range2(out->range2[0], cmx, cmn, (size_t)p - 15);
        for (int s = 1; s < DP_N_SIZES; s++) {
            uint32_t w = dp_size_of_class(s), w0 = dp_size_of_class(s - 1);
            if (w > p) break;
            win_step(omx, omn, cmx, cmn, (size_t)p - w + 1, w0, 4);
            float *t = cmx;
            cmx = omx;
            omx = t;
            t = cmn;
            cmn = omn;
            omn = t;
            accum_range2(out->range2[s], cmx, cmn, (size_t)p - w + 1);
        }
    }
    free(scratch);

    double inv = 1.0 / (double)n;
    for (size_t i = 0; i < p; i++) {
        var[i] *= inv;
        if (!isfinite(var[i])) {
            dp_stats_free(out);
            return KVTC_ERR_NUMERIC;
        }
    }
    for (int s = 0; s < DP_N_SIZES; s++) {
        uint32_t w = dp_size_of_class(s);
        if (w > p) break;
        for (size_t i = 0; i + w <= p; i++) out->range2[s][i] *= inv;
    }
    out->tail_error = 0.0;
    return KVTC_OK;
}

/* ------------------------------------------------------------------------ */
/* Solver                                                                    */
/* ------------------------------------------------------------------------ */

void dp_curve_free(dp_curve *cv)
{
    if (!cv) return;
    free(cv->err);
    free(cv->choice);
    memset(cv, 0, sizeof *cv);
}

void dp_plan_free(dp_plan *p)
{
    if (!p) return;
    free(p->groups);
    memset(p, 0, sizeof *p);
}

/* cur[c] = min(cur[c], src[c - cost] + e) for c in [cost, m], recording k
 * in ch[c] where the transition is strictly better. gcc does not vectorize
 * the two-output select, so on x86-64 it is written with SSE2 (always
 * present there; same comparisons, same results as the scalar loop). */
static void relax(double *restrict cur, double *restrict ch, const double *restrict src, size_t m,
                  size_t cost, double e, double k)
{
    if (cost > m) return;
    double *restrict cc = cur + cost;
    double *restrict hh = ch + cost;
    size_t len = m + 1 - cost, c = 0;
#ifdef __SSE2__
    const __m128d ve = _mm_set1_pd(e), vk = _mm_set1_pd(k);
    for (; c + 4 <= len; c += 4) {
        __m128d v0 = _mm_add_pd(_mm_loadu_pd(src + c), ve);
        __m128d v1 = _mm_add_pd(_mm_loadu_pd(src + c + 2), ve);
        __m128d o0 = _mm_loadu_pd(cc + c), o1 = _mm_loadu_pd(cc + c + 2);
        __m128d t0 = _mm_cmplt_pd(v0, o0), t1 = _mm_cmplt_pd(v1, o1);
        _mm_storeu_pd(cc + c, _mm_or_pd(_mm_and_pd(t0, v0), _mm_andnot_pd(t0, o0)));
        _mm_storeu_pd(cc + c + 2, _mm_or_pd(_mm_and_pd(t1, v1), _mm_andnot_pd(t1, o1)));
        __m128d h0 = _mm_loadu_pd(hh + c), h1 = _mm_loadu_pd(hh + c + 2);
        _mm_storeu_pd(hh + c, _mm_or_pd(_mm_and_pd(t0, vk), _mm_andnot_pd(t0, h0)));
        _mm_storeu_pd(hh + c + 2, _mm_or_pd(_mm_and_pd(t1, vk), _mm_andnot_pd(t1, h1)));
    }
#endif
    for (; c < len; c++) {
        double v = src[c] + e, o = cc[c], h = hh[c];
        cc[c] = v < o ? v : o;
        hh[c] = v < o ? k : h;
    }
}

kvtc_result dp_solve(const dp_stats *st, uint64_t max_units, uint32_t size_mask, int allow_raw1,
                     dp_curve *out)
{
    if (!out) return KVTC_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (!st || st->p == 0 || !st->var || (size_mask & ~((1u << DP_N_SIZES) - 1u)))
        return KVTC_ERR_INVALID_ARGUMENT;
    const uint32_t p = st->p;
    uint32_t gmax = 1; /* largest group size used */
    for (int s = 0; s < DP_N_SIZES; s++) {
        if (!(size_mask & (1u << s)) || dp_size_of_class(s) > p) continue;
        if (!st->range2[s]) return KVTC_ERR_INVALID_ARGUMENT;
        gmax = dp_size_of_class(s);
    }
    if (max_units >= DP_MAX_CHOICE_BYTES ||
        ((uint64_t)p + 1) * (max_units + 1) > DP_MAX_CHOICE_BYTES)
        return KVTC_ERR_TOO_LARGE;

    /* Every group costs at most its size in units (raw: 1 per coordinate;
     * quantized: size*bits/16 + 2 <= size for size >= 16, bits <= 8), so a
     * plan of [0, i) costs at most i and dp[i][c] = dp[i][i] for c >= i (and
     * so are the decisions, by induction). Budgets beyond p are therefore
     * solved once, at c = p, and copied. */
    const size_t m = (size_t)max_units;
    const size_t w = m + 1;
    const size_t me = m < p ? m : (size_t)p; /* solved width - 1 */
    const size_t we = me + 1;
    const size_t nring = (size_t)gmax + 1;
    out->err = malloc(w * sizeof(double));
    out->choice = malloc(((size_t)p + 1) * w);
    double *ring = malloc(nring * we * sizeof(double));
    double *ch = malloc(we * sizeof(double));
    if (!out->err || !out->choice || !ring || !ch) {
        free(ring);
        free(ch);
        dp_curve_free(out);
        return KVTC_ERR_OUT_OF_MEMORY;
    }
    out->p = p;
    out->max_units = max_units;

    memset(out->choice, DP_CHOICE_DROP, w); /* row 0: unused */
    for (size_t c = 0; c < we; c++) ring[c] = 0.0;

    const double *var = st->var;
    for (uint32_t i = 1; i <= p; i++) {
        double *cur = ring + (i % nring) * we;
        const double *prev = ring + ((i - 1) % nring) * we;
        /* drop coordinate i-1 */
        double ev = var[i - 1];
        for (size_t c = 0; c < we; c++) {
            cur[c] = prev[c] + ev;
            ch[c] = DP_CHOICE_DROP;
        }
        if (allow_raw1) relax(cur, ch, prev, me, 1, ev * DP_RAW_ERR_SCALE, DP_CHOICE_RAW1);
        for (int s = 0; s < DP_N_SIZES; s++) {
            uint32_t g = dp_size_of_class(s);
            if (!(size_mask & (1u << s)) || g > i) continue;
            const double *src = ring + ((i - g) % nring) * we;
            double r2 = st->range2[s][i - g];
            for (int b = 1; b <= DP_MAX_BITS; b++)
                relax(cur, ch, src, me, (size_t)quant_cost(g, b), quant_error(g, r2, b),
                      (double)(DP_CHOICE_QUANT0 + s * DP_MAX_BITS + (b - 1)));
        }
        uint8_t *crow = out->choice + (size_t)i * w;
        for (size_t c = 0; c < we; c++) crow[c] = (uint8_t)ch[c];
        if (w > we) memset(crow + we, crow[me], w - we);
    }
    const double *last = ring + (p % nring) * we;
    for (size_t c = 0; c < w; c++) out->err[c] = last[c < me ? c : me] + st->tail_error;
    free(ring);
    free(ch);
    return KVTC_OK;
}

/* ------------------------------------------------------------------------ */
/* Plans                                                                     */
/* ------------------------------------------------------------------------ */

double dp_plan_model_error(const dp_stats *st, const dp_group *g, uint32_t n_groups)
{
    if (!st || !st->var || (!g && n_groups)) return NAN;
    double err = 0.0;
    uint64_t i = 0;
    for (uint32_t k = 0; k < n_groups; k++) {
        uint32_t size = g[k].size, bits = g[k].bits;
        if (size == 0 || i + size > st->p) return NAN;
        if (bits == 0) {
            for (uint32_t j = 0; j < size; j++) err += st->var[i + j];
        } else if (bits == DP_RAW_BITS) {
            for (uint32_t j = 0; j < size; j++) err += st->var[i + j] * DP_RAW_ERR_SCALE;
        } else if (bits <= DP_MAX_BITS) {
            int s = class_of_size(size);
            if (s < 0 || !st->range2[s]) return NAN;
            err += quant_error(size, st->range2[s][i], (int)bits);
        } else {
            return NAN;
        }
        i += size;
    }
    if (i != st->p) return NAN;
    return err + st->tail_error;
}

kvtc_result dp_plan_extract(const dp_curve *cv, const dp_stats *st, uint64_t c, dp_plan *out)
{
    if (!out) return KVTC_ERR_INVALID_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (!cv || !st || !cv->choice || !st->var || cv->p == 0 || cv->p != st->p ||
        c > cv->max_units)
        return KVTC_ERR_INVALID_ARGUMENT;
    const uint32_t p = cv->p;
    const size_t w = (size_t)cv->max_units + 1;
    dp_group *tmp = malloc((size_t)p * sizeof *tmp);
    if (!tmp) return KVTC_ERR_OUT_OF_MEMORY;

    /* backtrack: groups come out last first */
    uint32_t n = 0, i = p;
    uint64_t cc = c;
    while (i > 0) {
        uint8_t k = cv->choice[(size_t)i * w + cc];
        dp_group gr;
        if (k == DP_CHOICE_DROP) {
            gr.size = 1;
            gr.bits = 0;
        } else if (k == DP_CHOICE_RAW1) {
            gr.size = 1;
            gr.bits = DP_RAW_BITS;
        } else {
            int s = (k - DP_CHOICE_QUANT0) / DP_MAX_BITS;
            int b = (k - DP_CHOICE_QUANT0) % DP_MAX_BITS + 1;
            if (s >= DP_N_SIZES) {
                free(tmp);
                return KVTC_ERR_CORRUPT;
            }
            gr.size = dp_size_of_class(s);
            gr.bits = (uint8_t)b;
        }
        uint64_t cost = dp_plan_cost_units(&gr, 1);
        if (gr.size > i || cost > cc) { /* cannot happen with a table from dp_solve */
            free(tmp);
            return KVTC_ERR_CORRUPT;
        }
        i -= gr.size;
        cc -= cost;
        if (gr.bits == 0 && n > 0 && tmp[n - 1].bits == 0)
            tmp[n - 1].size += 1; /* merge runs of dropped coordinates */
        else
            tmp[n++] = gr;
    }
    for (uint32_t a = 0, b = n - 1; a < b; a++, b--) {
        dp_group t = tmp[a];
        tmp[a] = tmp[b];
        tmp[b] = t;
    }
    dp_group *gs = realloc(tmp, (size_t)n * sizeof *gs);
    out->groups = gs ? gs : tmp;
    out->n_groups = n;
    out->cost_units = dp_plan_cost_units(out->groups, n);
    out->error = dp_plan_model_error(st, out->groups, n);
    return KVTC_OK;
}

void dp_split_budget(const dp_curve *a, const dp_curve *b, uint64_t total, uint64_t *c_a,
                     uint64_t *c_b)
{
    uint64_t best_a = 0, best_b = 0;
    if (a && b && a->err && b->err) {
        uint64_t hi = total < a->max_units ? total : a->max_units;
        double best = INFINITY;
        for (uint64_t x = 0; x <= hi; x++) {
            uint64_t y = total - x;
            if (y > b->max_units) y = b->max_units;
            double e = a->err[x] + b->err[y];
            if (e < best) {
                best = e;
                best_a = x;
                best_b = y;
            }
        }
    }
    if (c_a) *c_a = best_a;
    if (c_b) *c_b = best_b;
}
