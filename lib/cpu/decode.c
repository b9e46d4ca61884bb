/* decode.c - the CPU decoder and stream inspection. Order of trust: the
 * prefix (header, table, raw sections) is fully validated and checksummed
 * by container_read_prefix before anything is written to the caller's
 * cache; each chunk's CRC is verified before it is inflated, and its
 * inflated size must equal the size its plan implies exactly. */
#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/codec_common.h"
#include "cpu/proj_emul_ops.h"
#include "entropy/rans.h"
#include "format/container.h"
#include "quant/group_quant.h"
#include "transform/project.h"
#include "transform/rope.h"
#include "transform/rows.h"
#include "util/cache.h"
#include "util/endian.h"
#include "util/layout.h"
#include "util/out_struct.h"
#include "util/parallel.h"

struct kvtc_decoder {
    const kvtc_basis *basis;
    kvtc_decode_options opt;
    rope_table rope;
    struct libdeflate_decompressor **dec; /* one per worker */
    /* dequantized coefficients of chunks [held_c0, held_c1) of the stream
     * held_buf[0..held_size) with plan held_plan (kvtc_decoder_hold) */
    const void *held_buf;
    size_t held_size;
    uint64_t held_plan;
    /* CRC of the held stream's chunk index (it holds every chunk's CRC): an
     * engine that reuses one buffer for the next stream of the same size
     * (fixed-size chunks, DEFLATE level 0) must not get the old stream's
     * coefficients */
    uint32_t held_index_crc;
    uint32_t held_c0, held_c1;
    float *held_dk, *held_dv;
    proj_emul *emul; /* kvi_decoder_emulate_projection; NULL: fp32 */
};

void kvtc_decode_options_init(kvtc_decode_options *o) {
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->n_threads = 1;
}

void kvtc_decoder_release(kvtc_decoder *d) {
    if (!d) return;
    free(d->held_dk);
    free(d->held_dv);
    d->held_dk = d->held_dv = NULL;
    d->held_buf = NULL;
    d->held_size = 0;
    d->held_index_crc = 0;
    d->held_c0 = d->held_c1 = 0;
}

void kvtc_decoder_free(kvtc_decoder *d) {
    if (!d) return;
    kvtc_decoder_release(d);
    proj_emul_set(&d->emul, NULL, KVI_PROJ_EXACT, 0);
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
    out->basis_fingerprint = h.transform_fingerprint;
    out->plan_ratio = h.plan_ratio;
    out->k_bytes = kvtc_cache_tensor_bytes(&h.geometry, h.dtype, h.n_tokens);
    out->v_bytes = out->k_bytes;
    out->stream_bytes = h.total_size;
    out->coded_bytes = h.sections[SEC_CHUNK_DATA].size;
    out->raw_bytes = h.sections[SEC_RAW_K].size + h.sections[SEC_RAW_V].size;
    out->has_model_fingerprint = (h.flags & CONTAINER_FLAG_MODEL_FINGERPRINT) != 0;
    out->model_fingerprint = h.model_fingerprint;
    return kvi_out_struct_fill(caller, out, sizeof *out, KVI_STREAM_INFO_MIN_SIZE);
}

/* Each chunk is decoded whole by one worker: entropy decoding,
 * dequantization, then per layer of the range one reconstruction GEMM
 * (chunk tokens x one layer's columns x rank), un-weighting and the store of
 * the tokens the range wants. A partial decode thus runs exactly the calls a
 * full decode runs for the same chunk and layer, which makes its values
 * bit-identical to the full decode's whatever the BLAS does with other
 * matrix shapes. */
typedef struct dchunk_ctx {
    kvtc_decoder *d;
    const basis_plan *plan;
    const container_header *h;
    const uint8_t *buf;
    uint32_t first_chunk;
    uint64_t c0, c1;             /* coded tokens wanted */
    uint64_t token_begin;        /* stream token of layout token 0 */
    uint32_t layer_begin, layer_end; /* stored layers wanted */
    const kvtc_cache_layout *view;
    uint8_t **payload;           /* per worker */
    float **dk, **dv, **x;       /* per worker: [chunk][rank_k], [chunk][rank_v], [chunk][range width] */
    int use_held;                /* the decoder's held coefficients belong to this stream and plan */
} dchunk_ctx;

/* dm: the chunk's coefficients, or with an emulated projection their
 * operand copy, multiplied with that mode's basis operand */
static void reconstruct_layers(const dchunk_ctx *b, int is_key, const float *dm, uint64_t ct0, uint32_t n_tok,
                               float *x) {
    const kvtc_basis *bs = b->d->basis;
    const basis_stream *s = is_key ? &bs->k : &bs->v;
    const proj_emul *pe = b->d->emul;
    const basis_stream *op = pe ? &pe->op[is_key ? 0 : 1] : s;
    uint32_t r = is_key ? b->plan->k.rank_used : b->plan->v.rank_used;
    uint32_t hd = b->h->geometry.n_kv_heads * b->h->geometry.head_dim, m = b->h->recompute_layers;
    uint64_t lo = b->c0 > ct0 ? b->c0 : ct0, hi = b->c1 < ct0 + n_tok ? b->c1 : ct0 + n_tok;
    const rope_table *rope = is_key && bs->rope_removed ? &b->d->rope : NULL;
    /* one GEMM per layer (the same call whatever the range), into the
     * chunk's rows of the range's width; then per token, once for all
     * layers, un-weighting and the store (RoPE angles once per token) */
    uint32_t w = (b->layer_end - b->layer_begin) * hd, col0 = (b->layer_begin - m) * hd;
    for (uint32_t l = b->layer_begin; l < b->layer_end; l++)
        reconstruct_centered_cols(op, r, dm, r, n_tok, (l - m) * hd, hd, x + (uint64_t)(l - b->layer_begin) * hd, w);
    float *rows = x + (lo - ct0) * w;
    if (pe) proj_emul_output(pe, is_key ? 0 : 1, rows, w, hi - lo, w);
    uncenter_cols(s, col0, w, rows, hi - lo);
    kvi_layout_scatter_rows(b->view, is_key, b->layer_begin, b->layer_end, b->h->n_sink + lo - b->token_begin,
                             hi - lo, rope, rope != NULL, rows);
}

/* Entropy-decode and dequantize chunk ci into dk [n][rank_k], dv [n][rank_v]. */
static kvtc_result inflate_chunk(const dchunk_ctx *b, uint32_t ci, uint32_t worker, float *dk, float *dv,
                                 uint32_t *n_tok) {
    kvtc_result r = codec_chunk_payload(b->buf, b->h, ci, b->plan, b->d->dec[worker], b->payload[worker], n_tok);
    if (r) return r;
    const plan_stream *pk = &b->plan->k, *pv = &b->plan->v;
    return quant_decode(pk, pv, b->payload[worker], *n_tok, dk, pk->rank_used, dv, pv->rank_used);
}

static int decode_chunk(void *p, uint32_t item, uint32_t worker) {
    dchunk_ctx *b = p;
    uint32_t ci = b->first_chunk + item, n_tok = 0;
    const kvtc_decoder *d = b->d;
    float *dk = b->dk[worker], *dv = b->dv[worker];
    kvtc_result r;
    if (b->use_held && ci >= d->held_c0 && ci < d->held_c1) {
        /* coefficients kept by kvtc_decoder_hold: no inflate */
        container_chunk_entry ce;
        if ((r = container_read_chunk_entry(b->buf, b->h, ci, &ce))) return r;
        n_tok = ce.n_tokens;
        uint64_t row0 = (uint64_t)(ci - d->held_c0) * b->h->chunk_tokens;
        dk = d->held_dk + row0 * b->plan->k.rank_used;
        dv = d->held_dv + row0 * b->plan->v.rank_used;
    } else if ((r = inflate_chunk(b, ci, worker, dk, dv, &n_tok))) {
        return r;
    }
    uint64_t ct0 = (uint64_t)ci * b->h->chunk_tokens;
    if (d->emul) {
        /* the operand copies (the held coefficients stay untouched) */
        uint32_t rk = b->plan->k.rank_used, rv = b->plan->v.rank_used;
        float *qk = malloc(sizeof(float) * ((uint64_t)n_tok * rk + 1)), *qv = malloc(sizeof(float) * ((uint64_t)n_tok * rv + 1));
        if (!qk || !qv) {
            free(qk);
            free(qv);
            return KVTC_ERR_OUT_OF_MEMORY;
        }
        proj_emul_coefs(d->emul, 0, rk, dk, rk, n_tok, qk);
        proj_emul_coefs(d->emul, 1, rv, dv, rv, n_tok, qv);
        reconstruct_layers(b, 1, qk, ct0, n_tok, b->x[worker]);
        reconstruct_layers(b, 0, qv, ct0, n_tok, b->x[worker]);
        free(qk);
        free(qv);
        return 0;
    }
    reconstruct_layers(b, 1, dk, ct0, n_tok, b->x[worker]);
    reconstruct_layers(b, 0, dv, ct0, n_tok, b->x[worker]);
    return 0;
}

/* kvtc_decoder_hold's pass: inflate chunk first_chunk + item into the held arrays. */
static int hold_chunk(void *p, uint32_t item, uint32_t worker) {
    dchunk_ctx *b = p;
    uint64_t row0 = (uint64_t)item * b->h->chunk_tokens;
    uint32_t n_tok;
    return inflate_chunk(b, b->first_chunk + item, worker, b->d->held_dk + row0 * b->plan->k.rank_used,
                         b->d->held_dv + row0 * b->plan->v.rank_used, &n_tok);
}

/* Per-worker scratch: one array of n pointers per kind (freed whatever
 * was allocated; NULL arrays allowed). */
static void free_float_bufs(float **bufs, uint32_t n) {
    for (uint32_t i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs);
}

static void free_byte_bufs(uint8_t **bufs, uint32_t n) {
    for (uint32_t i = 0; bufs && i < n; i++) free(bufs[i]);
    free(bufs);
}

kvtc_result kvi_decoder_emulate_projection(kvtc_decoder *d, kvi_proj_mode mode) {
    if (!d) return KVTC_ERR_INVALID_ARGUMENT;
    return proj_emul_set(&d->emul, d->basis, mode, 1);
}

void kvtc_decode_range_init(kvtc_decode_range *r) {
    if (r) memset(r, 0, sizeof *r);
}

/* The range with its 0 = "to the end" defaults resolved, checked against
 * the stream. */
static kvtc_result resolve_range(const container_header *h, const kvtc_decode_range *in, kvtc_decode_range *out) {
    kvtc_decode_range_init(out);
    if (in) *out = *in;
    if (!out->token_end) out->token_end = h->n_tokens;
    if (!out->layer_end) out->layer_end = h->geometry.n_layers;
    if (out->token_begin > out->token_end || out->token_end > h->n_tokens) return KVTC_ERR_INVALID_ARGUMENT;
    if (out->layer_begin > out->layer_end || out->layer_end > h->geometry.n_layers) return KVTC_ERR_INVALID_ARGUMENT;
    return KVTC_OK;
}

static kvtc_result check_out_layout(const container_header *h, const kvtc_decode_range *rg,
                                    const kvtc_cache_layout *out) {
    if (!kvi_geometry_equal(&out->geometry, &h->geometry)) return KVTC_ERR_GEOMETRY_MISMATCH;
    if (out->dtype != h->dtype || out->n_tokens != rg->token_end - rg->token_begin)
        return KVTC_ERR_GEOMETRY_MISMATCH;
    return kvi_layout_check(out, rg->layer_begin, rg->layer_end);
}

/* Layers [0, m) of the coded tokens in the range come from the caller's
 * model, which is given tokens [0, token_end). */
static kvtc_result recompute_layers(kvtc_decoder *d, const container_header *h, const kvtc_decode_range *rg,
                                    const kvtc_cache_layout *out, const int32_t *ids, const int64_t *pos) {
    uint32_t m = h->recompute_layers;
    const kvtc_geometry *g = &h->geometry;
    uint64_t n = rg->token_end;
    uint64_t per = (uint64_t)m * g->n_kv_heads * n * g->head_dim;
    float *k = malloc(sizeof(float) * (per ? per : 1)), *v = malloc(sizeof(float) * (per ? per : 1));
    if (!k || !v) { free(k); free(v); return KVTC_ERR_OUT_OF_MEMORY; }
    kvtc_result r = KVTC_OK;
    if (d->opt.recompute(d->opt.recompute_user, m, ids, pos, n, k, v) != 0) {
        r = KVTC_ERR_CALLBACK;
    } else {
        /* the callback's float32 [m][H][n][d] as a layout; coded tokens of the range */
        kvtc_cache rc = {h->geometry, KVTC_DTYPE_F32, n, k, v, NULL, NULL};
        kvtc_cache_layout src;
        kvtc_cache_layout_from_cache(&rc, &src);
        src.geometry.n_layers = m; /* only m layers were computed */
        uint64_t a = rg->token_begin > h->n_sink ? rg->token_begin : h->n_sink;
        uint64_t w0 = h->n_tokens - h->n_window, b = rg->token_end < w0 ? rg->token_end : w0;
        uint32_t le = rg->layer_end < m ? rg->layer_end : m;
        /* whole-row moves: layers [layer_begin, le) of tokens [a, b) */
        if (rg->layer_begin < le && a < b) {
            uint64_t w = (uint64_t)(le - rg->layer_begin) * g->n_kv_heads * g->head_dim;
            float *rows = malloc(sizeof(float) * w);
            if (!rows) { r = KVTC_ERR_OUT_OF_MEMORY; goto out; }
            for (int s = 0; s < 2; s++)
                for (uint64_t t = a; t < b; t++) {
                    kvi_layout_gather_rows(&src, !s, rg->layer_begin, le, t, 1, NULL, 0, rows);
                    kvi_layout_scatter_rows(out, !s, rg->layer_begin, le, t - rg->token_begin, 1, NULL, 0, rows);
                }
            free(rows);
        }
    }
out:
    free(k);
    free(v);
    return r;
}

kvtc_result kvtc_decompress(kvtc_decoder *d, const void *buf, size_t size, kvtc_cache *out) {
    if (!d || !buf || !out) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(out, &l);
    return kvtc_decompress_layout(d, buf, size, NULL, &l);
}

/* The stream's plan: a stored plan of the basis, or the one the stream
 * carries (solved for a ratio the basis has no plan for); its groups must
 * hash to the header's plan fingerprint, which also ties them to this
 * basis' transform. *carried is owned by the caller (plan_stream_free). */
static kvtc_result resolve_plan(const kvtc_decoder *d, const uint8_t *buf, const container_header *h,
                                basis_plan *carried, const basis_plan **pl) {
    memset(carried, 0, sizeof *carried);
    const kvtc_basis *b = d->basis;
    if (h->transform_fingerprint != b->transform_fingerprint ||
        !kvi_geometry_equal(&h->geometry, &b->geometry) || h->recompute_layers != b->recompute_layers ||
        h->rope_removed != (uint8_t)b->rope_removed)
        return KVTC_ERR_BASIS_MISMATCH;
    int pi = basis_find_plan_by_fingerprint(b, h->plan_fingerprint);
    if (pi >= 0) {
        *pl = &b->plans[pi];
        return KVTC_OK;
    }
    if (!(h->flags & CONTAINER_FLAG_PLAN)) return KVTC_ERR_BASIS_MISMATCH;
    kvtc_result r = container_read_plan_section(buf, h, b, carried);
    if (r) return r;
    if (carried->fingerprint != h->plan_fingerprint) {
        plan_stream_free(&carried->k);
        plan_stream_free(&carried->v);
        return KVTC_ERR_BASIS_MISMATCH;
    }
    *pl = carried;
    return KVTC_OK;
}

/* Coded-token indices [c0, c1) of stream tokens [tb, te). */
static void coded_span(const container_header *h, uint64_t tb, uint64_t te, uint64_t *c0, uint64_t *c1) {
    uint64_t w0 = h->n_tokens - h->n_window;
    *c0 = (tb > h->n_sink ? tb : h->n_sink) - h->n_sink;
    uint64_t e = te < w0 ? te : w0;
    *c1 = e > h->n_sink ? e - h->n_sink : 0;
    if (*c1 < *c0) *c1 = *c0;
}

kvtc_result kvtc_decoder_hold(kvtc_decoder *d, const void *buf, size_t size, uint64_t token_begin,
                              uint64_t token_end) {
    if (!d || !buf) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_decoder_release(d);
    container_header h;
    kvtc_result r = container_read_prefix(buf, size, &h);
    if (r) return r;
    if (!token_end) token_end = h.n_tokens;
    if (token_begin > token_end || token_end > h.n_tokens) return KVTC_ERR_INVALID_ARGUMENT;
    basis_plan carried;
    const basis_plan *pl;
    if ((r = resolve_plan(d, buf, &h, &carried, &pl))) return r;
    uint64_t c0, c1;
    coded_span(&h, token_begin, token_end, &c0, &c1);
    uint32_t cb = (uint32_t)(c0 / h.chunk_tokens), ce = (uint32_t)((c1 + h.chunk_tokens - 1) / h.chunk_tokens);
    uint64_t rows = (uint64_t)(ce - cb) * h.chunk_tokens;
    uint32_t nt = d->opt.n_threads;
    size_t max_payload = (size_t)quant_payload_size(&pl->k, &pl->v, h.chunk_tokens);
    uint8_t **payload = calloc(nt, sizeof(uint8_t *));
    d->held_dk = malloc(sizeof(float) * (rows * pl->k.rank_used + 1));
    d->held_dv = malloc(sizeof(float) * (rows * pl->v.rank_used + 1));
    r = KVTC_ERR_OUT_OF_MEMORY;
    if (!payload || !d->held_dk || !d->held_dv) goto done;
    for (uint32_t i = 0; i < nt; i++)
        if (!(payload[i] = malloc(max_payload + 1))) goto done;
    dchunk_ctx bc;
    memset(&bc, 0, sizeof bc);
    bc.d = d;
    bc.plan = pl;
    bc.h = &h;
    bc.buf = buf;
    bc.first_chunk = cb;
    bc.payload = payload;
    int rc = kvi_parallel_for(nt, ce - cb, hold_chunk, &bc);
    r = (kvtc_result)rc;
    if (!r) {
        d->held_buf = buf;
        d->held_size = (size_t)h.total_size;
        d->held_plan = pl->fingerprint;
        d->held_index_crc = h.sections[SEC_CHUNK_INDEX].crc32;
        d->held_c0 = cb;
        d->held_c1 = ce;
    }
done:
    free_byte_bufs(payload, nt);
    plan_stream_free(&carried.k);
    plan_stream_free(&carried.v);
    if (r) kvtc_decoder_release(d);
    return r;
}

static kvtc_result decode_with_plan(kvtc_decoder *d, const uint8_t *buf, const container_header *hp,
                                    const basis_plan *pl, const kvtc_decode_range *range, kvtc_cache_layout *out);

kvtc_result kvtc_decompress_layout(kvtc_decoder *d, const void *buf, size_t size, const kvtc_decode_range *range,
                                   kvtc_cache_layout *out) {
    if (!d || !buf || !out) return KVTC_ERR_INVALID_ARGUMENT;
    container_header h;
    kvtc_result r = container_read_prefix(buf, size, &h);
    if (r) return r;
    basis_plan carried;
    const basis_plan *pl;
    if ((r = resolve_plan(d, buf, &h, &carried, &pl))) return r;
    r = decode_with_plan(d, buf, &h, pl, range, out);
    plan_stream_free(&carried.k);
    plan_stream_free(&carried.v);
    return r;
}

static kvtc_result decode_with_plan(kvtc_decoder *d, const uint8_t *buf, const container_header *hp,
                                    const basis_plan *pl, const kvtc_decode_range *range, kvtc_cache_layout *out) {
    const container_header h = *hp;
    kvtc_result r;
    kvtc_decode_range rg;
    if ((r = resolve_range(&h, range, &rg))) return r;
    if ((r = check_out_layout(&h, &rg, out))) return r;
    uint64_t c0, c1; /* coded tokens of the range, as coded-token indices */
    coded_span(&h, rg.token_begin, rg.token_end, &c0, &c1);
    uint32_t m = h.recompute_layers;
    int need_model = m && c1 > c0 && rg.layer_begin < m && rg.layer_begin < rg.layer_end;
    if (need_model && !d->opt.recompute) return KVTC_ERR_NEEDS_MODEL;
    /* issue 9 item 3: the recomputed layers must come from the stream's model */
    if (need_model && (h.flags & CONTAINER_FLAG_MODEL_FINGERPRINT) && h.model_fingerprint != d->opt.model_fingerprint)
        return KVTC_ERR_MODEL_MISMATCH;
    const uint8_t *in = buf;
    uint64_t n_out = rg.token_end - rg.token_begin;

    /* positions and ids of tokens [0, token_end): the decoder's own copies,
     * so RoPE uses the stream's (and the recompute callback the prefix) */
    uint64_t np = rg.token_end;
    int64_t *pos = malloc(sizeof(int64_t) * (np ? np : 1));
    int32_t *ids = NULL;
    if (!pos) return KVTC_ERR_OUT_OF_MEMORY;
    for (uint64_t t = 0; t < np; t++)
        pos[t] = (h.flags & CONTAINER_FLAG_POSITIONS)
                     ? (int64_t)kvi_load_u64(in + h.sections[SEC_POSITIONS].offset + 8 * t)
                     : (int64_t)t;
    if (h.flags & CONTAINER_FLAG_TOKEN_IDS) {
        ids = malloc(sizeof(int32_t) * (np ? np : 1));
        if (!ids) { free(pos); return KVTC_ERR_OUT_OF_MEMORY; }
        for (uint64_t t = 0; t < np; t++)
            ids[t] = (int32_t)kvi_load_u32(in + h.sections[SEC_TOKEN_IDS].offset + 4 * t);
    }

    /* stored layers of the range: [sl0, sl1) */
    uint32_t sl0 = rg.layer_begin > m ? rg.layer_begin : m, sl1 = rg.layer_end;
    int coded_work = c1 > c0 && sl0 < sl1;
    uint32_t nt = d->opt.n_threads;
    uint32_t hd = h.geometry.n_kv_heads * h.geometry.head_dim;
    size_t max_payload = (size_t)quant_payload_size(&pl->k, &pl->v, h.chunk_tokens);
    uint8_t **payload = calloc(nt, sizeof(uint8_t *));
    float **dk = calloc(nt, sizeof(float *)), **dv = calloc(nt, sizeof(float *)), **x = calloc(nt, sizeof(float *));
    kvtc_cache_layout view = *out;
    view.positions = pos + rg.token_begin; /* layout token t is stream token token_begin + t */
    r = KVTC_ERR_OUT_OF_MEMORY;
    if (!payload || !dk || !dv || !x) goto done;
    for (uint32_t i = 0; coded_work && i < nt; i++)
        if (!(payload[i] = malloc(max_payload + 1)) ||
            !(dk[i] = malloc(sizeof(float) * ((uint64_t)h.chunk_tokens * pl->k.rank_used + 1))) ||
            !(dv[i] = malloc(sizeof(float) * ((uint64_t)h.chunk_tokens * pl->v.rank_used + 1))) ||
            !(x[i] = malloc(sizeof(float) * (uint64_t)h.chunk_tokens * hd * (sl1 - sl0))))
            goto done;

    /* Only the chunks holding coded tokens [c0, c1). The prefix is
     * validated; a chunk failing later leaves `out` partially written,
     * which the API documents as unspecified on failure. */
    if (coded_work) {
        uint32_t chunk_begin = (uint32_t)(c0 / h.chunk_tokens);
        uint32_t chunk_end = (uint32_t)((c1 + h.chunk_tokens - 1) / h.chunk_tokens);
        int held = d->held_buf == (const void *)buf && d->held_size == h.total_size &&
                   d->held_plan == pl->fingerprint && d->held_index_crc == h.sections[SEC_CHUNK_INDEX].crc32;
        dchunk_ctx bc = {d, pl, &h, in, chunk_begin, c0, c1, rg.token_begin, sl0, sl1, &view, payload, dk, dv, x,
                         held};
        int rc = kvi_parallel_for(nt, chunk_end - chunk_begin, decode_chunk, &bc);
        if (rc) { r = (kvtc_result)rc; goto done; }
    }
    codec_raw_to_cache(&h, in + h.sections[SEC_RAW_K].offset, 1, rg.token_begin, rg.token_end, rg.layer_begin,
                       rg.layer_end, &view);
    codec_raw_to_cache(&h, in + h.sections[SEC_RAW_V].offset, 0, rg.token_begin, rg.token_end, rg.layer_begin,
                       rg.layer_end, &view);
    if (need_model) {
        if ((r = recompute_layers(d, &h, &rg, &view, ids, pos))) goto done;
    }
    if (out->positions) memcpy(out->positions, pos + rg.token_begin, sizeof(int64_t) * n_out);
    if (out->token_ids && ids) memcpy(out->token_ids, ids + rg.token_begin, sizeof(int32_t) * n_out);
    r = KVTC_OK;
done:
    free_byte_bufs(payload, nt);
    free_float_bufs(dk, nt);
    free_float_bufs(dv, nt);
    free_float_bufs(x, nt);
    free(pos); free(ids);
    return r;
}
