/* baselines.c - baseline KV-cache quantizers (f16, fp8 e4m3, llama.cpp q8_0
 * and q4_0, KIVI 2-bit) as in-place round trips; see baselines.h.
 *
 * Floating-point expressions are split into separate statements where a
 * compiler could otherwise fuse a multiply and an add, so the results match
 * the reference implementations' unfused float arithmetic. */
#include "eval/baselines.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Scalar conversions                                                        */
/* ------------------------------------------------------------------------ */

static uint32_t bl_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static float bl_float(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }

/* Round the integer mantissa m right by shift bits, to nearest even. */
static uint32_t bl_shift_rne(uint32_t m, unsigned shift) {
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) q++;
    return q;
}

uint16_t baseline_f32_to_f16(float f) {
    uint32_t x = bl_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) /* >= 65520 (or inf) rounds to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below 2^-14: half subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign; /* < 2^-25: rounds to 0 */
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        unsigned shift = 126u - (ax >> 23); /* value / 2^-24 = m >> shift; 14..24 */
        return (uint16_t)(sign | bl_shift_rne(m, shift)); /* may carry to 0x400: fine */
    }
    /* normal: rebias the exponent (127 -> 15) and drop 13 mantissa bits; a
     * carry out of the mantissa correctly increments the exponent, and the
     * overflow case was handled above. */
    uint32_t h = bl_shift_rne(ax - 0x38000000u, 13);
    return (uint16_t)(sign | h);
}

float baseline_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float f = (float)m * 0x1p-24f; /* exact */
        return sign ? -f : f;
    }
    if (e == 31) return bl_float(sign | 0x7f800000u | (m << 13));
    return bl_float(sign | ((e + 112u) << 23) | (m << 13));
}

/* E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities; only
 * S.1111.111 is NaN; max 448 = 1.75 * 2^8 (0x7E); smallest normal 2^-6;
 * subnormals m * 2^-9. */
uint8_t baseline_f32_to_e4m3(float f) {
    uint32_t x = bl_bits(f);
    uint8_t sign = (uint8_t)((x >> 24) & 0x80u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint8_t)(sign | 0x7fu);  /* NaN */
    if (ax >= 0x43e00000u) return (uint8_t)(sign | 0x7eu); /* >= 448 or inf: saturate */
    if (ax < 0x3c800000u) { /* below 2^-6: subnormal or zero */
        unsigned e = ax >> 23;
        if (e < 117u) return sign; /* < 2^-10 = half the smallest subnormal */
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        /* value / 2^-9 = m * 2^(e-150+9) = m >> (141 - e); shift 21..24 */
        return (uint8_t)(sign | bl_shift_rne(m, 141u - e)); /* may carry to 0x08 */
    }
    /* normal: rebias 127 -> 7 and keep 3 mantissa bits. Values below 448 can
     * round up to at most 448 (0x7E), never into the NaN code. */
    uint32_t b = bl_shift_rne(ax - (120u << 23), 20);
    if (b > 0x7eu) b = 0x7eu; /* defensive; unreachable */
    return (uint8_t)(sign | b);
}

float baseline_e4m3_to_f32(uint8_t b) {
    unsigned e = (b >> 3) & 0xfu, m = b & 7u;
    float f;
    if (e == 15u && m == 7u)
        f = NAN;
    else if (e == 0)
        f = (float)m * 0x1p-9f;
    else
        f = ldexpf(1.0f + (float)m * 0.125f, (int)e - 7);
    return (b & 0x80u) ? -f : f;
}

static float bl_round_f16(float f) { return baseline_f16_to_f32(baseline_f32_to_f16(f)); }

/* ------------------------------------------------------------------------ */
/* Names                                                                     */
/* ------------------------------------------------------------------------ */

static const char *const bl_names[BASELINE_COUNT] = {"f16", "fp8_e4m3", "q8_0", "q4_0", "kivi2"};

const char *baseline_name(baseline_kind kind) {
    if ((unsigned)kind >= BASELINE_COUNT) return NULL;
    return bl_names[kind];
}

int baseline_from_name(const char *name, baseline_kind *kind) {
    if (!name || !kind) return -1;
    for (unsigned i = 0; i < BASELINE_COUNT; i++)
        if (strcmp(name, bl_names[i]) == 0) {
            *kind = (baseline_kind)i;
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Geometry and cost                                                         */
/* ------------------------------------------------------------------------ */

typedef struct bl_geom {
    uint64_t n_per_tensor; /* n_layers * n_kv_heads * n_tokens * head_dim */
    uint64_t tok_begin;    /* kivi2: first compressed token */
    uint64_t tok_end;      /* kivi2: one past the last compressed token */
    uint64_t key_groups;   /* kivi2: whole 32-token key groups per channel */
} bl_geom;

static int bl_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

static int bl_check(baseline_kind kind, uint32_t n_layers, uint32_t n_kv_heads,
                    uint64_t n_tokens, uint32_t head_dim, uint32_t n_sink, uint32_t n_window,
                    bl_geom *g) {
    if ((unsigned)kind >= BASELINE_COUNT) return BASELINE_ERR_ARG;
    if (n_layers == 0 || n_kv_heads == 0 || n_tokens == 0 || head_dim == 0)
        return BASELINE_ERR_ARG;
    /* Blocks of 32 lie along a token's row of all KV heads (llama.cpp's K/V
     * cache row), so the row must hold whole blocks. */
    if ((kind == BASELINE_Q8_0 || kind == BASELINE_Q4_0 || kind == BASELINE_KIVI2) &&
        ((uint64_t)n_kv_heads * head_dim) % BASELINE_GROUP != 0)
        return BASELINE_ERR_GEOMETRY;
    uint64_t n;
    if (!bl_mul_ok((uint64_t)n_layers, n_kv_heads, &n) || !bl_mul_ok(n, n_tokens, &n) ||
        !bl_mul_ok(n, head_dim, &n) || n > UINT64_MAX / 2 || n > SIZE_MAX / sizeof(float))
        return BASELINE_ERR_TOO_LARGE;
    g->n_per_tensor = n;
    uint64_t s = n_sink < n_tokens ? n_sink : n_tokens;
    uint64_t w = n_window < n_tokens - s ? n_window : n_tokens - s;
    g->tok_begin = s;
    g->tok_end = n_tokens - w;
    g->key_groups = (g->tok_end - g->tok_begin) / BASELINE_GROUP;
    return BASELINE_OK;
}

static void bl_cost(baseline_kind kind, uint32_t n_layers, uint32_t n_kv_heads,
                    uint32_t head_dim, const bl_geom *g, baseline_cost *c) {
    uint64_t all = 2 * g->n_per_tensor;
    c->values_total = all;
    switch (kind) {
    case BASELINE_F16:
        c->values_compressed = all;
        c->bits_compressed = 16.0 * (double)all;
        break;
    case BASELINE_FP8_E4M3: /* 8 bits/value + one float32 scale per layer per K/V */
        c->values_compressed = all;
        c->bits_compressed = 8.0 * (double)all + 32.0 * 2.0 * (double)n_layers;
        break;
    case BASELINE_Q8_0: /* 32 int8 + fp16 d per block */
        c->values_compressed = all;
        c->bits_compressed = (double)(all / BASELINE_GROUP) * (32.0 * 8.0 + 16.0);
        break;
    case BASELINE_Q4_0: /* 32 nibbles + fp16 d per block */
        c->values_compressed = all;
        c->bits_compressed = (double)(all / BASELINE_GROUP) * (32.0 * 4.0 + 16.0);
        break;
    case BASELINE_KIVI2: {
        uint64_t lh = (uint64_t)n_layers * n_kv_heads;
        uint64_t kq = lh * head_dim * g->key_groups * BASELINE_GROUP;
        uint64_t vq = lh * (g->tok_end - g->tok_begin) * head_dim;
        uint64_t q = kq + vq; /* a multiple of 32: head_dim is */
        c->values_compressed = q;
        c->bits_compressed = (double)(q / BASELINE_GROUP) * (32.0 * 2.0 + 32.0);
        break;
    }
    }
    c->bits_total = c->bits_compressed + 16.0 * (double)(all - c->values_compressed);
}

int baseline_cost_of(baseline_kind kind, uint32_t n_layers, uint32_t n_kv_heads,
                     uint64_t n_tokens, uint32_t head_dim, uint32_t n_sink,
                     uint32_t n_window, baseline_cost *cost) {
    bl_geom g;
    if (cost) memset(cost, 0, sizeof *cost);
    int rc = bl_check(kind, n_layers, n_kv_heads, n_tokens, head_dim, n_sink, n_window, &g);
    if (rc != BASELINE_OK) return rc;
    if (cost) bl_cost(kind, n_layers, n_kv_heads, head_dim, &g, cost);
    return BASELINE_OK;
}

/* ------------------------------------------------------------------------ */
/* Methods                                                                   */
/* ------------------------------------------------------------------------ */

static void bl_f16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = bl_round_f16(x[i]);
}

/* vLLM fp8 e4m3 with a per-tensor scale, one tensor per layer here. */
static void bl_fp8_tensor(float *x, size_t n) {
    float amax = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    float scale = amax / 448.0f;
    if (scale == 0.0f) { /* all zero (or amax below float resolution / 448) */
        for (size_t i = 0; i < n; i++) x[i] = copysignf(0.0f, x[i]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float s = x[i] / scale;
        float y = baseline_e4m3_to_f32(baseline_f32_to_e4m3(s));
        x[i] = y * scale;
    }
}

/* llama.cpp quantize_row_q8_0_ref + dequantize_row_q8_0 on one block. */
static void bl_q8_0_block(float *x) {
    float amax = 0.0f;
    for (int j = 0; j < BASELINE_GROUP; j++) {
        float a = fabsf(x[j]);
        amax = amax > a ? amax : a; /* MAX(amax, fabsf(v)) */
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const float d16 = bl_round_f16(d);
    for (int j = 0; j < BASELINE_GROUP; j++) {
        float x0 = x[j] * id;
        float r = roundf(x0);
        /* the int8 conversion; |r| <= 127 for finite input, guarded for the rest */
        int q = r >= -128.0f && r <= 127.0f ? (int)r : 0;
        x[j] = (float)q * d16;
    }
}

/* llama.cpp quantize_row_q4_0_ref + dequantize_row_q4_0 on one block. */
static void bl_q4_0_block(float *x) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < BASELINE_GROUP; j++) {
        const float v = x[j];
        if (amax < fabsf(v)) {
            amax = fabsf(v);
            max = v;
        }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const float d16 = bl_round_f16(d);
    for (int j = 0; j < BASELINE_GROUP; j++) {
        float x0 = x[j] * id;
        float t = x0 + 8.5f;
        /* MIN(15, (int8_t)t): for finite input t is in [0.5, 16.5] (truncation
         * to 0..16); clamping first gives the same result without UB. */
        if (!(t >= 0.0f)) t = 0.0f;
        if (t > 15.0f) t = 15.0f;
        int q = (int)t;
        x[j] = (float)(q - 8) * d16;
    }
}

static float bl_round_half_even(float t) {
    float r = floorf(t);
    float diff = t - r;
    if (diff > 0.5f || (diff == 0.5f && fmodf(r, 2.0f) != 0.0f)) r += 1.0f;
    return r;
}

/* KIVI asymmetric 2-bit quantization of n values at stride; fp16 min/scale. */
static void bl_kivi_group(float *x, size_t n, size_t stride) {
    float mn = x[0], mx = x[0];
    for (size_t i = 1; i < n; i++) {
        float v = x[i * stride];
        if (v < mn) mn = v;
        if (v > mx) mx = v;
    }
    const float mn16 = bl_round_f16(mn);
    const float sc16 = bl_round_f16((mx - mn) / 3.0f);
    for (size_t i = 0; i < n; i++) {
        float q = 0.0f;
        if (sc16 != 0.0f) {
            float t = (x[i * stride] - mn16) / sc16;
            if (!(t >= 0.0f)) t = 0.0f; /* clamp_(0, 3) then round_() */
            if (t > 3.0f) t = 3.0f;
            q = bl_round_half_even(t);
        }
        float y = q * sc16;
        x[i * stride] = y + mn16;
    }
}

/* Apply block(x) to every 32-value block of each token's row of all KV heads
 * ([layer][token][head][dim] order, llama.cpp's cache row) of x, stored
 * [layer][head][token][dim], for tokens [t0, t1). When head_dim holds whole
 * blocks these are the blocks within each head, done in place; otherwise a
 * block spans heads and goes through a gathered copy. */
static void bl_row_blocks(float *x, uint32_t n_layers, uint32_t n_kv_heads, size_t T,
                          uint32_t head_dim, size_t t0, size_t t1, void (*block)(float *)) {
    size_t D = head_dim, H = n_kv_heads;
    for (size_t l = 0; l < n_layers; l++) {
        float *xl = x + l * H * T * D;
        if (D % BASELINE_GROUP == 0) {
            for (size_t h = 0; h < H; h++)
                for (size_t i = t0 * D; i < t1 * D; i += BASELINE_GROUP)
                    block(xl + h * T * D + i);
            continue;
        }
        for (size_t t = t0; t < t1; t++) {
            float row[BASELINE_GROUP];
            for (size_t b = 0; b < H * D; b += BASELINE_GROUP) {
                for (size_t j = 0; j < BASELINE_GROUP; j++)
                    row[j] = xl[((b + j) / D) * T * D + t * D + (b + j) % D];
                block(row);
                for (size_t j = 0; j < BASELINE_GROUP; j++)
                    xl[((b + j) / D) * T * D + t * D + (b + j) % D] = row[j];
            }
        }
    }
}

static void bl_kivi_value_block(float *x) { bl_kivi_group(x, BASELINE_GROUP, 1); }

static void bl_kivi(float *k, float *v, uint32_t n_layers, uint32_t n_kv_heads,
                    uint64_t n_tokens, uint32_t head_dim, const bl_geom *g) {
    size_t D = head_dim;
    size_t T = (size_t)n_tokens;
    size_t heads = (size_t)n_layers * n_kv_heads;
    for (size_t lh = 0; lh < heads; lh++) {
        float *kh = k + lh * T * D;
        /* keys: per channel, whole groups of 32 tokens from tok_begin */
        for (uint64_t grp = 0; grp < g->key_groups; grp++) {
            size_t t0 = (size_t)(g->tok_begin + grp * BASELINE_GROUP);
            for (size_t c = 0; c < D; c++) bl_kivi_group(kh + t0 * D + c, BASELINE_GROUP, D);
        }
    }
    /* values: per token, groups of 32 channels of the token's row */
    bl_row_blocks(v, n_layers, n_kv_heads, T, head_dim, (size_t)g->tok_begin, (size_t)g->tok_end,
                  bl_kivi_value_block);
}

int baseline_roundtrip(baseline_kind kind, float *k, float *v, uint32_t n_layers,
                       uint32_t n_kv_heads, uint64_t n_tokens, uint32_t head_dim,
                       uint32_t n_sink, uint32_t n_window, baseline_cost *cost) {
    bl_geom g;
    if (cost) memset(cost, 0, sizeof *cost);
    if (!k || !v) return BASELINE_ERR_ARG;
    int rc = bl_check(kind, n_layers, n_kv_heads, n_tokens, head_dim, n_sink, n_window, &g);
    if (rc != BASELINE_OK) return rc;
    size_t n = (size_t)g.n_per_tensor;
    switch (kind) {
    case BASELINE_F16:
        bl_f16(k, n);
        bl_f16(v, n);
        break;
    case BASELINE_FP8_E4M3: {
        size_t per_layer = n / n_layers;
        for (uint32_t l = 0; l < n_layers; l++) {
            bl_fp8_tensor(k + (size_t)l * per_layer, per_layer);
            bl_fp8_tensor(v + (size_t)l * per_layer, per_layer);
        }
        break;
    }
    case BASELINE_Q8_0:
    case BASELINE_Q4_0: {
        void (*block)(float *) = kind == BASELINE_Q8_0 ? bl_q8_0_block : bl_q4_0_block;
        bl_row_blocks(k, n_layers, n_kv_heads, (size_t)n_tokens, head_dim, 0, (size_t)n_tokens, block);
        bl_row_blocks(v, n_layers, n_kv_heads, (size_t)n_tokens, head_dim, 0, (size_t)n_tokens, block);
        break;
    }
    case BASELINE_KIVI2:
        bl_kivi(k, v, n_layers, n_kv_heads, n_tokens, head_dim, &g);
        break;
    }
    if (cost) bl_cost(kind, n_layers, n_kv_heads, head_dim, &g, cost);
    return BASELINE_OK;
}
