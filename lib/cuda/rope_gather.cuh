// rope_gather.cuh - between the cache and the projection rows: RoPE
// angles, gather (cache -> rows X: RoPE removed from keys, (x - mean) *
// weight) and scatter (rows -> cache: the inverse), the raw sink/window
// tokens and the positions section.
#ifndef KVTC_CUDA_ROPE_GATHER_CUH
#define KVTC_CUDA_ROPE_GATHER_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda/layout.cuh"

struct RowGeom {
    uint32_t H, d, rd, rope;  // rope: 0 none, 1 norm, 2 neox (0 also when not rotating)
    uint32_t lh0;              // first (layer * H + head) row of the grid (layer ranges)
    uint32_t col_lh0;          // the row whose head is column 0 of X, mean, weight (recomputed layers * H)
    uint64_t t0, n;            // row t of X (and of the RoPE table) is cache token t0 + t, t < n
    uint64_t p;                // columns of X (its leading dimension)
};

// cs[t][i] = (cos, sin)(pos(t0 + t) * inv_freq[i]), t < n, i < n_pairs; the
// position comes from positions (device int64), else pos_le (the stream's
// little-endian positions section), else t0 + t.
void launch_rope_table(const double *inv_freq, uint32_t n_pairs, const int64_t *positions, const uint8_t *pos_le,
                       uint64_t t0, uint64_t n, float2 *cs, cudaStream_t st);

// rows X[t][p] (esize 2: bf16, 4: fp32) from a cache of dtype read through
// the layout src (fused: no contiguous copy); rows whose block is outside
// the pool are skipped
void launch_gather(int esize, int dtype, const RowGeom &g, uint32_t LH, const DevTensor &src, const float2 *cs,
                   const float *mean, const float *weight, void *X, cudaStream_t st);
// the inverse: rows X written into the cache through the layout dst;
// x * inv_weight + mean, inv_weight = 1 / weight (the codec's d_inv_weight:
// a multiply where a division made the vectorized kernel compute-bound; it
// can differ from x / weight by one fp32 ulp, far below the output's bf16/f16)
void launch_scatter(int esize, int dtype, const RowGeom &g, uint32_t LH, const DevTensor &dst, const float2 *cs,
                    const float *mean, const float *inv_weight, const void *X, cudaStream_t st);

// Which raw tokens a copy moves: stream tokens [tb, te) (cache token
// t - tb), rows (layer * H + head) [lh0, lh0 + LH).
struct RawRange {
    uint64_t tb, te;
    uint32_t lh0, LH;
};
// raw sink/window tokens: dir 0 cache -> section, 1 section -> cache
void launch_raw_copy(const DevTensor &t, uint8_t *section, uint32_t H, uint32_t d, uint64_t n_tokens, uint32_t n_sink,
                     uint32_t n_window, int dir, const RawRange &rr, cudaStream_t st);

// positions (device int64) -> the stream's little-endian positions section
void launch_copy_positions(const int64_t *pos, uint64_t n, uint8_t *out, cudaStream_t st);
// positions of stream tokens [t0, t0 + n) from the positions section (or
// t0 + t when pos_le is NULL) -> int64 out[n]
void launch_write_positions(const uint8_t *pos_le, uint64_t t0, uint64_t n, int64_t *out, cudaStream_t st);

// token ids (device int32) -> the stream's little-endian token ids section
void launch_copy_ids(const int32_t *ids, uint64_t n, uint8_t *out, cudaStream_t st);
// the token ids section, tokens [t0, t0 + n) -> int32 out[n]
void launch_write_ids(const uint8_t *ids_le, uint64_t t0, uint64_t n, int32_t *out, cudaStream_t st);

#endif
