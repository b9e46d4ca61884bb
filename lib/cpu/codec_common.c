/* codec_common.c - see codec_common.h. */
#include "cpu/codec_common.h"

#include <string.h>

#include "transform/project.h"
#include "util/cache.h"
#include "util/parallel.h"

/* Byte offsets of the sink run and the window run of (layer, head) lh in
 * the tensor, and of its raw tokens in the section. */
typedef struct raw_runs {
    size_t sink, window, section, sink_bytes, window_bytes;
} raw_runs;

static raw_runs runs_of(const container_header *h, uint64_t lh) {
    size_t tok = (size_t)h->geometry.head_dim * kvtc_dtype_size(h->dtype);
    raw_runs r;
    r.sink = lh * h->n_tokens * tok;
    r.window = (lh * h->n_tokens + h->n_tokens - h->n_window) * tok;
    r.section = lh * container_raw_tokens(h) * tok;
    r.sink_bytes = h->n_sink * tok;
    r.window_bytes = h->n_window * tok;
    return r;
}

void codec_cache_to_raw(const container_header *h, const void *tensor, uint8_t *section) {
    const uint8_t *t8 = tensor;
    if (!container_raw_tokens(h)) return; /* an empty cache may have NULL tensors: no memcpy(NULL, ..., 0) */
    for (uint64_t lh = 0; lh < (uint64_t)h->geometry.n_layers * h->geometry.n_kv_heads; lh++) {
        raw_runs r = runs_of(h, lh);
        memcpy(section + r.section, t8 + r.sink, r.sink_bytes);
        memcpy(section + r.section + r.sink_bytes, t8 + r.window, r.window_bytes);
    }
}

void codec_raw_to_cache(const container_header *h, const uint8_t *section, void *tensor) {
    uint8_t *t8 = tensor;
    if (!container_raw_tokens(h)) return; /* an empty cache may have NULL tensors: no memcpy(NULL, ..., 0) */
    for (uint64_t lh = 0; lh < (uint64_t)h->geometry.n_layers * h->geometry.n_kv_heads; lh++) {
        raw_runs r = runs_of(h, lh);
        memcpy(t8 + r.sink, section + r.section, r.sink_bytes);
        memcpy(t8 + r.window, section + r.section + r.sink_bytes, r.window_bytes);
    }
}

/* ---- per-token stages on worker threads ---------------------------------- */

typedef struct rows_job {
    kvtc_cache *c;
    int is_key;
    const basis_stream *s;
    uint32_t first_layer;
    uint64_t t0, n;
    const rope_table *rope;
    float *x;
    uint32_t parts;
} rows_job;

/* Token range of part i of `parts` equal parts of n. */
static void part_range(uint64_t n, uint32_t parts, uint32_t i, uint64_t *lo, uint64_t *len) {
    *lo = n * i / parts;
    *len = n * (i + 1) / parts - *lo;
}

static int gather_part(void *p, uint32_t item, uint32_t worker) {
    (void)worker;
    rows_job *j = p;
    uint64_t lo, len;
    part_range(j->n, j->parts, item, &lo, &len);
    float *x = j->x + lo * j->s->p;
    kvi_gather_rows(j->c, j->is_key, j->first_layer, j->t0 + lo, len, j->rope, j->rope != NULL, x);
    center_rows(j->s, x, len);
    return 0;
}

static int scatter_part(void *p, uint32_t item, uint32_t worker) {
    (void)worker;
    rows_job *j = p;
    uint64_t lo, len;
    part_range(j->n, j->parts, item, &lo, &len);
    float *x = j->x + lo * j->s->p;
    uncenter_rows(j->s, x, len);
    kvi_scatter_rows(j->c, j->is_key, j->first_layer, j->t0 + lo, len, j->rope, j->rope != NULL, x);
    return 0;
}

void codec_gather_centered(const kvtc_cache *c, int is_key, const basis_stream *s, uint32_t first_layer,
                           uint64_t t0, uint64_t n, const rope_table *rope, uint32_t n_threads, float *x) {
    uint32_t parts = n_threads ? n_threads : 1;
    if (parts > n) parts = n ? (uint32_t)n : 1;
    /* gathering only reads the cache; the job type is shared with scatter */
    rows_job j = {(kvtc_cache *)c, is_key, s, first_layer, t0, n, rope, x, parts};
    kvi_parallel_for(parts, parts, gather_part, &j);
}

void codec_scatter_uncentered(kvtc_cache *c, int is_key, const basis_stream *s, uint32_t first_layer,
                              uint64_t t0, uint64_t n, const rope_table *rope, uint32_t n_threads, float *x) {
    uint32_t parts = n_threads ? n_threads : 1;
    if (parts > n) parts = n ? (uint32_t)n : 1;
    rows_job j = {c, is_key, s, first_layer, t0, n, rope, x, parts};
    kvi_parallel_for(parts, parts, scatter_part, &j);
}
