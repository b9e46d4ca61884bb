/* test_rope.c - RoPE removal and re-application (lib/transform/rope.c)
 * against an independent double-precision implementation (tests/synth.h):
 * both pairings, partial rotary dimensions, large positions, and the
 * gather path the encoder uses (kvi_gather_rows with unrope). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"
#include "test.h"
#include "transform/rope.h"
#include "transform/rows.h"
#include "util/cache.h"

static double vec_norm(const double *x, uint32_t n) {
    double s = 0;
    for (uint32_t i = 0; i < n; i++) s += x[i] * x[i];
    return sqrt(s);
}

/* rel. error of float vector a against double vector b, relative to |b| */
static double rel_err(const float *a, const double *b, uint32_t n) {
    double e = 0;
    for (uint32_t i = 0; i < n; i++) e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    double nb = vec_norm(b, n);
    return sqrt(e) / (nb > 1e-30 ? nb : 1e-30);
}

static const int64_t positions[] = {0, 1, 2, 7, 100, 1000, 4095, 32768, 123457, 500000, 1048575, 2000003};
#define N_POS (sizeof positions / sizeof positions[0])

static void test_geometry(const kvtc_geometry *g, const char *name) {
    uint32_t d = g->head_dim;
    uint32_t rd = g->rope_dim ? g->rope_dim : d;
    rope_table t;
    CHECK(rope_table_init(&t, g) == KVTC_OK);
    CHECK(t.n_pairs == (g->rope_type == KVTC_ROPE_NONE ? 0 : rd / 2));
    float *cs = malloc(sizeof(float) * (d + 2));
    float *x = malloc(sizeof(float) * d);
    float *x0 = malloc(sizeof(float) * d);
    double *plain = malloc(sizeof(double) * d);
    double *rot = malloc(sizeof(double) * d);
    synth_rng rng = {42 + (uint64_t)g->rope_type * 7 + rd};
    double worst_rt = 0, worst_apply = 0, worst_remove = 0;
    int tail_exact = 1;
    for (size_t pi = 0; pi < N_POS; pi++) {
        int64_t pos = positions[pi];
        for (int rep = 0; rep < 8; rep++) {
            for (uint32_t j = 0; j < d; j++) plain[j] = synth_gauss(&rng) * (1.0 + j % 5);
            memcpy(rot, plain, sizeof(double) * d);
            synth_rope_d(g, pos, +1, rot);
            rope_angles(&t, pos, cs);

            /* remove then re-apply: the identity */
            for (uint32_t j = 0; j < d; j++) x0[j] = x[j] = (float)plain[j];
            rope_rotate(g, cs, -1, x);
            rope_rotate(g, cs, +1, x);
            double e = 0, nx = 0;
            for (uint32_t j = 0; j < d; j++) {
                e += ((double)x[j] - x0[j]) * ((double)x[j] - x0[j]);
                nx += (double)x0[j] * x0[j];
            }
            e = sqrt(e / nx);
            worst_rt = e > worst_rt ? e : worst_rt;

            /* apply: the library agrees with the double reference */
            for (uint32_t j = 0; j < d; j++) x[j] = (float)plain[j];
            rope_rotate(g, cs, +1, x);
            e = rel_err(x, rot, d);
            worst_apply = e > worst_apply ? e : worst_apply;
            for (uint32_t j = rd; j < d; j++) tail_exact &= x[j] == (float)plain[j];

            /* remove from a rope-applied key: the un-rotated original */
            for (uint32_t j = 0; j < d; j++) x[j] = (float)rot[j];
            rope_rotate(g, cs, -1, x);
            e = rel_err(x, plain, d);
            worst_remove = e > worst_remove ? e : worst_remove;
        }
    }
    double tol = g->rope_type == KVTC_ROPE_NONE ? 0.0 : 1e-5;
    CHECK_MSG(worst_rt <= (tol ? tol : 1e-12), "%s: remove/apply round trip rel err %.3g", name, worst_rt);
    CHECK_MSG(worst_apply <= (tol ? tol : 1e-7), "%s: apply vs reference rel err %.3g", name, worst_apply);
    CHECK_MSG(worst_remove <= (tol ? tol : 1e-7), "%s: removal vs original rel err %.3g", name, worst_remove);
    CHECK_MSG(tail_exact, "%s: dims beyond rope_dim must be untouched", name);
    free(cs); free(x); free(x0); free(plain); free(rot);
    rope_table_free(&t);
    CHECK(t.inv_freq == NULL);
}

/* The encoder's path: kvi_gather_rows(unrope=1) on a synthetic cache with
 * RoPE applied at explicit (large, gapped) positions recovers the keys before
 * RoPE; kvi_scatter_rows(rerope=1) puts RoPE back. */
static void test_gather_scatter(const kvtc_geometry *g, const char *name) {
    const uint64_t n = 24;
    int64_t *pos = malloc(sizeof(int64_t) * n);
    for (uint64_t t = 0; t < n; t++) pos[t] = 499990 + (int64_t)(t * t * 3);
    synth_params sp;
    synth_params_init(&sp, g, KVTC_DTYPE_F32, n);
    sp.positions = pos;
    synth_cache sc;
    CHECK(synth_make(&sp, &sc) == 0);
    rope_table t;
    CHECK(rope_table_init(&t, g) == KVTC_OK);
    uint64_t p = synth_p(g);
    float *rows = malloc(sizeof(float) * p * n);
    kvi_gather_rows(&sc.c, 1, 0, 0, n, &t, 1, rows);
    double worst = 0;
    uint32_t d = g->head_dim, H = g->n_kv_heads;
    for (uint64_t tt = 0; tt < n; tt++)
        for (uint32_t l = 0; l < g->n_layers; l++)
            for (uint32_t h = 0; h < H; h++) {
                const float *got = rows + tt * p + ((uint64_t)l * H + h) * d;
                const double *want = sc.k_plain + (((uint64_t)l * H + h) * n + tt) * d;
                double e = rel_err(got, want, d);
                worst = e > worst ? e : worst;
            }
    CHECK_MSG(worst <= 1e-5, "%s: gather(unrope) vs keys before RoPE: rel err %.3g", name, worst);

    /* scatter with re-rotation reproduces the cached keys */
    kvtc_cache out;
    CHECK(synth_alloc_like(g, KVTC_DTYPE_F32, n, 0, &out) == 0);
    out.positions = pos; /* borrowed */
    kvi_scatter_rows(&out, 1, 0, 0, n, &t, 1, rows);
    double e = 0, nn = 0;
    for (uint64_t i = 0; i < p * n; i++) {
        double a = ((float *)out.k)[i], b = ((float *)sc.c.k)[i];
        e += (a - b) * (a - b);
        nn += b * b;
    }
    CHECK_MSG(sqrt(e / nn) <= 1e-5, "%s: scatter(rerope) round trip rel err %.3g", name, sqrt(e / nn));
    out.positions = NULL;
    synth_cache_free(&out);
    free(rows);
    rope_table_free(&t);
    synth_free(&sc);
    free(pos);
}

int main(void) {
    struct {
        kvtc_geometry g;
        const char *name;
    } cases[] = {
        {synth_geometry(1, 1, 32, KVTC_ROPE_NORM, 0, 10000.0f), "norm d32"},
        {synth_geometry(1, 1, 32, KVTC_ROPE_NEOX, 0, 10000.0f), "neox d32"},
        {synth_geometry(1, 1, 128, KVTC_ROPE_NORM, 0, 500000.0f), "norm d128 theta5e5"},
        {synth_geometry(1, 1, 128, KVTC_ROPE_NEOX, 0, 1000000.0f), "neox d128 theta1e6"},
        {synth_geometry(1, 1, 32, KVTC_ROPE_NORM, 16, 10000.0f), "norm d32 rope_dim16"},
        {synth_geometry(1, 1, 64, KVTC_ROPE_NEOX, 24, 10000.0f), "neox d64 rope_dim24"},
        {synth_geometry(1, 1, 64, KVTC_ROPE_NEOX, 2, 10000.0f), "neox d64 rope_dim2"},
        {synth_geometry(1, 1, 16, KVTC_ROPE_NONE, 0, 0.0f), "none"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(kvi_geometry_check(&cases[i].g) == KVTC_OK);
        test_geometry(&cases[i].g, cases[i].name);
    }

    kvtc_geometry gn = synth_geometry(2, 2, 32, KVTC_ROPE_NORM, 0, 10000.0f);
    kvtc_geometry gx = synth_geometry(2, 2, 32, KVTC_ROPE_NEOX, 0, 10000.0f);
    kvtc_geometry gp = synth_geometry(2, 2, 32, KVTC_ROPE_NEOX, 16, 10000.0f);
    test_gather_scatter(&gn, "gather norm");
    test_gather_scatter(&gx, "gather neox");
    test_gather_scatter(&gp, "gather neox rope_dim16");

    /* the two pairings differ: a norm-rotated key is not a neox-rotated one */
    {
        rope_table t;
        kvtc_geometry g = gn;
        g.n_layers = g.n_kv_heads = 1;
        CHECK(rope_table_init(&t, &g) == KVTC_OK);
        float cs[64], a[32], b[32];
        for (int j = 0; j < 32; j++) a[j] = b[j] = (float)(j + 1);
        rope_angles(&t, 3, cs);
        rope_rotate(&g, cs, +1, a);
        kvtc_geometry g2 = gx;
        g2.n_layers = g2.n_kv_heads = 1;
        rope_rotate(&g2, cs, +1, b);
        CHECK(memcmp(a, b, sizeof a) != 0);
        /* position 0 is the identity */
        rope_angles(&t, 0, cs);
        for (int j = 0; j < 32; j++) a[j] = (float)(j + 1);
        rope_rotate(&g, cs, +1, a);
        int ident = 1;
        for (int j = 0; j < 32; j++) ident &= a[j] == (float)(j + 1);
        CHECK(ident);
        rope_table_free(&t);
    }
    return TEST_REPORT();
}
