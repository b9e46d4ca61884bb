/* lcpp_state.c - see lcpp_state.h. */
#include "io/lcpp_state.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/endian.h"
#include "util/half.h"

/* ---- a bounds-checked reader -------------------------------------------- */

typedef struct cursor {
    const uint8_t *b;
    size_t size, off;
    size_t skipped; /* payload bytes absent from a hollow file so far */
    int hollow;
    size_t field;   /* where the field read last starts (error location) */
} cursor;

/* Running off the end places the error at the end of the file: a layout
 * that explains every byte up to there outranks one that hits a bad field. */
static kvtc_result truncated(cursor *c) {
    c->field = c->size;
    return KVTC_ERR_TRUNCATED;
}

static kvtc_result need(cursor *c, uint64_t n) {
    c->field = c->off;
    return n <= c->size - c->off ? KVTC_OK : truncated(c);
}

static kvtc_result rd_u32(cursor *c, uint32_t *v) {
    if (need(c, 4)) return KVTC_ERR_TRUNCATED;
    *v = kvi_load_u32(c->b + c->off);
    c->off += 4;
    return KVTC_OK;
}

static kvtc_result rd_u64(cursor *c, uint64_t *v) {
    if (need(c, 8)) return KVTC_ERR_TRUNCATED;
    *v = kvi_load_u64(c->b + c->off);
    c->off += 8;
    return KVTC_OK;
}

static kvtc_result skip(cursor *c, uint64_t n) {
    if (need(c, n)) return KVTC_ERR_TRUNCATED;
    c->off += (size_t)n;
    return KVTC_OK;
}

/* A K/V payload: present in a full file, absent from a hollow one. */
static kvtc_result payload(cursor *c, uint64_t n, size_t *full_off) {
    *full_off = c->off + c->skipped;
    c->field = c->off;
    if (c->hollow) {
        if (n > SIZE_MAX - c->skipped - c->size) return KVTC_ERR_TOO_LARGE;
        c->skipped += (size_t)n;
        return KVTC_OK;
    }
    return skip(c, n);
}

static size_t full_off(const cursor *c) { return c->off + c->skipped; }

/* ---- types ---------------------------------------------------------------- */

const char *lcpp_ggml_type_name(int32_t type) {
    switch (type) {
    case LCPP_GGML_F32: return "f32";
    case LCPP_GGML_F16: return "f16";
    case LCPP_GGML_BF16: return "bf16";
    case LCPP_GGML_Q8_0: return "q8_0";
    default: return "?";
    }
}

const char *lcpp_layout_name(lcpp_layout l) {
    switch (l) {
    case LCPP_LAYOUT_KV_A: return "kv-A";
    case LCPP_LAYOUT_KV_B: return "kv-B";
    case LCPP_LAYOUT_KV_AB: return "kv-A/B";
    default: return "kv-C";
    }
}

static int type_known(int32_t t) {
    return t == LCPP_GGML_F32 || t == LCPP_GGML_F16 || t == LCPP_GGML_BF16 || t == LCPP_GGML_Q8_0;
}

/* Values in a row of `bytes` bytes of type t, or 0 if bytes is not a whole
 * number of values (blocks for q8_0). */
static uint64_t row_values(int32_t t, uint64_t bytes) {
    switch (t) {
    case LCPP_GGML_F32: return bytes % 4 ? 0 : bytes / 4;
    case LCPP_GGML_F16:
    case LCPP_GGML_BF16: return bytes % 2 ? 0 : bytes / 2;
    case LCPP_GGML_Q8_0: return bytes % 34 ? 0 : bytes / 34 * LCPP_Q8_0_BLOCK;
    default: return 0;
    }
}

static uint64_t row_bytes_of(int32_t t, uint64_t n) {
    switch (t) {
    case LCPP_GGML_F32: return 4 * n;
    case LCPP_GGML_Q8_0: return n / LCPP_Q8_0_BLOCK * 34;
    default: return 2 * n;
    }
}

/* ---- parsing ------------------------------------------------------------ */

void lcpp_state_free(lcpp_state *s) {
    if (!s) return;
    for (uint32_t i = 0; s->streams && i < s->n_stream; i++) {
        free(s->streams[i].pos);
        free(s->streams[i].k);
        free(s->streams[i].v);
    }
    free(s->streams);
    memset(s, 0, sizeof *s);
}

int lcpp_state_is_state_file(const void *buf, size_t size) {
    if (!buf || size < 4) return 0;
    uint32_t m = kvi_load_u32(buf);
    return m == LCPP_MAGIC_GGSQ || m == LCPP_MAGIC_GGSN;
}

/* K row tensor (and V with v_trans 0): i32 type, u64 row_bytes, rows. */
static kvtc_result parse_row_tensor(cursor *c, uint32_t cells, lcpp_kv_tensor *t) {
    uint32_t type;
    kvtc_result r;
    t->header_off = full_off(c);
    if ((r = rd_u32(c, &type)) || (r = rd_u64(c, &t->row_bytes))) return r;
    t->type = (int32_t)type;
    if (!type_known(t->type)) return KVTC_ERR_UNSUPPORTED;
    uint64_t n = row_values(t->type, t->row_bytes);
    if (!n) return KVTC_ERR_CORRUPT;
    if (n > LCPP_MAX_ROW_VALUES) return KVTC_ERR_TOO_LARGE;
    t->n_embd = (uint32_t)n;
    t->data_bytes = t->row_bytes * cells; /* <= 2^22 * 2^32: no overflow */
    return payload(c, t->data_bytes, &t->data_off);
}

/* Transposed V: i32 type, u32 el_bytes, u32 n_embd, [n_embd][cells] values. */
static kvtc_result parse_trans_tensor(cursor *c, uint32_t cells, lcpp_kv_tensor *t) {
    uint32_t type, n;
    kvtc_result r;
    t->header_off = full_off(c);
    if ((r = rd_u32(c, &type)) || (r = rd_u32(c, &t->el_bytes)) || (r = rd_u32(c, &n))) return r;
    t->type = (int32_t)type;
    if (!type_known(t->type)) return KVTC_ERR_UNSUPPORTED;
    /* llama.cpp cannot transpose a block-quantized V */
    if (t->type == LCPP_GGML_Q8_0 || row_bytes_of(t->type, 1) != t->el_bytes || !n) return KVTC_ERR_CORRUPT;
    if (n > LCPP_MAX_ROW_VALUES) return KVTC_ERR_TOO_LARGE;
    t->n_embd = n;
    t->row_bytes = (uint64_t)n * t->el_bytes;
    t->data_bytes = t->row_bytes * cells;
    return payload(c, t->data_bytes, &t->data_off);
}

/* One stream's KV part from cell_count on. seq_file: ggsq rules for
 * n_seq_id; *seq_ids_seen collects the n_seq_id values met (bit 0: zero,
 * bit 1: one, bit 2: other). */
static kvtc_result parse_stream(cursor *c, int with_stream, int seq_file, lcpp_stream *st,
                                unsigned *seq_ids_seen) {
    kvtc_result r;
    if ((r = rd_u32(c, &st->cell_count))) return r;
    if (st->cell_count > (c->size - c->off) / 8) return truncated(c); /* a cell takes >= 8 bytes */
    st->cells_off = full_off(c);
    st->pos = malloc(sizeof(int64_t) * ((size_t)st->cell_count + 1));
    if (!st->pos) return KVTC_ERR_OUT_OF_MEMORY;
    for (uint32_t i = 0; i < st->cell_count; i++) {
        uint32_t pos, n_seq;
        if ((r = rd_u32(c, &pos)) || (r = rd_u32(c, &n_seq))) return r;
        st->pos[i] = (int32_t)pos;
        if (st->pos[i] < 0) return KVTC_ERR_CORRUPT; /* only empty cells have negative positions */
        if (n_seq > LCPP_MAX_SEQ_IDS) return KVTC_ERR_TOO_LARGE;
        *seq_ids_seen |= n_seq == 0 ? 1u : n_seq == 1 ? 2u : 4u;
        /* llama.cpp loads a sequence file only if every cell has exactly
         * 0 (kv-A) or 1 (kv-B/C) sequence ids */
        if (seq_file && (with_stream ? *seq_ids_seen != 2u : (*seq_ids_seen == 3u || (*seq_ids_seen & 4u))))
            return KVTC_ERR_CORRUPT;
        if ((r = skip(c, 4ull * n_seq))) return r;
    }
    /* kv-C writes nothing more for an empty stream; kv-A/B still do */
    if (with_stream && st->cell_count == 0) return KVTC_OK;
    if ((r = rd_u32(c, &st->v_trans))) return r;
    if (st->v_trans > 1) return KVTC_ERR_CORRUPT;
    if ((r = rd_u32(c, &st->n_layer))) return r;
    if (!st->n_layer) return KVTC_ERR_CORRUPT;
    if (st->n_layer > LCPP_MAX_LAYERS) return KVTC_ERR_TOO_LARGE;
    if (st->n_layer > (c->size - c->off) / 24) return truncated(c); /* 2 headers of >= 12 B */
    st->k = calloc((size_t)st->n_layer + 1, sizeof *st->k);
    st->v = calloc((size_t)st->n_layer + 1, sizeof *st->v);
    if (!st->k || !st->v) return KVTC_ERR_OUT_OF_MEMORY;
    for (uint32_t l = 0; l < st->n_layer; l++)
        if ((r = parse_row_tensor(c, st->cell_count, &st->k[l]))) return r;
    for (uint32_t l = 0; l < st->n_layer; l++) {
        r = st->v_trans ? parse_trans_tensor(c, st->cell_count, &st->v[l])
                        : parse_row_tensor(c, st->cell_count, &st->v[l]);
        if (r) return r;
    }
    return KVTC_OK;
}

/* The token array: plain ids, or the 2026 server_tokens record
 * (i32 -1, u32 1, u32 n, i32 ids[n], u32 n_media, media..., padding). */
static void detect_packed(lcpp_state *s, const uint8_t *buf) {
    s->packed_tokens = 0;
    s->n_ids = s->n_token_count;
    s->ids_off = s->tokens_off;
    if (s->n_token_count < 4) return;
    const uint8_t *t = buf + s->tokens_off;
    if (kvi_load_u32(t) != 0xffffffffu || kvi_load_u32(t + 4) != 1u) return;
    uint32_t n = kvi_load_u32(t + 8);
    if (n > s->n_token_count - 4) return;
    s->packed_tokens = 1;
    s->n_ids = n;
    s->ids_off = s->tokens_off + 12;
}

static kvtc_result parse_layout(const uint8_t *buf, size_t size, int hollow, int with_stream, int with_logits,
                                lcpp_state *s, size_t *fail_off) {
    cursor c = {buf, size, 0, 0, hollow, 0};
    kvtc_result r;
    memset(s, 0, sizeof *s);
    s->hollow = hollow;
    if ((r = rd_u32(&c, &s->magic)) || (r = rd_u32(&c, &s->version))) goto fail;
    if (s->magic != LCPP_MAGIC_GGSQ && s->magic != LCPP_MAGIC_GGSN) { r = KVTC_ERR_BAD_MAGIC; goto fail; }
    if (s->version != (s->magic == LCPP_MAGIC_GGSQ ? LCPP_GGSQ_VERSION : LCPP_GGSN_VERSION)) {
        r = KVTC_ERR_UNSUPPORTED_VERSION;
        goto fail;
    }
    if ((r = rd_u32(&c, &s->n_token_count))) goto fail;
    s->tokens_off = c.off;
    if ((r = skip(&c, 4ull * s->n_token_count))) goto fail;
    detect_packed(s, buf);
    if (s->magic == LCPP_MAGIC_GGSN) {
        uint32_t len, n_out;
        uint64_t n;
        s->preamble_off = c.off;
        s->has_logits = with_logits;
        if ((r = rd_u32(&c, &len)) || (r = skip(&c, len))) goto fail;
        if (with_logits) {
            if ((r = rd_u32(&c, &n_out)) || (r = skip(&c, 4ull * n_out))) goto fail;
            if ((r = rd_u64(&c, &n)) || (r = n > UINT64_MAX / 4 ? truncated(&c) : skip(&c, 4 * n))) goto fail;
            if ((r = rd_u64(&c, &n)) || (r = n > UINT64_MAX / 4 ? truncated(&c) : skip(&c, 4 * n))) goto fail;
        }
        s->preamble_bytes = c.off - s->preamble_off;
    }
    s->n_stream = 1;
    if (with_stream) {
        if ((r = rd_u32(&c, &s->n_stream))) goto fail;
        if (!s->n_stream) { r = KVTC_ERR_CORRUPT; goto fail; }
        if (s->n_stream > LCPP_MAX_STREAMS) { r = KVTC_ERR_TOO_LARGE; goto fail; }
        if (s->n_stream > (c.size - c.off) / 4) { r = truncated(&c); goto fail; }
    }
    s->streams = calloc(s->n_stream, sizeof *s->streams);
    if (!s->streams) { r = KVTC_ERR_OUT_OF_MEMORY; goto fail; }
    unsigned seen = 0;
    for (uint32_t i = 0; i < s->n_stream; i++)
        if ((r = parse_stream(&c, with_stream, s->magic == LCPP_MAGIC_GGSQ, &s->streams[i], &seen))) goto fail;
    c.field = c.off;
    if (c.off != size) { r = KVTC_ERR_CORRUPT; goto fail; } /* trailing bytes */
    if (s->magic == LCPP_MAGIC_GGSQ) {
        s->layout = with_stream ? LCPP_LAYOUT_KV_C : seen == 1u ? LCPP_LAYOUT_KV_A
                                                   : seen == 2u ? LCPP_LAYOUT_KV_B : LCPP_LAYOUT_KV_AB;
    } else {
        s->layout = with_stream ? LCPP_LAYOUT_KV_C : LCPP_LAYOUT_KV_AB;
    }
    s->size = size;
    s->full_size = size + c.skipped;
    return KVTC_OK;
fail:
    *fail_off = c.field;
    lcpp_state_free(s);
    return r;
}

kvtc_result lcpp_state_parse(const void *buf, size_t size, lcpp_state *out) {
    memset(out, 0, sizeof *out);
    if (!buf) return KVTC_ERR_INVALID_ARGUMENT;
    if (size < 4) return KVTC_ERR_TRUNCATED;
    if (!lcpp_state_is_state_file(buf, size)) return KVTC_ERR_BAD_MAGIC;
    /* candidate layouts, newest first: {n_stream present, ggsn logits present} */
    static const int seq_cand[2][2] = {{1, 0}, {0, 0}};
    static const int ses_cand[4][2] = {{1, 0}, {1, 1}, {0, 1}, {0, 0}};
    int ggsn = kvi_load_u32(buf) == LCPP_MAGIC_GGSN;
    const int(*cand)[2] = ggsn ? ses_cand : seq_cand;
    int n_cand = ggsn ? 4 : 2;
    kvtc_result best = KVTC_ERR_CORRUPT;
    size_t best_off = 0;
    for (int i = 0; i < n_cand; i++) {
        size_t off = 0;
        kvtc_result r = parse_layout(buf, size, 0, cand[i][0], cand[i][1], out, &off);
        if (r == KVTC_OK) return KVTC_OK;
        if (r == KVTC_ERR_OUT_OF_MEMORY || r == KVTC_ERR_UNSUPPORTED_VERSION) return r;
        /* report the failure of the layout that explained the most bytes
         * (on a tie, the newer layout's) */
        if (i == 0 || off > best_off) { best = r; best_off = off; }
    }
    return best;
}

uint32_t lcpp_state_shape(const lcpp_state *s) {
    return (s->layout == LCPP_LAYOUT_KV_C ? LCPP_SHAPE_STREAMS : 0u) | (s->has_logits ? LCPP_SHAPE_LOGITS : 0u);
}

kvtc_result lcpp_state_parse_hollow(const void *buf, size_t size, uint32_t shape, lcpp_state *out) {
    memset(out, 0, sizeof *out);
    if (!buf) return KVTC_ERR_INVALID_ARGUMENT;
    if (size < 4) return KVTC_ERR_TRUNCATED;
    if (!lcpp_state_is_state_file(buf, size)) return KVTC_ERR_BAD_MAGIC;
    int ggsn = kvi_load_u32(buf) == LCPP_MAGIC_GGSN;
    if ((shape & ~(LCPP_SHAPE_STREAMS | LCPP_SHAPE_LOGITS)) || (!ggsn && (shape & LCPP_SHAPE_LOGITS)))
        return KVTC_ERR_CORRUPT;
    size_t off;
    return parse_layout(buf, size, 1, (shape & LCPP_SHAPE_STREAMS) != 0, (shape & LCPP_SHAPE_LOGITS) != 0, out, &off);
}

/* ---- hollow files ------------------------------------------------------- */

/* Copy the non-payload bytes between a full file and its hollow file, in
 * either direction; payload regions come in file order (stream by stream,
 * K layers then V layers). */
static void copy_skeleton(const lcpp_state *s, const uint8_t *src, uint8_t *dst, int to_hollow) {
    size_t fp = 0, hp = 0; /* offsets in the full and in the hollow file */
    for (uint32_t i = 0; i < s->n_stream; i++) {
        const lcpp_stream *st = &s->streams[i];
        for (uint32_t j = 0; j < 2 * st->n_layer; j++) {
            const lcpp_kv_tensor *t = j < st->n_layer ? &st->k[j] : &st->v[j - st->n_layer];
            size_t n = t->data_off - fp;
            memcpy(to_hollow ? dst + hp : dst + fp, to_hollow ? src + fp : src + hp, n);
            hp += n;
            fp = t->data_off + (size_t)t->data_bytes;
        }
    }
    size_t n = s->full_size - fp;
    memcpy(to_hollow ? dst + hp : dst + fp, to_hollow ? src + fp : src + hp, n);
}

size_t lcpp_state_hollow_size(const lcpp_state *s) {
    size_t n = s->full_size;
    for (uint32_t i = 0; i < s->n_stream; i++)
        for (uint32_t l = 0; l < s->streams[i].n_layer; l++)
            n -= (size_t)(s->streams[i].k[l].data_bytes + s->streams[i].v[l].data_bytes);
    return n;
}

void lcpp_state_make_hollow(const lcpp_state *s, const uint8_t *buf, uint8_t *out) {
    copy_skeleton(s, buf, out, 1);
}

void lcpp_state_expand(const lcpp_state *s, const uint8_t *hollow, uint8_t *out) {
    copy_skeleton(s, hollow, out, 0);
}

void lcpp_state_token_ids(const lcpp_state *s, const uint8_t *buf, int32_t *ids) {
    for (uint32_t i = 0; i < s->n_ids; i++) ids[i] = (int32_t)kvi_load_u32(buf + s->ids_off + 4ull * i);
}

/* ---- values ------------------------------------------------------------- */

void lcpp_quantize_q8_0(const float *x, uint32_t n, uint8_t *out) {
    /* as ggml's quantize_row_q8_0_ref: d = amax / 127, q = round(x / d) */
    for (uint32_t b = 0; b < n / LCPP_Q8_0_BLOCK; b++, x += LCPP_Q8_0_BLOCK, out += 34) {
        float amax = 0.0f;
        for (uint32_t i = 0; i < LCPP_Q8_0_BLOCK; i++) amax = fmaxf(amax, fabsf(x[i]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        kvi_store_u16(out, kvi_f32_to_f16(d));
        for (uint32_t i = 0; i < LCPP_Q8_0_BLOCK; i++) {
            /* finite values land in [-127, 127]; NaN and Inf (which a
             * damaged file may hold) must not reach the conversion */
            float q = roundf(x[i] * id);
            out[2 + i] = (uint8_t)(int8_t)(q >= -127.0f && q <= 127.0f ? q : q > 127.0f ? 127.0f : q < -127.0f ? -127.0f : 0.0f);
        }
    }
}

void lcpp_dequantize_q8_0(const uint8_t *in, uint32_t n, float *x) {
    for (uint32_t b = 0; b < n / LCPP_Q8_0_BLOCK; b++, in += 34) {
        float d = kvi_f16_to_f32(kvi_load_u16(in));
        for (uint32_t i = 0; i < LCPP_Q8_0_BLOCK; i++) *x++ = d * (float)(int8_t)in[2 + i];
    }
}

static float load_value(int32_t type, const uint8_t *p) {
    switch (type) {
    case LCPP_GGML_F32: return kvi_bits_f32(kvi_load_u32(p));
    case LCPP_GGML_BF16: return kvi_bf16_to_f32(kvi_load_u16(p));
    default: return kvi_f16_to_f32(kvi_load_u16(p));
    }
}

static void store_value(int32_t type, uint8_t *p, float x) {
    switch (type) {
    case LCPP_GGML_F32: kvi_store_u32(p, kvi_f32_bits(x)); break;
    case LCPP_GGML_BF16: kvi_store_u16(p, kvi_f32_to_bf16(x)); break;
    default: kvi_store_u16(p, kvi_f32_to_f16(x)); break;
    }
}

static void read_rows(const lcpp_kv_tensor *t, const uint8_t *p, uint32_t cells, float *out) {
    for (uint32_t c = 0; c < cells; c++, p += t->row_bytes, out += t->n_embd) {
        if (t->type == LCPP_GGML_Q8_0) {
            lcpp_dequantize_q8_0(p, t->n_embd, out);
            continue;
        }
        uint64_t es = row_bytes_of(t->type, 1);
        for (uint32_t j = 0; j < t->n_embd; j++) out[j] = load_value(t->type, p + es * j);
    }
}

static void write_rows(const lcpp_kv_tensor *t, const float *in, uint32_t cells, uint8_t *p) {
    for (uint32_t c = 0; c < cells; c++, p += t->row_bytes, in += t->n_embd) {
        if (t->type == LCPP_GGML_Q8_0) {
            lcpp_quantize_q8_0(in, t->n_embd, p);
            continue;
        }
        uint64_t es = row_bytes_of(t->type, 1);
        for (uint32_t j = 0; j < t->n_embd; j++) store_value(t->type, p + es * j, in[j]);
    }
}

void lcpp_state_read_float(const lcpp_state *s, const uint8_t *buf, uint32_t stream, int is_key,
                            float *out) {
    const lcpp_stream *st = &s->streams[stream];
    for (uint32_t l = 0; l < st->n_layer; l++) {
        const lcpp_kv_tensor *t = is_key ? &st->k[l] : &st->v[l];
        const uint8_t *p = buf + t->data_off;
        if (is_key || !st->v_trans) {
            read_rows(t, p, st->cell_count, out);
        } else { /* [n_embd][cells] -> [cells][n_embd] */
            for (uint32_t j = 0; j < t->n_embd; j++)
                for (uint32_t c = 0; c < st->cell_count; c++, p += t->el_bytes)
                    out[(size_t)c * t->n_embd + j] = load_value(t->type, p);
        }
        out += (size_t)st->cell_count * t->n_embd;
    }
}

void lcpp_state_write_float(const lcpp_state *s, uint32_t stream, int is_key, const float *in,
                             uint8_t *out) {
    const lcpp_stream *st = &s->streams[stream];
    for (uint32_t l = 0; l < st->n_layer; l++) {
        const lcpp_kv_tensor *t = is_key ? &st->k[l] : &st->v[l];
        uint8_t *p = out + t->data_off;
        if (is_key || !st->v_trans) {
            write_rows(t, in, st->cell_count, p);
        } else {
            for (uint32_t j = 0; j < t->n_embd; j++)
                for (uint32_t c = 0; c < st->cell_count; c++, p += t->el_bytes)
                    store_value(t->type, p, in[(size_t)c * t->n_embd + j]);
        }
        in += (size_t)st->cell_count * t->n_embd;
    }
}

/* ---- Hadamard rotation -------------------------------------------------- */

void lcpp_hadamard_rows(float *x, uint64_t n_values, uint32_t head_dim) {
    float scale = 1.0f / sqrtf((float)head_dim);
    for (uint64_t o = 0; o + head_dim <= n_values; o += head_dim) {
        float *v = x + o;
        for (uint32_t h = 1; h < head_dim; h *= 2)
            for (uint32_t i = 0; i < head_dim; i += 2 * h)
                for (uint32_t j = i; j < i + h; j++) {
                    float a = v[j], b = v[j + h];
                    v[j] = a + b;
                    v[j + h] = a - b;
                }
        for (uint32_t j = 0; j < head_dim; j++) v[j] *= scale;
    }
}

/* Sum over heads of sum_j E_j^2 / (sum_j E_j)^2, E_j the energy of channel
 * j: 1/head_dim for perfectly even channels, up to 1 for one outlier. */
static double channel_concentration(const double *energy, uint32_t width, uint32_t head_dim) {
    double c = 0;
    for (uint32_t h = 0; h < width; h += head_dim) {
        double s = 0, s2 = 0;
        for (uint32_t j = h; j < h + head_dim; j++) {
            s += energy[j];
            s2 += energy[j] * energy[j];
        }
        if (s > 0) c += s2 / (s * s);
    }
    return c;
}

int lcpp_rows_look_rotated(const float *rows, uint64_t n_rows, uint32_t width, uint32_t head_dim) {
    if (!head_dim || (head_dim & (head_dim - 1)) || width % head_dim || !n_rows) return 0;
    double *e = calloc(2 * (size_t)width, sizeof(double));
    float *tmp = malloc(sizeof(float) * width);
    int rotated = 0;
    if (e && tmp) {
        /* at most ~4096 rows, evenly spread: enough for a stable estimate */
        uint64_t step = n_rows / 4096 + 1;
        for (uint64_t r = 0; r < n_rows; r += step) {
            const float *x = rows + r * width;
            memcpy(tmp, x, sizeof(float) * width);
            lcpp_hadamard_rows(tmp, width, head_dim);
            for (uint32_t j = 0; j < width; j++) {
                e[j] += (double)x[j] * x[j];
                e[width + j] += (double)tmp[j] * tmp[j];
            }
        }
        rotated = channel_concentration(e + width, width, head_dim) > channel_concentration(e, width, head_dim);
    }
    free(e);
    free(tmp);
    return rotated;
}
