/* fp8_basis.h - the e4m3 basis operands of the FP8 projection GEMMs
 * (transform/fp8.h), converted on the device: the same bytes and scales as
 * kvi_fp8_basis_t / kvi_fp8_basis_rows (the scale from the host's amax
 * pass; each element by __fmul_rn, __fdiv_rn and CUDA's round-to-nearest-
 * even saturating e4m3 conversion, the host's arithmetic), in a fraction of
 * the host's time (a 4096 x 40960 basis: seconds on the host). Synchronous:
 * for codec creation. C-callable (the GPU tests compare the bytes).
 * KVTC_ERR_CUDA leaves the failing call's error for cudaGetLastError. */
#ifndef KVTC_CUDA_FP8_BASIS_H
#define KVTC_CUDA_FP8_BASIS_H

#include <stdint.h>

#include "kvtc.h"
#include "model/basis.h"

#ifdef __cplusplus
extern "C" {
#endif

/* d_bt (device, s->p * ld bytes) = kvi_fp8_basis_t(s, rank, ld, ...); *scale as it. */
kvtc_result kvi_cuda_fp8_basis_t(const basis_stream *s, uint32_t rank, uint32_t ld, uint8_t *d_bt, float *scale);
/* d_b8 (device, rank * s->p bytes) = kvi_fp8_basis_rows(s, rank, ...); *scale as it. */
kvtc_result kvi_cuda_fp8_basis_rows(const basis_stream *s, uint32_t rank, uint8_t *d_b8, float *scale);

#ifdef __cplusplus
}
#endif

#endif
