/* rows.h - moving tokens between the engine layout [layer][head][token][dim]
 * and the codec's rows [token][layer*head*dim] (one row per token, as the
 * cross-layer PCA sees it), removing RoPE from keys on the way in and
 * re-applying it on the way out: the first and last step of the transform. */
#ifndef KVTC_TRANSFORM_ROWS_H
#define KVTC_TRANSFORM_ROWS_H

#include <stdint.h>

#include "kvtc.h"
#include "transform/rope.h"
#include "util/layout.h"

/* Copy tokens [t0, t0+n) of k (is_key) or v, layers [first_layer, L), into
 * rows[n][row_width] as float; keys are un-rotated when unrope is set.
 * rope may be NULL when unrope is 0. */
void kvi_gather_rows(const kvtc_cache *c, int is_key, uint32_t first_layer, uint64_t t0,
                      uint64_t n, const rope_table *rope, int unrope, float *rows);

/* Inverse of kvi_gather_rows: write rows into the cache, re-rotating keys. */
void kvi_scatter_rows(kvtc_cache *c, int is_key, uint32_t first_layer, uint64_t t0, uint64_t n,
                       const rope_table *rope, int rerope, const float *rows);

/* 1 if every value of tokens [t0, t0+n) is finite. */
int kvi_cache_tokens_finite(const kvtc_cache *c, uint64_t t0, uint64_t n);

/* The same on a layout (the implementation of the kvtc_cache forms above,
 * which are its contiguous special case). Rows cover layers
 * [layer_begin, layer_end); t0 is a token of the layout. The layout must
 * have passed kvi_layout_check. */
void kvi_layout_gather_rows(const kvtc_cache_layout *c, int is_key, uint32_t layer_begin, uint32_t layer_end,
                             uint64_t t0, uint64_t n, const rope_table *rope, int unrope, float *rows);
void kvi_layout_scatter_rows(const kvtc_cache_layout *c, int is_key, uint32_t layer_begin, uint32_t layer_end,
                              uint64_t t0, uint64_t n, const rope_table *rope, int rerope, const float *rows);
int kvi_layout_tokens_finite(const kvtc_cache_layout *c, uint32_t layer_begin, uint64_t t0, uint64_t n);
/* kvi_layout_copy_tokens (a bit-exact copy between layouts): util/layout.h. */

#endif
