/* basis.h - the in-memory basis (what calibration produces and every encoder
 * and decoder shares, read-only) and its plans. lib/format/basis.c reads and
 * writes it as a file; lib/model/basis.c holds everything else. */
#ifndef KVTC_MODEL_BASIS_H
#define KVTC_MODEL_BASIS_H

#include <stdint.h>

#include "kvtc.h"
#include "model/groups.h"

/* Transform of one stream (keys or values). Coordinates are ordered
 * layer-major over the coded layers [recompute_layers, n_layers), then head,
 * then dim. Encode: d = ((x - mean) * weight) B^T; decode: x = (d B) / weight + mean. */
typedef struct basis_stream {
    uint32_t p;          /* coordinates per token */
    uint32_t rank;       /* components stored (rows of basis) */
    float *mean;         /* [p] */
    float *weight;       /* [p] > 0: sqrt of the distortion weight per coordinate */
    float *basis;        /* [rank][p]: row j is principal component j (unit norm) */
    float *eigenvalues;  /* [rank] weighted variance captured by each component */
} basis_stream;

/* Bit allocation of one stream under one plan. */
typedef struct plan_stream {
    uint32_t n_groups;
    dp_group *groups;    /* cover [0, p) in PCA order */
    uint32_t rank_used;  /* end of the last group with bits > 0 */
    uint64_t units;      /* 16-bit units per token (shift/scale included) */
    double error;        /* model's expected weighted squared error per token */
} plan_stream;

/* Most groups one plan stream may have (a bound for hostile files). */
#define BASIS_MAX_GROUPS (1u << 22)

typedef struct basis_plan {
    double target_ratio;
    plan_stream k, v;
    uint64_t fingerprint; /* of the groups of both streams and the transform */
} basis_plan;

struct kvtc_basis {
    kvtc_geometry geometry;
    uint32_t recompute_layers; /* layers [0, recompute_layers) are not coded */
    int rope_removed;          /* keys are un-rotated before projection */
    basis_stream k, v;
    uint32_t n_plans;
    basis_plan *plans;
    uint64_t transform_fingerprint; /* geometry, flags, mean, weight, basis */
};

void basis_stream_free(basis_stream *s);
void plan_stream_free(plan_stream *s);
/* Fill rank_used and units from groups. */
void plan_stream_finalize(plan_stream *s);

/* Recompute transform_fingerprint and every plan fingerprint. */
void basis_update_fingerprints(kvtc_basis *b);

/* Set pl->fingerprint from its groups and b's transform fingerprint. */
void basis_plan_update_fingerprint(const kvtc_basis *b, basis_plan *pl);

/* Validate groups over [0, p) (known kinds and sizes, sizes summing to p,
 * no coded component beyond `rank`) and copy them into *out, finalized.
 * KVTC_ERR_CORRUPT when invalid. */
kvtc_result plan_stream_from_groups(const dp_group *g, uint32_t n, uint32_t p, uint32_t rank, plan_stream *out);

/* Index of the plan with the given fingerprint, or -1. */
/* 1 when some plan codes no coordinate of K or V (rank_used 0 for both):
 * every coded token would decode as the calibration mean whatever it was
 * (a basis calibrated on constant data). Calibration refuses to make such a
 * basis (KVTC_ERR_NUMERIC) and loading refuses to read one
 * (KVTC_ERR_CORRUPT): issue 9 item 10. */
int basis_has_degenerate_plan(const kvtc_basis *b);

int basis_find_plan_by_fingerprint(const kvtc_basis *b, uint64_t fp);

/* Bytes per token of both streams at fp16, over ALL layers (the ratio's reference). */
double basis_reference_bits_per_token(const kvtc_basis *b);

#endif
