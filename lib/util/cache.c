/* cache.c - cache validation and layout conversion. */
#include "util/cache.h"

#include <math.h>
#include <stdlib.h>

#include "util/half.h"

kvtc_result kvi_geometry_check(const kvtc_geometry *g) {
    if (!g) return KVTC_ERR_INVALID_ARGUMENT;
    if (g->n_layers == 0 || g->n_kv_heads == 0 || g->head_dim == 0) return KVTC_ERR_INVALID_ARGUMENT;
    if (g->head_dim > KVTC_MAX_HEAD_DIM) return KVTC_ERR_TOO_LARGE;
    /* bound the factors first: 2^31 x 2^31 x 4 would wrap the product to 0 */
    if (g->n_layers > KVTC_MAX_ROW || g->n_kv_heads > KVTC_MAX_ROW) return KVTC_ERR_TOO_LARGE;
    uint64_t p = (uint64_t)g->n_layers * g->n_kv_heads * g->head_dim;
    if (p > KVTC_MAX_ROW) return KVTC_ERR_TOO_LARGE;
    if (g->rope_type != KVTC_ROPE_NONE && g->rope_type != KVTC_ROPE_NORM &&
        g->rope_type != KVTC_ROPE_NEOX)
        return KVTC_ERR_INVALID_ARGUMENT;
    if (g->rope_type != KVTC_ROPE_NONE) {
        uint32_t rd = kvi_geometry_rope_dim(g);
        if (rd > g->head_dim || rd % 2 != 0) return KVTC_ERR_INVALID_ARGUMENT;
        if (!(g->rope_theta > 0.0f) || !isfinite(g->rope_theta)) return KVTC_ERR_INVALID_ARGUMENT;
    }
    return KVTC_OK;
}

uint32_t kvi_geometry_rope_dim(const kvtc_geometry *g) { return g->rope_dim ? g->rope_dim : g->head_dim; }

int kvi_geometry_equal(const kvtc_geometry *a, const kvtc_geometry *b) {
    if (a->n_layers != b->n_layers || a->n_kv_heads != b->n_kv_heads || a->head_dim != b->head_dim)
        return 0;
    if (a->rope_type != b->rope_type) return 0;
    if (a->rope_type == KVTC_ROPE_NONE) return 1;
    return kvi_geometry_rope_dim(a) == kvi_geometry_rope_dim(b) && a->rope_theta == b->rope_theta;
}

uint64_t kvi_row_width(const kvtc_geometry *g, uint32_t first_layer) {
    if (first_layer >= g->n_layers) return 0;
    return (uint64_t)(g->n_layers - first_layer) * g->n_kv_heads * g->head_dim;
}

uint64_t kvtc_cache_tensor_bytes(const kvtc_geometry *g, kvtc_dtype dtype, uint64_t n_tokens) {
    if (!g) return 0;
    size_t es = kvtc_dtype_size(dtype);
    if (!es) return 0;
    uint64_t p = (uint64_t)g->n_layers * g->n_kv_heads * g->head_dim;
    if (p == 0) return 0;
    if (n_tokens > UINT64_MAX / p / es) return 0;
    return p * n_tokens * es;
}

kvtc_result kvi_cache_check(const kvtc_cache *c) {
    if (!c) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = kvi_geometry_check(&c->geometry);
    if (r) return r;
    if (!kvtc_dtype_size(c->dtype)) return KVTC_ERR_INVALID_ARGUMENT;
    if (c->n_tokens > KVTC_MAX_TOKENS) return KVTC_ERR_TOO_LARGE;
    if (c->n_tokens == 0) return KVTC_OK;
    if (!c->k || !c->v) return KVTC_ERR_INVALID_ARGUMENT;
    uint64_t bytes = kvtc_cache_tensor_bytes(&c->geometry, c->dtype, c->n_tokens);
    if (bytes == 0 || bytes > (uint64_t)SIZE_MAX) return KVTC_ERR_TOO_LARGE;
    return KVTC_OK;
}

float kvi_load_elem(const void *base, kvtc_dtype t, uint64_t i) {
    switch (t) {
    case KVTC_DTYPE_F32: return ((const float *)base)[i];
    case KVTC_DTYPE_F16: return kvi_f16_to_f32(((const uint16_t *)base)[i]);
    case KVTC_DTYPE_BF16: return kvi_bf16_to_f32(((const uint16_t *)base)[i]);
    }
    return 0.0f;
}

void kvi_store_elem(void *base, kvtc_dtype t, uint64_t i, float x) {
    switch (t) {
    case KVTC_DTYPE_F32: ((float *)base)[i] = x; break;
    case KVTC_DTYPE_F16: ((uint16_t *)base)[i] = kvi_f32_to_f16(x); break;
    case KVTC_DTYPE_BF16: ((uint16_t *)base)[i] = kvi_f32_to_bf16(x); break;
    }
}

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
    for (; j + 8 <= n; j += 8)
        _mm_storeu_si128((__m128i *)(dst + j), _mm256_cvtps_ph(_mm256_loadu_ps(src + j), _MM_FROUND_TO_NEAREST_INT));
    for (; j < n; j++) dst[j] = kvi_f32_to_f16(src[j]);
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

/* Load n consecutive elements starting at index i into dst (float). */
static void load_run(const void *base, kvtc_dtype t, uint64_t i, uint32_t n, float *dst, int f16c) {
    switch (t) {
    case KVTC_DTYPE_F32:
        for (uint32_t j = 0; j < n; j++) dst[j] = ((const float *)base)[i + j];
        break;
    case KVTC_DTYPE_F16:
#ifdef KVTC_HAVE_F16C_PATH
        if (f16c) {
            f16_to_f32_f16c((const uint16_t *)base + i, n, dst);
            break;
        }
#else
        (void)f16c;
#endif
        for (uint32_t j = 0; j < n; j++) dst[j] = kvi_f16_to_f32(((const uint16_t *)base)[i + j]);
        break;
    case KVTC_DTYPE_BF16:
        for (uint32_t j = 0; j < n; j++) dst[j] = kvi_bf16_to_f32(((const uint16_t *)base)[i + j]);
        break;
    }
}

static void store_run(void *base, kvtc_dtype t, uint64_t i, uint32_t n, const float *src, int f16c) {
    switch (t) {
    case KVTC_DTYPE_F32:
        for (uint32_t j = 0; j < n; j++) ((float *)base)[i + j] = src[j];
        break;
    case KVTC_DTYPE_F16:
#ifdef KVTC_HAVE_F16C_PATH
        if (f16c) {
            f32_to_f16_f16c(src, n, (uint16_t *)base + i);
            break;
        }
#else
        (void)f16c;
#endif
        for (uint32_t j = 0; j < n; j++) ((uint16_t *)base)[i + j] = kvi_f32_to_f16(src[j]);
        break;
    case KVTC_DTYPE_BF16:
        for (uint32_t j = 0; j < n; j++) ((uint16_t *)base)[i + j] = kvi_f32_to_bf16(src[j]);
        break;
    }
}

void kvi_gather_rows(const kvtc_cache *c, int is_key, uint32_t first_layer, uint64_t t0,
                      uint64_t n, const rope_table *rope, int unrope, float *rows) {
    const kvtc_geometry *g = &c->geometry;
    const void *src = is_key ? c->k : c->v;
    uint64_t w = kvi_row_width(g, first_layer);
    uint32_t d = g->head_dim;
    int rot = is_key && unrope && g->rope_type != KVTC_ROPE_NONE;
    int f16c = c->dtype == KVTC_DTYPE_F16 && have_f16c();
    float cs[KVTC_MAX_HEAD_DIM];
    for (uint64_t t = 0; t < n; t++) {
        float *row = rows + t * w;
        if (rot) rope_angles(rope, kvi_cache_position(c, t0 + t), cs);
        uint64_t col = 0;
        for (uint32_t l = first_layer; l < g->n_layers; l++)
            for (uint32_t h = 0; h < g->n_kv_heads; h++, col += d) {
                uint64_t off = (((uint64_t)l * g->n_kv_heads + h) * c->n_tokens + t0 + t) * d;
                load_run(src, c->dtype, off, d, row + col, f16c);
                if (rot) rope_rotate(g, cs, -1, row + col);
            }
    }
}

void kvi_scatter_rows(kvtc_cache *c, int is_key, uint32_t first_layer, uint64_t t0, uint64_t n,
                       const rope_table *rope, int rerope, const float *rows) {
    const kvtc_geometry *g = &c->geometry;
    void *dst = is_key ? c->k : c->v;
    uint64_t w = kvi_row_width(g, first_layer);
    uint32_t d = g->head_dim;
    int rot = is_key && rerope && g->rope_type != KVTC_ROPE_NONE;
    int f16c = c->dtype == KVTC_DTYPE_F16 && have_f16c();
    float cs[KVTC_MAX_HEAD_DIM];
    float tmp[KVTC_MAX_HEAD_DIM];
    for (uint64_t t = 0; t < n; t++) {
        const float *row = rows + t * w;
        if (rot) rope_angles(rope, kvi_cache_position(c, t0 + t), cs);
        uint64_t col = 0;
        for (uint32_t l = first_layer; l < g->n_layers; l++)
            for (uint32_t h = 0; h < g->n_kv_heads; h++, col += d) {
                uint64_t off = (((uint64_t)l * g->n_kv_heads + h) * c->n_tokens + t0 + t) * d;
                const float *srcv = row + col;
                if (rot) {
                    for (uint32_t j = 0; j < d; j++) tmp[j] = srcv[j];
                    rope_rotate(g, cs, +1, tmp);
                    srcv = tmp;
                }
                store_run(dst, c->dtype, off, d, srcv, f16c);
            }
    }
}

int kvi_cache_tokens_finite(const kvtc_cache *c, uint64_t t0, uint64_t n) {
    const kvtc_geometry *g = &c->geometry;
    uint32_t d = g->head_dim;
    int f16c = c->dtype == KVTC_DTYPE_F16 && have_f16c();
    float buf[KVTC_MAX_HEAD_DIM];
    for (int s = 0; s < 2; s++) {
        const void *src = s ? c->v : c->k;
        for (uint32_t l = 0; l < g->n_layers; l++)
            for (uint32_t h = 0; h < g->n_kv_heads; h++)
                for (uint64_t t = t0; t < t0 + n; t++) {
                    uint64_t off = (((uint64_t)l * g->n_kv_heads + h) * c->n_tokens + t) * d;
                    load_run(src, c->dtype, off, d, buf, f16c);
                    for (uint32_t j = 0; j < d; j++)
                        if (!isfinite(buf[j])) return 0;
                }
    }
    return 1;
}
