/* fp8.c - see fp8.h. */
#include "transform/fp8.h"

#include <math.h>

#include "util/half.h"

uint8_t kvi_f32_to_e4m3(float f) {
    uint32_t x = kvi_f32_bits(f);
    uint8_t sign = (uint8_t)((x >> 24) & 0x80u);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | KVI_E4M3_NAN;
    if (a >= 0x43e00000u) return sign | 0x7eu; /* >= 448, infinities: saturate */
    int e = (int)(a >> 23) - 127;              /* float subnormals (e = -127) round to 0 below */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;  /* 24-bit significand, value m * 2^(e - 23) */
    uint32_t code;
    if (e < -6) {
        /* subnormal e4m3: units of 2^-9, code = round(m * 2^(e - 14)) */
        int shift = 14 - e;
        if (shift > 24) return sign; /* below 2^-10, half the smallest step */
        code = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (code & 1u))) code++;
    } else {
        /* normal: exponent field e + 7, 3 mantissa bits; a carry out of
         * the mantissa moves to the next exponent (448 at most: a < 448) */
        code = ((uint32_t)(e + 7) << 3) | ((m >> 20) & 7u);
        uint32_t rem = m & 0xfffffu;
        if (rem > 0x80000u || (rem == 0x80000u && (code & 1u))) code++;
    }
    return (uint8_t)(sign | code);
}

float kvi_e4m3_to_f32(uint8_t b) {
    uint32_t e = (b >> 3) & 15u, m = b & 7u;
    float v;
    if (e == 15 && m == 7) return kvi_bits_f32(((uint32_t)(b & 0x80u) << 24) | 0x7fc00000u);
    if (e == 0) v = (float)m * (1.0f / 512.0f);
    else v = kvi_bits_f32(((e + 120u) << 23) | (m << 20));
    return (b & 0x80u) ? -v : v;
}

float kvi_fp8_fold(const basis_stream *s, uint32_t j) {
    float ev = s->eigenvalues ? s->eigenvalues[j] : 0.0f;
    float f = sqrtf(ev);
    return isnormal(f) && f > 0.0f ? f : 1.0f;
}

static float scale_of(float amax) {
    float sc = amax / KVI_E4M3_MAX;
    return (sc > 0.0f && isfinite(sc)) ? sc : 1.0f;
}

float kvi_fp8_basis_t_scale(const basis_stream *s, uint32_t rank) {
    float amax = 0.0f;
    for (uint32_t j = 0; j < rank; j++) {
        float f = kvi_fp8_fold(s, j);
        const float *row = s->basis + (uint64_t)j * s->p;
        for (uint32_t i = 0; i < s->p; i++) {
            float v = fabsf(f * row[i]);
            if (v > amax) amax = v;
        }
    }
    return scale_of(amax);
}

float kvi_fp8_basis_rows_scale(const basis_stream *s, uint32_t rank) {
    uint64_t n = (uint64_t)rank * s->p;
    float amax = 0.0f;
    for (uint64_t i = 0; i < n; i++) amax = fabsf(s->basis[i]) > amax ? fabsf(s->basis[i]) : amax;
    return scale_of(amax);
}

void kvi_fp8_basis_t(const basis_stream *s, uint32_t rank, uint32_t ld, uint8_t *bt, float *scale) {
    float sc = kvi_fp8_basis_t_scale(s, rank);
    *scale = sc;
    /* transposed in blocks of 64 coordinates: rows of B are read in runs
     * of 64 floats, not one float per 4p bytes (p * rank is 4e8 at 12B) */
    for (uint32_t i0 = 0; i0 < s->p; i0 += 64) {
        uint32_t i1 = s->p - i0 < 64 ? s->p : i0 + 64;
        for (uint32_t j = 0; j < rank; j++) {
            float f = kvi_fp8_fold(s, j);
            const float *row = s->basis + (uint64_t)j * s->p;
            for (uint32_t i = i0; i < i1; i++) bt[(uint64_t)i * ld + j] = kvi_f32_to_e4m3(f * row[i] / sc);
        }
        for (uint32_t i = i0; i < i1; i++)
            for (uint32_t j = rank; j < ld; j++) bt[(uint64_t)i * ld + j] = 0;
    }
}

void kvi_fp8_basis_rows(const basis_stream *s, uint32_t rank, uint8_t *b8, float *scale) {
    uint64_t n = (uint64_t)rank * s->p;
    float sc = kvi_fp8_basis_rows_scale(s, rank);
    *scale = sc;
    for (uint64_t i = 0; i < n; i++) b8[i] = kvi_f32_to_e4m3(s->basis[i] / sc);
}
