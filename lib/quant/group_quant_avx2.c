/* group_quant_avx2.c - AVX2 kernels of the per-token group quantizer
 * (group_quant.c holds the scalar reference and the layout). They write and
 * read exactly the scalar path's bytes and floats:
 * - min/max are exact in any order; only the sign of a zero min or max can
 *   depend on which of -0 and +0 comes first, so such tokens take the scalar
 *   scan (the fp16 shift and scale bytes keep that sign);
 * - shift and scale come from the shared quant_params_of();
 * - codes use the same float operations, (x - shift) * inv + 0.5, clamped
 *   then truncated, and decoding computes shift + code * scale as a separate
 *   multiply and add: no FMA (this file is built without it, and clang is
 *   told not to contract), so no rounding differs;
 * - 8 codes of b bits are exactly b bytes of the LSB-first bitstream.
 * Inputs must be NaN-free, as the encoder's range check guarantees. */
#include "quant/group_quant_kernels.h"

#if KVTC_HAVE_AVX2_PATH

#include <immintrin.h>
#include <string.h>

#include "util/endian.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define AVX2 __attribute__((target("avx2")))

AVX2 static inline float hmin8(__m256 v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

AVX2 static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

/* Bit offsets of codes 0-3 and 4-7 inside the 8-code word. */
AVX2 static inline void code_offsets(unsigned bits, __m256i *lo, __m256i *hi) {
    long long b = (long long)bits;
    *lo = _mm256_setr_epi64x(0, b, 2 * b, 3 * b);
    *hi = _mm256_setr_epi64x(4 * b, 5 * b, 6 * b, 7 * b);
}

/* 8 codes (< 2^bits each) as one little-endian word of 8*bits bits. */
AVX2 static inline uint64_t pack8(__m256i codes, __m256i off_lo, __m256i off_hi) {
    __m256i lo = _mm256_sllv_epi64(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(codes)), off_lo);
    __m256i hi = _mm256_sllv_epi64(_mm256_cvtepu32_epi64(_mm256_extracti128_si256(codes, 1)), off_hi);
    __m256i o = _mm256_or_si256(lo, hi);
    __m128i o2 = _mm_or_si128(_mm256_castsi256_si128(o), _mm256_extracti128_si256(o, 1));
    return (uint64_t)_mm_cvtsi128_si64(o2) | (uint64_t)_mm_extract_epi64(o2, 1);
}

AVX2 void quant_avx2_encode_group(const float *d, uint64_t ld, uint64_t n, uint32_t size, unsigned bits,
                                  uint8_t *params, uint8_t *codes) {
    uint32_t levels = (1u << bits) - 1u;
    __m256i off_lo, off_hi;
    code_offsets(bits, &off_lo, &off_hi);
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps((float)levels), half = _mm256_set1_ps(0.5f);
    uint8_t *end = codes + n * size * bits / 8;
    for (uint64_t t = 0; t < n; t++) {
        const float *x = d + t * ld;
        __m256 vmn = _mm256_loadu_ps(x), vmx = vmn;
        for (uint32_t j = 8; j < size; j += 8) {
            __m256 v = _mm256_loadu_ps(x + j);
            vmn = _mm256_min_ps(vmn, v);
            vmx = _mm256_max_ps(vmx, v);
        }
        float mn = hmin8(vmn), mx = hmax8(vmx);
        if (mn == 0.0f || mx == 0.0f) quant_scan_minmax(x, size, &mn, &mx); /* the sign of a zero */
        quant_token_params q = quant_params_of(mn, mx, levels);
        kvi_store_u16(params, q.hs);
        kvi_store_u16(params + 2, q.hc);
        params += 4;
        const __m256 shift = _mm256_set1_ps(q.shift), inv = _mm256_set1_ps(q.inv);
        for (uint32_t j = 0; j < size; j += 8) {
            __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), shift), inv), half);
            v = _mm256_min_ps(_mm256_max_ps(v, zero), top);
            uint64_t word = pack8(_mm256_cvttps_epi32(v), off_lo, off_hi);
            /* a full 8-byte store where it stays inside the group: the bytes
             * past the `bits` meaningful ones are overwritten next */
            if (codes + 8 <= end) memcpy(codes, &word, 8);
            else memcpy(codes, &word, bits);
            codes += bits;
        }
    }
}

AVX2 int quant_avx2_group_in_range(const float *d, uint64_t ld, uint64_t n, uint32_t size, float levels,
                                   int quantized) {
    for (uint64_t t = 0; t < n; t++) {
        const float *x = d + t * ld;
        __m256 vmn = _mm256_loadu_ps(x), vmx = vmn, nan = _mm256_cmp_ps(vmn, vmn, _CMP_UNORD_Q);
        for (uint32_t j = 8; j < size; j += 8) {
            __m256 v = _mm256_loadu_ps(x + j);
            vmn = _mm256_min_ps(vmn, v);
            vmx = _mm256_max_ps(vmx, v);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
        float mn, mx;
        if (_mm256_movemask_ps(nan)) {
            quant_scan_minmax(x, size, &mn, &mx); /* where a NaN sits changes the scalar answer */
        } else {
            mn = hmin8(vmn);
            mx = hmax8(vmx);
        }
        if (!quant_token_in_range(mn, mx, levels, quantized)) return 0;
    }
    return 1;
}

AVX2 kvtc_result quant_avx2_decode_group(const uint8_t *params, const uint8_t *codes, uint64_t n, uint32_t size,
                                         unsigned bits, float *d, uint64_t ld) {
    __m256i off_lo, off_hi;
    code_offsets(bits, &off_lo, &off_hi);
    const __m256i mask = _mm256_set1_epi64x((long long)((1u << bits) - 1u));
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    const uint8_t *end = codes + n * size * bits / 8;
    for (uint64_t t = 0; t < n; t++) {
        uint16_t hs = kvi_load_u16(params), hc = kvi_load_u16(params + 2);
        if (quant_f16_bits_nonfinite(hs) || quant_f16_bits_nonfinite(hc)) return KVTC_ERR_CORRUPT;
        params += 4;
        const __m256 shift = _mm256_set1_ps(kvi_f16_to_f32(hs)), scale = _mm256_set1_ps(kvi_f16_to_f32(hc));
        float *x = d + t * ld;
        for (uint32_t j = 0; j < size; j += 8) {
            uint64_t word = 0;
            if (codes + 8 <= end) memcpy(&word, codes, 8);
            else memcpy(&word, codes, bits);
            codes += bits;
            __m256i w = _mm256_set1_epi64x((long long)word);
            __m256i lo = _mm256_and_si256(_mm256_srlv_epi64(w, off_lo), mask);
            __m256i hi = _mm256_and_si256(_mm256_srlv_epi64(w, off_hi), mask);
            __m256i c = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(lo, even),
                                           _mm256_permutevar8x32_epi32(hi, even), 0xF0);
            __m256 v = _mm256_add_ps(shift, _mm256_mul_ps(_mm256_cvtepi32_ps(c), scale));
            _mm256_storeu_ps(x + j, v);
        }
    }
    return KVTC_OK;
}

#else
/* ISO C forbids an empty translation unit */
typedef int quant_avx2_unused;
#endif
