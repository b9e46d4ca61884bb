/* gemm_sm.h - C-callable SM count target of a codec's projection GEMMs
 * (cuBLAS's and cuBLASLt's SM_COUNT_TARGET) for the bench's overlap
 * experiment; not exported from libkvtc_cuda.so. */
#ifndef KVTC_CUDA_GEMM_SM_H
#define KVTC_CUDA_GEMM_SM_H

#include "kvtc_cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* n = 0: every SM (the default). Returns 0, or -1 when cuBLAS refuses it. */
int kvi_cuda_set_gemm_sm_count(kvtc_cuda_codec *c, int n);

#ifdef __cplusplus
}
#endif

#endif
