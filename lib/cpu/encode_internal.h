/* encode_internal.h - what kvtc_append (append.c) needs of the encoder. */
#ifndef KVTC_CPU_ENCODE_INTERNAL_H
#define KVTC_CPU_ENCODE_INTERNAL_H

#include "kvtc.h"
#include "model/basis.h"

const basis_plan *encoder_plan(const kvtc_encoder *e);
const kvtc_encode_options *encoder_options(const kvtc_encoder *e);
const kvtc_basis *encoder_basis(const kvtc_encoder *e);

/* kvtc_compress_layout with n_sink in place of the encoder's option (append
 * codes a stream's tail with no sinks). */
size_t encoder_bound_sink(const kvtc_encoder *e, const kvtc_cache_layout *c, uint32_t n_sink);
kvtc_result encoder_compress_sink(kvtc_encoder *e, const kvtc_cache_layout *c, uint32_t n_sink, void *out,
                                  size_t cap, size_t *written);

#endif
