/* rope.c - RoPE in the two pairings engines use (see kvtc_rope_type). The
 * angles are computed in double: positions reach 10^5-10^6 and a float angle
 * would lose the low bits that make removal and re-application exact inverses. */
#include "transform/rope.h"
#include "transform/rope_kernels.h"

#include <math.h>
#include <stdlib.h>

kvtc_result rope_table_init(rope_table *t, const kvtc_geometry *g) {
    t->n_pairs = 0;
    t->inv_freq = NULL;
    if (g->rope_type == KVTC_ROPE_NONE) return KVTC_OK;
    uint32_t rd = g->rope_dim ? g->rope_dim : g->head_dim;
    t->n_pairs = rd / 2;
    t->inv_freq = malloc(sizeof(double) * (t->n_pairs ? t->n_pairs : 1));
    if (!t->inv_freq) return KVTC_ERR_OUT_OF_MEMORY;
    for (uint32_t i = 0; i < t->n_pairs; i++)
        t->inv_freq[i] = pow((double)g->rope_theta, -2.0 * (double)i / (double)rd);
    return KVTC_OK;
}

void rope_table_free(rope_table *t) {
    free(t->inv_freq);
    t->inv_freq = NULL;
}

void rope_angles(const rope_table *t, int64_t pos, float *cs) {
    for (uint32_t i = 0; i < t->n_pairs; i++) {
        double a = (double)pos * t->inv_freq[i];
        cs[2 * i] = (float)cos(a);
        cs[2 * i + 1] = (float)sin(a);
    }
}

void rope_rotate(const kvtc_geometry *g, const float *cs, int direction, float *x) {
    rope_rotate_path(g, cs, direction, x, 1);
}

void rope_rotate_path(const kvtc_geometry *g, const float *cs, int direction, float *x, int simd) {
    if (g->rope_type == KVTC_ROPE_NONE) return;
    uint32_t rd = g->rope_dim ? g->rope_dim : g->head_dim;
    uint32_t n = rd / 2;
    float sgn = direction >= 0 ? 1.0f : -1.0f;
#if KVTC_HAVE_AVX2_PATH
    /* called per head and token: the CPU check is a load and a test */
    if (simd && kvi_cpu_has_avx2() && rope_avx2_rotate(g->rope_type, cs, sgn, n, x)) return;
#else
    (void)simd;
#endif
    for (uint32_t i = 0; i < n; i++) {
        uint32_t a, b;
        if (g->rope_type == KVTC_ROPE_NORM) {
            a = 2 * i;
            b = 2 * i + 1;
        } else {
            a = i;
            b = i + n;
        }
        float c = cs[2 * i], s = sgn * cs[2 * i + 1];
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}
