/* bench_tile.h - a long cache for the CPU benches made by repeating a
 * captured one `tiles` times along the tokens (bench_partial, bench_append).
 * Static: include from one bench each. */
#ifndef KVTC_BENCH_TILE_H
#define KVTC_BENCH_TILE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc.h"

/* *big = one repeated `tiles` times (k, v and, when repeat_positions, the
 * positions tile by tile; else positions NULL, meaning 0..n-1); no token
 * ids. Free big->k, big->v, big->positions. 0, or -1 when out of memory. */
static __attribute__((unused)) int bench_tile_cache(const kvtc_cache *one, uint32_t tiles, int repeat_positions,
                                                    kvtc_cache *big) {
    const kvtc_geometry *g = &one->geometry;
    uint64_t n1 = one->n_tokens, n = n1 * tiles, lh = (uint64_t)g->n_layers * g->n_kv_heads;
    size_t row = (size_t)g->head_dim * kvtc_dtype_size(one->dtype);
    *big = *one;
    big->n_tokens = n;
    big->token_ids = NULL;
    big->positions = NULL;
    big->k = malloc(kvtc_cache_tensor_bytes(g, one->dtype, n));
    big->v = malloc(kvtc_cache_tensor_bytes(g, one->dtype, n));
    if (repeat_positions) big->positions = malloc(sizeof(int64_t) * (n ? n : 1));
    if (!big->k || !big->v || (repeat_positions && !big->positions)) return -1;
    for (uint64_t t = 0; repeat_positions && t < n; t++)
        big->positions[t] = one->positions ? one->positions[t % n1] : (int64_t)(t % n1);
    for (uint64_t i = 0; i < lh; i++)
        for (uint32_t tl = 0; tl < tiles; tl++) {
            memcpy((uint8_t *)big->k + (i * n + tl * n1) * row, (const uint8_t *)one->k + i * n1 * row, n1 * row);
            memcpy((uint8_t *)big->v + (i * n + tl * n1) * row, (const uint8_t *)one->v + i * n1 * row, n1 * row);
        }
    return 0;
}

#endif
