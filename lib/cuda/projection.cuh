// projection.cuh - the PCA projections on cuBLAS: encode D = X B^T (rows
// onto the basis, fp32 out), decode X = D B (coefficients back to rows).
// Row-major [n][p] rows are column-major p x n matrices for cuBLAS.
#ifndef KVTC_CUDA_PROJECTION_CUH
#define KVTC_CUDA_PROJECTION_CUH

#include <cublas_v2.h>
#include <stdint.h>

#include "cuda/codec.cuh"

// D[n][rk] (fp32) = X[n][p] * B_s[rk][p]^T
cublasStatus_t project_rows(const kvtc_cuda_codec *c, int s, uint32_t rk, uint64_t n, const void *X, float *D);
// X[n][p] = D[n][rk] * B_s[rk][p] (X and D in the codec's element type)
cublasStatus_t reconstruct_rows(const kvtc_cuda_codec *c, int s, uint32_t rk, uint64_t n, const void *D, void *X);

// Columns [col0, col0 + ncols) of X (ld p) only: the rows of a layer range
// cost in proportion to the range (partial decode).
cublasStatus_t reconstruct_cols(const kvtc_cuda_codec *c, int s, uint32_t rk, uint64_t n, const void *D, void *X,
                                uint64_t col0, uint64_t ncols);

#endif
