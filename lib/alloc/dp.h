/*
 * dp.h - exact dynamic-programming bit allocation over PCA coordinates.
 *
 * The coordinates of one stream (keys or values), in PCA order, are split
 * into consecutive groups. Each group gets a kind:
 *   bits = 0       dropped: decoded as 0 (the mean); costs nothing;
 *   bits = 1..8    per token an fp16 shift (min) and fp16 scale
 *                  ((max-min)/(2^bits-1)), then `size` codes of `bits` bits;
 *   bits = 16      raw: each coordinate stored as fp16 (used with size 1: a
 *                  group of one value needs no shift/scale, the value is its
 *                  own shift, so this is the cheapest exact form of size 1).
 * Costs are counted in units of 16 bits per token: quantized groups have
 * sizes in {16, 64, 256, 1024}, so size*bits/16 + 2 is an integer, raw
 * size-1 groups cost 1 unit, dropped groups 0. The DP is exact for this
 * integer cost model.
 *
 * Error model (expected squared error per token, in the weighted PCA space,
 * which the orthonormal basis maps 1:1 to weighted squared error of x):
 *   dropped:        sum of var[i] over the group
 *   raw fp16:       var[i] * 2^-24 (fp16 rounding of a value of that scale)
 *   quantized:      size * E[(max-min)^2] / (12 * (2^bits - 1)^2)
 * where var[i] = E[d_i^2] and E[(max-min)^2] over the group's coordinates
 * are measured on calibration projections (dp_stats_compute).
 */
#ifndef KVTC_ALLOC_DP_H
#define KVTC_ALLOC_DP_H

#include <stddef.h>
#include <stdint.h>

#include "kvtc.h"
#include "model/groups.h" /* dp_group, DP_MAX_BITS, DP_RAW_BITS, dp_plan_cost_units */

typedef struct dp_plan {
    uint32_t n_groups;
    dp_group *groups;   /* malloc'd; groups cover exactly [0, p) in order */
    uint64_t cost_units;/* per token, units of 16 bits */
    double error;       /* expected squared error per token under the model */
} dp_plan;

/* Calibration statistics of one stream of p coordinates. */
typedef struct dp_stats {
    uint32_t p;
    double *var;                  /* [p] E[d_i^2] */
    double *range2[DP_N_SIZES];   /* [p] E[(max-min)^2] of coords [s, s+size); 0 where s+size > p */
    double tail_error;            /* error of coordinates beyond p (not in the basis), added to every plan */
} dp_stats;

/* Measure stats from n rows of d (row-major, n x p, row stride ld >= p).
 * Allocates the arrays; free with dp_stats_free. */
kvtc_result dp_stats_compute(const float *d, uint64_t n, uint32_t p, uint64_t ld, dp_stats *out);
void dp_stats_free(dp_stats *s);

/* The whole rate-distortion curve of one stream: err[c] = least expected
 * error with cost <= c units, for c in [0, max_units]; and the means to
 * recover the plan for any c. */
typedef struct dp_curve {
    uint32_t p;
    uint64_t max_units;
    double *err;        /* [max_units + 1] */
    uint8_t *choice;    /* [(p + 1) * (max_units + 1)]: decision ending at i with budget c */
} dp_curve;

/* Solve the DP. size_mask: bit s (0..3) allows quantized size 16<<(2s);
 * allow_raw1: allow raw fp16 groups of size 1. */
kvtc_result dp_solve(const dp_stats *st, uint64_t max_units, uint32_t size_mask, int allow_raw1,
                     dp_curve *out);

/* Recover the plan for budget c <= max_units (consecutive dropped
 * coordinates are merged into one group). */
kvtc_result dp_plan_extract(const dp_curve *cv, const dp_stats *st, uint64_t c, dp_plan *out);

void dp_curve_free(dp_curve *cv);
void dp_plan_free(dp_plan *p);

/* Split a joint budget between two streams: c_a + c_b <= total minimizing
 * err_a[c_a] + err_b[c_b]. */
void dp_split_budget(const dp_curve *a, const dp_curve *b, uint64_t total, uint64_t *c_a,
                     uint64_t *c_b);

/* Expected error of an explicit plan under the model (for tests and for
 * uniform-allocation baselines); its cost is dp_plan_cost_units (model/groups.h). */
double dp_plan_model_error(const dp_stats *st, const dp_group *g, uint32_t n_groups);

#endif
