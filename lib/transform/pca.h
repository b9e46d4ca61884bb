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

#endif
