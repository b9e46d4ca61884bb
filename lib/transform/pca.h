/* pca.h - principal components of centered (and weighted) rows.
 * Exact: covariance by blocked ssyrk accumulated in double, then LAPACK's
 * dsyevr for the top `rank` eigenpairs. Randomized (Halko, Martinsson,
 * Tropp 2011): subspace iteration on X^T X with `power_iters` rounds and
 * QR re-orthonormalization, then Rayleigh-Ritz on the small l x l problem. */
#ifndef KVTC_TRANSFORM_PCA_H
#define KVTC_TRANSFORM_PCA_H

#include <stdint.h>

#include "kvtc.h"

/* x: [n][p] row-major. basis: [rank][p] rows = components, by decreasing
 * eigenvalue; eig: [rank] = variance along each (divided by n). */
kvtc_result pca_exact(const float *x, uint64_t n, uint32_t p, uint32_t rank, float *basis, float *eig);

kvtc_result pca_randomized(const float *x, uint64_t n, uint32_t p, uint32_t rank, uint32_t oversample,
                           uint32_t power_iters, uint64_t seed, float *basis, float *eig);

/* Deterministic PRNG shared by sampling and the randomized SVD. */
typedef struct kvi_rng { uint64_t s; } kvi_rng;
uint64_t kvi_rng_next(kvi_rng *r);
double kvi_rng_uniform(kvi_rng *r);  /* [0, 1) */
double kvi_rng_gauss(kvi_rng *r);

#endif
