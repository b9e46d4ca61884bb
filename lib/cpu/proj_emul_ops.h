/* proj_emul_ops.h - the operations behind cpu/proj_emul.h, used by the
 * CPU encoder and decoder when a projection mode other than exact is set. */
#ifndef KVTC_CPU_PROJ_EMUL_OPS_H
#define KVTC_CPU_PROJ_EMUL_OPS_H

#include <stdint.h>

#include "cpu/proj_emul.h"
#include "model/basis.h"

typedef struct proj_emul {
    kvi_proj_mode mode;
    int decode;              /* 1: operands of the reconstruction, 0: of the projection */
    basis_stream op[2];      /* K, V: basis operand rows [rank][p] as floats (mean/weight: the real ones) */
    float *fold[2];          /* decode FP8: f_j of each component */
    float scale[2];          /* FP8: the basis operand's per-tensor scale (1 otherwise) */
} proj_emul;

/* Replace *slot (a codec's emulation, NULL = exact; freed here) by a new
 * one preparing basis b's operands for `mode` and direction `decode`
 * (EXACT: *slot becomes NULL, b unused). KVTC_ERR_INVALID_ARGUMENT for an
 * unknown mode, KVTC_ERR_OUT_OF_MEMORY (then *slot is NULL). */
kvtc_result proj_emul_set(proj_emul **slot, const kvtc_basis *b, kvi_proj_mode mode, int decode);

/* Decode, stream s (0 K, 1 V): coefficient rows d [n][ldd] (first r
 * columns) -> their operand copy dq [n][r] (caller's buffer). */
void proj_emul_coefs(const proj_emul *pe, int s, uint32_t r, const float *d, uint64_t ldd, uint64_t n, float *dq);
/* Decode: after the GEMM of dq with pe->op[s], rows x [n][ldx] (first w
 * columns) get the GPU's output step: scale, then bf16 rounding. */
void proj_emul_output(const proj_emul *pe, int s, float *x, uint64_t ldx, uint64_t n, uint32_t w);

/* Encode, stream s: d [n][r] = emulated projection of centered rows x
 * [n][p] (x is overwritten with its operand copy). 0 or
 * KVTC_ERR_OUT_OF_MEMORY. */
kvtc_result proj_emul_project(const proj_emul *pe, int s, uint32_t r, float *x, uint64_t n, float *d);

#endif
