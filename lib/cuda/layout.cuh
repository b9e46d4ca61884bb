// layout.cuh - kvtc_cache_layout (include/kvtc.h) on the device: the
// per-tensor addressing the gather/scatter and raw-token kernels use to
// read and write engine memory in place (contiguous, strided, paged through
// a device block table), and the device-side validation of block tables.
#ifndef KVTC_CUDA_LAYOUT_CUH
#define KVTC_CUDA_LAYOUT_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "kvtc.h"

// Layers a layout may have on the GPU: the per-layer bases travel by value
// in the kernel parameters (no host->device copy, so calls stay
// graph-capturable).
#define KVTC_CUDA_MAX_LAYERS 256

struct DevTensor {
    uint64_t layer[KVTC_CUDA_MAX_LAYERS];  // device address of element (token 0, head 0, dim 0) of each layer
    int64_t token_stride, head_stride, dim_stride, block_stride;  // elements (kvtc_tensor_layout)
    const int32_t *table;  // device block table, NULL without one
    uint64_t n_pool;       // blocks in the pool (ids must be below)
    uint32_t block_size;   // 0: no block table
    uint32_t es;           // element bytes
    int vec;               // 1: rows are contiguous and 8-byte aligned (vectorized gather/scatter)
};

// The tensor `is_key` of l for layers [0, n_layers) of l's geometry. Reads
// the host array l->k/v.layers, never device memory.
void dev_tensor(const kvtc_cache_layout *l, int is_key, DevTensor *t);

// Host checks of a layout whose pointers are device pointers (the block
// table is validated on the device, launch_check_block_table): geometry,
// dtype, token count, pointers present, at most KVTC_CUDA_MAX_LAYERS
// layers (else KVTC_ERR_UNSUPPORTED). Only layers [lb, le) (le 0: all) need
// pointers; lb == le (an empty range, as on the CPU) is valid.
kvtc_result dev_layout_check(const kvtc_cache_layout *l, uint32_t lb, uint32_t le);

// Start of row (layer l, token tok, head h) in bytes, or NULL when the
// block table names a block outside the pool (the kernels then skip the
// row; launch_check_block_table reports it).
static __device__ __forceinline__ char *tensor_row(const DevTensor &t, uint32_t l, uint64_t tok, uint32_t h) {
    int64_t slot;
    if (t.block_size) {
        int64_t blk = t.table[tok / t.block_size];
        if (blk < 0 || (uint64_t)blk >= t.n_pool) return NULL;
        slot = blk * t.block_stride + (int64_t)(tok % t.block_size) * t.token_stride;
    } else {
        slot = (int64_t)tok * t.token_stride;
    }
    return (char *)t.layer[l] + (int64_t)t.es * (slot + (int64_t)h * t.head_stride);
}

// Device scratch of the block-table check: a bitmap of 2^25 block ids.
#define KVTC_CUDA_BLOCK_CHECK_BYTES (4u << 20)

// KVTC_ERR_BAD_BLOCK_TABLE into *status when one of the ceil(n_tokens /
// block_size) entries is outside [0, n_pool) or repeats an earlier one.
// O(entries) work per window of 2^25 ids: a bitmap over the ids in
// `scratch` (KVTC_CUDA_BLOCK_CHECK_BYTES of device memory that nothing else
// in flight uses; stream-ordered, graph-capturable: a memset and a kernel
// per window). A pool of up to 2^25 blocks takes one window; a larger one
// (entries are int32, so at most 2^31 ids) up to 64, whatever n_pool says.
// It used to compare every pair of entries: 128K entries stalled.
// Returns a memset's error; launch errors are left to cudaGetLastError.
cudaError_t launch_check_block_table(const kvtc_cache_layout *l, void *scratch, uint32_t *status, cudaStream_t st);

#endif
