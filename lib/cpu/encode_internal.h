/* encode_internal.h - what kvtc_append (append.c) needs of the encoder. */
#ifndef KVTC_CPU_ENCODE_INTERNAL_H
#define KVTC_CPU_ENCODE_INTERNAL_H

#include "kvtc.h"
#include "model/basis.h"

const basis_plan *encoder_plan(const kvtc_encoder *e);
const kvtc_encode_options *encoder_options(const kvtc_encoder *e);
const kvtc_basis *encoder_basis(const kvtc_encoder *e);

/* kvtc_compress_layout_bound with n_sink in place of the encoder's option
 * (append bounds a stream's tail as a stream with no sinks). */
size_t encoder_bound_sink(const kvtc_encoder *e, const kvtc_cache_layout *c, uint32_t n_sink);

/* Where encoder_code_tokens puts its chunks: chunk data from `data` (cap
 * bytes there), index entries from `index` (the chunk index section). In:
 * size = offset within chunk data of the next chunk, chunks = its index;
 * both advance past every chunk written. */
typedef struct chunk_sink {
    uint8_t *data;
    uint64_t cap;
    uint64_t size;
    uint8_t *index;
    uint32_t chunks;
} chunk_sink;

/* Code tokens [t0, t0 + n) of c (checked by the caller: geometry, finite
 * values) as chunks of the encoder's chunk_tokens, appended to *out.
 * With a lead (kvtc_append), the first chunk opens with lead_tokens tokens
 * whose payload `lead` is already quantized under the encoder's plan
 * (0 < lead_tokens < chunk_tokens, n > 0) and takes the first
 * chunk_tokens - lead_tokens of the n tokens; the chunks after it are
 * aligned as usual. Errors: KVTC_ERR_BUFFER_TOO_SMALL when cap runs out,
 * KVTC_ERR_OUT_OF_RANGE for tokens the plan cannot code (as
 * kvtc_compress), KVTC_ERR_INVALID_ARGUMENT for a bad lead. */
kvtc_result encoder_code_tokens(kvtc_encoder *e, const kvtc_cache_layout *c, uint64_t t0, uint64_t n,
                                const uint8_t *lead, uint32_t lead_tokens, chunk_sink *out);

#endif
