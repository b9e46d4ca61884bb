/* append.c - kvtc_append: extend a stream with the tokens that follow it.
 *
 * With n_sink S, n_window W and chunk size C, a stream of n tokens has
 * coded tokens [S, n - W); m new tokens move the m tokens after them out
 * of the raw window into the coded range. Those m tokens (the old window's,
 * exact, then the new ones') and the new window are gathered into one small
 * contiguous cache, "mid" = old window + new tokens. The old stream's full
 * chunks are copied byte for byte. Its last chunk, when partial (rem < C
 * tokens), is only entropy-decoded: its payload, whose tokens are already
 * quantized, opens the first new chunk, which the first C - rem newly coded
 * tokens complete (quant_payload_concat moves codes, re-quantizes nothing).
 * So the chunks stay full and no token is quantized twice: the result is
 * the stream that compressing the concatenation gives (up to the BLAS's
 * rounding of the projection), whatever the number of appends. The work is
 * the projection and quantization of the m tokens, the entropy coding of
 * rem + m and the decoding of rem: about one chunk's encode for m = C.
 * A stream with no coded tokens is re-encoded from its (exact) raw tokens
 * plus the new ones. */
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/codec_common.h"
#include "cpu/encode_internal.h"
#include "format/container.h"
#include "quant/group_quant.h"
#include "transform/rows.h"
#include "util/cache.h"
#include "util/endian.h"
#include "util/layout.h"

typedef struct mid_cache {
    kvtc_cache c;     /* owned: k, v, positions, token_ids */
    uint64_t first;   /* stream token of mid token 0 */
    uint32_t full;    /* old chunks kept */
} mid_cache;

static void mid_free(mid_cache *t) {
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

/* The old raw tokens from the first one the append codes (the window's
 * first, or token 0 of an all-raw stream) on, then the new tokens, with
 * their positions and ids. */
static kvtc_result build_mid(const uint8_t *in, const container_header *h, const kvtc_cache_layout *more,
                             mid_cache *t) {
    memset(t, 0, sizeof *t);
    uint64_t coded = container_coded_tokens(h), n = h->n_tokens, m = more->n_tokens;
    uint32_t L = h->geometry.n_layers;
    if (coded) {
        t->full = (uint32_t)(coded / h->chunk_tokens);
        t->first = h->n_sink + coded;
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
     * new tokens' (a stream never gets made-up ids; an empty one has none
     * to lack) */
    if ((!(h->flags & CONTAINER_FLAG_TOKEN_IDS) && n) || (m && !more->token_ids)) {
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
static kvtc_result new_header(const kvtc_encoder *e, const container_header *h, const mid_cache *t,
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

/* Positions and token ids of the new stream: the old stream's up to the
 * first mid token, then mid's. */
static void write_token_sections(const uint8_t *in, const container_header *h, const mid_cache *t,
                                 const container_header *nh, uint8_t *out) {
    if (nh->flags & CONTAINER_FLAG_POSITIONS)
        for (uint64_t s = 0; s < nh->n_tokens; s++) {
            int64_t p = s >= t->first ? t->c.positions[s - t->first]
                        : (h->flags & CONTAINER_FLAG_POSITIONS)
                            ? (int64_t)kvi_load_u64(in + h->sections[SEC_POSITIONS].offset + 8 * s)
                            : (int64_t)s;
            kvi_store_u64(out + nh->sections[SEC_POSITIONS].offset + 8 * s, (uint64_t)p);
        }
    if (nh->flags & CONTAINER_FLAG_TOKEN_IDS) {
        memcpy(out + nh->sections[SEC_TOKEN_IDS].offset, in + h->sections[SEC_TOKEN_IDS].offset,
               4 * (size_t)t->first);
        for (uint64_t s = t->first; s < nh->n_tokens; s++)
            kvi_store_u32(out + nh->sections[SEC_TOKEN_IDS].offset + 4 * s, (uint32_t)t->c.token_ids[s - t->first]);
    }
}

/* Raw sections: per (layer, head) the old sinks, then mid's last n_window
 * tokens (mid is contiguous [L][H][tokens][d]). */
static void write_raw_sections(const uint8_t *in, const container_header *h, const mid_cache *t,
                               const container_header *nh, uint8_t *out) {
    size_t tok = (size_t)h->geometry.head_dim * kvtc_dtype_size(h->dtype);
    uint64_t lhs = (uint64_t)h->geometry.n_layers * h->geometry.n_kv_heads, w0 = t->c.n_tokens - nh->n_window;
    for (int s = SEC_RAW_K; s <= SEC_RAW_V; s++) {
        const uint8_t *mid = s == SEC_RAW_K ? t->c.k : t->c.v;
        for (uint64_t lh = 0; lh < lhs; lh++) {
            uint8_t *dst = out + nh->sections[s].offset + lh * container_raw_tokens(nh) * tok;
            memcpy(dst, in + h->sections[s].offset + lh * container_raw_tokens(h) * tok, h->n_sink * tok);
            memcpy(dst + h->n_sink * tok, mid + (lh * t->c.n_tokens + w0) * tok, nh->n_window * tok);
        }
    }
}

/* The old partial last chunk's payload (its rem tokens, quantized once):
 * *lead malloc'd, NULL when the coded tokens end on a chunk boundary. */
static kvtc_result partial_chunk_payload(const kvtc_encoder *e, const uint8_t *in, const container_header *h,
                                         uint32_t full, uint8_t **lead, uint32_t *lead_tokens) {
    *lead = NULL;
    *lead_tokens = 0;
    if (full == h->n_chunks) return KVTC_OK;
    const basis_plan *pl = encoder_plan(e);
    struct libdeflate_decompressor *dec = libdeflate_alloc_decompressor();
    uint8_t *p = malloc((size_t)quant_payload_size(&pl->k, &pl->v, h->chunk_tokens) + 1);
    kvtc_result r = !dec || !p ? KVTC_ERR_OUT_OF_MEMORY : codec_chunk_payload(in, h, full, pl, dec, p, lead_tokens);
    libdeflate_free_decompressor(dec);
    if (r) free(p);
    else *lead = p;
    return r;
}

/* Old prefix sections, kept chunks, then the m newly coded tokens (mid's
 * first m) in chunks opened by the old partial chunk's payload. */
static kvtc_result append_coded(kvtc_encoder *e, const uint8_t *in, const container_header *h, const mid_cache *t,
                                uint64_t m, uint8_t *out, size_t cap, size_t *written) {
    container_header nh;
    uint64_t kept = 0;
    kvtc_result r = new_header(e, h, t, &nh);
    if (r) return r;
    if ((r = kept_chunk_bytes(in, h, t->full, &kept))) return r;
    if ((r = container_layout(&nh, 0))) return r;
    uint64_t data_off = nh.sections[SEC_CHUNK_DATA].offset;
    if (data_off > cap || kept > cap - data_off) return KVTC_ERR_BUFFER_TOO_SMALL;
    kvtc_cache_layout ml;
    kvtc_cache_layout_from_cache(&t->c, &ml);
    if (!kvi_layout_tokens_finite(&ml, 0, 0, m)) return KVTC_ERR_NUMERIC;
    uint8_t *lead = NULL;
    uint32_t lead_tokens = 0;
    if ((r = partial_chunk_payload(e, in, h, t->full, &lead, &lead_tokens))) return r;
    memset(out, 0, (size_t)data_off);
    write_token_sections(in, h, t, &nh, out);
    write_raw_sections(in, h, t, &nh, out);
    memcpy(out + nh.sections[SEC_CHUNK_INDEX].offset, in + h->sections[SEC_CHUNK_INDEX].offset,
           (size_t)t->full * CONTAINER_CHUNK_ENTRY);
    memcpy(out + data_off, in + h->sections[SEC_CHUNK_DATA].offset, (size_t)kept);
    chunk_sink sink = {out + data_off, cap - data_off, kept, out + nh.sections[SEC_CHUNK_INDEX].offset, t->full};
    r = encoder_code_tokens(e, &ml, 0, m, lead, lead_tokens, &sink);
    free(lead);
    if (r) return r;
    if (sink.chunks != nh.n_chunks) return KVTC_ERR_CORRUPT; /* cannot happen: the header counts them */
    if ((r = container_layout(&nh, sink.size))) return r;
    if (nh.total_size > cap) return KVTC_ERR_BUFFER_TOO_SMALL;
    if (nh.flags & CONTAINER_FLAG_PLAN) container_write_plan_section(encoder_plan(e), out + nh.sections[SEC_PLAN].offset);
    for (int s = 0; s < container_n_sections(&nh); s++)
        if (s != SEC_CHUNK_DATA)
            nh.sections[s].crc32 = libdeflate_crc32(0, out + nh.sections[s].offset, (size_t)nh.sections[s].size);
    container_write_prefix(&nh, out);
    *written = (size_t)nh.total_size;
    return KVTC_OK;
}

/* No new tokens: the stream itself, checked as an append would check it
 * (every chunk's CRC, the model fingerprint). */
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

/* The stream coded afresh from an all-raw one got the encoder's model
 * fingerprint; as in new_header, the old stream's stays (an encoder without
 * one must not drop it: decoding with another model would then go
 * unnoticed). */
static kvtc_result keep_model_fingerprint(const kvtc_encoder *e, const container_header *h, uint8_t *out,
                                          size_t size) {
    uint64_t mf = encoder_options(e)->model_fingerprint;
    if (!(h->flags & CONTAINER_FLAG_MODEL_FINGERPRINT)) return KVTC_OK;
    if (mf) return mf == h->model_fingerprint ? KVTC_OK : KVTC_ERR_MODEL_MISMATCH;
    container_header nh;
    kvtc_result r = container_read_prefix(out, size, &nh);
    if (r) return r;
    nh.flags |= CONTAINER_FLAG_MODEL_FINGERPRINT;
    nh.model_fingerprint = h->model_fingerprint;
    container_write_prefix(&nh, out);
    return KVTC_OK;
}

static kvtc_result append_impl(kvtc_encoder *e, const uint8_t *in, size_t in_size, const kvtc_cache_layout *more,
                               uint8_t *out, size_t cap, size_t *written) {
    container_header h;
    kvtc_result r = check_request(e, in, in_size, more, &h);
    if (r) return r;
    if (more->n_tokens == 0) return append_nothing(e, in, &h, out, cap, written);
    mid_cache t;
    if ((r = build_mid(in, &h, more, &t))) goto done;
    if (!container_coded_tokens(&h)) {
        /* all raw: mid is the whole concatenation, coded afresh */
        kvtc_cache_layout ml;
        kvtc_cache_layout_from_cache(&t.c, &ml);
        r = kvtc_compress_layout(e, &ml, out, cap, written);
        if (!r) r = keep_model_fingerprint(e, &h, out, *written);
        goto done;
    }
    r = append_coded(e, in, &h, &t, more->n_tokens, out, cap, written);
done:
    mid_free(&t);
    return r;
}

size_t kvtc_append_bound(const kvtc_encoder *e, const void *in, size_t in_size, const kvtc_cache_layout *more) {
    if (!e || !in || !more) return 0;
    container_header h;
    if (check_request(e, in, in_size, more, &h)) return 0;
    /* old stream + the bound of a stream without sinks of chunk + window +
     * new tokens (its chunks hold at least the rem + m tokens the append
     * codes; a layout that is only measured, never read: any non-NULL bases
     * do) + positions and ids of every token + the plan section */
    kvtc_cache_layout fake;
    memset(&fake, 0, sizeof fake);
    fake.geometry = h.geometry;
    fake.dtype = h.dtype;
    fake.n_tokens = (container_coded_tokens(&h) ? (uint64_t)h.chunk_tokens + h.n_window : h.n_tokens) + more->n_tokens;
    fake.k.base = fake.v.base = (void *)in;
    fake.token_ids = (int32_t *)more->token_ids;
    if (!fake.token_ids && encoder_basis(e)->recompute_layers) return 0;
    /* an all-raw stream is coded afresh, sinks included: a stream of fewer
     * tokens than n_sink (0 tokens, say) does not hold the new sinks' raw
     * bytes that in_size covers otherwise */
    int all_raw = !container_coded_tokens(&h);
    size_t tail = encoder_bound_sink(e, &fake, all_raw ? encoder_options(e)->n_sink : 0);
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
