// rans_encode.cuh - entropy codec 2 on the GPU, all chunks at once: byte
// histograms per segment and table, normalized frequencies, one thread per
// rANS lane, sizes and offsets (scans), assembly into the chunk data
// section. Same bytes as lib/entropy/rans.c for the same payloads.
#ifndef KVTC_CUDA_RANS_ENCODE_CUH
#define KVTC_CUDA_RANS_ENCODE_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda/common.cuh"

extern "C" {
#include "model/basis.h"
}

struct SegList {  // the encoder's segments of one chunk size (by value into kernels)
    uint32_t n;
    uint32_t total_lanes;
    uint64_t total_words;  // scratch words for the chunk
    uint32_t size[ENC_MAX_SEGS];
    uint32_t off[ENC_MAX_SEGS];        // payload offset
    uint32_t lanes[ENC_MAX_SEGS];
    uint32_t lane_base[ENC_MAX_SEGS];
    uint64_t word_base[ENC_MAX_SEGS];  // scratch word offset of the segment
    uint8_t period[ENC_MAX_SEGS];
};

struct EncWs {
    uint8_t *payload;      // [C][max_payload]
    uint32_t *hist;        // [C][S][4][256]
    uint16_t *freq, *start;// [C][S][4][256]
    uint32_t *npres;       // [C][S][4] present symbols (0xffffffff: empty table)
    uint32_t *lane_state, *lane_count, *lane_woff;  // [C][Lmax]
    uint16_t *words;       // [C][Wmax]
    uint32_t *seg_bytes, *seg_mode, *seg_out;        // [C][S]
    uint32_t *chunk_size;  // [C]
    uint64_t *chunk_off;   // [C]
    uint64_t *data_size;   // [1]
    uint32_t Lmax;
    uint64_t Wmax, max_payload;
    uint32_t C;
    int last_short;
};

// The segments of a chunk of n_c tokens under plan pl (lib/entropy/rans.c's
// policy, then merged down to ENC_MAX_SEGS).
void build_seglist(const basis_plan *pl, uint64_t n_c, SegList *L);

// Encode the C payloads of w (full chunks: `full`, the last one `last`)
// into data; w.chunk_off / w.chunk_size / *w.data_size receive the layout.
// w.hist must be zeroed first (the caller owns the memset, hist_bytes).
void rans_encode_chunks(const SegList &full, const SegList &last, const EncWs &w, uint8_t *data, cudaStream_t st,
                        void (*mark)(void *, const char *), void *mark_arg);

#endif
