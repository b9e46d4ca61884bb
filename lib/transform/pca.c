/* pca.c - see pca.h. */
#include "transform/pca.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/rng.h"

#define SYRK_BLOCK 2048u

kvtc_result pca_exact(const float *x, uint64_t n, uint32_t p, uint32_t rank, float *basis, float *eig) {
    if (rank == 0) return KVTC_OK;
    if (rank > p || n == 0) return KVTC_ERR_INVALID_ARGUMENT;
    double *cov = calloc((size_t)p * p, sizeof(double));
    float *blk = malloc(sizeof(float) * (size_t)p * p);
    double *w = malloc(sizeof(double) * p);
    double *z = malloc(sizeof(double) * (size_t)p * rank);
    lapack_int *isuppz = malloc(sizeof(lapack_int) * 2 * (size_t)rank);
    kvtc_result r = KVTC_ERR_OUT_OF_MEMORY;
    if (!cov || !blk || !w || !z || !isuppz) goto done;
    /* float partial sums over blocks of rows, accumulated in double: a
     * float sum over 10^5 rows would lose the small eigenvalues. */
    for (uint64_t r0 = 0; r0 < n; r0 += SYRK_BLOCK) {
        uint64_t m = n - r0 < SYRK_BLOCK ? n - r0 : SYRK_BLOCK;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)p, (int)m, 1.0f, x + r0 * p, (int)p, 0.0f,
                    blk, (int)p);
        for (size_t i = 0; i < p; i++)
            for (size_t j = i; j < p; j++) cov[i * p + j] += blk[i * p + j];
    }
    for (size_t i = 0; i < (size_t)p * p; i++) cov[i] /= (double)n;
    lapack_int found = 0;
    lapack_int info = LAPACKE_dsyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'U', (lapack_int)p, cov, (lapack_int)p, 0.0,
                                     0.0, (lapack_int)(p - rank + 1), (lapack_int)p, 0.0, &found, w, z,
                                     (lapack_int)rank, isuppz);
    if (info != 0 || found != (lapack_int)rank) { r = KVTC_ERR_NUMERIC; goto done; }
    /* ascending -> descending; z is [p][rank] column j = eigenvector j */
    for (uint32_t j = 0; j < rank; j++) {
        uint32_t src = rank - 1 - j;
        eig[j] = (float)(w[src] > 0 ? w[src] : 0.0);
        for (uint32_t i = 0; i < p; i++) basis[(size_t)j * p + i] = (float)z[(size_t)i * rank + src];
    }
    r = KVTC_OK;
done:
    free(cov); free(blk); free(w); free(z); free(isuppz);
    return r;
}

/* Orthonormalize the columns of a [rows][cols] row-major matrix in place. */
static kvtc_result orthonormalize(float *a, uint32_t rows, uint32_t cols) {
    float *tau = malloc(sizeof(float) * cols);
    if (!tau) return KVTC_ERR_OUT_OF_MEMORY;
    lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, (lapack_int)rows, (lapack_int)cols, a, (lapack_int)cols, tau);
    if (info == 0)
        info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, (lapack_int)rows, (lapack_int)cols, (lapack_int)cols, a,
                              (lapack_int)cols, tau);
    free(tau);
    return info == 0 ? KVTC_OK : KVTC_ERR_NUMERIC;
}

kvtc_result pca_randomized(const float *x, uint64_t n, uint32_t p, uint32_t rank, uint32_t oversample,
                           uint32_t power_iters, uint64_t seed, float *basis, float *eig) {
    if (rank == 0) return KVTC_OK;
    if (rank > p || n == 0) return KVTC_ERR_INVALID_ARGUMENT;
    uint32_t l = rank + oversample;
    if (l > p) l = p;
    float *zm = malloc(sizeof(float) * (size_t)p * l);  /* [p][l] current subspace */
    float *y = malloc(sizeof(float) * (size_t)n * l);   /* [n][l] = X Z */
    float *t = malloc(sizeof(float) * (size_t)l * l);   /* Rayleigh quotient */
    double *td = malloc(sizeof(double) * (size_t)l * l);
    double *w = malloc(sizeof(double) * l);
    kvtc_result r = KVTC_ERR_OUT_OF_MEMORY;
    if (!zm || !y || !t || !td || !w) goto done;
    kvi_rng rng = {seed ^ 0x7063615f72616e64ull};
    for (size_t i = 0; i < (size_t)p * l; i++) zm[i] = (float)kvi_rng_gauss(&rng);
    if ((r = orthonormalize(zm, p, l))) goto done;
    for (uint32_t it = 0; it <= power_iters; it++) {
        /* Y = X Z; Z = X^T Y (one application of the covariance) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)l, (int)p, 1.0f, x, (int)p, zm,
                    (int)l, 0.0f, y, (int)l);
        if (it == power_iters) break;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)p, (int)l, (int)n, 1.0f, x, (int)p, y,
                    (int)l, 0.0f, zm, (int)l);
        if ((r = orthonormalize(zm, p, l))) goto done;
    }
    /* Rayleigh-Ritz: T = Y^T Y / n = Z^T C Z, T = U diag(w) U^T, V = Z U */
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)l, (int)n, 1.0f / (float)n, y, (int)l, 0.0f, t,
                (int)l);
    for (size_t i = 0; i < (size_t)l * l; i++) td[i] = t[i];
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int)l, td, (lapack_int)l, w) != 0) {
        r = KVTC_ERR_NUMERIC;
        goto done;
    }
    /* td columns = eigenvectors, ascending. V = Z U (one GEMM, reusing y's
     * memory: n >= l rows of l floats are free now); basis row j = column
     * l-1-j of V. */
    for (size_t i = 0; i < (size_t)l * l; i++) t[i] = (float)td[i];
    float *v = p <= n ? y : NULL;
    float *v_owned = v ? NULL : malloc(sizeof(float) * (size_t)p * l);
    if (!v) v = v_owned;
    if (!v) { r = KVTC_ERR_OUT_OF_MEMORY; goto done; }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)p, (int)l, (int)l, 1.0f, zm, (int)l, t, (int)l, 0.0f,
                v, (int)l);
    for (uint32_t j = 0; j < rank; j++) {
        uint32_t src = l - 1 - j;
        eig[j] = (float)(w[src] > 0 ? w[src] : 0.0);
        for (uint32_t i = 0; i < p; i++) basis[(size_t)j * p + i] = v[(size_t)i * l + src];
    }
    free(v_owned);
    r = KVTC_OK;
done:
    free(zm); free(y); free(t); free(td); free(w);
    return r;
}
