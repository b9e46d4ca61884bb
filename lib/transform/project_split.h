/* project_split.h - the projection GEMMs of project.h split by token rows
 * over the codec's worker threads. kvtc compress/decompress run OpenBLAS on
 * one thread (its spinning workers would take the cores the codec's threads
 * use), so an unsplit GEMM left all but one core idle during the largest
 * stage of the codec. Each part is an independent sgemm over its rows. */
#ifndef KVTC_TRANSFORM_PROJECT_SPLIT_H
#define KVTC_TRANSFORM_PROJECT_SPLIT_H

#include <stdint.h>

#include "transform/project.h"

/* project_centered / reconstruct_centered over n rows, as blocks of 512
 * rows run on up to n_threads threads (0 = 1), when OpenBLAS is
 * single-threaded (else one call, which OpenBLAS's threads split). The
 * blocks depend on n only, so the result does not depend on n_threads. */
void project_centered_split(const basis_stream *s, uint32_t r, const float *x, uint64_t n, float *d,
                            uint32_t n_threads);
void reconstruct_centered_split(const basis_stream *s, uint32_t r, const float *d, uint64_t n, float *x,
                                uint32_t n_threads);

#endif
