/* codec_common.h - pieces shared by the CPU encoder and decoder. */
#ifndef KVTC_CPU_CODEC_COMMON_H
#define KVTC_CPU_CODEC_COMMON_H

#include <stdint.h>

#include "format/basis.h"
#include "format/container.h"
#include "transform/rope.h"

/* Tokens transform-coded per batch: the GEMM runs over a batch, the
 * entropy stage over its chunks in parallel. Bounds scratch memory. */
#define CODEC_BATCH_TOKENS 4096u

/* Chunks per batch for a given chunk size (at least 1). */
static inline uint32_t codec_batch_chunks(uint32_t chunk_tokens) {
    uint32_t c = CODEC_BATCH_TOKENS / chunk_tokens;
    return c ? c : 1;
}

/* Sink and window tokens of one cache tensor <-> a raw section laid out
 * [L][H][n_sink + n_window][d] in the cache's dtype. */
void codec_cache_to_raw(const container_header *h, const void *tensor, uint8_t *section);
void codec_raw_to_cache(const container_header *h, const uint8_t *section, void *tensor);

/* Rows of tokens [t0, t0+n) of one stream, layers [first_layer, L), keys
 * un-rotated when rope != NULL, then centered and weighted: the per-token
 * work before the projection GEMM, split over n_threads threads by token. */
void codec_gather_centered(const kvtc_cache *c, int is_key, const basis_stream *s, uint32_t first_layer,
                           uint64_t t0, uint64_t n, const rope_table *rope, uint32_t n_threads, float *x);

/* The inverse after the reconstruction GEMM: un-weight, add the mean,
 * re-rotate keys (rope != NULL), convert and store into the cache. */
void codec_scatter_uncentered(kvtc_cache *c, int is_key, const basis_stream *s, uint32_t first_layer,
                              uint64_t t0, uint64_t n, const rope_table *rope, uint32_t n_threads, float *x);

#endif
