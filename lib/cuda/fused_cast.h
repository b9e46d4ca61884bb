/* fused_cast.h - C-callable switch of the FP8 encoder's fused gather
 * (launch_gather_e4m3, rope_gather.cuh) for the GPU tests and the bench;
 * not exported from libkvtc_cuda.so. */
#ifndef KVTC_CUDA_FUSED_CAST_H
#define KVTC_CUDA_FUSED_CAST_H

#include <stdint.h>

#include "kvtc_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* on = 0: c's FP8 encoder writes bf16 rows and casts them (two passes). */
void kvi_cuda_set_fused_cast(kvtc_cuda_codec *c, int on);
/* Streams (K or V of one compress call) c's encoder gathered straight into e4m3. */
uint64_t kvi_cuda_fused_casts(const kvtc_cuda_codec *c);

#ifdef __cplusplus
}
#endif

#endif
