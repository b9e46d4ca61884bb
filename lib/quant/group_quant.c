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

/* Largest finite fp16: shifts and scales saturate here instead of becoming
 * infinite (only reachable with extreme inputs; the error grows, no NaN). */
#define F16_MAX 65504.0f

static inline float clamp_f16_range(float x) {
    return x > F16_MAX ? F16_MAX : (x < -F16_MAX ? -F16_MAX : x);
}

/* fp16 value >= x (for x >= 0), so that the top code still reaches max. */
static inline uint16_t f16_round_up(float x) {
    uint16_t h = kvi_f32_to_f16(clamp_f16_range(x));
    if (kvi_f16_to_f32(h) < x && h < 0x7bffu) h++;
    return h;
}

static void encode_stream(const plan_stream *s, const float *d, uint64_t ld, uint64_t n,
                          uint8_t **params, bit_writer *bw) {
    uint8_t *pp = *params;
    uint32_t col = 0;
    for (uint32_t gi = 0; gi < s->n_groups; gi++) {
        const dp_group *g = &s->groups[gi];
        if (g->bits >= 1 && g->bits <= DP_MAX_BITS) {
            uint32_t levels = (1u << g->bits) - 1u;
            for (uint64_t t = 0; t < n; t++) {
                const float *x = d + t * ld + col;
                float mn = x[0], mx = x[0];
                for (uint32_t j = 1; j < g->size; j++) {
                    mn = x[j] < mn ? x[j] : mn;
                    mx = x[j] > mx ? x[j] : mx;
                }
                /* shift rounded down so every value is >= shift */
                uint16_t hs = kvi_f32_to_f16(clamp_f16_range(mn));
                float shift = kvi_f16_to_f32(hs);
                if (shift > mn && hs != 0xfbffu) {
                    hs = (hs & 0x8000u) ? (uint16_t)(hs + 1) : (hs == 0 ? 0x8001u : (uint16_t)(hs - 1));
                    shift = kvi_f16_to_f32(hs);
                }
                uint16_t hc = f16_round_up((mx - shift) / (float)levels);
                float scale = kvi_f16_to_f32(hc);
                float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
                kvi_store_u16(pp, hs);
                kvi_store_u16(pp + 2, hc);
                pp += 4;
                for (uint32_t j = 0; j < g->size; j++) {
                    float q = (x[j] - shift) * inv + 0.5f;
                    uint32_t c = q <= 0.0f ? 0u : (q >= (float)levels ? levels : (uint32_t)q);
                    bw_put(bw, c, g->bits);
                }
            }
        } else if (g->bits == DP_RAW_BITS) {
            for (uint64_t t = 0; t < n; t++)
                for (uint32_t j = 0; j < g->size; j++) {
                    kvi_store_u16(pp, kvi_f32_to_f16(clamp_f16_range(d[t * ld + col + j])));
                    pp += 2;
                }
        }
        col += g->size;
        if (col >= s->rank_used) break;
    }
    *params = pp;
}

void quant_encode(const plan_stream *k, const plan_stream *v, const float *dk, uint64_t ldk,
                  const float *dv, uint64_t ldv, uint64_t n, uint8_t *out) {
    uint64_t params = (stream_param_bytes(k) + stream_param_bytes(v)) * n;
    bit_writer bw = {out + params, 0, 0};
    uint8_t *pp = out;
    /* params of K and V come first, then one bitstream: encode K's params
     * and codes, then V's. */
    encode_stream(k, dk, ldk, n, &pp, &bw);
    encode_stream(v, dv, ldv, n, &pp, &bw);
    bw_flush(&bw);
}

/* fp16 bits with the exponent all ones: Inf or NaN */
static inline int f16_bits_nonfinite(uint16_t h) { return (h & 0x7c00u) == 0x7c00u; }

static kvtc_result decode_stream(const plan_stream *s, const uint8_t **params, bit_reader *br, uint64_t n,
                                 float *d, uint64_t ld) {
    const uint8_t *pp = *params;
    uint32_t col = 0;
    for (uint64_t t = 0; t < n; t++) memset(d + t * ld, 0, sizeof(float) * s->rank_used);
    for (uint32_t gi = 0; gi < s->n_groups && col < s->rank_used; gi++) {
        const dp_group *g = &s->groups[gi];
        if (g->bits >= 1 && g->bits <= DP_MAX_BITS) {
            for (uint64_t t = 0; t < n; t++) {
                uint16_t hs = kvi_load_u16(pp), hc = kvi_load_u16(pp + 2);
                if (f16_bits_nonfinite(hs) || f16_bits_nonfinite(hc)) return KVTC_ERR_CORRUPT;
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
                    if (f16_bits_nonfinite(h)) return KVTC_ERR_CORRUPT;
                    d[t * ld + col + j] = kvi_f16_to_f32(h);
                    pp += 2;
                }
        }
        col += g->size;
    }
    *params = pp;
    return KVTC_OK;
}

kvtc_result quant_decode(const plan_stream *k, const plan_stream *v, const uint8_t *in, uint64_t n,
                         float *dk, uint64_t ldk, float *dv, uint64_t ldv) {
    uint64_t params = (stream_param_bytes(k) + stream_param_bytes(v)) * n;
    bit_reader br = {in + params, 0, 0};
    const uint8_t *pp = in;
    kvtc_result r = decode_stream(k, &pp, &br, n, dk, ldk);
    return r ? r : decode_stream(v, &pp, &br, n, dv, ldv);
}
