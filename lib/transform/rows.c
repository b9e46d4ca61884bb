/* rows.c - moving tokens between engine memory (a kvtc_cache_layout) and
 * the codec's rows (transform/rows.h). */
#include "transform/rows.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/cache.h"
#include "util/half.h"
#include "util/layout.h"

/* Largest finite fp16 and bf16. Decoded values are stored saturated to
 * these: a reconstruction a little beyond the dtype's range (inputs near
 * fp16's limit) must come back as the largest finite value, never Inf
 * (issue 9 item 2). NaN cannot reach here (the decoder rejects non-finite
 * parameters). */
#define KVTC_F16_MAX 65504.0f
#define KVTC_BF16_MAX 3.38953139e38f

static inline float saturate(float x, float m) { return x > m ? m : (x < -m ? -m : x); }

/* fp16 <-> f32 runs with the F16C instructions where the CPU has them: the
 * conversions are the largest per-token cost of the CPU codec after the
 * GEMMs. Both round to nearest even like the scalar code in util/half.h, so
 * results do not depend on the CPU (NaN payloads aside, which the codec
 * never produces). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define KVTC_HAVE_F16C_PATH 1

__attribute__((target("avx,f16c"))) static void f16_to_f32_f16c(const uint16_t *src, uint32_t n, float *dst) {
    uint32_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + j))));
    for (; j < n; j++) dst[j] = kvi_f16_to_f32(src[j]);
}

__attribute__((target("avx,f16c"))) static void f32_to_f16_f16c(const float *src, uint32_t n, uint16_t *dst) {
    uint32_t j = 0;
    const __m256 hi = _mm256_set1_ps(KVTC_F16_MAX), lo = _mm256_set1_ps(-KVTC_F16_MAX);
    for (; j + 8 <= n; j += 8) {
        __m256 x = _mm256_max_ps(_mm256_min_ps(_mm256_loadu_ps(src + j), hi), lo);
        _mm_storeu_si128((__m128i *)(dst + j), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; j < n; j++) dst[j] = kvi_f32_to_f16(saturate(src[j], KVTC_F16_MAX));
}

#include <cpuid.h>

/* CPUID.1:ECX bits 27 (OSXSAVE), 28 (AVX), 29 (F16C), and the OS saving YMM
 * state (XCR0 bits 1-2). Asked once per gather/scatter call, not cached:
 * the library keeps no global state. */
static int have_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    unsigned need = (1u << 27) | (1u << 28) | (1u << 29);
    if ((c & need) != need) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return (lo & 6u) == 6u;
}
#else
static int have_f16c(void) { return 0; }
#endif

/* Load n elements from p (element stride `stride`) into dst as float. */
static void load_run(const char *p, kvtc_dtype t, int64_t stride, uint32_t n, float *dst, int f16c) {
    size_t es = kvtc_dtype_size(t);
    if (stride != 1) {
        for (uint32_t j = 0; j < n; j++) dst[j] = kvi_load_elem(p + (int64_t)es * stride * (int64_t)j, t, 0);
        return;
    }
    switch (t) {
    case KVTC_DTYPE_F32:
        memcpy(dst, p, sizeof(float) * n);
        break;
    case KVTC_DTYPE_F16:
#ifdef KVTC_HAVE_F16C_PATH
        if (f16c) {
            f16_to_f32_f16c((const uint16_t *)p, n, dst);
            break;
        }
#else
        (void)f16c;
#endif
        for (uint32_t j = 0; j < n; j++) dst[j] = kvi_f16_to_f32(((const uint16_t *)p)[j]);
        break;
    case KVTC_DTYPE_BF16:
        for (uint32_t j = 0; j < n; j++) dst[j] = kvi_bf16_to_f32(((const uint16_t *)p)[j]);
        break;
    }
}

static void store_run(char *p, kvtc_dtype t, int64_t stride, uint32_t n, const float *src, int f16c) {
    size_t es = kvtc_dtype_size(t);
    if (stride != 1) {
        for (uint32_t j = 0; j < n; j++) kvi_store_elem(p + (int64_t)es * stride * (int64_t)j, t, 0, src[j]);
        return;
    }
    switch (t) {
    case KVTC_DTYPE_F32:
        memcpy(p, src, sizeof(float) * n);
        break;
    case KVTC_DTYPE_F16:
#ifdef KVTC_HAVE_F16C_PATH
        if (f16c) {
            f32_to_f16_f16c(src, n, (uint16_t *)p);
            break;
        }
#else
        (void)f16c;
#endif
        for (uint32_t j = 0; j < n; j++) ((uint16_t *)p)[j] = kvi_f32_to_f16(saturate(src[j], KVTC_F16_MAX));
        break;
    case KVTC_DTYPE_BF16:
        for (uint32_t j = 0; j < n; j++) ((uint16_t *)p)[j] = kvi_f32_to_bf16(saturate(src[j], KVTC_BF16_MAX));
        break;
    }
}

void kvi_layout_gather_rows(const kvtc_cache_layout *c, int is_key, uint32_t layer_begin, uint32_t layer_end,
                             uint64_t t0, uint64_t n, const rope_table *rope, int unrope, float *rows) {
    const kvtc_geometry *g = &c->geometry;
    const kvtc_tensor_layout *tl = is_key ? &c->k : &c->v;
    uint64_t w = (uint64_t)(layer_end - layer_begin) * g->n_kv_heads * g->head_dim;
    uint32_t d = g->head_dim;
    int rot = is_key && unrope && g->rope_type != KVTC_ROPE_NONE;
    int f16c = c->dtype == KVTC_DTYPE_F16 && tl->dim_stride == 1 && have_f16c();
    float cs[KVTC_MAX_HEAD_DIM];
    size_t es = kvtc_dtype_size(c->dtype);
    for (uint64_t t = 0; t < n; t++) {
        float *row = rows + t * w;
        if (rot) rope_angles(rope, kvi_layout_position(c, t0 + t), cs);
        uint64_t col = 0;
        int64_t tok = layout_token_offset(c, tl, t0 + t);
        for (uint32_t l = layer_begin; l < layer_end; l++) {
            const char *lb = layout_layer_base(tl, l, es) + (int64_t)es * tok;
            for (uint32_t h = 0; h < g->n_kv_heads; h++, col += d) {
                load_run(lb + (int64_t)es * h * tl->head_stride, c->dtype, tl->dim_stride, d, row + col, f16c);
                if (rot) rope_rotate(g, cs, -1, row + col);
            }
        }
    }
}

void kvi_layout_scatter_rows(const kvtc_cache_layout *c, int is_key, uint32_t layer_begin, uint32_t layer_end,
                              uint64_t t0, uint64_t n, const rope_table *rope, int rerope, const float *rows) {
    const kvtc_geometry *g = &c->geometry;
    const kvtc_tensor_layout *tl = is_key ? &c->k : &c->v;
    uint64_t w = (uint64_t)(layer_end - layer_begin) * g->n_kv_heads * g->head_dim;
    uint32_t d = g->head_dim;
    int rot = is_key && rerope && g->rope_type != KVTC_ROPE_NONE;
    int f16c = c->dtype == KVTC_DTYPE_F16 && tl->dim_stride == 1 && have_f16c();
    float cs[KVTC_MAX_HEAD_DIM];
    float tmp[KVTC_MAX_HEAD_DIM];
    size_t es = kvtc_dtype_size(c->dtype);
    for (uint64_t t = 0; t < n; t++) {
        const float *row = rows + t * w;
        if (rot) rope_angles(rope, kvi_layout_position(c, t0 + t), cs);
        uint64_t col = 0;
        int64_t tok = layout_token_offset(c, tl, t0 + t);
        for (uint32_t l = layer_begin; l < layer_end; l++) {
            char *lb = layout_layer_base(tl, l, es) + (int64_t)es * tok;
            for (uint32_t h = 0; h < g->n_kv_heads; h++, col += d) {
                const float *srcv = row + col;
                if (rot) {
                    for (uint32_t j = 0; j < d; j++) tmp[j] = srcv[j];
                    rope_rotate(g, cs, +1, tmp);
                    srcv = tmp;
                }
                store_run(lb + (int64_t)es * h * tl->head_stride, c->dtype, tl->dim_stride, d, srcv, f16c);
            }
        }
    }
}

void kvi_gather_rows(const kvtc_cache *c, int is_key, uint32_t first_layer, uint64_t t0,
                      uint64_t n, const rope_table *rope, int unrope, float *rows) {
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(c, &l);
    kvi_layout_gather_rows(&l, is_key, first_layer, c->geometry.n_layers, t0, n, rope, unrope, rows);
}

void kvi_scatter_rows(kvtc_cache *c, int is_key, uint32_t first_layer, uint64_t t0, uint64_t n,
                       const rope_table *rope, int rerope, const float *rows) {
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(c, &l);
    kvi_layout_scatter_rows(&l, is_key, first_layer, c->geometry.n_layers, t0, n, rope, rerope, rows);
}

int kvi_layout_tokens_finite(const kvtc_cache_layout *c, uint32_t layer_begin, uint64_t t0, uint64_t n) {
    const kvtc_geometry *g = &c->geometry;
    uint32_t d = g->head_dim;
    float buf[KVTC_MAX_HEAD_DIM];
    /* Exponent bits all ones = Inf or NaN: checked on the stored bits for
     * rows of adjacent elements, without converting (8% of encode time on the
     * bundled model when every value went through a float). */
    uint32_t m16 = c->dtype == KVTC_DTYPE_F16 ? 0x7c00u : 0x7f80u;
    for (int s = 0; s < 2; s++) {
        const kvtc_tensor_layout *tl = s ? &c->v : &c->k;
        if (tl->dim_stride == 1 && c->dtype != KVTC_DTYPE_F32) {
            for (uint32_t l = layer_begin; l < g->n_layers; l++)
                for (uint32_t h = 0; h < g->n_kv_heads; h++)
                    for (uint64_t t = t0; t < t0 + n; t++) {
                        const uint16_t *p = (const uint16_t *)layout_elem(c, !s, l, t, h);
                        unsigned bad = 0;
                        for (uint32_t j = 0; j < d; j++) bad |= (p[j] & m16) == m16;
                        if (bad) return 0;
                    }
            continue;
        }
        int f16c = c->dtype == KVTC_DTYPE_F16 && tl->dim_stride == 1 && have_f16c();
        for (uint32_t l = layer_begin; l < g->n_layers; l++)
            for (uint32_t h = 0; h < g->n_kv_heads; h++)
                for (uint64_t t = t0; t < t0 + n; t++) {
                    load_run(layout_elem(c, !s, l, t, h), c->dtype, tl->dim_stride, d, buf, f16c);
                    for (uint32_t j = 0; j < d; j++)
                        if (!isfinite(buf[j])) return 0;
                }
    }
    return 1;
}

int kvi_cache_tokens_finite(const kvtc_cache *c, uint64_t t0, uint64_t n) {
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(c, &l);
    return kvi_layout_tokens_finite(&l, 0, t0, n);
}
