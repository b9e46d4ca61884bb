/* codec_common.c - see codec_common.h. */
#include "cpu/codec_common.h"

#include <libdeflate.h>
#include <string.h>

#include "entropy/rans.h"
#include "quant/group_quant.h"
#include "transform/project.h"
#include "transform/rows.h"
#include "util/cache.h"
#include "util/layout.h"
#include "util/parallel.h"

void codec_raw_section_layout(const container_header *h, const uint8_t *section, kvtc_cache_layout *out) {
    kvtc_cache raw;
    memset(&raw, 0, sizeof raw);
    raw.geometry = h->geometry;
    raw.dtype = h->dtype;
    raw.n_tokens = container_raw_tokens(h);
    raw.k = raw.v = (void *)section; /* written through only by codec_cache_to_raw */
    kvtc_cache_layout_from_cache(&raw, out);
}

void codec_cache_to_raw(const container_header *h, const kvtc_cache_layout *c, int is_key, uint8_t *section) {
    if (!container_raw_tokens(h)) return;
    kvtc_cache_layout raw;
    codec_raw_section_layout(h, section, &raw);
    uint32_t L = h->geometry.n_layers;
    kvi_layout_copy_tokens(c, 0, &raw, 0, h->n_sink, is_key, 0, L);
    kvi_layout_copy_tokens(c, h->n_tokens - h->n_window, &raw, h->n_sink, h->n_window, is_key, 0, L);
}

void codec_raw_to_cache(const container_header *h, const uint8_t *section, int is_key, uint64_t t_begin,
                        uint64_t t_end, uint32_t layer_begin, uint32_t layer_end, const kvtc_cache_layout *c) {
    if (!container_raw_tokens(h)) return;
    kvtc_cache_layout raw;
    codec_raw_section_layout(h, section, &raw);
    /* sinks: stream tokens [0, n_sink) at raw tokens [0, n_sink) */
    uint64_t a = t_begin, b = t_end < h->n_sink ? t_end : h->n_sink;
    if (a < b) kvi_layout_copy_tokens(&raw, a, c, a - t_begin, b - a, is_key, layer_begin, layer_end);
    /* window: stream tokens [n_tokens - n_window, n_tokens) after the sinks */
    uint64_t w0 = h->n_tokens - h->n_window;
    a = t_begin > w0 ? t_begin : w0;
    b = t_end;
    if (a < b) kvi_layout_copy_tokens(&raw, h->n_sink + (a - w0), c, a - t_begin, b - a, is_key, layer_begin, layer_end);
}

/* ---- per-token stages on worker threads ---------------------------------- */

typedef struct rows_job {
    const kvtc_cache_layout *c;
    int is_key;
    const basis_stream *s;
    uint32_t first_layer, layer_begin, layer_end;
    uint64_t t0, n;
    const rope_table *rope;
    float *x;
    uint32_t parts;
    double energy_limit; /* gather: > 0 refuses rows whose squared norm exceeds it */
} rows_job;

/* Token range of part i of `parts` equal parts of n. */
static void part_range(uint64_t n, uint32_t parts, uint32_t i, uint64_t *lo, uint64_t *len) {
    *lo = n * i / parts;
    *len = n * (i + 1) / parts - *lo;
}

static uint32_t layer_cols(const kvtc_cache_layout *c, uint32_t layers) {
    return layers * c->geometry.n_kv_heads * c->geometry.head_dim;
}

static int gather_part(void *p, uint32_t item, uint32_t worker) {
    (void)worker;
    rows_job *j = p;
    uint64_t lo, len;
    part_range(j->n, j->parts, item, &lo, &len);
    float *x = j->x + lo * j->s->p;
    kvi_layout_gather_rows(j->c, j->is_key, j->first_layer, j->c->geometry.n_layers, j->t0 + lo, len, j->rope,
                            j->rope != NULL, x);
    center_rows(j->s, x, len);
    if (j->energy_limit > 0)
        for (uint64_t t = 0; t < len; t++) {
            const float *row = x + t * j->s->p;
            float e = 0; /* float: vectorizes; a huge value overflows to Inf, still refused */
            for (uint32_t i = 0; i < j->s->p; i++) e += row[i] * row[i];
            if (!((double)e <= j->energy_limit)) return KVTC_ERR_OUT_OF_RANGE;
        }
    return 0;
}

static int scatter_part(void *p, uint32_t item, uint32_t worker) {
    (void)worker;
    rows_job *j = p;
    uint64_t lo, len;
    part_range(j->n, j->parts, item, &lo, &len);
    uint32_t col0 = layer_cols(j->c, j->layer_begin - j->first_layer);
    uint32_t w = layer_cols(j->c, j->layer_end - j->layer_begin);
    float *x = j->x + lo * w;
    uncenter_cols(j->s, col0, w, x, len);
    kvi_layout_scatter_rows(j->c, j->is_key, j->layer_begin, j->layer_end, j->t0 + lo, len, j->rope,
                             j->rope != NULL, x);
    return 0;
}

static uint32_t parts_for(uint32_t n_threads, uint64_t n) {
    uint32_t parts = n_threads ? n_threads : 1;
    if (parts > n) parts = n ? (uint32_t)n : 1;
    return parts;
}

/* Issue 9 item 2: a coded token far outside what the basis was calibrated
 * on (one fp16 value of 65504 among values of order 1, say) would be coded
 * with an error of the order of the token itself and decode "finite but
 * wrong", so it is refused: a centered, weighted squared norm above
 * CODEC_OUTLIER_ENERGY times the calibration's total weighted variance (the
 * stored eigenvalues' sum, a lower bound of the trace) is 100x the typical
 * token norm, which calibration-like data does not reach. */
#define CODEC_OUTLIER_ENERGY 1e4

kvtc_result codec_gather_centered(const kvtc_cache_layout *c, int is_key, const basis_stream *s, uint32_t first_layer,
                                  uint64_t t0, uint64_t n, const rope_table *rope, uint32_t n_threads, float *x) {
    uint32_t parts = parts_for(n_threads, n);
    double trace = 0;
    for (uint32_t i = 0; i < s->rank; i++) trace += s->eigenvalues[i];
    rows_job j = {c, is_key, s, first_layer, first_layer, c->geometry.n_layers, t0, n, rope, x, parts,
                  trace > 0 ? CODEC_OUTLIER_ENERGY * trace : 0};
    return (kvtc_result)kvi_parallel_for(parts, parts, gather_part, &j);
}

void codec_scatter_uncentered(const kvtc_cache_layout *c, int is_key, const basis_stream *s, uint32_t first_layer,
                              uint32_t layer_begin, uint32_t layer_end, uint64_t t0, uint64_t n,
                              const rope_table *rope, uint32_t n_threads, float *x) {
    uint32_t parts = parts_for(n_threads, n);
    rows_job j = {c, is_key, s, first_layer, layer_begin, layer_end, t0, n, rope, x, parts, 0};
    kvi_parallel_for(parts, parts, scatter_part, &j);
}

kvtc_result codec_chunk_payload(const uint8_t *buf, const container_header *h, uint32_t ci, const basis_plan *pl,
                                struct libdeflate_decompressor *dec, uint8_t *payload, uint32_t *n_tok) {
    container_chunk_entry ce;
    kvtc_result r = container_read_chunk_entry(buf, h, ci, &ce);
    if (r) return r;
    uint64_t want = quant_payload_size(&pl->k, &pl->v, ce.n_tokens);
    if (ce.payload_size != want) return KVTC_ERR_CORRUPT;
    const uint8_t *z = buf + h->sections[SEC_CHUNK_DATA].offset + ce.offset;
    if (libdeflate_crc32(0, z, ce.size) != ce.crc32) return KVTC_ERR_CORRUPT;
    if (h->codec == CONTAINER_CODEC_RANS) {
        if ((r = rans_decode(z, ce.size, payload, (size_t)want))) return r;
    } else {
        size_t got = 0;
        enum libdeflate_result lr = libdeflate_deflate_decompress(dec, z, ce.size, payload, (size_t)want, &got);
        if (lr != LIBDEFLATE_SUCCESS || got != want) return KVTC_ERR_CORRUPT;
    }
    *n_tok = ce.n_tokens;
    return KVTC_OK;
}
