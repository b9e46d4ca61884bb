/* group_quant.c - see group_quant.h. Layout of a chunk payload of n tokens:
 *   params(K) params(V) codes
 * params(S): for each group of S in order: bits 1..8 -> n x (u16 shift,
 * u16 scale) as fp16, token-major; bits 16 -> n x size fp16 values; bits 0 -> nothing.
 * codes: one LSB-first bitstream, for K's groups then V's, each group's
 * codes token by token, `size` codes of `bits` bits per token; zero-padded
 * to a whole byte. Group-major order keeps symbols of one distribution
 * together, which helps the entropy coder. */
#include "quant/group_quant.h"

#include <math.h>
#include <string.h>

#include "util/endian.h"
#include "util/half.h"
#include "quant/group_quant_kernels.h"

static uint64_t stream_param_bytes(const plan_stream *s) {
    uint64_t b = 0;
    for (uint32_t i = 0; i < s->n_groups; i++) {
        const dp_group *g = &s->groups[i];
        if (g->bits >= 1 && g->bits <= DP_MAX_BITS) b += 4;
        else if (g->bits == DP_RAW_BITS) b += 2ull * g->size;
    }
    return b;
}

static uint64_t stream_code_bits(const plan_stream *s) {
    uint64_t b = 0;
    for (uint32_t i = 0; i < s->n_groups; i++) {
        const dp_group *g = &s->groups[i];
        if (g->bits >= 1 && g->bits <= DP_MAX_BITS) b += (uint64_t)g->size * g->bits;
    }
    return b;
}

uint64_t quant_payload_size(const plan_stream *k, const plan_stream *v, uint64_t n) {
    uint64_t params = (stream_param_bytes(k) + stream_param_bytes(v)) * n;
    uint64_t bits = (stream_code_bits(k) + stream_code_bits(v)) * n;
    return params + (bits + 7) / 8;
}

/* ---- bit packing ------------------------------------------------------ */

typedef struct bit_writer {
    uint8_t *p;
    uint64_t acc;
    unsigned n;
} bit_writer;

static inline void bw_put(bit_writer *w, uint32_t code, unsigned bits) {
    w->acc |= (uint64_t)code << w->n;
    w->n += bits;
    while (w->n >= 8) {
        *w->p++ = (uint8_t)w->acc;
        w->acc >>= 8;
        w->n -= 8;
    }
}

static inline void bw_flush(bit_writer *w) {
    if (w->n) *w->p++ = (uint8_t)w->acc;
    w->acc = 0;
    w->n = 0;
}

typedef struct bit_reader {
    const uint8_t *p;
    uint64_t acc;
    unsigned n;
} bit_reader;

static inline uint32_t br_get(bit_reader *r, unsigned bits) {
    while (r->n < bits) {
        r->acc |= (uint64_t)(*r->p++) << r->n;
        r->n += 8;
    }
    uint32_t v = (uint32_t)(r->acc & ((1u << bits) - 1u));
    r->acc >>= bits;
    r->n -= bits;
    return v;
}

/* ---- quantization ---------------------------------------------------- */

/* The AVX2 kernels take a whole group when its codes start on a byte
 * boundary and its size is a multiple of their 8-lane width. */
static int avx2_takes(int simd, const dp_group *g, unsigned bits_pending) {
    return KVTC_HAVE_AVX2_PATH && simd && bits_pending == 0 && g->size % 8 == 0;
}

static void encode_stream(const plan_stream *s, const float *d, uint64_t ld, uint64_t n,
                          uint8_t **params, bit_writer *bw, int simd) {
    uint8_t *pp = *params;
    uint32_t col = 0;
    for (uint32_t gi = 0; gi < s->n_groups; gi++) {
        const dp_group *g = &s->groups[gi];
        if (g->bits >= 1 && g->bits <= DP_MAX_BITS && avx2_takes(simd, g, bw->n)) {
#if KVTC_HAVE_AVX2_PATH
            quant_avx2_encode_group(d + col, ld, n, g->size, g->bits, pp, bw->p);
#endif
            pp += 4 * n;
            bw->p += n * g->size * g->bits / 8;
        } else if (g->bits >= 1 && g->bits <= DP_MAX_BITS) {
            uint32_t levels = (1u << g->bits) - 1u;
            for (uint64_t t = 0; t < n; t++) {
                const float *x = d + t * ld + col;
                float mn, mx;
                quant_scan_minmax(x, g->size, &mn, &mx);
                quant_token_params q = quant_params_of(mn, mx, levels);
                kvi_store_u16(pp, q.hs);
                kvi_store_u16(pp + 2, q.hc);
                pp += 4;
                for (uint32_t j = 0; j < g->size; j++) {
                    float v = (x[j] - q.shift) * q.inv + 0.5f;
                    uint32_t c = v <= 0.0f ? 0u : (v >= (float)levels ? levels : (uint32_t)v);
                    bw_put(bw, c, g->bits);
                }
            }
        } else if (g->bits == DP_RAW_BITS) {
            for (uint64_t t = 0; t < n; t++)
                for (uint32_t j = 0; j < g->size; j++) {
                    kvi_store_u16(pp, kvi_f32_to_f16(quant_clamp_f16_range(d[t * ld + col + j])));
                    pp += 2;
                }
        }
        col += g->size;
        if (col >= s->rank_used) break;
    }
    *params = pp;
}

static int stream_in_range(const plan_stream *s, const float *d, uint64_t ld, uint64_t n, int simd) {
    uint32_t col = 0;
    for (uint32_t gi = 0; gi < s->n_groups && col < s->rank_used; gi++) {
        const dp_group *g = &s->groups[gi];
        int quantized = g->bits >= 1 && g->bits <= DP_MAX_BITS;
        if (quantized || g->bits == DP_RAW_BITS) {
            float levels = quantized ? (float)((1u << g->bits) - 1u) : 1.0f;
#if KVTC_HAVE_AVX2_PATH
            if (simd && g->size % 8 == 0) {
                if (!quant_avx2_group_in_range(d + col, ld, n, g->size, levels, quantized)) return 0;
                col += g->size;
                continue;
            }
#endif
            for (uint64_t t = 0; t < n; t++) {
                float mn, mx;
                quant_scan_minmax(d + t * ld + col, g->size, &mn, &mx);
                if (!quant_token_in_range(mn, mx, levels, quantized)) return 0;
            }
        }
        col += g->size;
    }
    return 1;
}

kvtc_result quant_check_range(const plan_stream *k, const plan_stream *v, const float *dk, uint64_t ldk,
                              const float *dv, uint64_t ldv, uint64_t n) {
    return quant_check_range_path(k, v, dk, ldk, dv, ldv, n, kvi_simd_allowed());
}

kvtc_result quant_check_range_path(const plan_stream *k, const plan_stream *v, const float *dk, uint64_t ldk,
                                   const float *dv, uint64_t ldv, uint64_t n, int simd) {
    simd = simd && kvi_cpu_has_avx2();
    return stream_in_range(k, dk, ldk, n, simd) && stream_in_range(v, dv, ldv, n, simd) ? KVTC_OK
                                                                                       : KVTC_ERR_OUT_OF_RANGE;
}

void quant_encode(const plan_stream *k, const plan_stream *v, const float *dk, uint64_t ldk,
                  const float *dv, uint64_t ldv, uint64_t n, uint8_t *out) {
    quant_encode_path(k, v, dk, ldk, dv, ldv, n, out, kvi_simd_allowed());
}

void quant_encode_path(const plan_stream *k, const plan_stream *v, const float *dk, uint64_t ldk,
                       const float *dv, uint64_t ldv, uint64_t n, uint8_t *out, int simd) {
    simd = simd && kvi_cpu_has_avx2();
    uint64_t params = (stream_param_bytes(k) + stream_param_bytes(v)) * n;
    bit_writer bw = {out + params, 0, 0};
    uint8_t *pp = out;
    /* params of K and V come first, then one bitstream: encode K's params
     * and codes, then V's. */
    encode_stream(k, dk, ldk, n, &pp, &bw, simd);
    encode_stream(v, dv, ldv, n, &pp, &bw, simd);
    bw_flush(&bw);
}

static kvtc_result decode_stream(const plan_stream *s, const uint8_t **params, bit_reader *br, uint64_t n,
                                 float *d, uint64_t ld, int simd) {
    const uint8_t *pp = *params;
    uint32_t col = 0;
    for (uint32_t gi = 0; gi < s->n_groups && col < s->rank_used; gi++) {
        const dp_group *g = &s->groups[gi];
        if (g->bits >= 1 && g->bits <= DP_MAX_BITS && avx2_takes(simd, g, br->n)) {
#if KVTC_HAVE_AVX2_PATH
            kvtc_result r = quant_avx2_decode_group(pp, br->p, n, g->size, g->bits, d + col, ld);
            if (r) return r;
#endif
            pp += 4 * n;
            br->p += n * g->size * g->bits / 8;
        } else if (g->bits >= 1 && g->bits <= DP_MAX_BITS) {
            for (uint64_t t = 0; t < n; t++) {
                uint16_t hs = kvi_load_u16(pp), hc = kvi_load_u16(pp + 2);
                if (quant_f16_bits_nonfinite(hs) || quant_f16_bits_nonfinite(hc)) return KVTC_ERR_CORRUPT;
                float shift = kvi_f16_to_f32(hs);
                float scale = kvi_f16_to_f32(hc);
                pp += 4;
                float *x = d + t * ld + col;
                for (uint32_t j = 0; j < g->size; j++) x[j] = shift + (float)br_get(br, g->bits) * scale;
            }
        } else if (g->bits == DP_RAW_BITS) {
            for (uint64_t t = 0; t < n; t++)
                for (uint32_t j = 0; j < g->size; j++) {
                    uint16_t h = kvi_load_u16(pp);
                    if (quant_f16_bits_nonfinite(h)) return KVTC_ERR_CORRUPT;
                    d[t * ld + col + j] = kvi_f16_to_f32(h);
                    pp += 2;
                }
        } else { /* dropped: zeros (only these columns: the others are all written) */
            uint32_t w = g->size < s->rank_used - col ? g->size : s->rank_used - col;
            for (uint64_t t = 0; t < n; t++) memset(d + t * ld + col, 0, sizeof(float) * w);
        }
        col += g->size;
    }
    *params = pp;
    return KVTC_OK;
}

kvtc_result quant_decode(const plan_stream *k, const plan_stream *v, const uint8_t *in, uint64_t n,
                         float *dk, uint64_t ldk, float *dv, uint64_t ldv) {
    return quant_decode_path(k, v, in, n, dk, ldk, dv, ldv, kvi_simd_allowed());
}

kvtc_result quant_decode_path(const plan_stream *k, const plan_stream *v, const uint8_t *in, uint64_t n,
                              float *dk, uint64_t ldk, float *dv, uint64_t ldv, int simd) {
    simd = simd && kvi_cpu_has_avx2();
    uint64_t params = (stream_param_bytes(k) + stream_param_bytes(v)) * n;
    bit_reader br = {in + params, 0, 0};
    const uint8_t *pp = in;
    kvtc_result r = decode_stream(k, &pp, &br, n, dk, ldk, simd);
    return r ? r : decode_stream(v, &pp, &br, n, dv, ldv, simd);
}

/* ---- payload concatenation (kvtc_append) ----------------------------- */

/* Copy n bits from src at bit *src_bit to the writer, advancing *src_bit. */
static void copy_bits(const uint8_t *src, uint64_t *src_bit, uint64_t n, bit_writer *w) {
    bit_reader r = {src + *src_bit / 8, 0, 0};
    unsigned skip = (unsigned)(*src_bit % 8);
    if (skip) br_get(&r, skip);
    *src_bit += n;
    for (; n >= 24; n -= 24) bw_put(w, br_get(&r, 24), 24);
    if (n) bw_put(w, br_get(&r, (unsigned)n), (unsigned)n);
}

/* One stream's part of quant_payload_concat: each group's parameters of a
 * then of b, and each quantized group's codes of a then of b. */
static void concat_stream(const plan_stream *s, const uint8_t **pa, uint64_t na, const uint8_t **pb, uint64_t nb,
                          uint8_t **po, const uint8_t *ca, uint64_t *ca_bit, const uint8_t *cb, uint64_t *cb_bit,
                          bit_writer *w) {
    for (uint32_t gi = 0; gi < s->n_groups; gi++) {
        const dp_group *g = &s->groups[gi];
        uint64_t per_token = 0; /* parameter bytes */
        if (g->bits >= 1 && g->bits <= DP_MAX_BITS) per_token = 4;
        else if (g->bits == DP_RAW_BITS) per_token = 2ull * g->size;
        memcpy(*po, *pa, (size_t)(per_token * na));
        memcpy(*po + per_token * na, *pb, (size_t)(per_token * nb));
        *po += per_token * (na + nb);
        *pa += per_token * na;
        *pb += per_token * nb;
        if (g->bits >= 1 && g->bits <= DP_MAX_BITS) {
            uint64_t bits = (uint64_t)g->size * g->bits;
            copy_bits(ca, ca_bit, bits * na, w);
            copy_bits(cb, cb_bit, bits * nb, w);
        }
    }
}

void quant_payload_concat(const plan_stream *k, const plan_stream *v, const uint8_t *a, uint64_t na,
                          const uint8_t *b, uint64_t nb, uint8_t *out) {
    uint64_t per_token = stream_param_bytes(k) + stream_param_bytes(v);
    const uint8_t *pa = a, *pb = b, *ca = a + per_token * na, *cb = b + per_token * nb;
    uint8_t *po = out;
    uint64_t ca_bit = 0, cb_bit = 0;
    bit_writer w = {out + per_token * (na + nb), 0, 0};
    concat_stream(k, &pa, na, &pb, nb, &po, ca, &ca_bit, cb, &cb_bit, &w);
    concat_stream(v, &pa, na, &pb, nb, &po, ca, &ca_bit, cb, &cb_bit, &w);
    bw_flush(&w);
}
