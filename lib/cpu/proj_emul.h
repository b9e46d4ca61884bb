/* proj_emul.h - emulation of the GPU's projection arithmetic in the CPU
 * codec, to measure what the GPU's operand precision costs on a real model
 * (issue 15: `kvtc eval --emulate-gpu`). Not a stable API: tools reach it
 * through lib/internal.h; the public codec never uses it unless asked.
 *
 *  - KVI_PROJ_BF16: the CUDA backend's default (KVTC_CUDA_GEMM_BF16). Both
 *    operands rounded to bf16, fp32 accumulation; the decoder's output
 *    rows rounded to bf16 (the GPU's X is bf16). The encoder's
 *    coefficients stay fp32 (the GPU's D is fp32).
 *  - KVI_PROJ_FP8: e4m3 operands (transform/fp8.h). Decode: exactly the
 *    operands KVTC_CUDA_PROJ_FP8_DECODE builds (coefficients folded and cast with
 *    no scale, the transposed basis operand with its per-tensor scale),
 *    fp32 accumulation, output scaled and rounded to bf16. Encode: as
 *    KVTC_CUDA_PROJ_FP8_ENCODE, rows rounded to bf16 (the GPU's gather
 *    output) then cast with a per-row scale (row amax / 448), basis rows
 *    with one per-tensor scale (transform/fp8.c's bytes), fp32
 *    accumulation and output, the scales applied after the GEMM.
 *
 * An emulating codec decodes and encodes the same stream format; only the
 * values differ (as a GPU decode's would). */
#ifndef KVTC_CPU_PROJ_EMUL_H
#define KVTC_CPU_PROJ_EMUL_H

#include "kvtc.h"

typedef enum kvi_proj_mode {
    KVI_PROJ_EXACT = 0, /* the CPU codec's own fp32 arithmetic (default) */
    KVI_PROJ_BF16 = 1,
    KVI_PROJ_FP8 = 2
} kvi_proj_mode;

/* Switch the decoder's reconstruction GEMM (or the encoder's projection)
 * to the emulated arithmetic `mode`. Prepares the rounded basis operands of
 * both streams (all stored components) in the codec, which frees them.
 * Call before any decode/encode and not concurrently with one.
 * KVTC_ERR_INVALID_ARGUMENT for a NULL codec or an unknown mode,
 * KVTC_ERR_OUT_OF_MEMORY. */
kvtc_result kvi_decoder_emulate_projection(kvtc_decoder *d, kvi_proj_mode mode);
kvtc_result kvi_encoder_emulate_projection(kvtc_encoder *e, kvi_proj_mode mode);

#endif
