/* test_cuda_quant.c - the device (de)quantizers (lib/cuda/quantize.cu, issue
 * 15's item map over groups) against lib/quant/group_quant.c, byte for byte
 * and value for value, on the edge cases the codec tests rarely reach:
 * groups of 1024 (4 sub-blocks per thread), dropped groups inside
 * rank_used, raw fp16 groups of 1..5 coordinates (later groups then start
 * off 8-element alignment), rank_used not a multiple of 8 or 16, token
 * counts that leave padding threads in the shuffles (1, 2, 17, 33, 100),
 * a stream with no quantized group, one group only, and min / max that are
 * zeros of both signs (the CPU keeps the first zero's sign). Exits 77
 * (skipped) without a GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/quant_host.h"
#include "gpu_test_util.h"
#include "model/basis.h"
#include "quant/group_quant.h"
#include "quant/group_quant_kernels.h"
#include "synth.h"
#include "test.h"

static plan_stream make_plan(const dp_group *g, uint32_t n) {
    plan_stream ps;
    memset(&ps, 0, sizeof ps);
    ps.groups = malloc(sizeof(dp_group) * (n ? n : 1));
    if (ps.groups && n) memcpy(ps.groups, g, sizeof(dp_group) * n);
    ps.n_groups = ps.groups ? n : 0;
    plan_stream_finalize(&ps);
    return ps;
}

/* Gaussian coefficients, then in quantized groups of some tokens the
 * signed-zero cases: all zeros led by -0 or by +0, zero as the minimum
 * (with positives) or the maximum (with negatives), -0 and +0 both present. */
static void fill(const plan_stream *ps, uint64_t n, synth_rng *r, float *d) {
    uint32_t w = ps->rank_used;
    for (uint64_t i = 0; i < n * w; i++) d[i] = (float)(synth_gauss(r) * 3.0);
    for (uint64_t t = 0; t < n; t++) {
        uint32_t col = 0, kind = (uint32_t)(t % 6);
        for (uint32_t gi = 0; gi < ps->n_groups && col < w; gi++) {
            const dp_group *g = &ps->groups[gi];
            float *x = d + t * w + col;
            col += g->size;
            if (g->bits < 1 || g->bits > DP_MAX_BITS || kind == 0) continue;
            uint32_t a = (uint32_t)(synth_next(r) % g->size), b = (uint32_t)(synth_next(r) % g->size);
            for (uint32_t j = 0; j < g->size; j++) {
                float v = x[j];
                if (kind == 1) v = j == a ? -0.0f : 0.0f;         /* zeros, the first -0 (when a == 0) */
                else if (kind == 2) v = j < a ? 0.0f : -0.0f;     /* zeros, +0 first then -0 */
                else if (kind == 3) v = fabsf(v);                 /* min 0 below */
                else if (kind == 4) v = -fabsf(v);                /* max 0 below */
                x[j] = v;
            }
            if (kind == 3 || kind == 4) {
                x[a] = (synth_next(r) & 1) ? -0.0f : 0.0f;
                x[b] = (synth_next(r) & 1) ? -0.0f : 0.0f;
            }
            if (kind == 5) x[a] = -0.0f, x[b] = 0.0f;  /* zeros inside the range */
        }
    }
}

static void check_case(const plan_stream *k, const plan_stream *v, uint64_t n, synth_rng *r, const char *what) {
    uint32_t wk = k->rank_used, wv = v->rank_used;
    uint64_t size = quant_payload_size(k, v, n);
    float *dk = malloc(sizeof(float) * (n * wk + 1)), *dv = malloc(sizeof(float) * (n * wv + 1));
    float *ck = malloc(sizeof(float) * (n * wk + 1)), *cv = malloc(sizeof(float) * (n * wv + 1));
    float *gk = malloc(sizeof(float) * (n * wk + 1)), *gv = malloc(sizeof(float) * (n * wv + 1));
    uint8_t *cpu = malloc(size + 1), *avx = malloc(size + 1), *gpu = malloc(size + 1);
    if (!dk || !dv || !ck || !cv || !gk || !gv || !cpu || !avx || !gpu) {
        CHECK(0);
        goto done;
    }
    fill(k, n, r, dk);
    fill(v, n, r, dv);
    CHECK(quant_check_range(k, v, dk, wk, dv, wv, n) == KVTC_OK);
    quant_encode_path(k, v, dk, wk, dv, wv, n, cpu, 0);
    quant_encode_path(k, v, dk, wk, dv, wv, n, avx, 1);
    CHECK_MSG(memcmp(cpu, avx, size) == 0, "%s n=%llu: CPU scalar and SIMD payloads differ", what,
              (unsigned long long)n);
    kvtc_result res = kvi_cuda_quant_encode(k, v, dk, dv, n, gpu);
    CHECK_MSG(res == KVTC_OK, "%s: device encode: %d", what, (int)res);
    size_t diff = 0, first = 0;
    for (size_t i = size; i-- > 0;)
        if (cpu[i] != gpu[i]) diff++, first = i;
    CHECK_MSG(diff == 0, "%s n=%llu: %zu of %llu payload bytes differ from the CPU's (first at %zu)", what,
              (unsigned long long)n, diff, (unsigned long long)size, first);
    CHECK(quant_decode(k, v, cpu, n, ck, wk, cv, wv) == KVTC_OK);
    res = kvi_cuda_quant_decode(k, v, cpu, n, gk, gv);
    CHECK_MSG(res == KVTC_OK, "%s: device decode: %d", what, (int)res);
    CHECK_MSG(memcmp(ck, gk, sizeof(float) * n * wk) == 0 && memcmp(cv, gv, sizeof(float) * n * wv) == 0,
              "%s n=%llu: dequantized values differ from the CPU's", what, (unsigned long long)n);
done:
    free(dk); free(dv); free(ck); free(cv); free(gk); free(gv);
    free(cpu); free(avx); free(gpu);
}

/* A random plan: quantized groups of 16..1024 with 1..8 bits, dropped
 * groups and raw groups of 1..5 among them, a trailing dropped group. */
static plan_stream random_plan(synth_rng *r) {
    static const uint32_t sizes[4] = {16, 64, 256, 1024};
    dp_group g[12];
    uint32_t n = 1 + (uint32_t)(synth_next(r) % 10);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t kind = (uint32_t)(synth_next(r) % 6);
        g[i].size = sizes[synth_next(r) % 4];
        g[i].bits = (uint8_t)(1 + synth_next(r) % 8);
        if (kind == 0) g[i].bits = 0;
        if (kind == 1) { g[i].bits = DP_RAW_BITS; g[i].size = 1 + (uint32_t)(synth_next(r) % 5); }
    }
    g[n].size = 40;
    g[n].bits = 0;
    return make_plan(g, n + 1);
}

int main(void) {
    gpu_test_require_device();
    static const uint64_t ns[5] = {1, 2, 17, 33, 100};
    synth_rng r = {42};
    /* fixed plans: name, K groups, V groups */
    const dp_group big[9] = {{1024, 1}, {1024, 2}, {1024, 3}, {1024, 4}, {1024, 5}, {1024, 6}, {1024, 7}, {1024, 8}, {16, 0}};
    const dp_group mixed[7] = {{16, 2}, {64, 0}, {256, 3}, {3, DP_RAW_BITS}, {16, 5}, {1024, 0}, {100, 0}};
    const dp_group odd[7] = {{1, DP_RAW_BITS}, {16, 3}, {3, DP_RAW_BITS}, {1024, 2}, {256, 0}, {64, 7}, {5, DP_RAW_BITS}};
    const dp_group one_k[1] = {{16, 4}}, one_v[1] = {{64, 8}};
    const dp_group raw_only[2] = {{5, DP_RAW_BITS}, {11, 0}}, dropped_only[1] = {{64, 0}};
    struct { const char *name; const dp_group *k, *v; uint32_t nk, nv; } fixed[] = {
        {"1024-groups, bits 1..8", big, mixed, 9, 7},
        {"raw groups shift alignment, rank_used % 8 != 0", odd, big, 7, 9},
        {"one group per stream", one_k, one_v, 1, 1},
        {"no quantized group", raw_only, dropped_only, 2, 1},
    };
    for (size_t f = 0; f < sizeof fixed / sizeof fixed[0]; f++) {
        plan_stream k = make_plan(fixed[f].k, fixed[f].nk), v = make_plan(fixed[f].v, fixed[f].nv);
        for (int i = 0; i < 5; i++) check_case(&k, &v, ns[i], &r, fixed[f].name);
        plan_stream_free(&k);
        plan_stream_free(&v);
    }
    for (int it = 0; it < 24; it++) {
        plan_stream k = random_plan(&r), v = random_plan(&r);
        check_case(&k, &v, ns[it % 5], &r, "random plan");
        plan_stream_free(&k);
        plan_stream_free(&v);
    }
    return TEST_REPORT();
}
