/* project.h - the linear transform between cache rows and PCA coordinates:
 *   encode: d = ((x - mean) * weight) B_r^T        (B_r: first r components)
 *   decode: x = (d B_r) / weight + mean
 * through OpenBLAS sgemm (float32 accumulation). */
#ifndef KVTC_TRANSFORM_PROJECT_H
#define KVTC_TRANSFORM_PROJECT_H

#include <stdint.h>

#include "format/basis.h"

/* x: [n][p], centered and weighted in place; d: [n][r]. r may be 0. */
void project_rows(const basis_stream *s, uint32_t r, float *x, uint64_t n, float *d);

/* d: [n][r]; x: [n][p] written. */
void reconstruct_rows(const basis_stream *s, uint32_t r, const float *d, uint64_t n, float *x);

#endif
