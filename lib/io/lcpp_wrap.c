/* lcpp_wrap.c - see lcpp_wrap.h; the byte layout is docs/FORMAT.md section 5. */
#include "io/lcpp_wrap.h"

#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

#include "util/cache.h"
#include "util/endian.h"

static const uint8_t wrap_magic[8] = {0x89, 'K', 'V', 'L', 'S', '\r', '\n', 0x1a};

/* No real state file expands more than this from its wrapper (the raw
 * sink and window tokens alone bound the ratio far below); a larger claim
 * is a hostile header, refused before anything is allocated. */
#define WRAP_MAX_EXPANSION 4096u

#define SET_ENTRY 16u

int lcpp_wrap_is_wrap(const void *buf, size_t size) {
    return buf && size >= 8 && memcmp(buf, wrap_magic, 8) == 0;
}

void lcpp_wrap_free(lcpp_wrap *w) {
    if (!w) return;
    lcpp_state_free(&w->state);
    free(w->skeleton_owned);
    free(w->set_data);
    free(w->set_size);
    free(w->set_stream);
    free(w->set_rotation);
    memset(w, 0, sizeof *w);
}

static uint32_t crc32_of(const uint8_t *p, size_t n) { return (uint32_t)libdeflate_crc32(0, p, n); }

/* A DEFLATE-stored skeleton (u64 raw size, raw DEFLATE) into
 * w->skeleton_owned. The raw size is bounded by the restored file's size,
 * itself bounded against the wrapper's before this runs; the stream must
 * fill it exactly. */
static kvtc_result inflate_skeleton(lcpp_wrap *w) {
    if (w->skeleton_stored < 8) return KVTC_ERR_CORRUPT;
    uint64_t raw = kvi_load_u64(w->skeleton);
    if (raw > w->full_size || raw > SIZE_MAX - 1) return KVTC_ERR_CORRUPT;
    uint8_t *o = malloc((size_t)raw + 1);
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    kvtc_result r = o && d ? KVTC_OK : KVTC_ERR_OUT_OF_MEMORY;
    if (!r && libdeflate_deflate_decompress(d, w->skeleton + 8, w->skeleton_stored - 8, o, (size_t)raw, NULL) !=
                  LIBDEFLATE_SUCCESS)
        r = KVTC_ERR_CORRUPT;
    libdeflate_free_decompressor(d);
    if (r) {
        free(o);
        return r;
    }
    w->skeleton_owned = o;
    w->skeleton = o;
    w->skeleton_size = (size_t)raw;
    return KVTC_OK;
}

kvtc_result lcpp_wrap_parse(const void *buf, size_t size, lcpp_wrap *w) {
    memset(w, 0, sizeof *w);
    if (!buf) return KVTC_ERR_INVALID_ARGUMENT;
    const uint8_t *b = buf;
    if (size < 8) return KVTC_ERR_TRUNCATED;
    if (!lcpp_wrap_is_wrap(buf, size)) return KVTC_ERR_BAD_MAGIC;
    if (size < LCPP_WRAP_HEADER_SIZE) return KVTC_ERR_TRUNCATED;
    w->version_major = kvi_load_u16(b + 8);
    w->version_minor = kvi_load_u16(b + 10);
    if (w->version_major != LCPP_WRAP_VERSION_MAJOR) return KVTC_ERR_UNSUPPORTED_VERSION;
    if (crc32_of(b, 60) != kvi_load_u32(b + 60)) return KVTC_ERR_CORRUPT;
    uint32_t header_size = kvi_load_u32(b + 12), flags = kvi_load_u32(b + 16);
    w->n_sets = kvi_load_u32(b + 20);
    w->full_size = kvi_load_u64(b + 24);
    uint64_t skel = kvi_load_u64(b + 32);
    w->total_size = kvi_load_u64(b + 40);
    if (header_size < LCPP_WRAP_HEADER_SIZE || (flags & ~LCPP_WRAP_FLAG_SKELETON_DEFLATE)) return KVTC_ERR_CORRUPT;
    if (w->total_size > size) return KVTC_ERR_TRUNCATED;
    if (w->total_size < size) return KVTC_ERR_CORRUPT;
    if (w->full_size / WRAP_MAX_EXPANSION > size) return KVTC_ERR_TOO_LARGE;
    if (w->n_sets > LCPP_MAX_STREAMS) return KVTC_ERR_CORRUPT;
    uint64_t table_end = header_size + (uint64_t)SET_ENTRY * w->n_sets;
    if (table_end > size || skel > size - table_end) return KVTC_ERR_TRUNCATED;
    if (crc32_of(b + header_size, (size_t)(table_end - header_size)) != kvi_load_u32(b + 52)) return KVTC_ERR_CORRUPT;
    w->skeleton = b + table_end;
    w->skeleton_size = w->skeleton_stored = (size_t)skel;
    if (crc32_of(w->skeleton, w->skeleton_size) != kvi_load_u32(b + 48)) return KVTC_ERR_CORRUPT;
    kvtc_result r;
    if ((flags & LCPP_WRAP_FLAG_SKELETON_DEFLATE) && (r = inflate_skeleton(w))) goto fail;
    w->set_data = calloc((size_t)w->n_sets + 1, sizeof *w->set_data);
    w->set_size = calloc((size_t)w->n_sets + 1, sizeof *w->set_size);
    w->set_stream = calloc((size_t)w->n_sets + 1, sizeof *w->set_stream);
    w->set_rotation = calloc((size_t)w->n_sets + 1, sizeof *w->set_rotation);
    if (!w->set_data || !w->set_size || !w->set_stream || !w->set_rotation) { r = KVTC_ERR_OUT_OF_MEMORY; goto fail; }
    uint64_t off = table_end + skel;
    for (uint32_t i = 0; i < w->n_sets; i++) {
        const uint8_t *e = b + header_size + (size_t)SET_ENTRY * i;
        uint64_t n = kvi_load_u64(e + 8);
        w->set_stream[i] = kvi_load_u32(e);
        w->set_rotation[i] = kvi_load_u32(e + 4);
        if ((w->set_rotation[i] & ~(LCPP_ROT_K | LCPP_ROT_V)) || (i && w->set_stream[i] <= w->set_stream[i - 1])) {
            r = KVTC_ERR_CORRUPT;
            goto fail;
        }
        if (n > size - off) { r = KVTC_ERR_TRUNCATED; goto fail; }
        w->set_data[i] = b + off;
        w->set_size[i] = (size_t)n;
        off += n;
    }
    if (off != size) { r = KVTC_ERR_CORRUPT; goto fail; }
    /* the skeleton is a hollow llama.cpp file; a sound header with a bad
     * skeleton is corrupt, whatever the state parser calls it */
    if ((r = lcpp_state_parse_hollow(w->skeleton, w->skeleton_size, kvi_load_u32(b + 56), &w->state))) {
        r = r == KVTC_ERR_OUT_OF_MEMORY ? r : KVTC_ERR_CORRUPT;
        goto fail;
    }
    if (w->state.full_size != w->full_size) { r = KVTC_ERR_CORRUPT; goto fail; }
    /* one set per stream with cells, in stream order */
    uint32_t k = 0;
    for (uint32_t s = 0; s < w->state.n_stream; s++) {
        if (!w->state.streams[s].cell_count) continue;
        if (k >= w->n_sets || w->set_stream[k] != s) { r = KVTC_ERR_CORRUPT; goto fail; }
        k++;
    }
    if (k != w->n_sets) { r = KVTC_ERR_CORRUPT; goto fail; }
    return KVTC_OK;
fail:
    lcpp_wrap_free(w);
    return r;
}

kvtc_result lcpp_wrap_check_geometry(const lcpp_state *s, uint32_t stream, const kvtc_geometry *g) {
    const lcpp_stream *st = &s->streams[stream];
    uint64_t e = (uint64_t)g->n_kv_heads * g->head_dim;
    if (st->n_layer != g->n_layers) return KVTC_ERR_GEOMETRY_MISMATCH;
    for (uint32_t l = 0; l < st->n_layer; l++)
        if (st->k[l].n_embd != e || st->v[l].n_embd != e) return KVTC_ERR_GEOMETRY_MISMATCH;
    return KVTC_OK;
}

/* The dtype of the kvtc stream, which is also how its raw sink/window
 * tokens are stored: the file's own type when all K/V share f16 or bf16
 * (raw tokens come back bit-exact); f16 for q8_0 (a q8_0 value d*q needs
 * up to 18 mantissa bits, so f16 rounds it by at most 2^-11 relative, far
 * below the q8_0 step it is requantized to, at half the bytes of f32);
 * f32 otherwise. */
static kvtc_dtype stream_dtype(const lcpp_stream *st) {
    int32_t t = st->k[0].type;
    for (uint32_t l = 0; l < st->n_layer; l++)
        if (st->k[l].type != t || st->v[l].type != t) return KVTC_DTYPE_F32;
    switch (t) {
    case LCPP_GGML_F16:
    case LCPP_GGML_Q8_0: return KVTC_DTYPE_F16;
    case LCPP_GGML_BF16: return KVTC_DTYPE_BF16;
    default: return KVTC_DTYPE_F32;
    }
}

void lcpp_wrap_cache_free(kvtc_cache *c) {
    if (!c) return;
    free(c->k);
    free(c->v);
    free(c->positions);
    free(c->token_ids);
    memset(c, 0, sizeof *c);
}

/* rows [L][cells][H*D] (llama.cpp) <-> cache [L][H][cells][D] (kvtc) */
static void rows_to_cache(const float *rows, kvtc_cache *c, void *dst) {
    const kvtc_geometry *g = &c->geometry;
    uint64_t n = c->n_tokens, H = g->n_kv_heads, D = g->head_dim;
    for (uint64_t l = 0; l < g->n_layers; l++)
        for (uint64_t t = 0; t < n; t++)
            for (uint64_t h = 0; h < H; h++)
                for (uint64_t d = 0; d < D; d++)
                    kvi_store_elem(dst, c->dtype, ((l * H + h) * n + t) * D + d, rows[(l * n + t) * H * D + h * D + d]);
}

static void cache_to_rows(const kvtc_cache *c, const void *src, float *rows) {
    const kvtc_geometry *g = &c->geometry;
    uint64_t n = c->n_tokens, H = g->n_kv_heads, D = g->head_dim;
    for (uint64_t l = 0; l < g->n_layers; l++)
        for (uint64_t t = 0; t < n; t++)
            for (uint64_t h = 0; h < H; h++)
                for (uint64_t d = 0; d < D; d++)
                    rows[(l * n + t) * H * D + h * D + d] = kvi_load_elem(src, c->dtype, ((l * H + h) * n + t) * D + d);
}

/* Allocate the arrays of a cache of n tokens (k, v, positions). */
static kvtc_result cache_alloc(kvtc_cache *c, const kvtc_geometry *g, kvtc_dtype dt, uint64_t n) {
    memset(c, 0, sizeof *c);
    c->geometry = *g;
    c->dtype = dt;
    c->n_tokens = n;
    uint64_t bytes = kvtc_cache_tensor_bytes(g, dt, n);
    if (!bytes || bytes > SIZE_MAX / 2) return KVTC_ERR_TOO_LARGE;
    c->k = malloc((size_t)bytes);
    c->v = malloc((size_t)bytes);
    c->positions = malloc(sizeof(int64_t) * (size_t)n);
    if (!c->k || !c->v || !c->positions) {
        lcpp_wrap_cache_free(c);
        return KVTC_ERR_OUT_OF_MEMORY;
    }
    return KVTC_OK;
}

static int pow2(uint32_t x) { return x && !(x & (x - 1)); }

/* Undo (or redo: H is an involution) the rotation `mask` of one of K/V. */
static void rotate_rows(float *rows, uint64_t n_values, const kvtc_geometry *g, uint32_t mask, int is_key) {
    if (mask & (is_key ? LCPP_ROT_K : LCPP_ROT_V)) lcpp_hadamard_rows(rows, n_values, g->head_dim);
}

/* The rotation of one of K/V under LCPP_ROT_AUTO; k_rot: what K got (K
 * is decided first). The energy statistic is reliable on keys (RoPE and
 * massive activations give them strong outlier channels) but not on
 * values, whose channels can be even: V follows K when both are quantized
 * (one llama.cpp build rotates every quantized cache), and the statistic
 * decides V only when V alone is quantized. */
static uint32_t detect_rotation(const lcpp_stream *st, const float *rows, const kvtc_geometry *g, int is_key,
                                uint32_t k_rot) {
    const lcpp_kv_tensor *t = is_key ? st->k : st->v;
    if (t[0].type != LCPP_GGML_Q8_0 || !pow2(g->head_dim)) return 0;
    if (!is_key && st->k[0].type == LCPP_GGML_Q8_0) return k_rot ? LCPP_ROT_V : 0;
    uint64_t n_rows = (uint64_t)st->cell_count * st->n_layer;
    return lcpp_rows_look_rotated(rows, n_rows, t[0].n_embd, g->head_dim) ? (is_key ? LCPP_ROT_K : LCPP_ROT_V) : 0;
}

kvtc_result lcpp_wrap_stream_cache(const lcpp_state *s, const uint8_t *buf, uint32_t stream,
                                    const kvtc_geometry *g, int want_ids, uint32_t *rotation, kvtc_cache *c) {
    memset(c, 0, sizeof *c);
    const lcpp_stream *st = &s->streams[stream];
    kvtc_result r = lcpp_wrap_check_geometry(s, stream, g);
    if (r) return r;
    if (!st->cell_count) return KVTC_ERR_INVALID_ARGUMENT;
    uint32_t rot = *rotation;
    if (rot != LCPP_ROT_AUTO && ((rot & ~(LCPP_ROT_K | LCPP_ROT_V)) || (rot && !pow2(g->head_dim))))
        return KVTC_ERR_INVALID_ARGUMENT;
    if ((r = cache_alloc(c, g, stream_dtype(st), st->cell_count))) return r;
    for (uint32_t i = 0; i < st->cell_count; i++) c->positions[i] = st->pos[i];
    if (want_ids) {
        int same = s->n_stream == 1 && s->n_ids == st->cell_count;
        for (uint32_t i = 0; same && i < st->cell_count; i++) same = st->pos[i] == (int64_t)i;
        if (!same) { lcpp_wrap_cache_free(c); return KVTC_ERR_UNSUPPORTED; }
        if (!(c->token_ids = malloc(sizeof(int32_t) * st->cell_count))) { lcpp_wrap_cache_free(c); return KVTC_ERR_OUT_OF_MEMORY; }
        lcpp_state_token_ids(s, buf, c->token_ids);
    }
    float *rows = malloc(sizeof(float) * (size_t)st->cell_count * st->k[0].n_embd * st->n_layer);
    if (!rows) { lcpp_wrap_cache_free(c); return KVTC_ERR_OUT_OF_MEMORY; }
    uint64_t n_values = (uint64_t)st->cell_count * st->k[0].n_embd * st->n_layer;
    uint32_t done = 0;
    for (int key = 1; key >= 0; key--) {
        lcpp_state_read_float(s, buf, stream, key, rows);
        uint32_t m = rot == LCPP_ROT_AUTO ? detect_rotation(st, rows, g, key, done & LCPP_ROT_K)
                                           : rot & (key ? LCPP_ROT_K : LCPP_ROT_V);
        rotate_rows(rows, n_values, g, m, key);
        rows_to_cache(rows, c, key ? c->k : c->v);
        done |= m;
    }
    free(rows);
    *rotation = done;
    return KVTC_OK;
}

/* The skeleton as u64 raw size + raw DEFLATE (level 12), malloc'd, with its
 * size in *stored; NULL when that is not smaller than the raw skeleton (or
 * out of memory: the caller stores the skeleton as is, which is valid). */
static uint8_t *deflate_skeleton(const uint8_t *raw, size_t n, size_t *stored) {
    struct libdeflate_compressor *c = libdeflate_alloc_compressor(12);
    size_t cap = c ? libdeflate_deflate_compress_bound(c, n) : 0;
    uint8_t *z = c ? malloc(cap + 8) : NULL;
    size_t zn = z ? libdeflate_deflate_compress(c, raw, n, z + 8, cap) : 0;
    libdeflate_free_compressor(c);
    if (!zn || zn + 8 >= n) {
        free(z);
        return NULL;
    }
    kvi_store_u64(z, n);
    *stored = zn + 8;
    return z;
}

kvtc_result lcpp_wrap_compress(const kvtc_basis *b, const kvtc_encode_options *eo, uint32_t rotation,
                                const void *state, size_t size, void **out, size_t *out_size) {
    *out = NULL;
    *out_size = 0;
    lcpp_state s;
    kvtc_result r = lcpp_state_parse(state, size, &s);
    if (r) return r;
    const kvtc_geometry *g = kvtc_basis_geometry(b);
    uint32_t n_sets = 0;
    for (uint32_t i = 0; i < s.n_stream; i++) {
        if (!s.streams[i].cell_count) continue;
        if ((r = lcpp_wrap_check_geometry(&s, i, g))) { lcpp_state_free(&s); return r; }
        n_sets++;
    }
    void **sets = calloc((size_t)n_sets + 1, sizeof *sets);
    size_t *set_size = calloc((size_t)n_sets + 1, sizeof *set_size);
    uint32_t *set_stream = calloc((size_t)n_sets + 1, sizeof *set_stream);
    uint32_t *set_rot = calloc((size_t)n_sets + 1, sizeof *set_rot);
    kvtc_encoder *enc = NULL;
    uint8_t *o = NULL, *hollow = NULL, *zskel = NULL;
    if (!sets || !set_size || !set_stream || !set_rot) { r = KVTC_ERR_OUT_OF_MEMORY; goto done; }
    if ((r = kvtc_encoder_alloc(b, eo, &enc))) goto done;
    uint32_t k = 0;
    for (uint32_t i = 0; i < s.n_stream; i++) {
        if (!s.streams[i].cell_count) continue;
        kvtc_cache c;
        set_rot[k] = rotation;
        if ((r = lcpp_wrap_stream_cache(&s, state, i, g, kvtc_basis_recomputed_layers(b) > 0, &set_rot[k], &c)))
            goto done;
        size_t cap = kvtc_compress_bound(enc, &c);
        sets[k] = cap ? malloc(cap) : NULL;
        r = !cap ? KVTC_ERR_TOO_LARGE : !sets[k] ? KVTC_ERR_OUT_OF_MEMORY
                                                 : kvtc_compress(enc, &c, sets[k], cap, &set_size[k]);
        lcpp_wrap_cache_free(&c);
        if (r) goto done;
        set_stream[k++] = i;
    }
    /* the skeleton, DEFLATE-stored when that is smaller (token records
     * and cell positions compress several-fold) */
    size_t raw_skel = lcpp_state_hollow_size(&s);
    if (!(hollow = malloc(raw_skel + 1))) { r = KVTC_ERR_OUT_OF_MEMORY; goto done; }
    lcpp_state_make_hollow(&s, state, hollow);
    uint32_t flags = 0;
    size_t skel = raw_skel;
    if ((zskel = deflate_skeleton(hollow, raw_skel, &skel))) flags = LCPP_WRAP_FLAG_SKELETON_DEFLATE;
    else skel = raw_skel;
    size_t total = LCPP_WRAP_HEADER_SIZE + (size_t)SET_ENTRY * n_sets + skel;
    for (uint32_t i = 0; i < n_sets; i++) total += set_size[i];
    if (!(o = calloc(1, total))) { r = KVTC_ERR_OUT_OF_MEMORY; goto done; }
    uint8_t *table = o + LCPP_WRAP_HEADER_SIZE, *sk = table + (size_t)SET_ENTRY * n_sets, *p = sk + skel;
    memcpy(sk, zskel ? zskel : hollow, skel);
    for (uint32_t i = 0; i < n_sets; i++) {
        kvi_store_u32(table + SET_ENTRY * i, set_stream[i]);
        kvi_store_u32(table + SET_ENTRY * i + 4, set_rot[i]);
        kvi_store_u64(table + SET_ENTRY * i + 8, set_size[i]);
        memcpy(p, sets[i], set_size[i]);
        p += set_size[i];
    }
    memcpy(o, wrap_magic, 8);
    kvi_store_u16(o + 8, LCPP_WRAP_VERSION_MAJOR);
    kvi_store_u16(o + 10, LCPP_WRAP_VERSION_MINOR);
    kvi_store_u32(o + 12, LCPP_WRAP_HEADER_SIZE);
    kvi_store_u32(o + 16, flags);
    kvi_store_u32(o + 20, n_sets);
    kvi_store_u64(o + 24, s.full_size);
    kvi_store_u64(o + 32, skel);
    kvi_store_u64(o + 40, total);
    kvi_store_u32(o + 56, lcpp_state_shape(&s));
    kvi_store_u32(o + 48, crc32_of(sk, skel));
    kvi_store_u32(o + 52, crc32_of(table, (size_t)SET_ENTRY * n_sets));
    kvi_store_u32(o + 60, crc32_of(o, 60));
    *out = o;
    *out_size = total;
    o = NULL;
done:
    free(o);
    free(hollow);
    free(zskel);
    for (uint32_t i = 0; sets && i < n_sets; i++) free(sets[i]);
    free(sets);
    free(set_size);
    free(set_stream);
    free(set_rot);
    kvtc_encoder_free(enc);
    lcpp_state_free(&s);
    return r;
}

/* Decode set i into the restored file out. */
static kvtc_result decode_set(const lcpp_wrap *w, kvtc_decoder *dec, uint32_t i, uint8_t *out) {
    uint32_t si = w->set_stream[i];
    const lcpp_stream *st = &w->state.streams[si];
    kvtc_stream_info info = {.struct_size = sizeof info};
    kvtc_result r = kvtc_stream_get_info(w->set_data[i], w->set_size[i], &info);
    if (r) return r;
    if (info.n_tokens != st->cell_count || lcpp_wrap_check_geometry(&w->state, si, &info.geometry) ||
        (w->set_rotation[i] && !pow2(info.geometry.head_dim)))
        return KVTC_ERR_CORRUPT;
    kvtc_cache c;
    if ((r = cache_alloc(&c, &info.geometry, info.dtype, info.n_tokens))) return r;
    float *rows = malloc(sizeof(float) * (size_t)st->cell_count * st->k[0].n_embd * st->n_layer);
    if (!rows) { r = KVTC_ERR_OUT_OF_MEMORY; goto done; }
    if ((r = kvtc_decompress(dec, w->set_data[i], w->set_size[i], &c))) goto done;
    for (uint32_t t = 0; t < st->cell_count; t++)
        if (c.positions[t] != st->pos[t]) { r = KVTC_ERR_CORRUPT; goto done; }
    uint64_t n_values = (uint64_t)st->cell_count * st->k[0].n_embd * st->n_layer;
    for (int key = 1; key >= 0; key--) {
        cache_to_rows(&c, key ? c.k : c.v, rows);
        rotate_rows(rows, n_values, &info.geometry, w->set_rotation[i], key);
        lcpp_state_write_float(&w->state, si, key, rows, out);
    }
done:
    free(rows);
    lcpp_wrap_cache_free(&c);
    return r;
}

kvtc_result lcpp_wrap_decompress(const kvtc_basis *b, const kvtc_decode_options *dopt, const void *buf,
                                  size_t size, void **out, size_t *out_size) {
    *out = NULL;
    *out_size = 0;
    lcpp_wrap w;
    kvtc_result r = lcpp_wrap_parse(buf, size, &w);
    if (r) return r;
    kvtc_decoder *dec = NULL;
    uint8_t *o = NULL;
    /* every embedded stream's header before the big allocation */
    for (uint32_t i = 0; i < w.n_sets; i++) {
        kvtc_stream_info info = {.struct_size = sizeof info};
        if ((r = kvtc_stream_get_info(w.set_data[i], w.set_size[i], &info))) goto done;
        if (info.n_tokens != w.state.streams[w.set_stream[i]].cell_count ||
            lcpp_wrap_check_geometry(&w.state, w.set_stream[i], &info.geometry)) { r = KVTC_ERR_CORRUPT; goto done; }
    }
    if (w.full_size > SIZE_MAX || !(o = malloc((size_t)w.full_size))) { r = KVTC_ERR_OUT_OF_MEMORY; goto done; }
    lcpp_state_expand(&w.state, w.skeleton, o);
    if (w.n_sets && (r = kvtc_decoder_alloc(b, dopt, &dec))) goto done;
    for (uint32_t i = 0; i < w.n_sets; i++)
        if ((r = decode_set(&w, dec, i, o))) goto done;
    *out = o;
    *out_size = (size_t)w.full_size;
    o = NULL;
done:
    free(o);
    kvtc_decoder_free(dec);
    lcpp_wrap_free(&w);
    return r;
}
