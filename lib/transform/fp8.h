/* fp8.h - e4m3 operands of the GPU's FP8 reconstruction GEMM (issue 15),
 * shared by the CUDA backend (which uploads the basis operand) and the CPU
 * emulation of that GEMM (cpu/proj_emul.c, `kvtc eval --emulate-gpu`), so
 * that both round the same values to the same bytes.
 *
 * e4m3 is the OCP FP8 E4M3FN format of Hopper's tensor cores: 1 sign, 4
 * exponent (bias 7), 3 mantissa bits; no infinities; S.1111.111 is NaN;
 * largest finite 448; subnormals k * 2^-9. Conversions round to nearest,
 * ties to even, and saturate (finite values beyond 448 and infinities give
 * +-448), as CUDA's __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3).
 *
 * Scale scheme of the decode GEMM X = D B (D [n][r] coefficients, B [r][p]
 * basis rows). Coefficient j has a spread of about sqrt(eigenvalue_j),
 * which falls by orders of magnitude along the PCA order. Component j is
 * "folded": D'_j = D_j / f_j and B'_j = f_j B_j with f_j =
 * kvi_fp8_fold(), so D' is about unit scale in every column and is cast
 * to e4m3 with NO data-dependent scale (no amax pass: the dequantization
 * kernel writes e4m3 directly); values up to 448 spreads are finite, those
 * below 2^-6 spreads go subnormal and contribute little. B' gets one
 * per-tensor scale (amax / 448) computed once, at upload. Then
 * X = scale * (e4m3(D') e4m3(B'/scale)) with fp32 accumulation. */
#ifndef KVTC_TRANSFORM_FP8_H
#define KVTC_TRANSFORM_FP8_H

#include <stdint.h>

#include "model/basis.h"

#define KVI_E4M3_MAX 448.0f
#define KVI_E4M3_NAN 0x7fu

/* float -> e4m3 byte (round to nearest even, saturating; NaN -> sign|0x7f). */
uint8_t kvi_f32_to_e4m3(float f);
/* e4m3 byte -> float (exact; 0x7f / 0xff -> NaN). */
float kvi_e4m3_to_f32(uint8_t b);
static inline float kvi_round_e4m3(float f) { return kvi_e4m3_to_f32(kvi_f32_to_e4m3(f)); }

/* The fold factor of component j of s: sqrt(eigenvalue_j) when that is a
 * positive finite normal float, else 1. */
float kvi_fp8_fold(const basis_stream *s, uint32_t j);

/* The basis operand of the FP8 reconstruction, TRANSPOSED (cuBLASLt's FP8
 * kernels take A transposed): bt[i * ld + j] = e4m3(f_j * B[j][i] / *scale)
 * for coordinates i < s->p and components j < rank (rank <= s->rank),
 * zero for j in [rank, ld). *scale = max |f_j * B[j][i]| / 448 (1 when
 * that is 0 or not finite). bt has s->p * ld bytes, ld >= rank. */
void kvi_fp8_basis_t(const basis_stream *s, uint32_t rank, uint32_t ld, uint8_t *bt, float *scale);

/* The per-tensor scales kvi_fp8_basis_t and kvi_fp8_basis_rows use (the
 * CUDA backend converts the basis on the device with them: cuda/fp8_basis.h). */
float kvi_fp8_basis_t_scale(const basis_stream *s, uint32_t rank);
float kvi_fp8_basis_rows_scale(const basis_stream *s, uint32_t rank);

/* The basis operand of the FP8 projection (encode, D = X B^T: cuBLASLt's
 * A is B itself, [rank][p] row-major): b8[j * p + i] = e4m3(B[j][i] /
 * *scale), *scale = max |B[j][i]| / 448 (1 when 0 or not finite). The row
 * operand X gets one scale per row (amax / 448), applied by the GPU's cast
 * kernel and undone in the quantizer. */
void kvi_fp8_basis_rows(const basis_stream *s, uint32_t rank, uint8_t *b8, float *scale);

#endif
