/* codec_common.h - pieces shared by the CPU encoder and decoder. Both work
 * on kvtc_cache_layout (engine memory read/written in place); a contiguous
 * kvtc_cache is converted to its layout without copying. */
#ifndef KVTC_CPU_CODEC_COMMON_H
#define KVTC_CPU_CODEC_COMMON_H

#include <stdint.h>

#include "format/container.h"
#include "model/basis.h"
#include "transform/rope.h"

/* Tokens transform-coded per batch: the GEMM runs over a batch, the
 * entropy stage over its chunks in parallel. Bounds scratch memory. */
#define CODEC_BATCH_TOKENS 4096u

/* Chunks per batch for a given chunk size (at least 1). */
static inline uint32_t codec_batch_chunks(uint32_t chunk_tokens) {
    uint32_t c = CODEC_BATCH_TOKENS / chunk_tokens;
    return c ? c : 1;
}

/* A raw section, laid out [L][H][n_sink + n_window][d] in the stream's
 * dtype, described as a contiguous cache layout (K and V alike). */
void codec_raw_section_layout(const container_header *h, const uint8_t *section, kvtc_cache_layout *out);

/* Entropy-decode chunk ci of a stream whose prefix is validated (header
 * h) under plan pl into payload (room for the payload of chunk_tokens
 * tokens): the chunk's CRC is checked before it is decoded, and the decoded
 * size must be the plan's for the entry's token count (*n_tok), else
 * KVTC_ERR_CORRUPT. dec decodes codec 1 (DEFLATE). */
struct libdeflate_decompressor;
kvtc_result codec_chunk_payload(const uint8_t *buf, const container_header *h, uint32_t ci, const basis_plan *pl,
                                struct libdeflate_decompressor *dec, uint8_t *payload, uint32_t *n_tok);

/* Sink and window tokens of one cache tensor -> its raw section. */
void codec_cache_to_raw(const container_header *h, const kvtc_cache_layout *c, int is_key, uint8_t *section);

/* Raw tokens of the section that fall in stream tokens [t_begin, t_end),
 * layers [layer_begin, layer_end) -> layout token (stream token - t_begin). */
void codec_raw_to_cache(const container_header *h, const uint8_t *section, int is_key, uint64_t t_begin,
                        uint64_t t_end, uint32_t layer_begin, uint32_t layer_end, const kvtc_cache_layout *c);

/* Rows of tokens [t0, t0+n) of one stream, layers [first_layer, L), keys
 * un-rotated when rope != NULL, then centered and weighted: the per-token
 * work before the projection GEMM, split over n_threads threads by token.
 * KVTC_ERR_OUT_OF_RANGE for a token 100x beyond the calibrated token norm
 * (codec_common.c says why). */
kvtc_result codec_gather_centered(const kvtc_cache_layout *c, int is_key, const basis_stream *s, uint32_t first_layer,
                                  uint64_t t0, uint64_t n, const rope_table *rope, uint32_t n_threads, float *x);

/* The inverse after the reconstruction GEMM, for layers
 * [layer_begin, layer_end) of a stream whose coordinates start at layer
 * first_layer (x: [n][(layer_end - layer_begin) * H * d]): un-weight, add
 * the mean, re-rotate keys (rope != NULL), convert and store into layout
 * tokens [t0, t0+n). */
void codec_scatter_uncentered(const kvtc_cache_layout *c, int is_key, const basis_stream *s, uint32_t first_layer,
                              uint32_t layer_begin, uint32_t layer_end, uint64_t t0, uint64_t n,
                              const rope_table *rope, uint32_t n_threads, float *x);

#endif
