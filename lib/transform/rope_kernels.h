/* rope_kernels.h - internal to lib/transform: the AVX2 rotation and an
 * entry point that picks the path explicitly (for tests). */
#ifndef KVTC_TRANSFORM_ROPE_KERNELS_H
#define KVTC_TRANSFORM_ROPE_KERNELS_H

#include <stdint.h>

#include "kvtc.h"
#include "util/cpu_features.h"

/* rope_rotate with the path chosen by the caller: simd 0 runs the scalar
 * reference, simd 1 the AVX2 kernel where the CPU has AVX2 and the pair
 * count suits it (else scalar). rope_rotate passes 1. */
void rope_rotate_path(const kvtc_geometry *g, const float *cs, int direction, float *x, int simd);

#if KVTC_HAVE_AVX2_PATH
/* Rotates x by the angles cs (sgn +1 applies, -1 removes) and returns 1, or
 * returns 0 without touching x when n_pairs is not a multiple of the vector
 * width (4 pairs NORM, 8 NEOX). Only call where kvi_cpu_has_avx2(). */
int rope_avx2_rotate(kvtc_rope_type type, const float *cs, float sgn, uint32_t n_pairs, float *x);
#endif

#endif
