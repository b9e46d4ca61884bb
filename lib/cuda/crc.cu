// crc.cu - piecewise CRC-32 of device regions (crc.cuh).
#include <string.h>

#include "cuda/common.cuh"
#include "cuda/crc.cuh"
#include "cuda/crc_host.h"
#include "util/bitexact.h"

void crc_device_table(uint32_t t[CRC_DEVICE_TABLE_WORDS]) {
    for (uint32_t i = 0; i < 256; i++) t[i] = kvi_crc32_table_entry(i);
    kvi_crc32_x2n_table(t + 256);
    // slicing tables: entry i of table k is the CRC register after byte i
    // followed by k zero bytes (zlib's crc_table[k]), k = 1..15
    uint32_t *sl = t + CRC_SLICE_TABLES;
    for (uint32_t k = 1; k < 16; k++)
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t prev = k == 1 ? t[i] : sl[(k - 2) * 256 + i];
            sl[(k - 1) * 256 + i] = (prev >> 8) ^ t[prev & 0xff];
        }
    // the operators of a full piece's lanes (crc_piece_warp): x^(8 * 128 j),
    // x^(8 m), and the CRC of CRC_PIECE zero bytes
    uint32_t *ops = t + CRC_LANE_OPS;
    for (uint32_t j = 0; j < 32; j++) ops[j] = kvi_crc32_x2nmodp(t + 256, 128u * j, 3);
    for (uint32_t m = 0; m < 16; m++) ops[32 + m] = kvi_crc32_x2nmodp(t + 256, m, 3);
    ops[48] = ~kvi_crc32_multmodp(kvi_crc32_x2nmodp(t + 256, CRC_PIECE, 3), 0xffffffffu);
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
//
// A warp per CRC_PIECE-byte piece: lane i runs the CRC register over its 128
// bytes (split at 16-byte aligned addresses, so the loads are 16 bytes
// wide) from 0, slicing by 16 with the tables in shared memory. The CRC's
// register is linear in the message once its initial value and final
// inversion are set aside, so the piece's CRC is the XOR over lanes of each
// lane's register shifted past the bytes after it (one GF(2) product by a
// tabulated operator), plus the CRC of as many zero bytes: one product per
// lane and five XOR shuffles. One thread per piece reading a byte at a time
// (the first version) ran at ~76 GB/s on an H200: every load was one byte
// and the threads of a warp read 4 KB apart.

#define CRC_WARPS 8  // warps per block of the piece kernels
static_assert(CRC_PIECE == 32 * 128, "a piece is 32 lanes of 128 bytes");

struct CrcTables {
    uint32_t t[16][256];  // t[0]: the byte table; t[k]: k zero bytes after it
    uint32_t x2n[32];
    uint32_t shift128[32];  // x^(8 * 128 j): past j lanes of 128 bytes
    uint32_t shift1[16];    // x^(8 m): past m < 16 bytes
    uint32_t zeros_piece;   // CRC of CRC_PIECE zero bytes
};

static __device__ void crc_load_tables(const uint32_t *table, CrcTables *s) {
    for (uint32_t i = threadIdx.x; i < 256; i += blockDim.x) s->t[0][i] = table[i];
    for (uint32_t i = threadIdx.x; i < 15 * 256; i += blockDim.x) s->t[1 + i / 256][i % 256] = table[CRC_SLICE_TABLES + i];
    for (uint32_t i = threadIdx.x; i < 32; i += blockDim.x) {
        s->x2n[i] = table[256 + i];
        s->shift128[i] = table[CRC_LANE_OPS + i];
        if (i < 16) s->shift1[i] = table[CRC_LANE_OPS + 32 + i];
    }
    if (threadIdx.x == 0) s->zeros_piece = table[CRC_LANE_OPS + 48];
    __syncthreads();
}

// The CRC register over the bytes [p, e) from 0, without the final
// inversion: single bytes up to a 16-byte boundary, then 16 at a time.
static __device__ __forceinline__ uint32_t crc_register(const uint8_t *p, const uint8_t *e, const CrcTables &s) {
    uint32_t c = 0;
    while (p < e && ((uintptr_t)p & 15)) c = s.t[0][(c ^ __ldg(p++)) & 0xff] ^ (c >> 8);
#pragma unroll 8  // a lane's 128 bytes: eight independent 16-byte loads in flight
    for (; e - p >= 16; p += 16) {
        uint4 v = __ldg((const uint4 *)p);
        uint32_t x = v.x ^ c;
        c = s.t[15][x & 0xff] ^ s.t[14][(x >> 8) & 0xff] ^ s.t[13][(x >> 16) & 0xff] ^ s.t[12][x >> 24] ^
            s.t[11][v.y & 0xff] ^ s.t[10][(v.y >> 8) & 0xff] ^ s.t[9][(v.y >> 16) & 0xff] ^ s.t[8][v.y >> 24] ^
            s.t[7][v.z & 0xff] ^ s.t[6][(v.z >> 8) & 0xff] ^ s.t[5][(v.z >> 16) & 0xff] ^ s.t[4][v.z >> 24] ^
            s.t[3][v.w & 0xff] ^ s.t[2][(v.w >> 8) & 0xff] ^ s.t[1][(v.w >> 16) & 0xff] ^ s.t[0][v.w >> 24];
    }
    while (p < e) c = s.t[0][(c ^ __ldg(p++)) & 0xff] ^ (c >> 8);
    return c;
}

// CRC of piece k of the region [p, p + size) (warp-uniform arguments);
// false (all lanes) past its end, else true with the CRC in every lane.
static __device__ bool crc_piece_warp(const uint8_t *p, uint64_t size, uint64_t k, const CrcTables &s,
                                      uint32_t *crc) {
    uint64_t a = k * CRC_PIECE;
    if (a >= size) return false;
    uint64_t e = a + CRC_PIECE < size ? a + CRC_PIECE : size;
    const uint8_t *A = p + a, *E = p + e;
    uint32_t m = (uint32_t)((uintptr_t)A & 15);
    const uint8_t *A0 = A - m;  // lane boundaries at aligned addresses
    uint32_t lane = threadIdx.x & 31;
    const uint8_t *ls = A0 + 128 * lane, *le = lane == 31 ? E : A0 + 128 * (lane + 1);
    if (ls < A) ls = A;
    if (le > E) le = E;
    uint32_t r = ls < le ? crc_register(ls, le, s) : 0, u;
    bool full = e - a == CRC_PIECE;
    // lane i < 31 of a full piece ends 128 (31 - i) + m bytes before E: its
    // shift is x^(8 * 128 (31 - i)), then x^(8 m) for their sum; lane 31 ends at E
    if (full)
        u = lane < 31 ? kvi_crc32_multmodp(s.shift128[31 - lane], r) : 0;
    else  // the last piece of a region: any length, operators computed
        u = ls < le ? kvi_crc32_multmodp(kvi_crc32_x2nmodp(s.x2n, (uint64_t)(E - le), 3), r) : 0;
    for (uint32_t off = 16; off; off >>= 1) u ^= __shfl_xor_sync(0xffffffffu, u, off);
    uint32_t r31 = __shfl_sync(0xffffffffu, r, 31);
    if (full)
        *crc = kvi_crc32_multmodp(s.shift1[m], u) ^ r31 ^ s.zeros_piece;
    else
        *crc = u ^ ~kvi_crc32_multmodp(kvi_crc32_x2nmodp(s.x2n, e - a, 3), 0xffffffffu);
    return true;
}

// Warps stride over the (region, piece) items; region r at base + regs.off[r].
__global__ void __launch_bounds__(CRC_WARPS * 32) crc_pieces_regions_k(const uint8_t *base, Regions regs,
                                                                     uint32_t max_pieces, const uint32_t *table,
                                                                     uint32_t *piece_crc) {
    __shared__ CrcTables s;
    crc_load_tables(table, &s);
    uint64_t items = (uint64_t)regs.n * max_pieces, warps = (uint64_t)gridDim.x * CRC_WARPS;
    for (uint64_t it = (uint64_t)blockIdx.x * CRC_WARPS + threadIdx.x / 32; it < items; it += warps) {
        uint32_t r = (uint32_t)(it / max_pieces), crc;
        uint64_t k = it - (uint64_t)r * max_pieces;
        if (crc_piece_warp(base + regs.off[r], regs.size[r], k, s, &crc) && (threadIdx.x & 31) == 0)
            piece_crc[it] = crc;
    }
}

// The same over the C chunks at data + chunk_off[c], chunk_size[c] bytes.
__global__ void __launch_bounds__(CRC_WARPS * 32) crc_pieces_chunks_k(const uint8_t *data, const uint64_t *chunk_off,
                                                                    const uint32_t *chunk_size, uint32_t C,
                                                                    uint32_t max_pieces, const uint32_t *table,
                                                                    uint32_t *piece_crc) {
    __shared__ CrcTables s;
    crc_load_tables(table, &s);
    uint64_t items = (uint64_t)C * max_pieces, warps = (uint64_t)gridDim.x * CRC_WARPS;
    for (uint64_t it = (uint64_t)blockIdx.x * CRC_WARPS + threadIdx.x / 32; it < items; it += warps) {
        uint32_t r = (uint32_t)(it / max_pieces), crc;
        uint64_t k = it - (uint64_t)r * max_pieces;
        if (crc_piece_warp(data + chunk_off[r], chunk_size[r], k, s, &crc) && (threadIdx.x & 31) == 0)
            piece_crc[it] = crc;
    }
}

// Blocks of the piece kernels: a warp per item, at most 2048 blocks (about
// 8 resident per SM of an H200, 16.5 KB of tables each); the warps stride beyond.
static unsigned crc_piece_blocks(uint64_t items) {
    uint64_t b = (items + CRC_WARPS - 1) / CRC_WARPS;
    return (unsigned)(b < 2048 ? (b ? b : 1) : 2048);
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
    crc_pieces_regions_k<<<crc_piece_blocks((uint64_t)regs.n * max_pieces), CRC_WARPS * 32, 0, st>>>(base, regs, max_pieces,
                                                                                          table, pieces);
    crc_regions_store_k<<<regs.n, 256, 0, st>>>(regs, max_pieces, table + 256, pieces, out_crc);
}

void crc_regions_check(const uint8_t *base, const Regions &regs, uint32_t max_pieces, const uint32_t *table,
                       uint32_t *pieces, uint32_t *status, cudaStream_t st) {
    crc_pieces_regions_k<<<crc_piece_blocks((uint64_t)regs.n * max_pieces), CRC_WARPS * 32, 0, st>>>(base, regs, max_pieces,
                                                                                          table, pieces);
    crc_regions_check_k<<<regs.n, 256, 0, st>>>(regs, max_pieces, table + 256, pieces, status);
}

void crc_chunks_index(const uint8_t *data, const uint32_t *chunk_size, uint32_t C, uint32_t max_pieces,
                      const uint32_t *table, uint32_t *pieces, const ChunkIndexArgs &ix, cudaStream_t st) {
    crc_pieces_chunks_k<<<crc_piece_blocks((uint64_t)C * max_pieces), CRC_WARPS * 32, 0, st>>>(
        data, ix.chunk_off, chunk_size, C, max_pieces, table, pieces);
    crc_chunks_index_k<<<C, 256, 0, st>>>(chunk_size, C, max_pieces, table + 256, pieces, ix);
}

void crc_chunks_check(const uint8_t *data, const uint64_t *chunk_off, const uint32_t *chunk_size, uint32_t C,
                      uint32_t max_pieces, const uint32_t *table, uint32_t *pieces, const uint32_t *want,
                      uint32_t *status, cudaStream_t st) {
    crc_pieces_chunks_k<<<crc_piece_blocks((uint64_t)C * max_pieces), CRC_WARPS * 32, 0, st>>>(
        data, chunk_off, chunk_size, C, max_pieces, table, pieces);
    crc_chunks_check_k<<<C, 256, 0, st>>>(chunk_size, C, max_pieces, table + 256, pieces, want, status);
}

// ---- synchronous entry for tests and benchmarks (crc_host.h) -------------------

// block 256, grid C: CRC of chunk r -> out_crc[r]
__global__ void crc_chunks_store_k(const uint32_t *chunk_size, uint32_t C, uint32_t max_pieces, const uint32_t *x2n,
                                   const uint32_t *piece_crc, uint32_t *out_crc) {
    uint32_t r = blockIdx.x, crc;
    if (r >= C) return;
    if (!combine_pieces(r, chunk_size[r], max_pieces, x2n, piece_crc, &crc)) return;
    if (threadIdx.x == 0) out_crc[r] = crc;
}

extern "C" int kvi_cuda_crc32_chunks(const void *d_data, const uint64_t *off, const uint32_t *size, uint32_t n,
                                     uint32_t *crc) {
    if (!n) return 0;
    uint32_t max_pieces = 1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t np = (uint32_t)((size[i] + CRC_PIECE - 1) / CRC_PIECE);
        if (np > max_pieces) max_pieces = np;
    }
    uint32_t table[CRC_DEVICE_TABLE_WORDS];
    crc_device_table(table);
    uint32_t *d_table = NULL, *d_size = NULL, *d_pieces = NULL, *d_crc = NULL;
    uint64_t *d_off = NULL;
    cudaError_t e = cudaMalloc(&d_table, sizeof table);
    if (!e) e = cudaMalloc(&d_off, n * sizeof(uint64_t));
    if (!e) e = cudaMalloc(&d_size, n * sizeof(uint32_t));
    if (!e) e = cudaMalloc(&d_crc, n * sizeof(uint32_t));
    if (!e) e = cudaMalloc(&d_pieces, (uint64_t)n * max_pieces * sizeof(uint32_t));
    if (!e) e = cudaMemcpy(d_table, table, sizeof table, cudaMemcpyHostToDevice);
    if (!e) e = cudaMemcpy(d_off, off, n * sizeof(uint64_t), cudaMemcpyHostToDevice);
    if (!e) e = cudaMemcpy(d_size, size, n * sizeof(uint32_t), cudaMemcpyHostToDevice);
    if (!e) {
        crc_pieces_chunks_k<<<crc_piece_blocks((uint64_t)n * max_pieces), CRC_WARPS * 32>>>(
            (const uint8_t *)d_data, d_off, d_size, n, max_pieces, d_table, d_pieces);
        crc_chunks_store_k<<<n, 256>>>(d_size, n, max_pieces, d_table + 256, d_pieces, d_crc);
        e = cudaGetLastError();
    }
    if (!e) e = cudaMemcpy(crc, d_crc, n * sizeof(uint32_t), cudaMemcpyDeviceToHost);
    cudaFree(d_table);
    cudaFree(d_off);
    cudaFree(d_size);
    cudaFree(d_crc);
    cudaFree(d_pieces);
    return (int)e;
}
