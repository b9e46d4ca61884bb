/* project.h - the linear transform between cache rows and PCA coordinates:
 *   encode: d = ((x - mean) * weight) B_r^T        (B_r: first r components)
 *   decode: x = (d B_r) / weight + mean
 * through OpenBLAS sgemm (float32 accumulation). */
#ifndef KVTC_TRANSFORM_PROJECT_H
#define KVTC_TRANSFORM_PROJECT_H

#include <stdint.h>

#include "model/basis.h"

/* Each direction is split in a per-token half (run on the codec's worker
 * threads, by token range) and a GEMM (run on OpenBLAS's threads). */

/* x: [n][p]: x = (x - mean) * weight, in place. */
void center_rows(const basis_stream *s, float *x, uint64_t n);
/* d: [n][r] = x B_r^T for centered x. r may be 0. */
void project_centered(const basis_stream *s, uint32_t r, const float *x, uint64_t n, float *d);
/* x: [n][p] = d B_r (still centered and weighted). */
void reconstruct_centered(const basis_stream *s, uint32_t r, const float *d, uint64_t n, float *x);
/* x = x / weight + mean, in place. */
void uncenter_rows(const basis_stream *s, float *x, uint64_t n);

/* The decode direction on coordinates [col0, col0 + w) only (one layer):
 * x rows have stride ldx >= w, d rows stride ldd >= r. The GEMM reads only
 * those basis columns. */
void reconstruct_centered_cols(const basis_stream *s, uint32_t r, const float *d, uint64_t ldd, uint64_t n,
                               uint32_t col0, uint32_t w, float *x, uint64_t ldx);
void uncenter_cols(const basis_stream *s, uint32_t col0, uint32_t w, float *x, uint64_t n);

#endif
