/* test_half_paths.c - the cache layout conversions (kvi_gather_rows /
 * kvi_scatter_rows) may use the CPU's F16C instructions; they must give
 * exactly the scalar conversions of util/half.h for every value class, at
 * run lengths with and without a vector tail; stores saturate to fp16's
 * finite range. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "transform/rows.h"
#include "util/cache.h"
#include "util/half.h"

static float value(uint32_t i, uint32_t seed) {
    static const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, -65504.0f, 65519.0f, 65520.0f,
                                     1e6f, -1e6f, 6.1e-5f, 5.96e-8f, 2.98e-8f, 1e-9f, 0.1f, 3.14159f};
    if (i % 5 == 0) return specials[(i / 5 + seed) % 16];
    uint32_t x = (i + 1) * 2654435761u ^ seed * 40503u;
    float mag = ldexpf((float)(x & 0xffff) / 65536.0f + 0.5f, (int)((x >> 16) % 40) - 26);
    return (x >> 31) ? -mag : mag;
}

static void check_dims(uint32_t head_dim) {
    kvtc_geometry g = {2, 3, head_dim, 0, KVTC_ROPE_NONE, 0.0f};
    uint64_t n = 7, w = (uint64_t)g.n_layers * g.n_kv_heads * head_dim;
    uint64_t elems = w * n;
    uint16_t *k = malloc(2 * elems), *v = malloc(2 * elems);
    float *rows = malloc(sizeof(float) * elems), *back = malloc(sizeof(float) * elems);
    kvtc_cache c = {g, KVTC_DTYPE_F16, n, k, v, NULL, NULL};
    for (uint64_t i = 0; i < elems; i++) rows[i] = value((uint32_t)i, head_dim);
    kvi_scatter_rows(&c, 0, 0, 0, n, NULL, 0, rows);
    /* rows are [token][layer*head*dim]; the cache is [layer][head][token][dim] */
    int bad_store = 0, bad_load = 0;
    for (uint64_t t = 0; t < n; t++)
        for (uint64_t col = 0; col < w; col++) {
            uint64_t lh = col / head_dim, d = col % head_dim;
            /* stores saturate to +-65504 (issue 9 item 2: never Inf from finite) */
            float r = rows[t * w + col];
            r = r > 65504.0f ? 65504.0f : (r < -65504.0f ? -65504.0f : r);
            uint16_t got = v[(lh * n + t) * head_dim + d], want = kvi_f32_to_f16(r);
            bad_store += got != want;
        }
    kvi_gather_rows(&c, 0, 0, 0, n, NULL, 0, back);
    for (uint64_t t = 0; t < n; t++)
        for (uint64_t col = 0; col < w; col++) {
            uint64_t lh = col / head_dim, d = col % head_dim;
            float want = kvi_f16_to_f32(v[(lh * n + t) * head_dim + d]);
            bad_load += memcmp(&back[t * w + col], &want, 4) != 0;
        }
    CHECK_MSG(bad_store == 0, "head_dim %u: %d fp16 stores differ from the scalar conversion", head_dim, bad_store);
    CHECK_MSG(bad_load == 0, "head_dim %u: %d fp16 loads differ from the scalar conversion", head_dim, bad_load);
    free(k); free(v); free(rows); free(back);
}

int main(void) {
    static const uint32_t dims[] = {1, 7, 8, 12, 64, 100, 128};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) check_dims(dims[i]);
    return TEST_REPORT();
}
