// crc.cuh - CRC-32 of device buffers: each region is cut into CRC_PIECE
// byte pieces checksummed in parallel, then the pieces of a region are
// combined in GF(2) (util/bitexact.h). Regions are either a few explicit
// byte ranges the host knows (the sections) or the chunks, whose offsets
// and sizes only the device knows.
#ifndef KVTC_CUDA_CRC_CUH
#define KVTC_CUDA_CRC_CUH

#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "format/container.h"
}

struct Regions {  // explicit regions (host-known), by value
    uint32_t n;
    uint64_t off[8], size[8];
    uint32_t want[8];  // expected CRCs (decode)
};

// The CRC tables the kernels read: [0, 256) the byte table, [256, 288)
// x^2^k mod P, then 15 x 256 slicing tables (the byte table shifted by 1..15
// zero bytes) from CRC_SLICE_TABLES, then from CRC_LANE_OPS the operators
// x^(8 * 128 j) (j < 32), x^(8 m) (m < 16) and the CRC of CRC_PIECE zero bytes.
#define CRC_SLICE_TABLES (256 + 32)
#define CRC_LANE_OPS (CRC_SLICE_TABLES + 15 * 256)
#define CRC_DEVICE_TABLE_WORDS (CRC_LANE_OPS + 49)
void crc_device_table(uint32_t t[CRC_DEVICE_TABLE_WORDS]);

// The five checksummed sections (positions, token ids, raw K, raw V, chunk
// index) as CRC regions, with their stored CRCs (0 while encoding), and the
// CRC pieces the largest one needs.
Regions section_regions(const container_header &h, uint32_t *pieces);

// Where a chunk index entry's fields come from when the encoder writes it.
struct ChunkIndexArgs {
    uint8_t *entries;          // the chunk index section
    const uint64_t *chunk_off; // [C] relative to chunk data
    uint32_t chunk_tokens;
    uint64_t coded;            // coded tokens of the stream
    uint32_t pay_full, pay_last;  // payload bytes of a full chunk, of the last chunk
};

// All launchers enqueue on `st` and return nothing: the caller checks
// cudaGetLastError once per stage. `pieces` is scratch of n_regions *
// max_pieces words. `table` is the device copy of crc_device_table().

// Encoder: CRCs of regions -> out_crc[r].
void crc_regions_store(const uint8_t *base, const Regions &regs, uint32_t max_pieces, const uint32_t *table,
                       uint32_t *pieces, uint32_t *out_crc, cudaStream_t st);
// Decoder: CRCs of regions compared with regs.want; mismatch -> *status = KVTC_ERR_CORRUPT.
void crc_regions_check(const uint8_t *base, const Regions &regs, uint32_t max_pieces, const uint32_t *table,
                       uint32_t *pieces, uint32_t *status, cudaStream_t st);
// Encoder: CRCs of the C chunks at data + chunk_off[c], chunk_size[c] -> the chunk index entries.
void crc_chunks_index(const uint8_t *data, const uint32_t *chunk_size, uint32_t C, uint32_t max_pieces,
                      const uint32_t *table, uint32_t *pieces, const ChunkIndexArgs &ix, cudaStream_t st);
// Decoder: CRCs of the C chunks compared with want[c]; chunks longer than
// max_pieces pieces -> KVTC_ERR_UNSUPPORTED, mismatch -> KVTC_ERR_CORRUPT.
void crc_chunks_check(const uint8_t *data, const uint64_t *chunk_off, const uint32_t *chunk_size, uint32_t C,
                      uint32_t max_pieces, const uint32_t *table, uint32_t *pieces, const uint32_t *want,
                      uint32_t *status, cudaStream_t st);

#endif
