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
