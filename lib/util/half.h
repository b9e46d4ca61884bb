/* half.h - IEEE binary16 and bfloat16 conversions (round to nearest even).
 * Portable bit manipulation: the codec's bitstream must not depend on the
 * host compiler's _Float16 support or rounding mode. */
#ifndef KVTC_UTIL_HALF_H
#define KVTC_UTIL_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t kvi_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float kvi_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline uint16_t kvi_f32_to_f16(float f) {
    uint32_t x = kvi_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or NaN: keep NaN quiet */
        return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (absx < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign; /* < 2^-25 rounds to 0 */
        uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(absx >> 23); /* 14..24 */
        uint32_t q = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1u);
        uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t h = ((absx - 0x38000000u) >> 13); /* rebias exponent 127 -> 15 */
    uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

static inline float kvi_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        if (m == 0) return kvi_bits_f32(sign);
        float f = (float)m * (1.0f / 16777216.0f); /* m * 2^-24, exact */
        return sign ? -f : f;
    }
    if (e == 31) return kvi_bits_f32(sign | 0x7f800000u | (m << 13));
    return kvi_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

static inline uint16_t kvi_f32_to_bf16(float f) {
    uint32_t x = kvi_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

static inline float kvi_bf16_to_f32(uint16_t b) { return kvi_bits_f32((uint32_t)b << 16); }

/* Round a float to the nearest fp16 value (as float). */
static inline float kvi_round_f16(float f) { return kvi_f16_to_f32(kvi_f32_to_f16(f)); }

#endif
