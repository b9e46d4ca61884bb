/* rope.h - rotary position embedding, removed from keys before the PCA and
 * re-applied after decoding, so that the basis sees position-free keys. */
#ifndef KVTC_TRANSFORM_ROPE_H
#define KVTC_TRANSFORM_ROPE_H

#include <stdint.h>

#include "kvtc.h"

/* Angles of one position: cos/sin for the rope_dim/2 pairs. */
typedef struct rope_table {
    uint32_t n_pairs;
    double *inv_freq; /* [n_pairs] theta^(-2i/rope_dim) */
} rope_table;

kvtc_result rope_table_init(rope_table *t, const kvtc_geometry *g);
void rope_table_free(rope_table *t);

/* cs[2*i] = cos(pos * inv_freq[i]), cs[2*i+1] = sin(...) for all pairs. */
void rope_angles(const rope_table *t, int64_t pos, float *cs);

/* Rotate one head vector x[head_dim] in place by the angles cs; direction
 * +1 applies RoPE, -1 removes it. */
void rope_rotate(const kvtc_geometry *g, const float *cs, int direction, float *x);

#endif
