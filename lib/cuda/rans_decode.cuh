// rans_decode.cuh - the GPU rANS decoder: parse and validate the chunk
// index and segment headers (one block per chunk), decode the lanes (one
// thread per lane, tables in shared memory) and copy stored segments into
// the chunk payloads. Every bound is checked against the stream; a
// failure sets the device status.
#ifndef KVTC_CUDA_RANS_DECODE_CUH
#define KVTC_CUDA_RANS_DECODE_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda/common.cuh"

struct DSeg {
    uint64_t off;       // segment start, relative to the chunk
    uint32_t pay_off, n, mode, P, N;
    uint32_t st_off;    // relative to the segment: states (counts follow), words after 8N
    uint32_t blk_base;  // first lane block (rANS segments)
};

struct DecWs {
    uint8_t *payload;   // [C][max_payload]
    DSeg *seg;          // [C][DEC_MAX_SEGS]
    uint32_t *n_segs, *n_blocks;  // [C]
    uint64_t *chunk_off;          // [C] relative to chunk data
    uint32_t *chunk_size, *chunk_crc;  // [C]
    uint64_t max_payload;
    uint32_t C;
};

struct DecArgs {
    const uint8_t *in;
    uint64_t index_off, data_off, data_size;
    uint32_t chunk_tokens;
    uint64_t coded;
    uint32_t pay[2];  // payload size of a full chunk, of the last chunk
    uint32_t c0;      // stream index of the first chunk decoded (chunk c of w is stream chunk c0 + c)
    uint32_t C_total; // chunks in the stream
};

// Parse the index entries and segment headers of the w.C chunks into w.
void launch_parse_chunks(const DecArgs &a, const DecWs &w, uint32_t *status, cudaStream_t st);
// Decode the rANS segments of every chunk into w.payload, with
// blocks_hint (rans_lane_blocks_hint; 0 = unknown) blocks per chunk.
void launch_decode_lanes(const DecArgs &a, const DecWs &w, uint32_t blocks_hint, uint32_t *status, cudaStream_t st);
// Lane blocks of a chunk of n_tokens tokens as this library's encoders cut
// it (segments, merges, lanes per segment: entropy/rans.h); 0 on failure.
struct plan_stream;
uint32_t rans_lane_blocks_hint(const plan_stream *k, const plan_stream *v, uint64_t n_tokens);
// Copy the stored segments of every chunk into w.payload.
void launch_decode_stored(const DecArgs &a, const DecWs &w, cudaStream_t st);

#endif
