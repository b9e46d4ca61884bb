/* rans.h - entropy codec 2: static-model interleaved rANS over the bytes of
 * one chunk payload (docs/FORMAT.md, "Entropy codec 2: interleaved rANS").
 *
 * One chunk = one self-contained block: an order-0 frequency table of the
 * payload bytes normalized to 2^12, and n_lanes independent rANS coders
 * (32-bit state, 16-bit renormalization). Byte i of the payload belongs to
 * lane i % n_lanes, so on a GPU consecutive threads decode consecutive bytes
 * and every step writes a contiguous run. The layout is shared with the CUDA
 * backend (lib/cuda/), which must produce and accept the same bytes. */
#ifndef KVTC_ENTROPY_RANS_H
#define KVTC_ENTROPY_RANS_H

#include <stddef.h>
#include <stdint.h>

#include "kvtc.h"

#define RANS_PROB_BITS 12u
#define RANS_PROB_SCALE (1u << RANS_PROB_BITS)
#define RANS_STATE_L (1u << 16)     /* states live in [RANS_STATE_L, 2^32) */
#define RANS_MAX_LANES 4096u
#define RANS_MIN_LANES 32u
#define RANS_SYMBOLS_PER_LANE 2048u /* encoder policy: aim for this many bytes per lane */
#define RANS_MIN_SEGMENT 16384u     /* encoder policy: smaller segments merge with a neighbour */
#define RANS_MAX_PERIOD 4u

#define RANS_MODE_RANS 0u
#define RANS_MODE_STORED 1u

/* Bytes of a segment header before its tables: u32 size, u8 mode, u8 period, u16 n_lanes. */
#define RANS_SEG_HEADER 8u
#define RANS_STORED_HEADER 5u /* u32 size, u8 mode */

/* A run of payload bytes with one statistical model: byte i of the segment
 * uses table i % period (period 1, 2 or 4; e.g. 4 for the (shift, scale)
 * fp16 records of the quantization parameters). */
typedef struct rans_segment {
    uint32_t size;
    uint32_t period;
} rans_segment;

/* Largest block rans_encode writes for n payload bytes cut into n_segments
 * segments (every segment stored). */
static inline size_t rans_bound(size_t n, uint32_t n_segments) {
    return n + (size_t)RANS_STORED_HEADER * (n_segments ? n_segments : 1);
}

/* Lanes this library's encoders use for an n-byte segment: ceil(n / 2048)
 * rounded up to a multiple of 32, clamped to [32, 4096]. */
static inline uint32_t rans_lanes_for(uint64_t n) {
    uint64_t l = (n + RANS_SYMBOLS_PER_LANE - 1) / RANS_SYMBOLS_PER_LANE;
    l = (l + 31) / 32 * 32;
    if (l < RANS_MIN_LANES) l = RANS_MIN_LANES;
    if (l > RANS_MAX_LANES) l = RANS_MAX_LANES;
    return (uint32_t)l;
}

/* Deterministic normalization of byte counts (total n > 0) to frequencies
 * summing to RANS_PROB_SCALE, every present symbol >= 1, absent ones 0
 * (the algorithm of docs/FORMAT.md; the CUDA encoder implements the same). */
void rans_normalize(const uint32_t count[256], uint64_t n, uint32_t freq[256]);

/* The encoder's merge policy, in order: empty segments vanish; a segment
 * below period * RANS_MIN_SEGMENT bytes gets period 1; adjacent segments
 * with the same period merge while either is below RANS_MIN_SEGMENT bytes. Rewrites
 * segs in place and returns the new count. */
uint32_t rans_merge_segments(rans_segment *segs, uint32_t n_segs);

/* Natural segments of a chunk payload of n_tokens tokens under plans k and
 * v (the layout of lib/quant/group_quant.c): each run of quantized groups'
 * parameters (period 4), each run of raw fp16 groups (period 2), each run of
 * code groups of one bit width (period 1). At most 2 * (groups of k + v)
 * segments; returns the count written (0 if cap is too small). */
struct plan_stream;
uint32_t rans_plan_segments(const struct plan_stream *k, const struct plan_stream *v, uint64_t n_tokens,
                            rans_segment *out, uint32_t cap);

/* Encode in[0..n) cut into segs (sizes summing to n, periods 1/2/4; NULL =
 * one segment of period 1) into out[0..cap); *out_size receives the block
 * size (0 for an empty payload). Applies rans_merge_segments to a copy; each
 * segment is stored when rANS would not make it smaller. Errors:
 * KVTC_ERR_BUFFER_TOO_SMALL (cap >= rans_bound(n, n_segs) always suffices),
 * KVTC_ERR_INVALID_ARGUMENT (bad segments), KVTC_ERR_OUT_OF_MEMORY (scratch
 * of 2 * n bytes). */
kvtc_result rans_encode(const uint8_t *in, size_t n, const rans_segment *segs, uint32_t n_segs, uint8_t *out,
                        size_t cap, size_t *out_size);

/* Decode a block of `size` bytes into exactly n bytes of out.
 * KVTC_ERR_CORRUPT for any inconsistency (bad mode, period, table, lane
 * count, state range, stream lengths, final states, sizes); never reads
 * outside in[0..size) nor writes outside out[0..n). */
kvtc_result rans_decode(const uint8_t *in, size_t size, uint8_t *out, size_t n);

#endif
