/* append.c - kvtc_append: extend a stream with the tokens that follow it.
 *
 * The stream's full coded chunks stay as they are (copied byte for byte);
 * the "tail" - its last partial chunk (decoded), its raw window and the new
 * tokens - is gathered into one small contiguous cache and coded by the
 * ordinary encoder with no sinks. Because the tail starts on a chunk
 * boundary of the old stream, its chunks continue the old chunk sequence;
 * the new stream is spliced from the old prefix sections, the old chunks
 * and the tail's chunks and raw window. A stream with no coded tokens is
 * simply re-encoded from its (exact) raw tokens plus the new ones. */
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/codec_common.h"
#include "cpu/encode_internal.h"
#include "format/container.h"
#include "transform/rows.h"
#include "util/cache.h"
#include "util/endian.h"
#include "util/layout.h"

typedef struct tail_cache {
    kvtc_cache c;     /* owned: k, v, positions, token_ids */
    uint64_t first;   /* stream token of tail token 0 */
    uint32_t full;    /* old chunks kept */
} tail_cache;

static void tail_free(tail_cache *t) {
    free(t->c.k);
    free(t->c.v);
    free(t->c.positions);
    free(t->c.token_ids);
    memset(t, 0, sizeof *t);
}

/* *next = the position of the token after the stream's last: its last
 * position + 1 (n for the default positions 0..n-1, 0 for an empty
 * stream). 0 if that overflows int64. */
static int next_position(const uint8_t *in, const container_header *h, int64_t *next) {
    *next = (int64_t)h->n_tokens;
    if (!h->n_tokens || !(h->flags & CONTAINER_FLAG_POSITIONS)) return 1;
    int64_t last = (int64_t)kvi_load_u64(in + h->sections[SEC_POSITIONS].offset + 8 * (h->n_tokens - 1));
    if (last == INT64_MAX) return 0;
    *next = last + 1;
    return 1;
}

static kvtc_result check_request(const kvtc_encoder *e, const uint8_t *in, size_t in_size,
                                 const kvtc_cache_layout *more, container_header *h) {
    kvtc_result r = container_read_prefix(in, in_size, h);
    if (r) return r;
    const kvtc_basis *b = encoder_basis(e);
    const kvtc_encode_options *o = encoder_options(e);
    if (h->transform_fingerprint != b->transform_fingerprint || h->plan_fingerprint != encoder_plan(e)->fingerprint)
        return KVTC_ERR_BASIS_MISMATCH;
    if ((r = kvi_layout_check(more, 0, more->geometry.n_layers))) return r;
    if (!kvi_geometry_equal(&more->geometry, &h->geometry) || more->dtype != h->dtype)
        return KVTC_ERR_GEOMETRY_MISMATCH;
    if (container_coded_tokens(h) &&
        (h->n_sink != o->n_sink || h->n_window != o->n_window || h->chunk_tokens != o->chunk_tokens ||
         h->codec != o->entropy_codec))
        return KVTC_ERR_INVALID_ARGUMENT;
    if (b->recompute_layers && more->n_tokens && !more->token_ids) return KVTC_ERR_INVALID_ARGUMENT;
    if (more->n_tokens > KVTC_MAX_TOKENS - h->n_tokens) return KVTC_ERR_TOO_LARGE;
    if (!more->positions && more->n_tokens) {
        /* continuing positions must stay in int64 */
        int64_t next;
        if (!next_position(in, h, &next) || (next >= 0 && (uint64_t)(INT64_MAX - next) < more->n_tokens - 1))
            return KVTC_ERR_INVALID_ARGUMENT;
    }
    return KVTC_OK;
}

/* Decode the old stream's last partial chunk into tail tokens [0, n). */
static kvtc_result decode_partial_chunk(const kvtc_encoder *e, const uint8_t *in, size_t in_size,
                                        const container_header *h, tail_cache *t, uint64_t n) {
    const kvtc_basis *b = encoder_basis(e);
    kvtc_decoder *d = NULL;
    kvtc_result r = kvtc_decoder_alloc(b, NULL, &d);
    if (r) return r;
    kvtc_cache_layout view;
    kvtc_cache_layout_from_cache(&t->c, &view);
    view.n_tokens = n; /* strides stay those of the whole tail */
    view.positions = NULL;
    view.token_ids = NULL;
    kvtc_decode_range rg = {t->first, t->first + n, b->recompute_layers, h->geometry.n_layers};
    r = kvtc_decompress_layout(d, in, in_size, &rg, &view);
    kvtc_decoder_free(d);
    return r;
}

static kvtc_result build_tail(const kvtc_encoder *e, const uint8_t *in, size_t in_size, const container_header *h,
                              const kvtc_cache_layout *more, tail_cache *t) {
    memset(t, 0, sizeof *t);
    uint64_t coded = container_coded_tokens(h), n = h->n_tokens, m = more->n_tokens;
    uint32_t L = h->geometry.n_layers;
    if (coded) {
        t->full = (uint32_t)(coded / h->chunk_tokens);
        t->first = h->n_sink + (uint64_t)t->full * h->chunk_tokens;
    }
    kvtc_cache *c = &t->c;
    c->geometry = h->geometry;
    c->dtype = h->dtype;
    c->n_tokens = n - t->first + m;
    uint64_t bytes = kvtc_cache_tensor_bytes(&c->geometry, c->dtype, c->n_tokens);
    if (!bytes || bytes > SIZE_MAX) return KVTC_ERR_TOO_LARGE;
    c->k = calloc(1, (size_t)bytes);
    c->v = calloc(1, (size_t)bytes);
    c->positions = malloc(sizeof(int64_t) * c->n_tokens);
    c->token_ids = calloc(c->n_tokens, sizeof(int32_t));
    if (!c->k || !c->v || !c->positions || !c->token_ids) return KVTC_ERR_OUT_OF_MEMORY;
    for (uint64_t s = t->first; s < n; s++) {
        c->positions[s - t->first] = (h->flags & CONTAINER_FLAG_POSITIONS)
                                         ? (int64_t)kvi_load_u64(in + h->sections[SEC_POSITIONS].offset + 8 * s)
                                         : (int64_t)s;
        if (h->flags & CONTAINER_FLAG_TOKEN_IDS)
            c->token_ids[s - t->first] = (int32_t)kvi_load_u32(in + h->sections[SEC_TOKEN_IDS].offset + 4 * s);
    }
    /* without positions the new tokens continue the stream's last position
     * (positions n, n+1, ... for a stream with the default 0..n-1) */
    int64_t next;
    next_position(in, h, &next); /* cannot overflow: check_request */
    for (uint64_t i = 0; i < m; i++) {
        c->positions[n - t->first + i] = more->positions ? more->positions[i] : next + (int64_t)i;
        if (more->token_ids) c->token_ids[n - t->first + i] = more->token_ids[i];
    }
    /* ids are kept only when every token has one: the old stream's and the
     * new tokens' (a stream never gets made-up ids) */
    if (!(h->flags & CONTAINER_FLAG_TOKEN_IDS) || (m && !more->token_ids)) {
        free(c->token_ids);
        c->token_ids = NULL;
    }
    kvtc_cache_layout tl;
    kvtc_cache_layout_from_cache(c, &tl);
    /* the old raw tokens from `first` on (exact), then the new tokens */
    codec_raw_to_cache(h, in + h->sections[SEC_RAW_K].offset, 1, t->first, n, 0, L, &tl);
    codec_raw_to_cache(h, in + h->sections[SEC_RAW_V].offset, 0, t->first, n, 0, L, &tl);
    kvi_layout_copy_tokens(more, 0, &tl, n - t->first, m, 1, 0, L);
    kvi_layout_copy_tokens(more, 0, &tl, n - t->first, m, 0, 0, L);
    uint64_t rem = coded ? coded - (uint64_t)t->full * h->chunk_tokens : 0;
    if (rem) return decode_partial_chunk(e, in, in_size, h, t, rem);
    return KVTC_OK;
}

/* Bytes of the old chunks [0, full), which must lie back to back from
 * offset 0 with valid CRCs (they are copied without being decoded). */
static kvtc_result kept_chunk_bytes(const uint8_t *in, const container_header *h, uint32_t full, uint64_t *bytes) {
    uint64_t off = 0;
    for (uint32_t i = 0; i < full; i++) {
        container_chunk_entry ce;
        kvtc_result r = container_read_chunk_entry(in, h, i, &ce);
        if (r) return r;
        if (ce.offset != off) return KVTC_ERR_CORRUPT;
        if (libdeflate_crc32(0, in + h->sections[SEC_CHUNK_DATA].offset + ce.offset, ce.size) != ce.crc32)
            return KVTC_ERR_CORRUPT;
        off += ce.size;
    }
    *bytes = off;
    return KVTC_OK;
}

/* The new header: the old stream's parameters for n + m tokens. */
static kvtc_result new_header(const kvtc_encoder *e, const container_header *h, const tail_cache *t,
                              container_header *nh) {
    uint64_t n_new = h->n_tokens + (t->c.n_tokens - (h->n_tokens - t->first));
    int has_pos = (h->flags & CONTAINER_FLAG_POSITIONS) != 0;
    for (uint64_t s = h->n_tokens; s < n_new && !has_pos; s++)
        has_pos = t->c.positions[s - t->first] != (int64_t)s;
    const kvtc_basis *b = encoder_basis(e);
    const basis_plan *pl = encoder_plan(e);
    kvtc_result r = container_header_init_plan(nh, b, pl, &h->geometry, h->dtype, n_new, h->n_sink, h->n_window,
                                               h->chunk_tokens, h->codec, has_pos);
    if (r) return r;
    if (basis_find_plan_by_fingerprint(b, pl->fingerprint) < 0)
        container_set_plan_section(nh, container_plan_section_size(pl->k.n_groups, pl->v.n_groups));
    if (t->c.token_ids) nh->flags |= CONTAINER_FLAG_TOKEN_IDS;
    /* the model the recomputed layers come from stays the old stream's */
    uint64_t mf = encoder_options(e)->model_fingerprint;
    if (h->flags & CONTAINER_FLAG_MODEL_FINGERPRINT) {
        if (mf && mf != h->model_fingerprint) return KVTC_ERR_MODEL_MISMATCH;
        nh->flags |= CONTAINER_FLAG_MODEL_FINGERPRINT;
        nh->model_fingerprint = h->model_fingerprint;
    } else if (mf) {
        nh->flags |= CONTAINER_FLAG_MODEL_FINGERPRINT;
        nh->model_fingerprint = mf;
    }
    return KVTC_OK;
}

/* Splice old stream + coded tail (tail stream ts, no sinks) into out. */
static kvtc_result splice(const kvtc_encoder *e, const uint8_t *in, const container_header *h, const tail_cache *t,
                          uint64_t kept, const uint8_t *ts, const container_header *th, uint8_t *out, size_t cap,
                          size_t *written) {
    container_header nh;
    kvtc_result r = new_header(e, h, t, &nh);
    if (r) return r;
    if ((r = container_layout(&nh, kept + th->sections[SEC_CHUNK_DATA].size))) return r;
    if (nh.total_size > cap) return KVTC_ERR_BUFFER_TOO_SMALL;
    memset(out, 0, (size_t)nh.total_size);
    uint64_t n = h->n_tokens;
    if (nh.flags & CONTAINER_FLAG_POSITIONS)
        for (uint64_t s = 0; s < nh.n_tokens; s++) {
            int64_t p = s >= t->first ? t->c.positions[s - t->first]
                        : (h->flags & CONTAINER_FLAG_POSITIONS)
                            ? (int64_t)kvi_load_u64(in + h->sections[SEC_POSITIONS].offset + 8 * s)
                            : (int64_t)s;
            kvi_store_u64(out + nh.sections[SEC_POSITIONS].offset + 8 * s, (uint64_t)p);
        }
    if (nh.flags & CONTAINER_FLAG_TOKEN_IDS) {
        memcpy(out + nh.sections[SEC_TOKEN_IDS].offset, in + h->sections[SEC_TOKEN_IDS].offset, 4 * n);
        for (uint64_t s = n; s < nh.n_tokens; s++)
            kvi_store_u32(out + nh.sections[SEC_TOKEN_IDS].offset + 4 * s, (uint32_t)t->c.token_ids[s - t->first]);
    }
    /* raw sections: per (layer, head) the old sinks, then the tail's window */
    size_t tok = (size_t)h->geometry.head_dim * kvtc_dtype_size(h->dtype);
    uint64_t lhs = (uint64_t)h->geometry.n_layers * h->geometry.n_kv_heads;
    for (int s = SEC_RAW_K; s <= SEC_RAW_V; s++)
        for (uint64_t lh = 0; lh < lhs; lh++) {
            uint8_t *dst = out + nh.sections[s].offset + lh * container_raw_tokens(&nh) * tok;
            memcpy(dst, in + h->sections[s].offset + lh * container_raw_tokens(h) * tok, h->n_sink * tok);
            memcpy(dst + h->n_sink * tok, ts + th->sections[s].offset + lh * th->n_window * tok, nh.n_window * tok);
        }
    /* chunk index and data: the kept chunks, then the tail's */
    memcpy(out + nh.sections[SEC_CHUNK_INDEX].offset, in + h->sections[SEC_CHUNK_INDEX].offset,
           (size_t)t->full * CONTAINER_CHUNK_ENTRY);
    for (uint32_t i = 0; i < th->n_chunks; i++) {
        container_chunk_entry ce;
        if ((r = container_read_chunk_entry(ts, th, i, &ce))) return r;
        ce.offset += kept;
        container_write_chunk_entry(&ce, out + nh.sections[SEC_CHUNK_INDEX].offset +
                                             (uint64_t)(t->full + i) * CONTAINER_CHUNK_ENTRY);
    }
    memcpy(out + nh.sections[SEC_CHUNK_DATA].offset, in + h->sections[SEC_CHUNK_DATA].offset, (size_t)kept);
    memcpy(out + nh.sections[SEC_CHUNK_DATA].offset + kept, ts + th->sections[SEC_CHUNK_DATA].offset,
           (size_t)th->sections[SEC_CHUNK_DATA].size);
    if (nh.flags & CONTAINER_FLAG_PLAN) container_write_plan_section(encoder_plan(e), out + nh.sections[SEC_PLAN].offset);
    for (int s = 0; s < container_n_sections(&nh); s++)
        if (s != SEC_CHUNK_DATA)
            nh.sections[s].crc32 = libdeflate_crc32(0, out + nh.sections[s].offset, (size_t)nh.sections[s].size);
    container_write_prefix(&nh, out);
    *written = (size_t)nh.total_size;
    return KVTC_OK;
}

/* The coded tail as a stream of its own (no sinks) in a malloc'd buffer. */
static kvtc_result code_tail(kvtc_encoder *e, const tail_cache *t, uint8_t **ts, size_t *ts_size) {
    kvtc_cache_layout tl;
    kvtc_cache_layout_from_cache(&t->c, &tl);
    size_t cap = encoder_bound_sink(e, &tl, 0);
    if (!cap) return KVTC_ERR_TOO_LARGE;
    *ts = malloc(cap);
    if (!*ts) return KVTC_ERR_OUT_OF_MEMORY;
    return encoder_compress_sink(e, &tl, 0, *ts, cap, ts_size);
}

/* No new tokens: the stream itself, checked as an append would check it
 * (every chunk's CRC, the model fingerprint). Re-coding its partial last
 * chunk would only add a second quantization, and with no raw window and
 * coded tokens ending on a chunk boundary there would be no tail at all. */
static kvtc_result append_nothing(const kvtc_encoder *e, const uint8_t *in, const container_header *h, uint8_t *out,
                                  size_t cap, size_t *written) {
    uint64_t mf = encoder_options(e)->model_fingerprint, chunk_bytes = 0;
    if (mf && (h->flags & CONTAINER_FLAG_MODEL_FINGERPRINT) && mf != h->model_fingerprint)
        return KVTC_ERR_MODEL_MISMATCH;
    kvtc_result r = kept_chunk_bytes(in, h, h->n_chunks, &chunk_bytes);
    if (r) return r;
    if (h->total_size > cap) return KVTC_ERR_BUFFER_TOO_SMALL;
    memmove(out, in, (size_t)h->total_size);
    *written = (size_t)h->total_size;
    return KVTC_OK;
}

static kvtc_result append_impl(kvtc_encoder *e, const uint8_t *in, size_t in_size, const kvtc_cache_layout *more,
                               uint8_t *out, size_t cap, size_t *written) {
    container_header h, th;
    kvtc_result r = check_request(e, in, in_size, more, &h);
    if (r) return r;
    if (more->n_tokens == 0) return append_nothing(e, in, &h, out, cap, written);
    tail_cache t;
    uint8_t *ts = NULL;
    size_t ts_size = 0;
    uint64_t kept = 0;
    if ((r = build_tail(e, in, in_size, &h, more, &t))) goto done;
    if (!container_coded_tokens(&h)) {
        /* all raw: the tail is the whole concatenation, coded afresh */
        kvtc_cache_layout tl;
        kvtc_cache_layout_from_cache(&t.c, &tl);
        r = kvtc_compress_layout(e, &tl, out, cap, written);
        goto done;
    }
    if ((r = kept_chunk_bytes(in, &h, t.full, &kept))) goto done;
    if ((r = code_tail(e, &t, &ts, &ts_size))) goto done;
    if ((r = container_read_prefix_only(ts, ts_size, &th))) goto done;
    r = splice(e, in, &h, &t, kept, ts, &th, out, cap, written);
done:
    free(ts);
    tail_free(&t);
    return r;
}

size_t kvtc_append_bound(const kvtc_encoder *e, const void *in, size_t in_size, const kvtc_cache_layout *more) {
    if (!e || !in || !more) return 0;
    container_header h;
    if (check_request(e, in, in_size, more, &h)) return 0;
    /* old stream + the bound of a tail of at most chunk + window + new
     * tokens (a layout that is only measured, never read: any non-NULL
     * bases do) + positions and ids of every token + the plan section */
    kvtc_cache_layout fake;
    memset(&fake, 0, sizeof fake);
    fake.geometry = h.geometry;
    fake.dtype = h.dtype;
    fake.n_tokens = (container_coded_tokens(&h) ? (uint64_t)h.chunk_tokens + h.n_window : h.n_tokens) + more->n_tokens;
    fake.k.base = fake.v.base = (void *)in;
    fake.token_ids = (int32_t *)more->token_ids;
    if (!fake.token_ids && encoder_basis(e)->recompute_layers) return 0;
    size_t tail = encoder_bound_sink(e, &fake, 0);
    const basis_plan *pl = encoder_plan(e);
    uint64_t extra = 12 * fake.n_tokens + container_plan_section_size(pl->k.n_groups, pl->v.n_groups);
    if (!tail || tail > SIZE_MAX - in_size - extra) return 0;
    return in_size + tail + (size_t)extra;
}

kvtc_result kvtc_append(kvtc_encoder *e, const void *in, size_t in_size, const kvtc_cache_layout *more, void *out,
                        size_t cap, size_t *written) {
    if (!e || !in || !more || !out || !written) return KVTC_ERR_INVALID_ARGUMENT;
    return append_impl(e, in, in_size, more, out, cap, written);
}
