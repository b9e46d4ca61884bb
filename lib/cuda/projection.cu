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
    if (c->fp8_dec) return launch_dequantize_e4m3((uint8_t *)D, round16(q.rank), c->d_fold[s], sp, q, payload, st);
    launch_dequantize(c->esize, D, sp, q, payload, st);
    return cudaSuccess;
}

// The alignment of p, as cuBLASLt's preferences take it: its algorithms
// assume 256 bytes unless told less, and a decode's coefficient rows start
// at a token offset (16-byte multiples only).
static uint32_t align_of(const void *p) {
    uint32_t al = 256;
    while (al > 1 && (uintptr_t)p % al) al >>= 1;
    return al;
}

// out (m x n, column-major, ld ldc, type ctype) = alpha * A^T B with e4m3
// A (k x m, ld lda) and B (k x n, ld ldb): the "TN" layout cuBLASLt's FP8
// kernels need, fp32 accumulation. Descriptors are made per call (host
// only, no synchronization: graph capture stays possible).
static cublasStatus_t gemm_fp8_tn(const kvtc_cuda_codec *c, uint64_t m, uint64_t n, uint64_t k, const void *A,
                                  uint64_t lda, const void *B, uint64_t ldb, cudaDataType_t ctype, void *out,
                                  uint64_t ldc, float alpha, void *ws, size_t ws_size, cudaStream_t st) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    uint64_t wsz = ws_size;
    float beta = 0.0f;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasStatus_t r = cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    const int8_t fast = (int8_t)c->fp8_fast_accum;
    if (!r) r = cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof fast);
    if (!r) r = cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, k, m, (int64_t)lda);
    if (!r) r = cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, k, n, (int64_t)ldb);
    if (!r) r = cublasLtMatrixLayoutCreate(&lc, ctype, m, n, (int64_t)ldc);
    if (!r) r = cublasLtMatmulPreferenceCreate(&pref);
    if (!r) r = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz);
    uint32_t aa = align_of(A), ab = align_of(B), ac = align_of(out);
    if (!r) r = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
    if (!r) r = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
    if (!r) r = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac);
    if (!r) r = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac);
    if (!r) r = cublasLtMatmulAlgoGetHeuristic(c->lt, op, la, lb, lc, lc, pref, 1, &heur, &found);
    if (!r && found < 1) r = CUBLAS_STATUS_NOT_SUPPORTED;
    if (!r) r = cublasLtMatmul(c->lt, op, &alpha, A, la, B, lb, &beta, out, lc, out, lc, &heur.algo, ws, ws_size, st);
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
    if (c->fp8_dec) {
        uint32_t k = round16(rk);
        // X (bf16, columns [col0, col0 + ncols), ld p) = scale8 * (B8t^T D8):
        // A = the transposed basis from coordinate col0, B = D8 [n][k]
        // (its padding columns are zeros)
        const uint8_t *D8 = (const uint8_t *)D + row0 * k, *A = c->d_basis8[s] + col0 * c->ld8[s];
        CUBLAS_CHECK(c, gemm_fp8_tn(c, ncols, n, k, A, c->ld8[s], D8, k, CUDA_R_16BF, (char *)X + col0 * 2, c->p,
                                    c->scale8[s], lt_ws, lt_ws_size, st));
        return KVTC_OK;
    }
    const uint8_t *Dr = (const uint8_t *)D + row0 * rk * c->esize;
    CUBLAS_CHECK(c, reconstruct_cols(c, s, rk, n, Dr, X, col0, ncols));
    return KVTC_OK;
}

kvtc_result project_coefs(kvtc_cuda_codec *c, int s, uint32_t rk, uint64_t n, const void *X, uint8_t *X8, float *rs,
                          float *D, uint32_t *ld, void *lt_ws, size_t lt_ws_size, cudaStream_t st,
                          const float **row_scale) {
    *row_scale = NULL;
    *ld = rk;
    if (!rk || !n) return KVTC_OK;
    if (!c->fp8_enc) {
        CUBLAS_CHECK(c, project_rows(c, s, rk, n, X, D));
        return KVTC_OK;
    }
    // D (fp32 [n][m]) = scale8e * (B8 X8^T), m = rk rounded up to 16 (the
    // basis' zero rows give zero columns past rk): A = the basis rows [m][p]
    // read as p x m, B = X8 [n][p]; the quantizer multiplies row t by rs[t]
    uint32_t m = round16(rk);
    launch_cast_rows_e4m3(X, n, c->p, X8, rs, st);
    LAUNCH_CHECK(c, "cast rows to e4m3");
    CUBLAS_CHECK(c, gemm_fp8_tn(c, m, n, c->p, c->d_basis8e[s], c->p, X8, c->p, CUDA_R_32F, D, m, c->scale8e[s], lt_ws,
                                lt_ws_size, st));
    *ld = m;
    *row_scale = rs;
    return KVTC_OK;
}
