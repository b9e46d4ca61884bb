/* encode.c - the CPU encoder: raw sink/window sections, then batches of
 * coded tokens: gather rows (RoPE removed from keys), project with one GEMM
 * per stream, then quantize + DEFLATE each chunk on the worker threads. */
#include <libdeflate.h>
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
        o.deflate_level < 0 || o.deflate_level > 12 || !(o.ratio > 0) ||
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
    uint8_t **payload;      /* per worker scratch */
    uint8_t **zbuf;         /* per chunk of the batch */
    size_t zcap;
    size_t *zsize;
    uint32_t *zcrc;
    uint32_t *payload_size;
} batch_ctx;

static int encode_chunk(void *p, uint32_t item, uint32_t worker) {
    batch_ctx *b = p;
    uint64_t t0 = (uint64_t)item * b->chunk_tokens;
    uint64_t n = b->n_tokens - t0 < b->chunk_tokens ? b->n_tokens - t0 : b->chunk_tokens;
    const plan_stream *pk = &b->plan->k, *pv = &b->plan->v;
    uint64_t psize = quant_payload_size(pk, pv, n);
    kvtc_result rr = quant_check_range(pk, pv, b->dk + t0 * pk->rank_used, pk->rank_used,
                                       b->dv + t0 * pv->rank_used, pv->rank_used, n);
    if (rr) return rr;
    quant_encode(pk, pv, b->dk + t0 * pk->rank_used, pk->rank_used, b->dv + t0 * pv->rank_used,
                 pv->rank_used, n, b->payload[worker]);
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

kvtc_result kvtc_compress_layout(kvtc_encoder *e, const kvtc_cache_layout *c, void *out, size_t cap,
                                 size_t *written) {
    if (!e) return KVTC_ERR_INVALID_ARGUMENT;
    return encoder_compress_sink(e, c, e->opt.n_sink, out, cap, written);
}

const basis_plan *encoder_plan(const kvtc_encoder *e) { return e->pl; }
const kvtc_encode_options *encoder_options(const kvtc_encoder *e) { return &e->opt; }
const kvtc_basis *encoder_basis(const kvtc_encoder *e) { return e->basis; }

kvtc_result encoder_compress_sink(kvtc_encoder *e, const kvtc_cache_layout *c, uint32_t n_sink, void *out,
                                  size_t cap, size_t *written) {
    if (!e || !c || !out || !written) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = encoder_check_cache(e, c);
    if (r) return r;
    container_header h;
    if ((r = encoder_header(e, c, n_sink, &h))) return r;
    const kvtc_basis *b = e->basis;
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
    uint32_t per_batch = codec_batch_chunks(h.chunk_tokens);
    uint64_t batch_tokens = (uint64_t)per_batch * h.chunk_tokens;
    if (batch_tokens > coded) batch_tokens = coded;
    const basis_stream *bk = &b->k, *bv = &b->v;
    uint32_t p = bk->p;
    uint64_t max_payload64 = quant_payload_size(&pl->k, &pl->v, h.chunk_tokens);
    if (max_payload64 > UINT32_MAX) return KVTC_ERR_TOO_LARGE; /* chunk index sizes are u32 */
    size_t max_payload = (size_t)max_payload64;
    size_t zcap = chunk_bound(e, max_payload);
    float *x = malloc(sizeof(float) * (batch_tokens ? batch_tokens : 1) * p);
    float *dk = malloc(sizeof(float) * (batch_tokens * pl->k.rank_used + 1));
    float *dv = malloc(sizeof(float) * (batch_tokens * pl->v.rank_used + 1));
    uint8_t **payload = calloc(e->opt.n_threads, sizeof(uint8_t *));
    uint8_t **zbuf = calloc(per_batch, sizeof(uint8_t *));
    size_t *zsize = calloc(per_batch, sizeof(size_t));
    uint32_t *zcrc = calloc(per_batch, sizeof(uint32_t));
    uint32_t *psz = calloc(per_batch, sizeof(uint32_t));
    r = KVTC_ERR_OUT_OF_MEMORY;
    if (!x || !dk || !dv || !payload || !zbuf || !zsize || !zcrc || !psz) goto done;
    for (uint32_t i = 0; i < e->opt.n_threads; i++)
        if (!(payload[i] = malloc(max_payload + 1))) goto done;
    for (uint32_t i = 0; i < per_batch; i++)
        if (!(zbuf[i] = malloc(zcap))) goto done;

    uint64_t zoff = 0;
    uint32_t chunk = 0;
    for (uint64_t t0 = 0; t0 < coded; t0 += batch_tokens) {
        uint64_t n = coded - t0 < batch_tokens ? coded - t0 : batch_tokens;
        uint64_t first_tok = h.n_sink + t0;
        uint32_t th = e->opt.n_threads;
        r = codec_gather_centered(c, 1, bk, b->recompute_layers, first_tok, n, b->rope_removed ? &e->rope : NULL, th, x);
        if (r) goto done;
        if (e->emul) r = proj_emul_project(e->emul, 0, pl->k.rank_used, x, n, dk);
        else project_centered_split(bk, pl->k.rank_used, x, n, dk, th);
        if (r) goto done;
        if ((r = codec_gather_centered(c, 0, bv, b->recompute_layers, first_tok, n, NULL, th, x))) goto done;
        if (e->emul) r = proj_emul_project(e->emul, 1, pl->v.rank_used, x, n, dv);
        else project_centered_split(bv, pl->v.rank_used, x, n, dv, th);
        if (r) goto done;
        uint32_t n_chunks = (uint32_t)((n + h.chunk_tokens - 1) / h.chunk_tokens);
        batch_ctx bc = {e, pl, n, h.chunk_tokens, dk, dv, payload, zbuf, zcap, zsize, zcrc, psz};
        int rc = kvi_parallel_for(e->opt.n_threads, n_chunks, encode_chunk, &bc);
        if (rc) { r = (kvtc_result)rc; goto done; }
        for (uint32_t i = 0; i < n_chunks; i++, chunk++) {
            if (zsize[i] > cap - data_off - zoff || data_off + zoff > cap) { r = KVTC_ERR_BUFFER_TOO_SMALL; goto done; }
            memcpy(o + data_off + zoff, zbuf[i], zsize[i]);
            container_chunk_entry ce = {zoff, (uint32_t)zsize[i], zcrc[i],
                                        (uint32_t)(n - (uint64_t)i * h.chunk_tokens < h.chunk_tokens
                                                       ? n - (uint64_t)i * h.chunk_tokens
                                                       : h.chunk_tokens),
                                        psz[i]};
            container_write_chunk_entry(&ce, o + h.sections[SEC_CHUNK_INDEX].offset +
                                                 (uint64_t)chunk * CONTAINER_CHUNK_ENTRY);
            zoff += zsize[i];
        }
    }
    if ((r = container_layout(&h, zoff))) goto done;
    if (h.total_size > cap) { r = KVTC_ERR_BUFFER_TOO_SMALL; goto done; }
    if (h.flags & CONTAINER_FLAG_PLAN) container_write_plan_section(pl, o + h.sections[SEC_PLAN].offset);
    for (int s = 0; s < container_n_sections(&h); s++)
        if (s != SEC_CHUNK_DATA)
            h.sections[s].crc32 = libdeflate_crc32(0, o + h.sections[s].offset, (size_t)h.sections[s].size);
    container_write_prefix(&h, o);
    *written = (size_t)h.total_size;
    r = KVTC_OK;
done:
    if (payload)
        for (uint32_t i = 0; i < e->opt.n_threads; i++) free(payload[i]);
    if (zbuf)
        for (uint32_t i = 0; i < per_batch; i++) free(zbuf[i]);
    free(payload); free(zbuf); free(zsize); free(zcrc); free(psz);
    free(x); free(dk); free(dv);
    return r;
}
