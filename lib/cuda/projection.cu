// projection.cu - cuBLAS projections (projection.cuh).
#include "cuda/projection.cuh"

static cudaDataType_t elem_type(const kvtc_cuda_codec *c) { return c->esize == 2 ? CUDA_R_16BF : CUDA_R_32F; }
static cublasComputeType_t compute_type(const kvtc_cuda_codec *c) {
    return c->opt.gemm == KVTC_CUDA_GEMM_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

cublasStatus_t project_rows(const kvtc_cuda_codec *c, int s, uint32_t rk, uint64_t n, const void *X, float *D) {
    const float one = 1.0f, zero = 0.0f;
    return cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rk, (int)n, (int)c->p, &one, c->d_basis[s],
                        elem_type(c), (int)c->p, X, elem_type(c), (int)c->p, &zero, D, CUDA_R_32F, (int)rk,
                        compute_type(c), CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t reconstruct_rows(const kvtc_cuda_codec *c, int s, uint32_t rk, uint64_t n, const void *D, void *X) {
    const float one = 1.0f, zero = 0.0f;
    return cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)c->p, (int)n, (int)rk, &one, c->d_basis[s],
                        elem_type(c), (int)c->p, D, elem_type(c), (int)rk, &zero, X, elem_type(c), (int)c->p,
                        compute_type(c), CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t reconstruct_cols(const kvtc_cuda_codec *c, int s, uint32_t rk, uint64_t n, const void *D, void *X,
                                uint64_t col0, uint64_t ncols) {
    const float one = 1.0f, zero = 0.0f;
    const char *B = (const char *)c->d_basis[s] + col0 * c->esize;
    char *Xc = (char *)X + col0 * c->esize;
    return cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)ncols, (int)n, (int)rk, &one, B, elem_type(c),
                        (int)c->p, D, elem_type(c), (int)rk, &zero, Xc, elem_type(c), (int)c->p, compute_type(c),
                        CUBLAS_GEMM_DEFAULT);
}

// ---- the decoder's steps in either precision -----------------------------

static uint32_t round16(uint32_t r) { return (r + 15) / 16 * 16; }

cudaError_t dequantize_coefs(const kvtc_cuda_codec *c, int s, void *D, const StreamPlan &sp, const QuantGeom &q,
                             const uint8_t *payload, cudaStream_t st) {
    if (c->fp8) return launch_dequantize_e4m3((uint8_t *)D, round16(q.rank), c->d_fold[s], sp, q, payload, st);
    launch_dequantize(c->esize, D, sp, q, payload, st);
    return cudaSuccess;
}

// X (bf16, columns [col0, col0 + ncols), ld p) = scale8 * (B8^T D8): the
// "TN" layout cuBLASLt's FP8 kernels need, A = the transposed basis
// [p][ld8] read as a k x m column-major matrix, B = D8 [n][k], k = the
// rank rounded to 16 (D8's padding columns are zeros). Descriptors are made
// per call (host only, no synchronization: graph capture stays possible).
static cublasStatus_t reconstruct_fp8(const kvtc_cuda_codec *c, int s, uint32_t k, const uint8_t *D8, uint64_t n,
                                      void *X, uint64_t col0, uint64_t ncols, void *ws, size_t ws_size,
                                      cudaStream_t st) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    const uint8_t *A = c->d_basis8[s] + col0 * c->ld8[s];
    char *Xc = (char *)X + col0 * 2;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    uint64_t wsz = ws_size;
    float alpha = c->scale8[s], beta = 0.0f;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasStatus_t r = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (!r) r = cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, k, ncols, c->ld8[s]);
    if (!r) r = cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, k, n, round16(k));
    if (!r) r = cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, ncols, n, c->p);
    if (!r) r = cublasLtMatmulPreferenceCreate(&pref);
    if (!r) r = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz);
    if (!r) r = cublasLtMatmulAlgoGetHeuristic(c->lt, op, la, lb, lc, lc, pref, 1, &heur, &found);
    if (!r && found < 1) r = CUBLAS_STATUS_NOT_SUPPORTED;
    if (!r)
        r = cublasLtMatmul(c->lt, op, &alpha, A, la, D8, lb, &beta, Xc, lc, Xc, lc, &heur.algo, ws, ws_size, st);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    return r;
}

kvtc_result reconstruct_range(kvtc_cuda_codec *c, int s, uint32_t rk, const void *D, uint64_t row0, uint64_t n,
                              void *X, uint64_t col0, uint64_t ncols, void *lt_ws, size_t lt_ws_size, cudaStream_t st) {
    if (!rk) {
        CUDA_CHECK(c, cudaMemsetAsync(X, 0, n * c->p * c->esize, st));
        return KVTC_OK;
    }
    if (c->fp8) {
        uint32_t k = round16(rk);
        const uint8_t *D8 = (const uint8_t *)D + row0 * k;
        CUBLAS_CHECK(c, reconstruct_fp8(c, s, k, D8, n, X, col0, ncols, lt_ws, lt_ws_size, st));
        return KVTC_OK;
    }
    const uint8_t *Dr = (const uint8_t *)D + row0 * rk * c->esize;
    CUBLAS_CHECK(c, reconstruct_cols(c, s, rk, n, Dr, X, col0, ncols));
    return KVTC_OK;
}
