/* group_quant.h - per-token, per-group affine quantization of PCA
 * coordinates and the byte layout of one chunk's payload (before entropy
 * coding), specified in docs/FORMAT.md "Chunk payload".
 *
 * For a quantized group (bits b in 1..8) and one token: shift = fp16(min),
 * scale = fp16 rounded up of (max - shift) / (2^b - 1); code =
 * clamp(round((d - shift) / scale), 0, 2^b - 1); decoded d' = shift + code * scale.
 * |d - d'| <= scale / 2 (+ fp16 rounding of the shift) for every coordinate. */
#ifndef KVTC_QUANT_GROUP_QUANT_H
#define KVTC_QUANT_GROUP_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "model/basis.h"

/* Exact payload bytes of a chunk of n tokens under plans k and v. */
uint64_t quant_payload_size(const plan_stream *k, const plan_stream *v, uint64_t n);

/* KVTC_ERR_OUT_OF_RANGE when a coordinate that n tokens would code (a
 * quantized group's values or its quantization step, or a raw fp16 group's
 * values) lies beyond fp16's finite range, where the fp16 shift/scale
 * would saturate and the decoded values come back wrong; else KVTC_OK.
 * Encoders call it before quant_encode (issue 9 item 2). */
kvtc_result quant_check_range(const plan_stream *k, const plan_stream *v, const float *dk, uint64_t ldk,
                              const float *dv, uint64_t ldv, uint64_t n);

/* Quantize n tokens. dk: [n][ldk] coordinates (only the first k->rank_used
 * are read), dv likewise. out receives quant_payload_size() bytes. */
void quant_encode(const plan_stream *k, const plan_stream *v, const float *dk, uint64_t ldk,
                  const float *dv, uint64_t ldv, uint64_t n, uint8_t *out);

/* Inverse: writes the first rank_used columns of dk/dv (dropped columns 0).
 * KVTC_ERR_CORRUPT if a shift, scale or raw value is not finite (an encoder
 * never writes one: they saturate at +-65504). */
kvtc_result quant_decode(const plan_stream *k, const plan_stream *v, const uint8_t *in, uint64_t n,
                  float *dk, uint64_t ldk, float *dv, uint64_t ldv);

/* The payload of tokens a then b from a's payload (na tokens) and b's (nb
 * tokens) under the same plans: out receives quant_payload_size(na + nb)
 * bytes. Exact (codes and parameters are moved, nothing is re-quantized),
 * so kvtc_append can complete a stream's partial last chunk with new
 * tokens without a second quantization of the old ones. out must not
 * overlap a or b. */
void quant_payload_concat(const plan_stream *k, const plan_stream *v, const uint8_t *a, uint64_t na,
                          const uint8_t *b, uint64_t nb, uint8_t *out);

#endif
