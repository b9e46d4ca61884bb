// fp8_basis.cu - the e4m3 basis operands on the device (fp8_basis.h).
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdlib.h>

#include "cuda/fp8_basis.h"

extern "C" {
#include "transform/fp8.h"
}

// Rows per upload: bounds the fp32 staging buffer (40960-wide rows: 80 MB).
#define FP8_STAGE_ROWS 512u
#define TILE 32u

static __device__ __forceinline__ uint8_t e4m3(float v) { return __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3); }

// bt[i * ld + j0 + jj] = e4m3(fold[jj] * rows[jj][i] / sc) for jj < nr, i < p:
// a 32 x 32 tile through shared memory, so both the row reads and the
// transposed writes are coalesced. block (32, 8), grid (ceil(p/32), ceil(nr/32)).
__global__ void basis_t_k(const float *rows, const float *fold, uint32_t nr, uint32_t p, uint32_t j0, uint32_t ld,
                          float sc, uint8_t *bt) {
    __shared__ uint8_t tile[TILE][TILE + 4];
    uint32_t i0 = blockIdx.x * TILE, jb = blockIdx.y * TILE;
    for (uint32_t y = threadIdx.y; y < TILE; y += blockDim.y) {
        uint32_t jj = jb + y, i = i0 + threadIdx.x;
        if (jj < nr && i < p) tile[y][threadIdx.x] = e4m3(__fdiv_rn(__fmul_rn(fold[jj], rows[(uint64_t)jj * p + i]), sc));
    }
    __syncthreads();
    for (uint32_t y = threadIdx.y; y < TILE; y += blockDim.y) {
        uint32_t i = i0 + y, jj = jb + threadIdx.x;
        if (i < p && jj < nr) bt[(uint64_t)i * ld + j0 + jj] = tile[threadIdx.x][y];
    }
}

// b8[k] = e4m3(rows[k] / sc), k < n
__global__ void basis_rows_k(const float *rows, uint64_t n, float sc, uint8_t *b8) {
    for (uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += (uint64_t)gridDim.x * blockDim.x)
        b8[k] = e4m3(__fdiv_rn(rows[k], sc));
}

// Stage rows [j0, j0 + nr) of s in *d_rows (allocated at the first call).
static cudaError_t stage_rows(const basis_stream *s, uint32_t j0, uint32_t nr, float **d_rows) {
    cudaError_t e = cudaSuccess;
    if (!*d_rows) e = cudaMalloc(d_rows, sizeof(float) * FP8_STAGE_ROWS * s->p);
    if (e == cudaSuccess)
        e = cudaMemcpy(*d_rows, s->basis + (uint64_t)j0 * s->p, sizeof(float) * nr * s->p, cudaMemcpyHostToDevice);
    return e;
}

extern "C" kvtc_result kvi_cuda_fp8_basis_t(const basis_stream *s, uint32_t rank, uint32_t ld, uint8_t *d_bt,
                                            float *scale) {
    if (rank > s->rank || ld < rank) return KVTC_ERR_INVALID_ARGUMENT;
    float sc = kvi_fp8_basis_t_scale(s, rank);
    *scale = sc;
    float *fold = (float *)malloc(sizeof(float) * (rank ? rank : 1));
    if (!fold) return KVTC_ERR_OUT_OF_MEMORY;
    for (uint32_t j = 0; j < rank; j++) fold[j] = kvi_fp8_fold(s, j);
    float *d_fold = NULL, *d_rows = NULL;
    cudaError_t e = cudaMemset(d_bt, 0, (size_t)s->p * ld);  // the columns [rank, ld)
    if (e == cudaSuccess) e = cudaMalloc(&d_fold, sizeof(float) * (rank ? rank : 1));
    if (e == cudaSuccess && rank) e = cudaMemcpy(d_fold, fold, sizeof(float) * rank, cudaMemcpyHostToDevice);
    for (uint32_t j0 = 0; j0 < rank && e == cudaSuccess; j0 += FP8_STAGE_ROWS) {
        uint32_t nr = rank - j0 < FP8_STAGE_ROWS ? rank - j0 : FP8_STAGE_ROWS;
        e = stage_rows(s, j0, nr, &d_rows);
        if (e != cudaSuccess) break;
        dim3 grd((s->p + TILE - 1) / TILE, (nr + TILE - 1) / TILE);
        basis_t_k<<<grd, dim3(TILE, 8)>>>(d_rows, d_fold + j0, nr, s->p, j0, ld, sc, d_bt);
        e = cudaPeekAtLastError();  // left set: the codec's message reads it (codec.cu upload_fp8_operands)
    }
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    cudaFree(d_rows);
    cudaFree(d_fold);
    free(fold);
    return e == cudaSuccess ? KVTC_OK : KVTC_ERR_CUDA;
}

extern "C" kvtc_result kvi_cuda_fp8_basis_rows(const basis_stream *s, uint32_t rank, uint8_t *d_b8, float *scale) {
    if (rank > s->rank) return KVTC_ERR_INVALID_ARGUMENT;
    float sc = kvi_fp8_basis_rows_scale(s, rank);
    *scale = sc;
    float *d_rows = NULL;
    cudaError_t e = cudaSuccess;
    for (uint32_t j0 = 0; j0 < rank && e == cudaSuccess; j0 += FP8_STAGE_ROWS) {
        uint32_t nr = rank - j0 < FP8_STAGE_ROWS ? rank - j0 : FP8_STAGE_ROWS;
        e = stage_rows(s, j0, nr, &d_rows);
        if (e != cudaSuccess) break;
        uint64_t n = (uint64_t)nr * s->p;
        basis_rows_k<<<(unsigned)((n + 255) / 256 < 65536 ? (n + 255) / 256 : 65536), 256>>>(
            d_rows, n, sc, d_b8 + (uint64_t)j0 * s->p);
        e = cudaPeekAtLastError();  // left set for the codec's message, as above
    }
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    cudaFree(d_rows);
    return e == cudaSuccess ? KVTC_OK : KVTC_ERR_CUDA;
}
