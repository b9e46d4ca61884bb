/* quant_host.h - a synchronous C entry to the device (de)quantizers
 * (quantize.cu), for the GPU tests: one chunk of n tokens through the same
 * stream plans and kernels the codecs run, so their bytes can be compared
 * with lib/quant/group_quant.c's. */
#ifndef KVTC_CUDA_QUANT_HOST_H
#define KVTC_CUDA_QUANT_HOST_H

#include <stdint.h>

#include "kvtc.h"
#include "model/basis.h"

#ifdef __cplusplus
extern "C" {
#endif

/* quant_encode (quant/group_quant.h) on the device: dk [n][k->rank_used],
 * dv [n][v->rank_used] (host fp32, rows rank_used wide) -> out (host,
 * quant_payload_size(k, v, n) bytes). n == 0 writes nothing. Errors:
 * KVTC_ERR_UNSUPPORTED (a group the kernels do not take),
 * KVTC_ERR_OUT_OF_MEMORY, KVTC_ERR_CUDA. Allocates and synchronizes. */
kvtc_result kvi_cuda_quant_encode(const plan_stream *k, const plan_stream *v, const float *dk, const float *dv,
                                  uint64_t n, uint8_t *out);

/* The inverse, quant_decode's values: in (host, quant_payload_size(k, v, n)
 * bytes) -> dk [n][k->rank_used], dv [n][v->rank_used] (host fp32; dropped
 * groups 0). Same errors. */
kvtc_result kvi_cuda_quant_decode(const plan_stream *k, const plan_stream *v, const uint8_t *in, uint64_t n,
                                  float *dk, float *dv);

#ifdef __cplusplus
}
#endif

#endif
