// layout.cu - cache layouts on the device (layout.cuh).
#include <string.h>

#include "cuda/common.cuh"
#include "cuda/layout.cuh"

extern "C" {
#include "util/cache.h"
#include "util/layout.h"
}

void dev_tensor(const kvtc_cache_layout *l, int is_key, DevTensor *t) {
    const kvtc_tensor_layout *s = is_key ? &l->k : &l->v;
    memset(t, 0, sizeof *t);
    uint32_t es = (uint32_t)kvtc_dtype_size(l->dtype);
    uint32_t L = l->geometry.n_layers < KVTC_CUDA_MAX_LAYERS ? l->geometry.n_layers : KVTC_CUDA_MAX_LAYERS;
    int aligned = 1;
    for (uint32_t i = 0; i < L; i++) {
        uint64_t a = s->layers ? (uint64_t)(uintptr_t)s->layers[i]
                               : (uint64_t)(uintptr_t)s->base + (uint64_t)((int64_t)es * (int64_t)i * s->layer_stride);
        t->layer[i] = a;
        aligned &= a % 8 == 0;
    }
    t->token_stride = s->token_stride;
    t->head_stride = s->head_stride;
    t->dim_stride = s->dim_stride;
    t->block_stride = s->block_stride;
    t->block_size = l->block_size;
    t->table = l->block_size ? l->block_table : NULL;
    t->n_pool = l->n_pool_blocks;
    t->es = es;
    // 8-byte vector accesses at element offsets that are multiples of 4
    t->vec = aligned && s->dim_stride == 1 && s->token_stride % 4 == 0 && s->head_stride % 4 == 0 &&
             (!l->block_size || s->block_stride % 4 == 0);
}

kvtc_result dev_layout_check(const kvtc_cache_layout *l, uint32_t lb, uint32_t le) {
    if (!l) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = kvi_geometry_check(&l->geometry);
    if (r) return r;
    if (!kvtc_dtype_size(l->dtype)) return KVTC_ERR_INVALID_ARGUMENT;
    if (l->n_tokens > KVTC_MAX_TOKENS) return KVTC_ERR_TOO_LARGE;
    if (l->geometry.n_layers > KVTC_CUDA_MAX_LAYERS) return KVTC_ERR_UNSUPPORTED;
    if (le == 0) le = l->geometry.n_layers;
    if (lb > le || le > l->geometry.n_layers) return KVTC_ERR_INVALID_ARGUMENT;  // lb == le: an empty range
    if (l->n_tokens == 0) return KVTC_OK;
    for (int s = 0; s < 2; s++) {
        const kvtc_tensor_layout *t = s ? &l->v : &l->k;
        if (t->layers) {
            for (uint32_t i = lb; i < le; i++)
                if (!t->layers[i]) return KVTC_ERR_INVALID_ARGUMENT;
        } else if (!t->base) {
            return KVTC_ERR_INVALID_ARGUMENT;
        }
    }
    if (l->block_size && (!l->block_table || l->n_pool_blocks == 0)) return KVTC_ERR_INVALID_ARGUMENT;
    // as on the CPU: strides whose offsets overflow int64 address nothing
    // (dev_tensor computes the bases of all layers, hence 0..n_layers)
    if (!kvi_layout_offsets_fit(l, 0, l->geometry.n_layers)) return KVTC_ERR_INVALID_ARGUMENT;
    return KVTC_OK;
}

// One window of the duplicate check: ids [lo, lo + n_ids) as bits of
// `bits` (zeroed by the caller); an entry whose bit is already set repeats
// an earlier one (whichever of the two threads comes second reports it).
// Ids outside [0, n_pool) are reported in every window (harmless: the
// status keeps the first code).
__global__ void check_block_table_k(const int32_t *table, uint64_t n, uint64_t n_pool, uint32_t lo, uint32_t n_ids,
                                    uint32_t *bits, uint32_t *status) {
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (uint64_t)gridDim.x * blockDim.x) {
        int32_t b = table[i];
        if (b < 0 || (uint64_t)b >= n_pool) {
            set_status(status, KVTC_ERR_BAD_BLOCK_TABLE);
            continue;
        }
        uint32_t off = (uint32_t)b - lo;
        if ((uint32_t)b < lo || off >= n_ids) continue;
        uint32_t m = 1u << (off & 31);
        if (atomicOr(bits + (off >> 5), m) & m) set_status(status, KVTC_ERR_BAD_BLOCK_TABLE);
    }
}

cudaError_t launch_check_block_table(const kvtc_cache_layout *l, void *scratch, uint32_t *status, cudaStream_t st) {
    if (!l->block_size || !l->n_tokens) return cudaSuccess;
    uint64_t n = (l->n_tokens + l->block_size - 1) / l->block_size;
    uint64_t blocks = (n + 255) / 256;
    unsigned grid = (unsigned)(blocks < 4096 ? blocks : 4096);  // grid-stride beyond
    // valid ids are [0, min(n_pool, 2^31)) (entries are int32), checked
    // KVTC_CUDA_BLOCK_CHECK_BYTES * 8 ids at a time: one window for any
    // pool below 2^25 blocks, at most 64 for a hostile n_pool
    uint64_t ids = l->n_pool_blocks < (1ull << 31) ? l->n_pool_blocks : (1ull << 31);
    const uint64_t window = (uint64_t)KVTC_CUDA_BLOCK_CHECK_BYTES * 8;
    for (uint64_t lo = 0; lo < ids; lo += window) {
        uint64_t w = ids - lo < window ? ids - lo : window;
        cudaError_t e = cudaMemsetAsync(scratch, 0, (size_t)((w + 31) / 32 * 4), st);
        if (e != cudaSuccess) return e;
        check_block_table_k<<<grid, 256, 0, st>>>(l->block_table, n, l->n_pool_blocks, (uint32_t)lo, (uint32_t)w,
                                                  (uint32_t *)scratch, status);
    }
    return cudaSuccess;  // launch errors: cudaGetLastError (LAUNCH_CHECK)
}
