/* decode.c - the CPU decoder and stream inspection. Order of trust: the
 * prefix (header, table, raw sections) is fully validated and checksummed
 * by container_read_prefix before anything is written to the caller's
 * cache; each chunk's CRC is verified before it is inflated, and its
 * inflated size must equal the size its plan implies exactly. */
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/codec_common.h"
#include "entropy/rans.h"
#include "format/container.h"
#include "quant/group_quant.h"
#include "transform/project.h"
#include "transform/rope.h"
#include "util/cache.h"
#include "util/endian.h"
#include "util/out_struct.h"
#include "transform/project_split.h"
#include "util/parallel.h"

struct kvtc_decoder {
    const kvtc_basis *basis;
    kvtc_decode_options opt;
    rope_table rope;
    struct libdeflate_decompressor **dec; /* one per worker */
};

void kvtc_decode_options_init(kvtc_decode_options *o) {
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->n_threads = 1;
}

void kvtc_decoder_free(kvtc_decoder *d) {
    if (!d) return;
    if (d->dec)
        for (uint32_t i = 0; i < d->opt.n_threads; i++) libdeflate_free_decompressor(d->dec[i]);
    free(d->dec);
    rope_table_free(&d->rope);
    free(d);
}

kvtc_result kvtc_decoder_alloc(const kvtc_basis *b, const kvtc_decode_options *opts,
                               kvtc_decoder **out) {
    if (!b || !out) return KVTC_ERR_INVALID_ARGUMENT;
    *out = NULL;
    kvtc_decode_options o;
    kvtc_decode_options_init(&o);
    if (opts) {
        if (opts->struct_size != sizeof o) return KVTC_ERR_INVALID_ARGUMENT;
        o = *opts;
    }
    if (o.n_threads == 0) o.n_threads = 1;
    if (o.n_threads > 256) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_decoder *d = calloc(1, sizeof *d);
    if (!d) return KVTC_ERR_OUT_OF_MEMORY;
    d->basis = b;
    d->opt = o;
    kvtc_result r = rope_table_init(&d->rope, &b->geometry);
    if (r) { free(d); return r; }
    d->dec = calloc(o.n_threads, sizeof *d->dec);
    if (!d->dec) { kvtc_decoder_free(d); return KVTC_ERR_OUT_OF_MEMORY; }
    for (uint32_t i = 0; i < o.n_threads; i++)
        if (!(d->dec[i] = libdeflate_alloc_decompressor())) {
            kvtc_decoder_free(d);
            return KVTC_ERR_OUT_OF_MEMORY;
        }
    *out = d;
    return KVTC_OK;
}

kvtc_result kvtc_stream_get_info(const void *buf, size_t size, kvtc_stream_info *caller) {
    /* filled completely here, then copied as far as the caller's struct_size reaches */
    kvtc_stream_info full = {0}, *out = &full;
    if (!buf || !caller) return KVTC_ERR_INVALID_ARGUMENT;
    if (caller->struct_size < KVI_STREAM_INFO_MIN_SIZE) return KVTC_ERR_INVALID_ARGUMENT;
    container_header h;
    kvtc_result r = container_read_prefix(buf, size, &h);
    if (r) return r;
    out->version_major = h.version_major;
    out->version_minor = h.version_minor;
    out->geometry = h.geometry;
    out->dtype = h.dtype;
    out->n_tokens = h.n_tokens;
    out->n_sink = h.n_sink;
    out->n_window = h.n_window;
    out->n_coded_tokens = container_coded_tokens(&h);
    out->n_chunks = h.n_chunks;
    out->chunk_tokens = h.chunk_tokens;
    out->recompute_layers = h.recompute_layers;
    out->entropy_codec = h.codec;
    out->has_positions = (h.flags & CONTAINER_FLAG_POSITIONS) != 0;
    out->has_token_ids = (h.flags & CONTAINER_FLAG_TOKEN_IDS) != 0;
    out->has_model_fingerprint = (h.flags & CONTAINER_FLAG_MODEL_FINGERPRINT) != 0;
    out->model_fingerprint = h.model_fingerprint;
    out->basis_fingerprint = h.transform_fingerprint;
    out->plan_ratio = h.plan_ratio;
    out->k_bytes = kvtc_cache_tensor_bytes(&h.geometry, h.dtype, h.n_tokens);
    out->v_bytes = out->k_bytes;
    out->stream_bytes = h.total_size;
    out->coded_bytes = h.sections[SEC_CHUNK_DATA].size;
    out->raw_bytes = h.sections[SEC_RAW_K].size + h.sections[SEC_RAW_V].size;
    return kvi_out_struct_fill(caller, out, sizeof *out, KVI_STREAM_INFO_MIN_SIZE);
}

typedef struct dbatch_ctx {
    kvtc_decoder *d;
    const basis_plan *plan;
    const container_header *h;
    const uint8_t *buf;
    uint32_t first_chunk;
    uint64_t chunk_tokens;
    float *dk, *dv;      /* [batch tokens][rank_used] */
    uint8_t **payload;   /* per worker */
} dbatch_ctx;

static int decode_chunk(void *p, uint32_t item, uint32_t worker) {
    dbatch_ctx *b = p;
    container_chunk_entry ce;
    kvtc_result r = container_read_chunk_entry(b->buf, b->h, b->first_chunk + item, &ce);
    if (r) return r;
    const plan_stream *pk = &b->plan->k, *pv = &b->plan->v;
    uint64_t want = quant_payload_size(pk, pv, ce.n_tokens);
    if (ce.payload_size != want) return KVTC_ERR_CORRUPT;
    const uint8_t *z = b->buf + b->h->sections[SEC_CHUNK_DATA].offset + ce.offset;
    if (libdeflate_crc32(0, z, ce.size) != ce.crc32) return KVTC_ERR_CORRUPT;
    if (b->h->codec == CONTAINER_CODEC_RANS) {
        r = rans_decode(z, ce.size, b->payload[worker], (size_t)want);
        if (r) return r;
    } else {
        size_t got = 0;
        enum libdeflate_result lr = libdeflate_deflate_decompress(b->d->dec[worker], z, ce.size,
                                                                  b->payload[worker], (size_t)want, &got);
        if (lr != LIBDEFLATE_SUCCESS || got != want) return KVTC_ERR_CORRUPT;
    }
    uint64_t t0 = (uint64_t)item * b->chunk_tokens;
    return quant_decode(pk, pv, b->payload[worker], ce.n_tokens, b->dk + t0 * pk->rank_used, pk->rank_used,
                        b->dv + t0 * pv->rank_used, pv->rank_used);
}

static kvtc_result check_out_cache(const container_header *h, const kvtc_cache *out) {
    if (!out->k || !out->v) return h->n_tokens ? KVTC_ERR_INVALID_ARGUMENT : KVTC_OK;
    if (!kvi_geometry_equal(&out->geometry, &h->geometry)) return KVTC_ERR_GEOMETRY_MISMATCH;
    if (out->dtype != h->dtype || out->n_tokens != h->n_tokens) return KVTC_ERR_GEOMETRY_MISMATCH;
    return kvi_cache_check(out);
}

/* Layers [0, m) of the coded tokens come from the caller's model. */
static kvtc_result recompute_layers(kvtc_decoder *d, const container_header *h, kvtc_cache *out,
                                    const int32_t *ids, const int64_t *pos) {
    uint32_t m = h->recompute_layers;
    const kvtc_geometry *g = &h->geometry;
    uint64_t per = (uint64_t)m * g->n_kv_heads * h->n_tokens * g->head_dim;
    float *k = malloc(sizeof(float) * per), *v = malloc(sizeof(float) * per);
    if (!k || !v) { free(k); free(v); return KVTC_ERR_OUT_OF_MEMORY; }
    kvtc_result r = KVTC_OK;
    if (d->opt.recompute(d->opt.recompute_user, m, ids, pos, h->n_tokens, k, v) != 0) {
        r = KVTC_ERR_CALLBACK;
    } else {
        uint64_t t_end = h->n_tokens - h->n_window;
        for (uint64_t lh = 0; lh < (uint64_t)m * g->n_kv_heads; lh++)
            for (uint64_t t = h->n_sink; t < t_end; t++)
                for (uint32_t j = 0; j < g->head_dim; j++) {
                    uint64_t i = (lh * h->n_tokens + t) * g->head_dim + j;
                    kvi_store_elem(out->k, h->dtype, i, k[i]);
                    kvi_store_elem(out->v, h->dtype, i, v[i]);
                }
    }
    free(k);
    free(v);
    return r;
}

kvtc_result kvtc_decompress(kvtc_decoder *d, const void *buf, size_t size, kvtc_cache *out) {
    if (!d || !buf || !out) return KVTC_ERR_INVALID_ARGUMENT;
    container_header h;
    kvtc_result r = container_read_prefix(buf, size, &h);
    if (r) return r;
    const kvtc_basis *b = d->basis;
    if (h.transform_fingerprint != b->transform_fingerprint ||
        !kvi_geometry_equal(&h.geometry, &b->geometry) || h.recompute_layers != b->recompute_layers ||
        h.rope_removed != (uint8_t)b->rope_removed)
        return KVTC_ERR_BASIS_MISMATCH;
    int pi = basis_find_plan_by_fingerprint(b, h.plan_fingerprint);
    if (pi < 0) return KVTC_ERR_BASIS_MISMATCH;
    const basis_plan *pl = &b->plans[pi];
    if ((r = check_out_cache(&h, out))) return r;
    if (h.recompute_layers && container_coded_tokens(&h) && !d->opt.recompute) return KVTC_ERR_NEEDS_MODEL;
    if (h.recompute_layers && (h.flags & CONTAINER_FLAG_MODEL_FINGERPRINT) &&
        h.model_fingerprint != d->opt.model_fingerprint)
        return KVTC_ERR_MODEL_MISMATCH;
    const uint8_t *in = buf;

    /* positions and ids: the decoder's own copies, so RoPE uses the stream's */
    int64_t *pos = malloc(sizeof(int64_t) * (h.n_tokens ? h.n_tokens : 1));
    int32_t *ids = NULL;
    if (!pos) return KVTC_ERR_OUT_OF_MEMORY;
    for (uint64_t t = 0; t < h.n_tokens; t++)
        pos[t] = (h.flags & CONTAINER_FLAG_POSITIONS)
                     ? (int64_t)kvi_load_u64(in + h.sections[SEC_POSITIONS].offset + 8 * t)
                     : (int64_t)t;
    if (h.flags & CONTAINER_FLAG_TOKEN_IDS) {
        ids = malloc(sizeof(int32_t) * (h.n_tokens ? h.n_tokens : 1));
        if (!ids) { free(pos); return KVTC_ERR_OUT_OF_MEMORY; }
        for (uint64_t t = 0; t < h.n_tokens; t++)
            ids[t] = (int32_t)kvi_load_u32(in + h.sections[SEC_TOKEN_IDS].offset + 4 * t);
    }

    uint64_t coded = container_coded_tokens(&h);
    uint32_t per_batch = codec_batch_chunks(h.chunk_tokens);
    uint64_t batch_tokens = (uint64_t)per_batch * h.chunk_tokens;
    if (batch_tokens > coded) batch_tokens = coded;
    uint32_t p = b->k.p;
    size_t max_payload = (size_t)quant_payload_size(&pl->k, &pl->v, h.chunk_tokens);
    float *x = malloc(sizeof(float) * (batch_tokens * p + 1));
    float *dk = malloc(sizeof(float) * (batch_tokens * pl->k.rank_used + 1));
    float *dv = malloc(sizeof(float) * (batch_tokens * pl->v.rank_used + 1));
    uint8_t **payload = calloc(d->opt.n_threads, sizeof(uint8_t *));
    kvtc_cache view = *out;
    view.positions = pos;
    r = KVTC_ERR_OUT_OF_MEMORY;
    if (!x || !dk || !dv || !payload) goto done;
    for (uint32_t i = 0; i < d->opt.n_threads; i++)
        if (!(payload[i] = malloc(max_payload + 1))) goto done;

    /* The prefix is validated; a chunk failing later leaves `out` partially
     * written, which the API documents as unspecified on failure. */
    uint32_t chunk = 0;
    for (uint64_t t0 = 0; t0 < coded; t0 += batch_tokens) {
        uint64_t n = coded - t0 < batch_tokens ? coded - t0 : batch_tokens;
        uint32_t n_chunks = (uint32_t)((n + h.chunk_tokens - 1) / h.chunk_tokens);
        dbatch_ctx bc = {d, pl, &h, in, chunk, h.chunk_tokens, dk, dv, payload};
        int rc = kvi_parallel_for(d->opt.n_threads, n_chunks, decode_chunk, &bc);
        if (rc) { r = (kvtc_result)rc; goto done; }
        chunk += n_chunks;
        uint64_t first_tok = h.n_sink + t0;
        uint32_t th = d->opt.n_threads;
        reconstruct_centered_split(&b->k, pl->k.rank_used, dk, n, x, th);
        codec_scatter_uncentered(&view, 1, &b->k, b->recompute_layers, first_tok, n,
                                 b->rope_removed ? &d->rope : NULL, th, x);
        reconstruct_centered_split(&b->v, pl->v.rank_used, dv, n, x, th);
        codec_scatter_uncentered(&view, 0, &b->v, b->recompute_layers, first_tok, n, NULL, th, x);
    }
    codec_raw_to_cache(&h, in + h.sections[SEC_RAW_K].offset, out->k);
    codec_raw_to_cache(&h, in + h.sections[SEC_RAW_V].offset, out->v);
    if (h.recompute_layers && coded) {
        if ((r = recompute_layers(d, &h, out, ids, pos))) goto done;
    }
    if (out->positions) memcpy(out->positions, pos, sizeof(int64_t) * h.n_tokens);
    if (out->token_ids && ids) memcpy(out->token_ids, ids, sizeof(int32_t) * h.n_tokens);
    r = KVTC_OK;
done:
    if (payload)
        for (uint32_t i = 0; i < d->opt.n_threads; i++) free(payload[i]);
    free(payload);
    free(x); free(dk); free(dv); free(pos); free(ids);
    return r;
}
