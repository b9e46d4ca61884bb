// crc.cu - piecewise CRC-32 of device regions (crc.cuh).
#include <string.h>

#include "cuda/common.cuh"
#include "cuda/crc.cuh"
#include "util/bitexact.h"

void crc_device_table(uint32_t t[CRC_DEVICE_TABLE_WORDS]) {
    for (uint32_t i = 0; i < 256; i++) t[i] = kvi_crc32_table_entry(i);
    kvi_crc32_x2n_table(t + 256);
}

Regions section_regions(const container_header &h, uint32_t *pieces) {
    static const int secs[5] = {SEC_POSITIONS, SEC_TOKEN_IDS, SEC_RAW_K, SEC_RAW_V, SEC_CHUNK_INDEX};
    Regions sr;
    memset(&sr, 0, sizeof sr);
    sr.n = 5;
    uint64_t maxsec = 0;
    for (int i = 0; i < 5; i++) {
        sr.off[i] = h.sections[secs[i]].offset;
        sr.size[i] = h.sections[secs[i]].size;
        sr.want[i] = h.sections[secs[i]].crc32;
        maxsec = sr.size[i] > maxsec ? sr.size[i] : maxsec;
    }
    *pieces = (uint32_t)(maxsec / CRC_PIECE + 1);
    return sr;
}

// ---- pieces -------------------------------------------------------------------

// CRC of piece k of the region [off, off + size) of base; false past its end.
static __device__ __forceinline__ bool crc_of_piece(const uint8_t *base, uint64_t off, uint64_t size, uint64_t k,
                                                 const uint32_t *t, uint32_t *crc) {
    uint64_t a = k * CRC_PIECE;
    if (a >= size) return false;
    uint64_t e = a + CRC_PIECE < size ? a + CRC_PIECE : size;
    const uint8_t *p = base + off;
    uint32_t c = 0xffffffffu;
    for (uint64_t i = a; i < e; i++) c = t[(c ^ p[i]) & 0xff] ^ (c >> 8);
    *crc = ~c;
    return true;
}

// grid (ceil(max_pieces / block), regions): region blockIdx.y of regs
__global__ void crc_pieces_regions_k(const uint8_t *base, Regions regs, uint32_t max_pieces, const uint32_t *table,
                                     uint32_t *piece_crc) {
    __shared__ uint32_t t[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) t[i] = table[i];
    __syncthreads();
    uint32_t r = blockIdx.y;
    uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= max_pieces) return;
    uint32_t crc;
    if (crc_of_piece(base, regs.off[r], regs.size[r], k, t, &crc)) piece_crc[(uint64_t)r * max_pieces + k] = crc;
}

// grid (ceil(max_pieces / block), chunks): chunk blockIdx.y at data + chunk_off[c]
__global__ void crc_pieces_chunks_k(const uint8_t *data, const uint64_t *chunk_off, const uint32_t *chunk_size,
                                    uint32_t max_pieces, const uint32_t *table, uint32_t *piece_crc) {
    __shared__ uint32_t t[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) t[i] = table[i];
    __syncthreads();
    uint32_t r = blockIdx.y;
    uint64_t k = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= max_pieces) return;
    uint32_t crc;
    if (crc_of_piece(data, chunk_off[r], chunk_size[r], k, t, &crc)) piece_crc[(uint64_t)r * max_pieces + k] = crc;
}

// ---- combine ------------------------------------------------------------------

// Combine the pieces of region r (size bytes): one block of 256 threads;
// each thread folds a run of pieces, then a tree in shared memory. The
// result is valid in thread 0 only. Returns false (all threads) when the
// region has more than max_pieces pieces.
static __device__ bool combine_pieces(uint32_t r, uint64_t size, uint32_t max_pieces, const uint32_t *x2n,
                                      const uint32_t *piece_crc, uint32_t *out) {
    __shared__ uint32_t sc[256];
    __shared__ uint64_t sl[256];
    uint32_t tid = threadIdx.x;
    uint64_t np = (size + CRC_PIECE - 1) / CRC_PIECE;
    if (np > max_pieces) return false;
    uint32_t full = kvi_crc32_x2nmodp(x2n, CRC_PIECE, 3);
    uint64_t per = (np + 255) / 256, k0 = tid * per, k1 = k0 + per < np ? k0 + per : np;
    uint32_t crc = 0;  // crc of the empty string
    uint64_t len = 0;
    for (uint64_t k = k0; k < k1; k++) {
        uint64_t pl = size - k * CRC_PIECE < CRC_PIECE ? size - k * CRC_PIECE : CRC_PIECE;
        uint32_t op = pl == CRC_PIECE ? full : kvi_crc32_x2nmodp(x2n, pl, 3);
        crc = kvi_crc32_multmodp(op, crc) ^ piece_crc[(uint64_t)r * max_pieces + k];
        len += pl;
    }
    sc[tid] = crc;
    sl[tid] = len;
    __syncthreads();
    for (uint32_t s = 1; s < 256; s <<= 1) {
        if ((tid & (2 * s - 1)) == 0 && tid + s < 256 && sl[tid + s]) {
            sc[tid] = kvi_crc32_multmodp(kvi_crc32_x2nmodp(x2n, sl[tid + s], 3), sc[tid]) ^ sc[tid + s];
            sl[tid] += sl[tid + s];
        }
        __syncthreads();
    }
    *out = sc[0];
    return true;
}

// block 256, grid regs.n
__global__ void crc_regions_store_k(Regions regs, uint32_t max_pieces, const uint32_t *x2n, const uint32_t *piece_crc,
                                    uint32_t *out_crc) {
    uint32_t r = blockIdx.x, crc;
    if (r >= regs.n) return;
    if (!combine_pieces(r, regs.size[r], max_pieces, x2n, piece_crc, &crc)) return;
    if (threadIdx.x == 0) out_crc[r] = crc;
}

__global__ void crc_regions_check_k(Regions regs, uint32_t max_pieces, const uint32_t *x2n, const uint32_t *piece_crc,
                                    uint32_t *status) {
    uint32_t r = blockIdx.x, crc;
    if (r >= regs.n) return;
    if (!combine_pieces(r, regs.size[r], max_pieces, x2n, piece_crc, &crc)) {
        if (threadIdx.x == 0) set_status(status, KVTC_ERR_UNSUPPORTED);
        return;
    }
    if (threadIdx.x == 0 && crc != regs.want[r]) set_status(status, KVTC_ERR_CORRUPT);
}

// block 256, grid C: CRC of chunk r -> its chunk index entry (docs/FORMAT.md)
__global__ void crc_chunks_index_k(const uint32_t *chunk_size, uint32_t C, uint32_t max_pieces, const uint32_t *x2n,
                                   const uint32_t *piece_crc, ChunkIndexArgs ix) {
    uint32_t r = blockIdx.x, crc;
    if (r >= C) return;
    uint64_t size = chunk_size[r];
    if (!combine_pieces(r, size, max_pieces, x2n, piece_crc, &crc)) return;
    if (threadIdx.x) return;
    uint8_t *e = ix.entries + (uint64_t)r * CONTAINER_CHUNK_ENTRY;
    uint64_t first = (uint64_t)r * ix.chunk_tokens;
    uint32_t n = (uint32_t)(ix.coded - first < ix.chunk_tokens ? ix.coded - first : ix.chunk_tokens);
    st_u64(e, ix.chunk_off[r]);
    st_u32(e + 8, (uint32_t)size);
    st_u32(e + 12, crc);
    st_u32(e + 16, n);
    st_u32(e + 20, n == ix.chunk_tokens ? ix.pay_full : ix.pay_last);
}

__global__ void crc_chunks_check_k(const uint32_t *chunk_size, uint32_t C, uint32_t max_pieces, const uint32_t *x2n,
                                   const uint32_t *piece_crc, const uint32_t *want, uint32_t *status) {
    uint32_t r = blockIdx.x, crc;
    if (r >= C) return;
    if (!combine_pieces(r, chunk_size[r], max_pieces, x2n, piece_crc, &crc)) {
        if (threadIdx.x == 0) set_status(status, KVTC_ERR_UNSUPPORTED);
        return;
    }
    if (threadIdx.x == 0 && crc != want[r]) set_status(status, KVTC_ERR_CORRUPT);
}

// ---- launchers ----------------------------------------------------------------

void crc_regions_store(const uint8_t *base, const Regions &regs, uint32_t max_pieces, const uint32_t *table,
                       uint32_t *pieces, uint32_t *out_crc, cudaStream_t st) {
    crc_pieces_regions_k<<<dim3((max_pieces + 127) / 128, regs.n), 128, 0, st>>>(base, regs, max_pieces, table, pieces);
    crc_regions_store_k<<<regs.n, 256, 0, st>>>(regs, max_pieces, table + 256, pieces, out_crc);
}

void crc_regions_check(const uint8_t *base, const Regions &regs, uint32_t max_pieces, const uint32_t *table,
                       uint32_t *pieces, uint32_t *status, cudaStream_t st) {
    crc_pieces_regions_k<<<dim3((max_pieces + 127) / 128, regs.n), 128, 0, st>>>(base, regs, max_pieces, table, pieces);
    crc_regions_check_k<<<regs.n, 256, 0, st>>>(regs, max_pieces, table + 256, pieces, status);
}

void crc_chunks_index(const uint8_t *data, const uint32_t *chunk_size, uint32_t C, uint32_t max_pieces,
                      const uint32_t *table, uint32_t *pieces, const ChunkIndexArgs &ix, cudaStream_t st) {
    crc_pieces_chunks_k<<<dim3((max_pieces + 127) / 128, C), 128, 0, st>>>(data, ix.chunk_off, chunk_size, max_pieces,
                                                                            table, pieces);
    crc_chunks_index_k<<<C, 256, 0, st>>>(chunk_size, C, max_pieces, table + 256, pieces, ix);
}

void crc_chunks_check(const uint8_t *data, const uint64_t *chunk_off, const uint32_t *chunk_size, uint32_t C,
                      uint32_t max_pieces, const uint32_t *table, uint32_t *pieces, const uint32_t *want,
                      uint32_t *status, cudaStream_t st) {
    crc_pieces_chunks_k<<<dim3((max_pieces + 127) / 128, C), 128, 0, st>>>(data, chunk_off, chunk_size, max_pieces,
                                                                            table, pieces);
    crc_chunks_check_k<<<C, 256, 0, st>>>(chunk_size, C, max_pieces, table + 256, pieces, want, status);
}
