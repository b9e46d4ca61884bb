/* synth.h - synthetic, correlated KV caches for the codec tests.
 *
 * Keys and values of token t are a low-rank latent z_t (rank r, decaying
 * variances) times a fixed random mixing matrix over ALL layers and heads,
 * plus a mean, per-layer scales and small Gaussian noise. The mixing matrix,
 * mean and scales depend only on `model_seed`, so caches drawn with other
 * `data_seed`s come from the same "model" (what a basis is calibrated for).
 * RoPE is then applied to the keys at each token's position, with the
 * convention of kvtc.h (pair i rotated by pos * theta^(-2i/rope_dim); norm =
 * adjacent pairs, neox = halves), computed here independently in double.
 *
 * Everything is static: include from one test file each. */
#ifndef KVTC_TESTS_SYNTH_H
#define KVTC_TESTS_SYNTH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvtc.h"
#include "util/half.h"

/* helpers unused by one test file must not warn under -Werror */
#define SYNTH_API static __attribute__((unused))

/* ---- deterministic random numbers ---------------------------------------- */

typedef struct synth_rng {
    uint64_t s;
} synth_rng;

SYNTH_API uint64_t synth_next(synth_rng *r) { /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

SYNTH_API double synth_uniform(synth_rng *r) { return (double)(synth_next(r) >> 11) * 0x1p-53; }

SYNTH_API double synth_gauss(synth_rng *r) {
    double u1 = synth_uniform(r), u2 = synth_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- geometry helpers --------------------------------------------------- */

SYNTH_API kvtc_geometry synth_geometry(uint32_t n_layers, uint32_t n_kv_heads, uint32_t head_dim,
                                    kvtc_rope_type rope, uint32_t rope_dim, float theta) {
    kvtc_geometry g;
    memset(&g, 0, sizeof g);
    g.n_layers = n_layers;
    g.n_kv_heads = n_kv_heads;
    g.head_dim = head_dim;
    g.rope_dim = rope_dim;
    g.rope_type = rope;
    g.rope_theta = theta;
    return g;
}

SYNTH_API uint64_t synth_p(const kvtc_geometry *g) {
    return (uint64_t)g->n_layers * g->n_kv_heads * g->head_dim;
}

/* Apply (direction +1) or remove (-1) RoPE on one head vector, in double. */
SYNTH_API void synth_rope_d(const kvtc_geometry *g, int64_t pos, int direction, double *x) {
    if (g->rope_type == KVTC_ROPE_NONE) return;
    uint32_t rd = g->rope_dim ? g->rope_dim : g->head_dim;
    uint32_t n = rd / 2;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t a = g->rope_type == KVTC_ROPE_NORM ? 2 * i : i;
        uint32_t b = g->rope_type == KVTC_ROPE_NORM ? 2 * i + 1 : i + n;
        double ang = (double)pos * pow((double)g->rope_theta, -2.0 * (double)i / (double)rd);
        double c = cos(ang), s = (direction >= 0 ? 1.0 : -1.0) * sin(ang);
        double x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

SYNTH_API void synth_store(void *base, kvtc_dtype t, uint64_t i, double x) {
    float f = (float)x;
    switch (t) {
    case KVTC_DTYPE_F32: ((float *)base)[i] = f; break;
    case KVTC_DTYPE_F16: ((uint16_t *)base)[i] = kvi_f32_to_f16(f); break;
    case KVTC_DTYPE_BF16: ((uint16_t *)base)[i] = kvi_f32_to_bf16(f); break;
    }
}

SYNTH_API double synth_load(const void *base, kvtc_dtype t, uint64_t i) {
    switch (t) {
    case KVTC_DTYPE_F32: return ((const float *)base)[i];
    case KVTC_DTYPE_F16: return kvi_f16_to_f32(((const uint16_t *)base)[i]);
    case KVTC_DTYPE_BF16: return kvi_bf16_to_f32(((const uint16_t *)base)[i]);
    }
    return 0.0;
}

/* ---- the synthetic cache ------------------------------------------------ */

typedef struct synth_params {
    kvtc_geometry g;
    kvtc_dtype dtype;
    uint64_t n_tokens;
    uint32_t rank;          /* latent rank (default 8 when 0) */
    double noise;           /* std of the i.i.d. noise (relative to unit signal) */
    uint64_t model_seed;    /* mixing matrices, means, layer scales */
    uint64_t data_seed;     /* latents and noise */
    const int64_t *positions; /* NULL: 0..n-1 (the cache then has positions == NULL) */
} synth_params;

typedef struct synth_cache {
    kvtc_cache c;     /* k, v (and positions when explicit) owned */
    double *k_plain;  /* [L][H][n][d] keys before RoPE, in double (not dtype-rounded) */
} synth_cache;

SYNTH_API void synth_free(synth_cache *s) {
    if (!s) return;
    free(s->c.k);
    free(s->c.v);
    free(s->c.positions);
    free(s->k_plain);
    memset(s, 0, sizeof *s);
}

SYNTH_API void synth_params_init(synth_params *sp, const kvtc_geometry *g, kvtc_dtype dt, uint64_t n) {
    memset(sp, 0, sizeof *sp);
    sp->g = *g;
    sp->dtype = dt;
    sp->n_tokens = n;
    sp->rank = 8;
    sp->noise = 0.02;
    sp->model_seed = 1234;
    sp->data_seed = 1;
}

/* Returns 0 on success. */
SYNTH_API int synth_make(const synth_params *sp, synth_cache *out) {
    memset(out, 0, sizeof *out);
    const kvtc_geometry *g = &sp->g;
    uint64_t p = synth_p(g), n = sp->n_tokens;
    uint32_t r = sp->rank ? sp->rank : 8;
    uint32_t L = g->n_layers, H = g->n_kv_heads, d = g->head_dim;
    size_t es = kvtc_dtype_size(sp->dtype);
    out->c.geometry = *g;
    out->c.dtype = sp->dtype;
    out->c.n_tokens = n;
    out->c.k = calloc(1, (size_t)(p * n * es) + 1);
    out->c.v = calloc(1, (size_t)(p * n * es) + 1);
    out->k_plain = calloc((size_t)(p * n) + 1, sizeof(double));
    double *mix = malloc(sizeof(double) * 2 * r * p);   /* [2][r][p] */
    double *mean = malloc(sizeof(double) * 2 * p);      /* [2][p] */
    double *z = malloc(sizeof(double) * r);
    double *row = malloc(sizeof(double) * p);
    if (sp->positions) out->c.positions = malloc(sizeof(int64_t) * (n ? n : 1));
    if (!out->c.k || !out->c.v || !out->k_plain || !mix || !mean || !z || !row ||
        (sp->positions && !out->c.positions)) {
        free(mix); free(mean); free(z); free(row);
        synth_free(out);
        return -1;
    }
    if (sp->positions) memcpy(out->c.positions, sp->positions, sizeof(int64_t) * n);

    /* the "model": mixing over all layers/heads, means, per-layer scales */
    synth_rng mr = {sp->model_seed * 0x2545f4914f6cdd1dull + 7};
    for (uint64_t i = 0; i < 2 * (uint64_t)r * p; i++) mix[i] = synth_gauss(&mr) / sqrt((double)r);
    for (uint64_t i = 0; i < 2 * p; i++) mean[i] = 0.3 * synth_gauss(&mr);
    for (int s = 0; s < 2; s++)
        for (uint32_t l = 0; l < L; l++) {
            double scale = (s ? 0.4 : 1.0) * (0.25 + 0.6 * l); /* layers differ in magnitude */
            for (uint64_t j = 0; j < (uint64_t)H * d; j++) {
                uint64_t col = (uint64_t)l * H * d + j;
                for (uint32_t q = 0; q < r; q++) mix[((uint64_t)s * r + q) * p + col] *= scale;
                mean[(uint64_t)s * p + col] *= scale;
            }
        }

    synth_rng dr = {sp->data_seed * 0x9e3779b97f4a7c15ull + 0x1234567ull};
    for (uint64_t t = 0; t < n; t++) {
        int64_t pos = sp->positions ? sp->positions[t] : (int64_t)t;
        for (int s = 0; s < 2; s++) {
            for (uint32_t q = 0; q < r; q++) z[q] = synth_gauss(&dr) / (1.0 + 0.35 * q);
            for (uint64_t i = 0; i < p; i++) {
                double x = mean[(uint64_t)s * p + i] + sp->noise * synth_gauss(&dr);
                for (uint32_t q = 0; q < r; q++) x += z[q] * mix[((uint64_t)s * r + q) * p + i];
                row[i] = x;
            }
            for (uint32_t l = 0; l < L; l++)
                for (uint32_t h = 0; h < H; h++) {
                    double *hv = row + ((uint64_t)l * H + h) * d;
                    uint64_t off = (((uint64_t)l * H + h) * n + t) * d;
                    if (s == 0) {
                        memcpy(out->k_plain + off, hv, sizeof(double) * d);
                        synth_rope_d(g, pos, +1, hv);
                    }
                    for (uint32_t j = 0; j < d; j++) synth_store(s ? out->c.v : out->c.k, sp->dtype, off + j, hv[j]);
                }
        }
    }
    free(mix); free(mean); free(z); free(row);
    return 0;
}

/* Token t of layer l, head h of k or v as double. */
SYNTH_API double synth_elem(const kvtc_cache *c, int is_key, uint32_t l, uint32_t h, uint64_t t, uint32_t j) {
    const kvtc_geometry *g = &c->geometry;
    uint64_t off = (((uint64_t)l * g->n_kv_heads + h) * c->n_tokens + t) * g->head_dim + j;
    return synth_load(is_key ? c->k : c->v, c->dtype, off);
}

/* Sum of (a - b)^2 over layers [l0, l1) of token t, keys or values. */
static inline double synth_token_sqerr_range(const kvtc_cache *a, const kvtc_cache *b, int is_key, uint32_t l0,
                                             uint32_t l1, uint64_t t) {
    const kvtc_geometry *g = &a->geometry;
    double e = 0;
    for (uint32_t l = l0; l < l1; l++)
        for (uint32_t h = 0; h < g->n_kv_heads; h++)
            for (uint32_t j = 0; j < g->head_dim; j++) {
                double dlt = synth_elem(a, is_key, l, h, t, j) - synth_elem(b, is_key, l, h, t, j);
                e += dlt * dlt;
            }
    return e;
}

/* Sum over all coordinates of token t of (a - b)^2 for keys or values. */
SYNTH_API double synth_token_sqerr(const kvtc_cache *a, const kvtc_cache *b, int is_key, uint64_t t) {
    return synth_token_sqerr_range(a, b, is_key, 0, a->geometry.n_layers, t);
}

/* Sum of (a - b)^2 over keys and values of layers [l0, l1), every token. */
SYNTH_API double synth_sqerr_layers(const kvtc_cache *a, const kvtc_cache *b, uint32_t l0, uint32_t l1) {
    double e = 0;
    for (int s = 0; s < 2; s++)
        for (uint64_t t = 0; t < a->n_tokens; t++) e += synth_token_sqerr_range(a, b, s, l0, l1, t);
    return e;
}

/* Sum of (a - b)^2 over every key and value. */
SYNTH_API double synth_sqerr(const kvtc_cache *a, const kvtc_cache *b) {
    return synth_sqerr_layers(a, b, 0, a->geometry.n_layers);
}

/* Squared deviation of every element from its coordinate's mean over the
 * tokens (keys and values): the energy of what the PCA codes. */
SYNTH_API double synth_centered_energy(const kvtc_cache *c) {
    const kvtc_geometry *g = &c->geometry;
    double e = 0;
    for (int s = 0; s < 2; s++)
        for (uint32_t l = 0; l < g->n_layers; l++)
            for (uint32_t h = 0; h < g->n_kv_heads; h++)
                for (uint32_t j = 0; j < g->head_dim; j++) {
                    double sum = 0, sum2 = 0;
                    for (uint64_t t = 0; t < c->n_tokens; t++) {
                        double x = synth_elem(c, s, l, h, t, j);
                        sum += x;
                        sum2 += x * x;
                    }
                    e += sum2 - sum * sum / (double)c->n_tokens;
                }
    return e;
}

/* 1 if token t of k and v is bit-identical in the two caches (same dtype). */
SYNTH_API int synth_token_equal(const kvtc_cache *a, const kvtc_cache *b, uint64_t t) {
    const kvtc_geometry *g = &a->geometry;
    size_t es = kvtc_dtype_size(a->dtype);
    for (uint64_t lh = 0; lh < (uint64_t)g->n_layers * g->n_kv_heads; lh++) {
        size_t oa = (size_t)((lh * a->n_tokens + t) * g->head_dim * es);
        size_t ob = (size_t)((lh * b->n_tokens + t) * g->head_dim * es);
        if (memcmp((const uint8_t *)a->k + oa, (const uint8_t *)b->k + ob, g->head_dim * es)) return 0;
        if (memcmp((const uint8_t *)a->v + oa, (const uint8_t *)b->v + ob, g->head_dim * es)) return 0;
    }
    return 1;
}

/* An output cache shaped like `like` (zeroed k/v, positions when asked). */
SYNTH_API int synth_alloc_like(const kvtc_geometry *g, kvtc_dtype dt, uint64_t n, int with_pos, kvtc_cache *out) {
    memset(out, 0, sizeof *out);
    out->geometry = *g;
    out->dtype = dt;
    out->n_tokens = n;
    size_t bytes = (size_t)(synth_p(g) * n * kvtc_dtype_size(dt));
    out->k = calloc(1, bytes + 1);
    out->v = calloc(1, bytes + 1);
    if (with_pos) out->positions = calloc(n + 1, sizeof(int64_t));
    return (!out->k || !out->v || (with_pos && !out->positions)) ? -1 : 0;
}

SYNTH_API void synth_cache_free(kvtc_cache *c) {
    free(c->k);
    free(c->v);
    free(c->positions);
    free(c->token_ids);
    memset(c, 0, sizeof *c);
}

/* Calibrate a basis on `n_caches` caches of n tokens drawn from the model of
 * sp (data seeds 1000, 1001, ...). Returns the kvtc_result. */
SYNTH_API kvtc_result synth_calibrate(const synth_params *sp, uint32_t n_caches, uint32_t n_sink,
                                   uint32_t n_window, const double *ratios, uint32_t n_ratios,
                                   kvtc_basis **out) {
    kvtc_calibrate_options o;
    kvtc_calibrate_options_init(&o);
    o.n_sink = n_sink;
    o.n_window = n_window;
    kvtc_calibrator *cal = NULL;
    kvtc_result r = kvtc_calibrator_alloc(&sp->g, &o, &cal);
    if (r) return r;
    for (uint32_t i = 0; i < n_caches && !r; i++) {
        synth_params q = *sp;
        q.data_seed = 1000 + i;
        q.positions = NULL;
        synth_cache sc;
        if (synth_make(&q, &sc)) { r = KVTC_ERR_OUT_OF_MEMORY; break; }
        r = kvtc_calibrator_add(cal, &sc.c);
        synth_free(&sc);
    }
    if (!r) r = kvtc_calibrator_finish(cal, ratios, n_ratios, out);
    kvtc_calibrator_free(cal);
    return r;
}

/* Serialize a basis into a malloc'd buffer (NULL on failure). */
SYNTH_API void *synth_basis_bytes(const kvtc_basis *b, size_t *size) {
    size_t n = kvtc_basis_serialized_size(b), w = 0;
    void *buf = malloc(n ? n : 1);
    if (!buf) return NULL;
    if (kvtc_basis_serialize(b, buf, n, &w) != KVTC_OK || w != n) { free(buf); return NULL; }
    *size = w;
    return buf;
}

/* Compress with the given options into a malloc'd exact-size buffer. */
SYNTH_API kvtc_result synth_compress(const kvtc_basis *b, const kvtc_encode_options *o, const kvtc_cache *c,
                                  uint8_t **out, size_t *size) {
    *out = NULL;
    *size = 0;
    kvtc_encoder *e = NULL;
    kvtc_result r = kvtc_encoder_alloc(b, o, &e);
    if (r) return r;
    size_t cap = kvtc_compress_bound(e, c);
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) { kvtc_encoder_free(e); return KVTC_ERR_OUT_OF_MEMORY; }
    size_t w = 0;
    r = cap ? kvtc_compress(e, c, buf, cap, &w) : KVTC_ERR_INVALID_ARGUMENT;
    kvtc_encoder_free(e);
    if (r) { free(buf); return r; }
    *out = malloc(w ? w : 1);
    if (!*out) { free(buf); return KVTC_ERR_OUT_OF_MEMORY; }
    memcpy(*out, buf, w);
    free(buf);
    *size = w;
    return KVTC_OK;
}

#endif
