// quantize.cuh - projection coefficients D <-> chunk payload bytes:
// per-group min/scale quantization with byte-aligned code packing, raw
// fp16 coordinates, and their inverses (the layout of lib/quant/group_quant.c).
#ifndef KVTC_CUDA_QUANTIZE_CUH
#define KVTC_CUDA_QUANTIZE_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "cuda/codec.cuh"

struct QuantGeom {
    uint64_t n;              // coded tokens
    uint32_t chunk_tokens;
    uint64_t max_payload;    // payload stride per chunk
    uint32_t pb[2], cb[2];   // param bytes / code bits per token of K, V
    uint32_t stream;         // 0 K, 1 V
    uint32_t rank;           // ld of D
    uint32_t n_groups;
};

// Geometry of stream s (0 K, 1 V) of plan pd for n coded tokens.
QuantGeom quant_geom(const Layout &L, const PlanDev &pd, uint64_t n, uint32_t chunk_tokens, int s);

// D (fp32 [n][rank]) -> payload [C][max_payload] (quantized groups and raw
// coordinates of stream q.stream); row t of D is multiplied by row_scale[t]
// first (device [n]; NULL: by 1, i.e. unchanged)
void launch_quantize(const float *D, const float *row_scale, const StreamPlan &sp, const QuantGeom &q, uint8_t *payload,
                     cudaStream_t st);
// payload -> D ([n][rank], bf16 when esize is 2, else fp32); dropped groups are zeros
void launch_dequantize(int esize, void *D, const StreamPlan &sp, const QuantGeom &q, const uint8_t *payload,
                       cudaStream_t st);
// payload -> D as e4m3 ([n][ld], ld >= rank): coefficient j divided by
// fold[j] (device, the codec's d_fold), saturating; columns [rank, ld) are
// zeroed. Returns the error of the padding memset (launch errors: cudaGetLastError).
cudaError_t launch_dequantize_e4m3(uint8_t *D, uint32_t ld, const float *fold, const StreamPlan &sp, const QuantGeom &q,
                                   const uint8_t *payload, cudaStream_t st);

// The FP8 encoder's row operand: X (bf16 [n][p], p % 8 == 0) -> X8 (e4m3
// [n][p]) = X / row_scale, row_scale[t] = max |X[t]| / 448 (1 when that is
// 0 or not finite), as cpu/proj_emul.c's encode (which rounds the fp32 row).
void launch_cast_rows_e4m3(const void *X, uint64_t n, uint32_t p, uint8_t *X8, float *row_scale, cudaStream_t st);

#endif
