// projection.cuh - the PCA projections on cuBLAS: encode D = X B^T (rows
// onto the basis, fp32 out), decode X = D B (coefficients back to rows).
// Row-major [n][p] rows are column-major p x n matrices for cuBLAS.
#ifndef KVTC_CUDA_PROJECTION_CUH
#define KVTC_CUDA_PROJECTION_CUH

#include <cublas_v2.h>
#include <stdint.h>

#include "cuda/codec.cuh"
#include "cuda/quantize.cuh"

// D[n][rk] (fp32) = X[n][p] * B_s[rk][p]^T
cublasStatus_t project_rows(const kvtc_cuda_codec *c, int s, uint32_t rk, uint64_t n, const void *X, float *D);
// X[n][p] = D[n][rk] * B_s[rk][p] (X and D in the codec's element type)
cublasStatus_t reconstruct_rows(const kvtc_cuda_codec *c, int s, uint32_t rk, uint64_t n, const void *D, void *X);

// Columns [col0, col0 + ncols) of X (ld p) only: the rows of a layer range
// cost in proportion to the range (partial decode).
cublasStatus_t reconstruct_cols(const kvtc_cuda_codec *c, int s, uint32_t rk, uint64_t n, const void *D, void *X,
                                uint64_t col0, uint64_t ncols);

// The decoder's two steps, in the codec's precision: plain
// (KVTC_CUDA_PROJ_DEFAULT: D [n][rank] in the element type, cuBLAS) or
// KVTC_CUDA_PROJ_FP8 (D [n][round16(rank)] in e4m3, cuBLASLt).
// Coefficients of stream s for q.n tokens from the chunk payloads into D.
cudaError_t dequantize_coefs(const kvtc_cuda_codec *c, int s, void *D, const StreamPlan &sp, const QuantGeom &q,
                             const uint8_t *payload, cudaStream_t st);
// X rows [0, n), columns [col0, col0 + ncols) (ld p) = coefficient rows
// [row0, row0 + n) of D (rank rk) times basis s; zeros when rk is 0.
// lt_ws: cuBLASLt's workspace (the FP8 GEMM). Failures are recorded in c.
kvtc_result reconstruct_range(kvtc_cuda_codec *c, int s, uint32_t rk, const void *D, uint64_t row0, uint64_t n,
                              void *X, uint64_t col0, uint64_t ncols, void *lt_ws, size_t lt_ws_size, cudaStream_t st);

// The encoder's projection in the codec's precision: D (fp32, row length
// *ld) = rows X [n][p] (bf16/fp32) times basis s transposed, columns
// [0, rk). With KVTC_CUDA_PROJ_FP8_ENCODE X is cast per row into X8 ([n][p]
// e4m3) with scales rs ([n]), *row_scale = rs, which the quantizer must
// apply (launch_quantize), and *ld is rk rounded up to 16 (cuBLASLt's FP8
// kernels want 16-multiples); else *row_scale = NULL and *ld = rk.
kvtc_result project_coefs(kvtc_cuda_codec *c, int s, uint32_t rk, uint64_t n, const void *X, uint8_t *X8, float *rs,
                          float *D, uint32_t *ld, void *lt_ws, size_t lt_ws_size, cudaStream_t st,
                          const float **row_scale);

#endif
