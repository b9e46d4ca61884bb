// common.cuh - what every stage of the CUDA backend uses: the backend's
// limits, little-endian byte access, the device status word, and the CPU's
// fp16/bf16 conversions bit for bit (util/half.h).
#ifndef KVTC_CUDA_COMMON_CUH
#define KVTC_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kvtc.h"

// ---- limits of this backend ----------------------------------------------

#define ENC_MAX_SEGS 64   // segments per chunk the encoder writes (host merges beyond)
#define DEC_MAX_SEGS 256  // segments per chunk the decoder accepts (else KVTC_ERR_UNSUPPORTED)
#define CRC_PIECE 4096u   // bytes per CRC piece (pieces are combined per region)
#define LANE_BLOCK 128u   // rANS lanes per thread block

// ---- small device helpers ---------------------------------------------------

static __device__ __forceinline__ void st_u16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static __device__ __forceinline__ void st_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static __device__ __forceinline__ void st_u64(uint8_t *p, uint64_t v) { st_u32(p, (uint32_t)v); st_u32(p + 4, (uint32_t)(v >> 32)); }
static __device__ __forceinline__ uint32_t ld_u16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
static __device__ __forceinline__ uint32_t ld_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static __device__ __forceinline__ uint64_t ld_u64(const uint8_t *p) { return (uint64_t)ld_u32(p) | ((uint64_t)ld_u32(p + 4) << 32); }

// The first failure wins: later kernels never overwrite a status.
static __device__ __forceinline__ void set_status(uint32_t *st, uint32_t code) { atomicCAS(st, 0u, code); }

// The CPU's fp16 conversions (util/half.h), bit for bit.
static __device__ __forceinline__ uint16_t d_f32_to_f16(float f) {
    uint32_t x = __float_as_uint(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (absx < 0x38800000u) {
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(absx >> 23);
        uint32_t q = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1u);
        uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((absx - 0x38000000u) >> 13);
    uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}
static __device__ __forceinline__ float d_f16_to_f32(uint32_t h) {
    uint32_t sign = (h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        if (m == 0) return __uint_as_float(sign);
        float f = (float)m * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    if (e == 31) return __uint_as_float(sign | 0x7f800000u | (m << 13));
    return __uint_as_float(sign | ((e + 112u) << 23) | (m << 13));
}
static __device__ __forceinline__ uint16_t d_f32_to_bf16(float f) {
    uint32_t x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

// X/D element types of the projections (bf16 or fp32)
template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// cache elements by dtype
static __device__ __forceinline__ float load_elem(const void *base, int dtype, uint64_t i) {
    if (dtype == KVTC_DTYPE_F32) return ((const float *)base)[i];
    uint16_t h = ((const uint16_t *)base)[i];
    return dtype == KVTC_DTYPE_F16 ? d_f16_to_f32(h) : __uint_as_float((uint32_t)h << 16);
}
static __device__ __forceinline__ void store_elem(void *base, int dtype, uint64_t i, float x) {
    if (dtype == KVTC_DTYPE_F32) ((float *)base)[i] = x;
    else ((uint16_t *)base)[i] = dtype == KVTC_DTYPE_F16 ? d_f32_to_f16(x) : d_f32_to_bf16(x);
}

#endif
