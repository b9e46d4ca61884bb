/* group_quant_kernels.h - internal to lib/quant: the per-token shift/scale
 * rule shared by the scalar and AVX2 quantizers (so both write the same
 * bytes by construction), the AVX2 kernels, and entry points that pick the
 * path explicitly (for tests). */
#ifndef KVTC_QUANT_GROUP_QUANT_KERNELS_H
#define KVTC_QUANT_GROUP_QUANT_KERNELS_H

#include <stdint.h>

#include "quant/group_quant.h"
#include "util/cpu_features.h"
#include "util/half.h"

/* Largest finite fp16: shifts and scales saturate here instead of becoming
 * infinite (only reachable with extreme inputs; the error grows, no NaN). */
#define QUANT_F16_MAX 65504.0f

static inline float quant_clamp_f16_range(float x) {
    return x > QUANT_F16_MAX ? QUANT_F16_MAX : (x < -QUANT_F16_MAX ? -QUANT_F16_MAX : x);
}

/* fp16 value >= x (for x >= 0), so that the top code still reaches max. */
static inline uint16_t quant_f16_round_up(float x) {
    uint16_t h = kvi_f32_to_f16(quant_clamp_f16_range(x));
    if (kvi_f16_to_f32(h) < x && h < 0x7bffu) h++;
    return h;
}

/* Min and max of x[0..size) in the scalar path's order: the first of equal
 * values wins (decides the sign of a zero), and a NaN after x[0] is skipped. */
static inline void quant_scan_minmax(const float *x, uint32_t size, float *mn_out, float *mx_out) {
    float mn = x[0], mx = x[0];
    for (uint32_t j = 1; j < size; j++) {
        mn = x[j] < mn ? x[j] : mn;
        mx = x[j] > mx ? x[j] : mx;
    }
    *mn_out = mn;
    *mx_out = mx;
}

/* quant_check_range's rule for one token of a group: the values lie in
 * fp16's finite range and, for a quantized group (levels = 2^bits - 1), the
 * step (max - min) / levels, rounded up to an fp16, stays finite. */
static inline int quant_token_in_range(float mn, float mx, float levels, int quantized) {
    if (!(mn >= -QUANT_F16_MAX && mx <= QUANT_F16_MAX)) return 0;
    return !quantized || (mx - mn) / levels <= QUANT_F16_MAX;
}

/* One token's group parameters from its min and max: the fp16 shift (rounded
 * down so every value is >= shift), the fp16 scale (rounded up), and the
 * reciprocal of the scale the codes are computed with (0 for a 0 scale). */
typedef struct quant_token_params {
    uint16_t hs, hc;
    float shift, inv;
} quant_token_params;

static inline quant_token_params quant_params_of(float mn, float mx, uint32_t levels) {
    quant_token_params q;
    q.hs = kvi_f32_to_f16(quant_clamp_f16_range(mn));
    q.shift = kvi_f16_to_f32(q.hs);
    if (q.shift > mn && q.hs != 0xfbffu) {
        q.hs = (q.hs & 0x8000u) ? (uint16_t)(q.hs + 1) : (q.hs == 0 ? 0x8001u : (uint16_t)(q.hs - 1));
        q.shift = kvi_f16_to_f32(q.hs);
    }
    q.hc = quant_f16_round_up((mx - q.shift) / (float)levels);
    float scale = kvi_f16_to_f32(q.hc);
    q.inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    return q;
}

/* fp16 bits with the exponent all ones: Inf or NaN */
static inline int quant_f16_bits_nonfinite(uint16_t h) { return (h & 0x7c00u) == 0x7c00u; }

/* quant_check_range / quant_encode / quant_decode with the path chosen by
 * the caller: simd 0 runs the scalar reference, simd 1 the AVX2 kernels
 * where the CPU has AVX2 (else scalar). The public functions pass
 * kvi_simd_allowed(). */
kvtc_result quant_check_range_path(const plan_stream *k, const plan_stream *v, const float *dk, uint64_t ldk,
                                   const float *dv, uint64_t ldv, uint64_t n, int simd);
void quant_encode_path(const plan_stream *k, const plan_stream *v, const float *dk, uint64_t ldk,
                       const float *dv, uint64_t ldv, uint64_t n, uint8_t *out, int simd);
kvtc_result quant_decode_path(const plan_stream *k, const plan_stream *v, const uint8_t *in, uint64_t n,
                              float *dk, uint64_t ldk, float *dv, uint64_t ldv, int simd);

#if KVTC_HAVE_AVX2_PATH
/* AVX2 kernels for one quantized group (size a multiple of 8, bits 1..8)
 * over n tokens, with the codes starting on a byte boundary (always true for
 * the DP's group sizes 16..1024: every group's codes are a whole number of
 * bytes). d points at the group's first coordinate of token 0, ld is the row
 * stride. Encode writes n x (shift, scale) at params and n*size*bits/8 code
 * bytes at codes. Decode reads them back and returns KVTC_ERR_CORRUPT on a
 * non-finite shift or scale. Only call where kvi_cpu_has_avx2(). */
void quant_avx2_encode_group(const float *d, uint64_t ld, uint64_t n, uint32_t size, unsigned bits,
                             uint8_t *params, uint8_t *codes);
/* quant_check_range's rule over one group (size a multiple of 8) of n
 * tokens: 1 when every token passes, else 0. A token holding a NaN takes
 * the scalar scan, so the answer is the scalar path's for any input. */
int quant_avx2_group_in_range(const float *d, uint64_t ld, uint64_t n, uint32_t size, float levels,
                              int quantized);
kvtc_result quant_avx2_decode_group(const uint8_t *params, const uint8_t *codes, uint64_t n, uint32_t size,
                                    unsigned bits, float *d, uint64_t ld);
#endif

#endif
