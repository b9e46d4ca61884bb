/* layout.h - addressing and validation of kvtc_cache_layout (include/kvtc.h):
 * the one description of engine memory that the encoder reads and the
 * decoder writes; a contiguous kvtc_cache is the special case
 * kvtc_cache_layout_from_cache() builds. */
#ifndef KVTC_UTIL_LAYOUT_H
#define KVTC_UTIL_LAYOUT_H

#include <stdint.h>

#include "kvtc.h"

/* Start of layer l of one tensor, in bytes (es = element size). */
static inline char *layout_layer_base(const kvtc_tensor_layout *t, uint32_t l, size_t es) {
    if (t->layers) return (char *)t->layers[l];
    return (char *)t->base + (int64_t)es * (int64_t)l * t->layer_stride;
}

/* Element offset of token t (head 0, dim 0) within its layer. */
static inline int64_t layout_token_offset(const kvtc_cache_layout *c, const kvtc_tensor_layout *t, uint64_t tok) {
    if (!c->block_size) return (int64_t)tok * t->token_stride;
    int64_t blk = c->block_table[tok / c->block_size];
    return blk * t->block_stride + (int64_t)(tok % c->block_size) * t->token_stride;
}

/* Address of element (layer l, token tok, head h, dim 0). */
static inline char *layout_elem(const kvtc_cache_layout *c, int is_key, uint32_t l, uint64_t tok, uint32_t h) {
    const kvtc_tensor_layout *t = is_key ? &c->k : &c->v;
    size_t es = kvtc_dtype_size(c->dtype);
    return layout_layer_base(t, l, es) +
           (int64_t)es * (layout_token_offset(c, t, tok) + (int64_t)h * t->head_stride);
}

static inline int64_t kvi_layout_position(const kvtc_cache_layout *c, uint64_t t) {
    return c->positions ? c->positions[t] : (int64_t)t;
}

/* 1 if every element offset of layers [layer_begin, layer_end) - the sum
 * of |stride| x (extent - 1) over token (within a block), block (over the
 * pool), head, dim and, without per-layer pointers, layer - times the
 * element size fits in int64, so the address arithmetic cannot overflow
 * (strides that large cannot describe memory anyway). */
int kvi_layout_offsets_fit(const kvtc_cache_layout *c, uint32_t layer_begin, uint32_t layer_end);

/* KVTC_OK if c can be read or written for layers [layer_begin, layer_end):
 * geometry, dtype and token count in range, the layer pointers of the
 * range present (when there are tokens), offsets that fit in int64
 * (KVTC_ERR_INVALID_ARGUMENT otherwise), and the block table valid
 * (KVTC_ERR_BAD_BLOCK_TABLE: an id out of [0, n_pool_blocks) or repeated). */
kvtc_result kvi_layout_check(const kvtc_cache_layout *c, uint32_t layer_begin, uint32_t layer_end);

/* Bit-exact copy of tokens [src_t0, +n) of src to [dst_t0, +n) of dst (same
 * geometry and dtype), K (is_key) or V, layers [layer_begin, layer_end). */
void kvi_layout_copy_tokens(const kvtc_cache_layout *src, uint64_t src_t0, const kvtc_cache_layout *dst,
                             uint64_t dst_t0, uint64_t n, int is_key, uint32_t layer_begin, uint32_t layer_end);

/* *view = tokens [t0, t0 + n) of c as a layout of its own (view token i is
 * c's token t0 + i), addressing the same memory, so that a decoder can
 * write a piece of a sequence in place. Only address arithmetic: the
 * pointers may be device pointers. With per-layer pointers the shifted
 * ones go into k_layers / v_layers ([n_layers] each, the caller's); NULL
 * entries stay NULL. A paged layout is shifted by whole blocks, so t0 must
 * be a multiple of block_size (KVTC_ERR_UNSUPPORTED otherwise). positions
 * and token_ids of the view are NULL. c must have passed kvi_layout_check
 * with t0 + n <= c->n_tokens. */
kvtc_result kvi_layout_token_view(const kvtc_cache_layout *c, uint64_t t0, uint64_t n, void **k_layers,
                                  void **v_layers, kvtc_cache_layout *view);

#endif
