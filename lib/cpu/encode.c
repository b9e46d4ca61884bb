/* encode.c - the CPU encoder: raw sink/window sections, then batches of
 * coded tokens: gather rows (RoPE removed from keys), project with one GEMM
 * per stream, then quantize + DEFLATE each chunk on the worker threads. */
#include <libdeflate.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc/plan_solve.h"
#include "cpu/codec_common.h"
#include "cpu/proj_emul_ops.h"
#include "cpu/encode_internal.h"
#include "entropy/rans.h"
#include "format/container.h"
#include "quant/group_quant.h"
#include "transform/project.h"
#include "transform/rope.h"
#include "transform/rows.h"
#include "util/cache.h"
#include "util/endian.h"
#include "util/layout.h"
#include "transform/project_split.h"
#include "util/parallel.h"

struct kvtc_encoder {
    const kvtc_basis *basis;
    kvtc_encode_options opt;
    const basis_plan *pl;   /* a stored plan of the basis, or &solved */
    basis_plan solved;      /* the plan solved for opt.ratio when the basis stores none for it */
    rope_table rope;
    struct libdeflate_compressor **comp; /* one per worker */
    proj_emul *emul; /* kvi_encoder_emulate_projection; NULL: fp32 */
};

void kvtc_encode_options_init(kvtc_encode_options *o) {
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->ratio = 20.0;
    o->n_sink = 4;
    o->n_window = 128;
    o->chunk_tokens = 256;
    o->n_threads = 1;
    o->deflate_level = 6;
    o->entropy_codec = KVTC_CODEC_DEFLATE;
}

void kvtc_encoder_free(kvtc_encoder *e) {
    if (!e) return;
    proj_emul_set(&e->emul, NULL, KVI_PROJ_EXACT, 0);
    if (e->comp)
        for (uint32_t i = 0; i < e->opt.n_threads; i++) libdeflate_free_compressor(e->comp[i]);
    free(e->comp);
    plan_stream_free(&e->solved.k);
    plan_stream_free(&e->solved.v);
    rope_table_free(&e->rope);
    free(e);
}

kvtc_result kvi_encoder_emulate_projection(kvtc_encoder *e, kvi_proj_mode mode) {
    if (!e) return KVTC_ERR_INVALID_ARGUMENT;
    return proj_emul_set(&e->emul, e->basis, mode, 0);
}

kvtc_result kvtc_encoder_alloc(const kvtc_basis *b, const kvtc_encode_options *opts,
                               kvtc_encoder **out) {
    if (!b || !out) return KVTC_ERR_INVALID_ARGUMENT;
    *out = NULL;
    kvtc_encode_options o;
    kvtc_encode_options_init(&o);
    if (opts) {
        if (opts->struct_size != sizeof o) return KVTC_ERR_INVALID_ARGUMENT;
        o = *opts;
    }
    if (o.n_threads == 0) o.n_threads = 1;
    if (o.n_threads > 256 || o.chunk_tokens == 0 || o.chunk_tokens > CONTAINER_MAX_CHUNK_TOKENS ||
        o.deflate_level < 0 || o.deflate_level > 12 || !(o.ratio > 0) || !isfinite(o.ratio) ||
        (o.entropy_codec != KVTC_CODEC_DEFLATE && o.entropy_codec != KVTC_CODEC_RANS))
        return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_encoder *e = calloc(1, sizeof *e);
    if (!e) return KVTC_ERR_OUT_OF_MEMORY;
    e->basis = b;
    e->opt = o;
    /* a stored plan made for this ratio, or one solved now (docs/FORMAT.md:
     * the stream then carries its groups) */
    int stored = basis_find_exact_plan(b, o.ratio);
    kvtc_result r = KVTC_OK;
    if (stored >= 0) {
        e->pl = &b->plans[stored];
    } else {
        if ((r = basis_solve_plan(b, o.ratio, &e->solved))) { free(e); return r; }
        /* the DP can land on a stored plan's groups: then refer to that one */
        int same = basis_find_plan_by_fingerprint(b, e->solved.fingerprint);
        e->pl = same >= 0 ? &b->plans[same] : &e->solved;
    }
    if ((r = rope_table_init(&e->rope, &b->geometry))) { kvtc_encoder_free(e); return r; }
    e->comp = calloc(o.n_threads, sizeof *e->comp);
    if (!e->comp) { kvtc_encoder_free(e); return KVTC_ERR_OUT_OF_MEMORY; }
    for (uint32_t i = 0; i < o.n_threads; i++)
        if (!(e->comp[i] = libdeflate_alloc_compressor(o.deflate_level))) {
            kvtc_encoder_free(e);
            return KVTC_ERR_OUT_OF_MEMORY;
        }
    *out = e;
    return KVTC_OK;
}

/* Header fields for this cache (everything but the chunk data size). */
static kvtc_result encoder_header(const kvtc_encoder *e, const kvtc_cache_layout *c, uint32_t n_sink,
                                  container_header *h) {
    int has_pos = 0;
    if (c->positions)
        for (uint64_t t = 0; t < c->n_tokens && !has_pos; t++) has_pos = c->positions[t] != (int64_t)t;
    kvtc_result r = container_header_init_plan(h, e->basis, e->pl, &c->geometry, c->dtype, c->n_tokens,
                                               n_sink, e->opt.n_window, e->opt.chunk_tokens,
                                               (uint8_t)e->opt.entropy_codec, has_pos);
    if (r) return r;
    if (e->pl == &e->solved)
        container_set_plan_section(h, container_plan_section_size(e->pl->k.n_groups, e->pl->v.n_groups));
    /* token ids the caller has are kept even when no layer is recomputed
     * (issue 9 item 8: a round trip used to drop them) */
    if (c->token_ids && c->n_tokens) h->flags |= CONTAINER_FLAG_TOKEN_IDS;
    if (e->opt.model_fingerprint) {
        h->flags |= CONTAINER_FLAG_MODEL_FINGERPRINT;
        h->model_fingerprint = e->opt.model_fingerprint;
    }
    return KVTC_OK;
}

static kvtc_result encoder_check_cache(const kvtc_encoder *e, const kvtc_cache_layout *c) {
    if (!c) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = kvi_layout_check(c, 0, c->geometry.n_layers);
    if (r) return r;
    if (!kvi_geometry_equal(&c->geometry, &e->basis->geometry)) return KVTC_ERR_GEOMETRY_MISMATCH;
    if (e->basis->recompute_layers && !c->token_ids && c->n_tokens) return KVTC_ERR_INVALID_ARGUMENT;
    return KVTC_OK;
}

/* Largest coded size of a chunk payload of n bytes under the encoder's codec. */
static size_t chunk_bound(const kvtc_encoder *e, size_t n) {
    if (e->opt.entropy_codec == KVTC_CODEC_RANS) {
        const basis_plan *pl = e->pl;
        return rans_bound(n, 2 * (pl->k.n_groups + pl->v.n_groups));
    }
    return libdeflate_deflate_compress_bound(e->comp[0], n);
}

size_t kvtc_compress_bound(const kvtc_encoder *e, const kvtc_cache *cache) {
    if (!cache || kvi_cache_check(cache)) return 0;
    kvtc_cache_layout c;
    kvtc_cache_layout_from_cache(cache, &c);
    return kvtc_compress_layout_bound(e, &c);
}

size_t kvtc_compress_layout_bound(const kvtc_encoder *e, const kvtc_cache_layout *c) {
    return e ? encoder_bound_sink(e, c, e->opt.n_sink) : 0;
}

size_t encoder_bound_sink(const kvtc_encoder *e, const kvtc_cache_layout *c, uint32_t n_sink) {
    if (!e || encoder_check_cache(e, c)) return 0;
    container_header h;
    if (encoder_header(e, c, n_sink, &h)) return 0;
    const basis_plan *pl = e->pl;
    uint64_t data = 0;
    for (uint32_t i = 0; i < h.n_chunks; i++) {
        uint64_t first = (uint64_t)i * h.chunk_tokens;
        uint64_t coded = container_coded_tokens(&h);
        uint64_t n = coded - first < h.chunk_tokens ? coded - first : h.chunk_tokens;
        uint64_t payload = quant_payload_size(&pl->k, &pl->v, n);
        if (payload > UINT32_MAX) return 0;
        data += chunk_bound(e, (size_t)payload);
    }
    if (container_layout(&h, data)) return 0;
    return h.total_size > SIZE_MAX ? 0 : (size_t)h.total_size;
}

/* ---- per-batch work ---------------------------------------------------- */

typedef struct batch_ctx {
    const kvtc_encoder *e;
    const basis_plan *plan;
    uint64_t n_tokens;      /* tokens in this batch */
    uint32_t chunk_tokens;
    const float *dk, *dv;   /* [n_tokens][rank_used] */
    const uint8_t *lead;    /* payload of lead_tokens tokens that open chunk 0 (append), or NULL */
    uint32_t lead_tokens;
    uint8_t **payload;      /* per worker scratch */
    uint8_t **fresh;        /* per worker scratch for the batch's own tokens of a chunk with a lead */
    uint8_t **zbuf;         /* per chunk of the batch */
    size_t zcap;
    size_t *zsize;
    uint32_t *zcrc;
    uint32_t *payload_size;
} batch_ctx;

/* Batch tokens of chunk `item`: [*t0, *t0 + *n). With a lead, chunk 0
 * takes only chunk_tokens - lead_tokens of them and the others follow it. */
static void chunk_span(const batch_ctx *b, uint32_t item, uint64_t *t0, uint64_t *n) {
    uint64_t C = b->chunk_tokens, lead = b->lead ? b->lead_tokens : 0;
    *t0 = item ? (uint64_t)item * C - lead : 0;
    uint64_t cap = item ? C : C - lead;
    *n = b->n_tokens - *t0 < cap ? b->n_tokens - *t0 : cap;
}

static int encode_chunk(void *p, uint32_t item, uint32_t worker) {
    batch_ctx *b = p;
    uint64_t t0, n;
    chunk_span(b, item, &t0, &n);
    const plan_stream *pk = &b->plan->k, *pv = &b->plan->v;
    kvtc_result rr = quant_check_range(pk, pv, b->dk + t0 * pk->rank_used, pk->rank_used,
                                       b->dv + t0 * pv->rank_used, pv->rank_used, n);
    if (rr) return rr;
    uint64_t lead = item == 0 && b->lead ? b->lead_tokens : 0;
    uint8_t *q = lead ? b->fresh[worker] : b->payload[worker];
    quant_encode(pk, pv, b->dk + t0 * pk->rank_used, pk->rank_used, b->dv + t0 * pv->rank_used,
                 pv->rank_used, n, q);
    /* the lead's tokens come first, their codes unchanged */
    if (lead) quant_payload_concat(pk, pv, b->lead, lead, q, n, b->payload[worker]);
    n += lead;
    uint64_t psize = quant_payload_size(pk, pv, n);
    size_t z = 0;
    if (b->e->opt.entropy_codec == KVTC_CODEC_RANS) {
        uint32_t cap = 2 * (pk->n_groups + pv->n_groups);
        rans_segment *segs = malloc(sizeof *segs * (cap ? cap : 1));
        if (!segs) return KVTC_ERR_OUT_OF_MEMORY;
        uint32_t ns = rans_plan_segments(pk, pv, n, segs, cap);
        kvtc_result r = rans_encode(b->payload[worker], (size_t)psize, segs, ns, b->zbuf[item], b->zcap, &z);
        free(segs);
        if (r) return r;
    } else {
        z = libdeflate_deflate_compress(b->e->comp[worker], b->payload[worker], (size_t)psize, b->zbuf[item],
                                        b->zcap);
        if (z == 0) return KVTC_ERR_TOO_LARGE; /* cannot happen: zcap is the bound */
    }
    b->zsize[item] = z;
    b->zcrc[item] = libdeflate_crc32(0, b->zbuf[item], z);
    b->payload_size[item] = (uint32_t)psize;
    return 0;
}

/* Scratch of encoder_code_tokens, sized for batches of `batch` tokens. */
typedef struct code_scratch {
    uint32_t n_workers, per_batch;
    float *x, *dk, *dv;
    uint8_t **payload, **fresh, **zbuf;
    size_t zcap, *zsize;
    uint32_t *zcrc, *psz;
} code_scratch;

static void scratch_free(code_scratch *s) {
    for (uint32_t i = 0; s->payload && i < s->n_workers; i++) free(s->payload[i]);
    for (uint32_t i = 0; s->fresh && i < s->n_workers; i++) free(s->fresh[i]);
    for (uint32_t i = 0; s->zbuf && i < s->per_batch; i++) free(s->zbuf[i]);
    free(s->payload); free(s->fresh); free(s->zbuf); free(s->zsize); free(s->zcrc); free(s->psz);
    free(s->x); free(s->dk); free(s->dv);
}

static kvtc_result scratch_alloc(const kvtc_encoder *e, uint64_t batch, int with_lead, code_scratch *s) {
    memset(s, 0, sizeof *s);
    const basis_plan *pl = e->pl;
    uint32_t C = e->opt.chunk_tokens;
    uint64_t max_payload64 = quant_payload_size(&pl->k, &pl->v, C);
    if (max_payload64 > UINT32_MAX) return KVTC_ERR_TOO_LARGE; /* chunk index sizes are u32 */
    size_t max_payload = (size_t)max_payload64;
    s->n_workers = e->opt.n_threads;
    s->per_batch = codec_batch_chunks(C);
    s->zcap = chunk_bound(e, max_payload);
    s->x = malloc(sizeof(float) * (batch ? batch : 1) * e->basis->k.p);
    s->dk = malloc(sizeof(float) * (batch * pl->k.rank_used + 1));
    s->dv = malloc(sizeof(float) * (batch * pl->v.rank_used + 1));
    s->payload = calloc(s->n_workers, sizeof(uint8_t *));
    s->fresh = calloc(s->n_workers, sizeof(uint8_t *));
    s->zbuf = calloc(s->per_batch, sizeof(uint8_t *));
    s->zsize = calloc(s->per_batch, sizeof(size_t));
    s->zcrc = calloc(s->per_batch, sizeof(uint32_t));
    s->psz = calloc(s->per_batch, sizeof(uint32_t));
    if (!s->x || !s->dk || !s->dv || !s->payload || !s->fresh || !s->zbuf || !s->zsize || !s->zcrc || !s->psz)
        return KVTC_ERR_OUT_OF_MEMORY;
    for (uint32_t i = 0; i < s->n_workers; i++) {
        if (!(s->payload[i] = malloc(max_payload + 1))) return KVTC_ERR_OUT_OF_MEMORY;
        if (with_lead && !(s->fresh[i] = malloc(max_payload + 1))) return KVTC_ERR_OUT_OF_MEMORY;
    }
    for (uint32_t i = 0; i < s->per_batch; i++)
        if (!(s->zbuf[i] = malloc(s->zcap))) return KVTC_ERR_OUT_OF_MEMORY;
    return KVTC_OK;
}

/* One batch: tokens [t0, t0 + n) of c projected with one GEMM per stream,
 * then quantized and entropy-coded chunk by chunk on the workers (chunk 0
 * opened by the lead, if any: chunk_span) and appended to *out. */
static kvtc_result code_batch(const kvtc_encoder *e, const kvtc_cache_layout *c, uint64_t t0, uint64_t n,
                              const uint8_t *lead, uint32_t lead_tokens, code_scratch *s, chunk_sink *out) {
    const kvtc_basis *b = e->basis;
    const basis_plan *pl = e->pl;
    uint32_t th = e->opt.n_threads, C = e->opt.chunk_tokens;
    kvtc_result r = codec_gather_centered(c, 1, &b->k, b->recompute_layers, t0, n,
                                          b->rope_removed ? &e->rope : NULL, th, s->x);
    if (r) return r;
    if (e->emul) r = proj_emul_project(e->emul, 0, pl->k.rank_used, s->x, n, s->dk);
    else project_centered_split(&b->k, pl->k.rank_used, s->x, n, s->dk, th);
    if (r) return r;
    if ((r = codec_gather_centered(c, 0, &b->v, b->recompute_layers, t0, n, NULL, th, s->x))) return r;
    if (e->emul) r = proj_emul_project(e->emul, 1, pl->v.rank_used, s->x, n, s->dv);
    else project_centered_split(&b->v, pl->v.rank_used, s->x, n, s->dv, th);
    if (r) return r;
    uint64_t lead_n = lead ? lead_tokens : 0;
    uint32_t n_chunks = (uint32_t)((n + lead_n + C - 1) / C);
    batch_ctx bc = {e, pl, n, C, s->dk, s->dv, lead, lead_tokens, s->payload, s->fresh, s->zbuf, s->zcap,
                    s->zsize, s->zcrc, s->psz};
    int rc = kvi_parallel_for(th, n_chunks, encode_chunk, &bc);
    if (rc) return (kvtc_result)rc;
    for (uint32_t i = 0; i < n_chunks; i++) {
        if (s->zsize[i] > out->cap || out->size > out->cap - s->zsize[i]) return KVTC_ERR_BUFFER_TOO_SMALL;
        memcpy(out->data + out->size, s->zbuf[i], s->zsize[i]);
        uint64_t t0c, own;
        chunk_span(&bc, i, &t0c, &own);
        container_chunk_entry ce = {out->size, (uint32_t)s->zsize[i], s->zcrc[i],
                                    (uint32_t)(own + (i == 0 ? lead_n : 0)), s->psz[i]};
        container_write_chunk_entry(&ce, out->index + (uint64_t)out->chunks * CONTAINER_CHUNK_ENTRY);
        out->size += s->zsize[i];
        out->chunks++;
    }
    return KVTC_OK;
}

kvtc_result encoder_code_tokens(kvtc_encoder *e, const kvtc_cache_layout *c, uint64_t t0, uint64_t n,
                                const uint8_t *lead, uint32_t lead_tokens, chunk_sink *out) {
    uint32_t C = e->opt.chunk_tokens;
    if (!lead) lead_tokens = 0;
    if (lead_tokens >= C || (lead_tokens && !n)) return KVTC_ERR_INVALID_ARGUMENT;
    if (!n) return KVTC_OK;
    uint64_t batch = (uint64_t)codec_batch_chunks(C) * C;
    if (batch > n + lead_tokens) batch = n + lead_tokens;
    code_scratch s;
    kvtc_result r = scratch_alloc(e, batch, lead_tokens > 0, &s);
    if (r) goto done;
    /* with a lead the first batch holds lead_tokens fewer tokens of c,
     * so that the chunks after the one it opens stay aligned */
    uint64_t done_tokens = 0;
    while (done_tokens < n) {
        uint64_t room = done_tokens ? batch : batch - lead_tokens;
        uint64_t k = n - done_tokens < room ? n - done_tokens : room;
        if ((r = code_batch(e, c, t0 + done_tokens, k, done_tokens ? NULL : lead, lead_tokens, &s, out))) goto done;
        done_tokens += k;
    }
done:
    scratch_free(&s);
    return r;
}

kvtc_result kvtc_compress(kvtc_encoder *e, const kvtc_cache *cache, void *out, size_t cap,
                          size_t *written) {
    if (!cache) return KVTC_ERR_INVALID_ARGUMENT;
    /* the contiguous cache's own checks first (its byte size must fit size_t) */
    kvtc_result r = kvi_cache_check(cache);
    if (r) return r;
    kvtc_cache_layout c;
    kvtc_cache_layout_from_cache(cache, &c);
    return kvtc_compress_layout(e, &c, out, cap, written);
}

const basis_plan *encoder_plan(const kvtc_encoder *e) { return e->pl; }
const kvtc_encode_options *encoder_options(const kvtc_encoder *e) { return &e->opt; }
const kvtc_basis *encoder_basis(const kvtc_encoder *e) { return e->basis; }

kvtc_result kvtc_compress_layout(kvtc_encoder *e, const kvtc_cache_layout *c, void *out, size_t cap,
                                 size_t *written) {
    if (!e || !c || !out || !written) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = encoder_check_cache(e, c);
    if (r) return r;
    container_header h;
    if ((r = encoder_header(e, c, e->opt.n_sink, &h))) return r;
    const basis_plan *pl = e->pl;
    uint64_t coded = container_coded_tokens(&h);
    if (!kvi_layout_tokens_finite(c, 0, h.n_sink, coded)) return KVTC_ERR_NUMERIC;
    if ((r = container_layout(&h, 0))) return r;
    uint8_t *o = out;
    uint64_t data_off = h.sections[SEC_CHUNK_DATA].offset;
    if (cap < data_off) return KVTC_ERR_BUFFER_TOO_SMALL;

    /* raw sections */
    if (h.flags & CONTAINER_FLAG_POSITIONS)
        for (uint64_t t = 0; t < h.n_tokens; t++)
            kvi_store_u64(o + h.sections[SEC_POSITIONS].offset + 8 * t, (uint64_t)c->positions[t]);
    if (h.flags & CONTAINER_FLAG_TOKEN_IDS)
        for (uint64_t t = 0; t < h.n_tokens; t++)
            kvi_store_u32(o + h.sections[SEC_TOKEN_IDS].offset + 4 * t, (uint32_t)c->token_ids[t]);
    codec_cache_to_raw(&h, c, 1, o + h.sections[SEC_RAW_K].offset);
    codec_cache_to_raw(&h, c, 0, o + h.sections[SEC_RAW_V].offset);

    /* coded tokens, batch by batch */
    chunk_sink sink = {o + data_off, cap - data_off, 0, o + h.sections[SEC_CHUNK_INDEX].offset, 0};
    if ((r = encoder_code_tokens(e, c, h.n_sink, coded, NULL, 0, &sink))) return r;
    uint64_t zoff = sink.size;
    if ((r = container_layout(&h, zoff))) return r;
    if (h.total_size > cap) return KVTC_ERR_BUFFER_TOO_SMALL;
    if (h.flags & CONTAINER_FLAG_PLAN) container_write_plan_section(pl, o + h.sections[SEC_PLAN].offset);
    for (int s = 0; s < container_n_sections(&h); s++)
        if (s != SEC_CHUNK_DATA)
            h.sections[s].crc32 = libdeflate_crc32(0, o + h.sections[s].offset, (size_t)h.sections[s].size);
    container_write_prefix(&h, o);
    *written = (size_t)h.total_size;
    return KVTC_OK;
}
