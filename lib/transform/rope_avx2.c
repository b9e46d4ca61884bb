/* rope_avx2.c - AVX2 rotation of one head vector (rope.c holds the scalar
 * reference and the dispatch). Each output is the scalar path's expression
 * with the same operands and order of operations: x0*c - x1*s and
 * x0*s + x1*c as two multiplies and one add or subtract (no FMA: this file
 * is built without it and clang is told not to contract), so results are
 * bit-identical (tests/test_simd_paths.c). */
#include "transform/rope_kernels.h"

#if KVTC_HAVE_AVX2_PATH

#include <immintrin.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define AVX2 __attribute__((target("avx2")))

/* Interleaved pairs (x[2i], x[2i+1]): cs holds (cos, sin) per pair in the
 * same interleaving, so lane 2i+1 of cs is the sine of the pair in lanes
 * 2i, 2i+1 of x. n_pairs a multiple of 4. */
AVX2 static void rotate_norm(const float *cs, float sgn, uint32_t n_pairs, float *x) {
    const __m256 vs = _mm256_set1_ps(sgn);
    for (uint32_t i = 0; i < 2 * n_pairs; i += 8) {
        __m256 a = _mm256_loadu_ps(cs + i);
        __m256 c = _mm256_moveldup_ps(a);                     /* c c ... */
        __m256 s = _mm256_mul_ps(_mm256_movehdup_ps(a), vs); /* s s ... (exact sign flip) */
        __m256 v = _mm256_loadu_ps(x + i);                    /* x0 x1 ... */
        __m256 w = _mm256_permute_ps(v, 0xB1);                /* x1 x0 ... */
        /* even lanes: x0*c - x1*s; odd lanes: x1*c + x0*s (= x0*s + x1*c) */
        _mm256_storeu_ps(x + i, _mm256_addsub_ps(_mm256_mul_ps(v, c), _mm256_mul_ps(w, s)));
    }
}

/* Pairs (x[i], x[i + n_pairs]) (NeoX). n_pairs a multiple of 8. */
AVX2 static void rotate_neox(const float *cs, float sgn, uint32_t n_pairs, float *x) {
    const __m256 vs = _mm256_set1_ps(sgn);
    for (uint32_t i = 0; i < n_pairs; i += 8) {
        __m256 a = _mm256_loadu_ps(cs + 2 * i), b = _mm256_loadu_ps(cs + 2 * i + 8);
        /* de-interleave: shuffle gives per 128-bit lane (a0 a2 b0 b2), then fix the lane order */
        __m256 c = _mm256_shuffle_ps(a, b, 0x88), s = _mm256_shuffle_ps(a, b, 0xDD);
        c = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(c), 0xD8));
        s = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), 0xD8));
        s = _mm256_mul_ps(s, vs);
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + n_pairs);
        _mm256_storeu_ps(x + i, _mm256_sub_ps(_mm256_mul_ps(x0, c), _mm256_mul_ps(x1, s)));
        _mm256_storeu_ps(x + i + n_pairs, _mm256_add_ps(_mm256_mul_ps(x0, s), _mm256_mul_ps(x1, c)));
    }
}

int rope_avx2_rotate(kvtc_rope_type type, const float *cs, float sgn, uint32_t n_pairs, float *x) {
    if (type == KVTC_ROPE_NORM && n_pairs % 4 == 0) {
        rotate_norm(cs, sgn, n_pairs, x);
        return 1;
    }
    if (type == KVTC_ROPE_NEOX && n_pairs % 8 == 0) {
        rotate_neox(cs, sgn, n_pairs, x);
        return 1;
    }
    return 0;
}

#else
typedef int rope_avx2_unused;
#endif
