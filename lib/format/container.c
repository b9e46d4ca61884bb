/* container.c - layout, serialization and validation of the stream prefix
 * (header + section table) and the chunk index. Every field read from a
 * stream is range-checked before it is used to compute an offset. */
#include "format/container.h"

#include <libdeflate.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/basis.h"
#include "util/cache.h"
#include "util/endian.h"
#include "util/half.h"

static int mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (a && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}

static int add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return 0;
    *out = a + b;
    return 1;
}

void container_set_plan_section(container_header *h, uint64_t size) {
    h->flags |= CONTAINER_FLAG_PLAN;
    h->sections[SEC_PLAN].size = size;
}

kvtc_result container_layout(container_header *h, uint64_t chunk_data_size) {
    const kvtc_geometry *g = &h->geometry;
    uint64_t sizes[SEC_COUNT_MAX] = {0};
    uint64_t per_token = (uint64_t)g->n_layers * g->n_kv_heads * g->head_dim * kvtc_dtype_size(h->dtype);
    if (h->flags & CONTAINER_FLAG_POSITIONS)
        if (!mul_ok(h->n_tokens, 8, &sizes[SEC_POSITIONS])) return KVTC_ERR_TOO_LARGE;
    if (h->flags & CONTAINER_FLAG_TOKEN_IDS)
        if (!mul_ok(h->n_tokens, 4, &sizes[SEC_TOKEN_IDS])) return KVTC_ERR_TOO_LARGE;
    if (!mul_ok(container_raw_tokens(h), per_token, &sizes[SEC_RAW_K])) return KVTC_ERR_TOO_LARGE;
    sizes[SEC_RAW_V] = sizes[SEC_RAW_K];
    sizes[SEC_CHUNK_INDEX] = (uint64_t)h->n_chunks * CONTAINER_CHUNK_ENTRY;
    sizes[SEC_CHUNK_DATA] = chunk_data_size;
    if (h->flags & CONTAINER_FLAG_PLAN) sizes[SEC_PLAN] = h->sections[SEC_PLAN].size;
    uint64_t off = container_prefix_size_of(h);
    for (int s = 0; s < container_n_sections(h); s++) {
        h->sections[s].offset = off;
        h->sections[s].size = sizes[s];
        if (!add_ok(off, sizes[s], &off)) return KVTC_ERR_TOO_LARGE;
    }
    h->total_size = off;
    return KVTC_OK;
}

kvtc_result container_header_init(container_header *h, const struct kvtc_basis *b, uint32_t plan,
                                  const kvtc_geometry *g, kvtc_dtype dtype, uint64_t n_tokens,
                                  uint32_t n_sink, uint32_t n_window, uint32_t chunk_tokens, uint8_t codec,
                                  int has_positions) {
    return container_header_init_plan(h, b, &b->plans[plan], g, dtype, n_tokens, n_sink, n_window, chunk_tokens,
                                      codec, has_positions);
}

kvtc_result container_header_init_plan(container_header *h, const struct kvtc_basis *b,
                                       const struct basis_plan *pl, const kvtc_geometry *g, kvtc_dtype dtype,
                                       uint64_t n_tokens, uint32_t n_sink, uint32_t n_window,
                                       uint32_t chunk_tokens, uint8_t codec, int has_positions) {
    memset(h, 0, sizeof *h);
    h->version_major = KVTC_FORMAT_VERSION_MAJOR;
    h->version_minor = KVTC_FORMAT_VERSION_MINOR;
    h->geometry = *g;
    h->geometry.rope_dim = kvi_geometry_rope_dim(g);
    h->dtype = dtype;
    h->codec = codec;
    h->rope_removed = (uint8_t)b->rope_removed;
    h->recompute_layers = b->recompute_layers;
    h->n_tokens = n_tokens;
    uint64_t sink = n_sink < n_tokens ? n_sink : n_tokens;
    uint64_t win = n_window < n_tokens - sink ? n_window : n_tokens - sink;
    h->n_sink = (uint32_t)sink;
    h->n_window = (uint32_t)win;
    h->chunk_tokens = chunk_tokens;
    uint64_t coded = n_tokens - sink - win;
    uint64_t n_chunks = (coded + chunk_tokens - 1) / chunk_tokens;
    if (n_chunks > UINT32_MAX) return KVTC_ERR_TOO_LARGE;
    h->n_chunks = (uint32_t)n_chunks;
    h->transform_fingerprint = b->transform_fingerprint;
    h->plan_fingerprint = pl->fingerprint;
    h->plan_ratio = pl->target_ratio;
    h->flags = (has_positions ? CONTAINER_FLAG_POSITIONS : 0) |
               (b->recompute_layers ? CONTAINER_FLAG_TOKEN_IDS : 0);
    return KVTC_OK;
}

void container_write_prefix(const container_header *h, uint8_t *out) {
    int n_sec = container_n_sections(h);
    memset(out, 0, container_prefix_size_of(h));
    memcpy(out, KVTC_MAGIC_BYTES, 8);
    kvi_store_u16(out + 8, h->version_major);
    kvi_store_u16(out + 10, h->version_minor);
    kvi_store_u32(out + 12, CONTAINER_HEADER_SIZE);
    kvi_store_u32(out + 16, h->flags);
    kvi_store_u32(out + 20, h->geometry.n_layers);
    kvi_store_u32(out + 24, h->geometry.n_kv_heads);
    kvi_store_u32(out + 28, h->geometry.head_dim);
    kvi_store_u32(out + 32, kvi_geometry_rope_dim(&h->geometry));
    out[36] = (uint8_t)h->geometry.rope_type;
    out[37] = (uint8_t)h->dtype;
    out[38] = h->codec;
    out[39] = h->rope_removed;
    kvi_store_u32(out + 40, kvi_f32_bits(h->geometry.rope_theta));
    kvi_store_u32(out + 44, h->recompute_layers);
    kvi_store_u64(out + 48, h->n_tokens);
    kvi_store_u32(out + 56, h->n_sink);
    kvi_store_u32(out + 60, h->n_window);
    kvi_store_u32(out + 64, h->chunk_tokens);
    kvi_store_u32(out + 68, h->n_chunks);
    kvi_store_u64(out + 72, h->transform_fingerprint);
    kvi_store_u64(out + 80, h->plan_fingerprint);
    uint64_t rb;
    memcpy(&rb, &h->plan_ratio, 8);
    kvi_store_u64(out + 88, rb);
    kvi_store_u64(out + 96, h->total_size);
    kvi_store_u32(out + 104, (uint32_t)n_sec);
    if (h->flags & CONTAINER_FLAG_MODEL_FINGERPRINT) kvi_store_u64(out + 112, h->model_fingerprint);
    uint8_t *tab = out + CONTAINER_HEADER_SIZE;
    for (int s = 0; s < n_sec; s++) {
        uint8_t *e = tab + s * CONTAINER_SECTION_ENTRY;
        kvi_store_u64(e, h->sections[s].offset);
        kvi_store_u64(e + 8, h->sections[s].size);
        kvi_store_u32(e + 16, h->sections[s].crc32);
    }
    kvi_store_u32(out + 108, libdeflate_crc32(0, tab, (size_t)n_sec * CONTAINER_SECTION_ENTRY));
    kvi_store_u32(out + 124, libdeflate_crc32(0, out, 124));
}

static kvtc_result read_prefix(const uint8_t *buf, size_t size, container_header *h, int body) {
    memset(h, 0, sizeof *h);
    if (size < 8) return memcmp(buf, KVTC_MAGIC_BYTES, size) == 0 && size ? KVTC_ERR_TRUNCATED : KVTC_ERR_BAD_MAGIC;
    if (memcmp(buf, KVTC_MAGIC_BYTES, 8) != 0) return KVTC_ERR_BAD_MAGIC;
    if (size < CONTAINER_HEADER_SIZE) return KVTC_ERR_TRUNCATED;
    h->version_major = kvi_load_u16(buf + 8);
    h->version_minor = kvi_load_u16(buf + 10);
    if (h->version_major != KVTC_FORMAT_VERSION_MAJOR) return KVTC_ERR_UNSUPPORTED_VERSION;
    if (libdeflate_crc32(0, buf, 124) != kvi_load_u32(buf + 124)) return KVTC_ERR_CORRUPT;
    if (kvi_load_u32(buf + 12) != CONTAINER_HEADER_SIZE) return KVTC_ERR_CORRUPT;
    h->flags = kvi_load_u32(buf + 16);
    if (h->flags & ~(CONTAINER_FLAG_POSITIONS | CONTAINER_FLAG_TOKEN_IDS | CONTAINER_FLAG_PLAN |
                     CONTAINER_FLAG_MODEL_FINGERPRINT))
        return KVTC_ERR_CORRUPT;
    /* a 1.0 stream has neither a plan section nor a model fingerprint */
    if ((h->flags & (CONTAINER_FLAG_PLAN | CONTAINER_FLAG_MODEL_FINGERPRINT)) && h->version_minor < 1)
        return KVTC_ERR_CORRUPT;
    if (h->flags & CONTAINER_FLAG_MODEL_FINGERPRINT) {
        h->model_fingerprint = kvi_load_u64(buf + 112);
        if (h->model_fingerprint == 0) return KVTC_ERR_CORRUPT;
    }
    kvtc_geometry *g = &h->geometry;
    g->n_layers = kvi_load_u32(buf + 20);
    g->n_kv_heads = kvi_load_u32(buf + 24);
    g->head_dim = kvi_load_u32(buf + 28);
    g->rope_dim = kvi_load_u32(buf + 32);
    if (buf[36] > KVTC_ROPE_NEOX || buf[37] > KVTC_DTYPE_BF16) return KVTC_ERR_CORRUPT;
    g->rope_type = (kvtc_rope_type)buf[36];
    h->dtype = (kvtc_dtype)buf[37];
    h->codec = buf[38];
    h->rope_removed = buf[39];
    g->rope_theta = kvi_bits_f32(kvi_load_u32(buf + 40));
    if ((h->codec != CONTAINER_CODEC_DEFLATE && h->codec != CONTAINER_CODEC_RANS) || h->rope_removed > 1)
        return KVTC_ERR_CORRUPT;
    if (g->rope_type == KVTC_ROPE_NONE) {
        /* rope fields are meaningless without RoPE; accept what was written */
        if (!(g->rope_theta >= 0.0f) || g->rope_dim > g->head_dim) return KVTC_ERR_CORRUPT;
    }
    kvtc_result r = kvi_geometry_check(g);
    if (r == KVTC_ERR_TOO_LARGE) return r;
    if (r) return KVTC_ERR_CORRUPT;
    h->recompute_layers = kvi_load_u32(buf + 44);
    if (h->recompute_layers >= g->n_layers) return KVTC_ERR_CORRUPT;
    if (h->recompute_layers && !(h->flags & CONTAINER_FLAG_TOKEN_IDS)) return KVTC_ERR_CORRUPT;
    h->n_tokens = kvi_load_u64(buf + 48);
    if (h->n_tokens > KVTC_MAX_TOKENS) return KVTC_ERR_TOO_LARGE;
    h->n_sink = kvi_load_u32(buf + 56);
    h->n_window = kvi_load_u32(buf + 60);
    if ((uint64_t)h->n_sink + h->n_window > h->n_tokens) return KVTC_ERR_CORRUPT;
    h->chunk_tokens = kvi_load_u32(buf + 64);
    h->n_chunks = kvi_load_u32(buf + 68);
    uint64_t coded = container_coded_tokens(h);
    if (h->chunk_tokens == 0 || h->chunk_tokens > CONTAINER_MAX_CHUNK_TOKENS) return KVTC_ERR_CORRUPT;
    if (h->n_chunks != (coded + h->chunk_tokens - 1) / h->chunk_tokens) return KVTC_ERR_CORRUPT;
    h->transform_fingerprint = kvi_load_u64(buf + 72);
    h->plan_fingerprint = kvi_load_u64(buf + 80);
    uint64_t rb = kvi_load_u64(buf + 88);
    memcpy(&h->plan_ratio, &rb, 8);
    if (!isfinite(h->plan_ratio) || !(h->plan_ratio > 0)) return KVTC_ERR_CORRUPT;
    h->total_size = kvi_load_u64(buf + 96);
    int n_sec = container_n_sections(h);
    if (kvi_load_u32(buf + 104) != (uint32_t)n_sec) return KVTC_ERR_CORRUPT;
    if (size < container_prefix_size_of(h)) return KVTC_ERR_TRUNCATED;
    const uint8_t *tab = buf + CONTAINER_HEADER_SIZE;
    if (libdeflate_crc32(0, tab, (size_t)n_sec * CONTAINER_SECTION_ENTRY) != kvi_load_u32(buf + 108))
        return KVTC_ERR_CORRUPT;
    /* The table must match the layout the header implies exactly (the
     * sizes of chunk data and of the plan section are the table's). */
    container_header want = *h;
    uint64_t data_size = kvi_load_u64(tab + SEC_CHUNK_DATA * CONTAINER_SECTION_ENTRY + 8);
    if (h->flags & CONTAINER_FLAG_PLAN) {
        uint64_t plan_size = kvi_load_u64(tab + SEC_PLAN * CONTAINER_SECTION_ENTRY + 8);
        if (plan_size < container_plan_section_size(0, 0) || plan_size > CONTAINER_MAX_PLAN_SECTION)
            return KVTC_ERR_CORRUPT;
        want.sections[SEC_PLAN].size = plan_size;
    }
    r = container_layout(&want, data_size);
    if (r) return r == KVTC_ERR_TOO_LARGE ? KVTC_ERR_CORRUPT : r;
    for (int s = 0; s < n_sec; s++) {
        const uint8_t *e = tab + s * CONTAINER_SECTION_ENTRY;
        h->sections[s].offset = kvi_load_u64(e);
        h->sections[s].size = kvi_load_u64(e + 8);
        h->sections[s].crc32 = kvi_load_u32(e + 16);
        if (h->sections[s].offset != want.sections[s].offset || h->sections[s].size != want.sections[s].size)
            return KVTC_ERR_CORRUPT;
    }
    if (h->total_size != want.total_size) return KVTC_ERR_CORRUPT;
    if (!body) return KVTC_OK;
    if (size < h->total_size) return KVTC_ERR_TRUNCATED;
    for (int s = 0; s < n_sec; s++) {
        if (s == SEC_CHUNK_DATA) continue;
        const container_section_entry *e = &h->sections[s];
        if (libdeflate_crc32(0, buf + e->offset, (size_t)e->size) != e->crc32) return KVTC_ERR_CORRUPT;
    }
    return container_check_chunk_index(buf, h);
}

kvtc_result container_read_prefix(const uint8_t *buf, size_t size, container_header *h) {
    return read_prefix(buf, size, h, 1);
}

kvtc_result container_read_prefix_only(const uint8_t *buf, size_t size, container_header *h) {
    return read_prefix(buf, size, h, 0);
}

void container_write_chunk_entry(const container_chunk_entry *e, uint8_t *out) {
    kvi_store_u64(out, e->offset);
    kvi_store_u32(out + 8, e->size);
    kvi_store_u32(out + 12, e->crc32);
    kvi_store_u32(out + 16, e->n_tokens);
    kvi_store_u32(out + 20, e->payload_size);
}

kvtc_result container_read_chunk_entry(const uint8_t *buf, const container_header *h, uint32_t i,
                                       container_chunk_entry *e) {
    if (i >= h->n_chunks) return KVTC_ERR_INVALID_ARGUMENT;
    const uint8_t *p = buf + h->sections[SEC_CHUNK_INDEX].offset + (uint64_t)i * CONTAINER_CHUNK_ENTRY;
    e->offset = kvi_load_u64(p);
    e->size = kvi_load_u32(p + 8);
    e->crc32 = kvi_load_u32(p + 12);
    e->n_tokens = kvi_load_u32(p + 16);
    e->payload_size = kvi_load_u32(p + 20);
    uint64_t data = h->sections[SEC_CHUNK_DATA].size;
    if (e->offset > data || e->size > data - e->offset) return KVTC_ERR_CORRUPT;
    uint64_t coded = container_coded_tokens(h);
    uint64_t first = (uint64_t)i * h->chunk_tokens;
    uint64_t want = coded - first < h->chunk_tokens ? coded - first : h->chunk_tokens;
    if (e->n_tokens != want) return KVTC_ERR_CORRUPT;
    return KVTC_OK;
}

/* Issue 9 item 4 (decompression bomb): every index entry could point at the
 * same chunk, so a few KB decoded to gigabytes. The layout FORMAT.md states
 * (chunks back to back, in order, filling chunk data exactly) is enforced
 * here, and no chunk may claim more payload than its coded bytes can
 * produce (CONTAINER_MAX_EXPANSION), so the work and memory of a decode
 * are bounded by the stream's own size. */
kvtc_result container_check_chunk_index(const uint8_t *buf, const container_header *h) {
    uint64_t next = 0;
    for (uint32_t i = 0; i < h->n_chunks; i++) {
        container_chunk_entry e;
        kvtc_result r = container_read_chunk_entry(buf, h, i, &e);
        if (r) return r;
        if (e.offset != next) return KVTC_ERR_CORRUPT;
        if ((uint64_t)e.payload_size > (uint64_t)e.size * CONTAINER_MAX_EXPANSION + CONTAINER_EXPANSION_SLACK)
            return KVTC_ERR_CORRUPT;
        next += e.size;
    }
    return next == h->sections[SEC_CHUNK_DATA].size ? KVTC_OK : KVTC_ERR_CORRUPT;
}

/* Plan section: f64 target ratio, u32 n_groups_k, u32 n_groups_v, then per
 * group (K first, then V) u32 size, u8 bits, 3 zero bytes. */
void container_write_plan_section(const struct basis_plan *pl, uint8_t *out) {
    uint64_t rb;
    memcpy(&rb, &pl->target_ratio, 8);
    kvi_store_u64(out, rb);
    kvi_store_u32(out + 8, pl->k.n_groups);
    kvi_store_u32(out + 12, pl->v.n_groups);
    uint8_t *p = out + 16;
    for (int s = 0; s < 2; s++) {
        const plan_stream *ps = s ? &pl->v : &pl->k;
        for (uint32_t i = 0; i < ps->n_groups; i++, p += 8) {
            kvi_store_u32(p, ps->groups[i].size);
            p[4] = ps->groups[i].bits;
            p[5] = p[6] = p[7] = 0;
        }
    }
}

kvtc_result container_read_plan_section(const uint8_t *buf, const container_header *h,
                                        const struct kvtc_basis *b, struct basis_plan *out) {
    memset(out, 0, sizeof *out);
    if (!(h->flags & CONTAINER_FLAG_PLAN)) return KVTC_ERR_BASIS_MISMATCH;
    const container_section_entry *e = &h->sections[SEC_PLAN];
    const uint8_t *p = buf + e->offset;
    uint32_t n[2] = {kvi_load_u32(p + 8), kvi_load_u32(p + 12)};
    if (e->size != container_plan_section_size(n[0], n[1])) return KVTC_ERR_CORRUPT;
    uint64_t rb = kvi_load_u64(p);
    memcpy(&out->target_ratio, &rb, 8);
    if (!isfinite(out->target_ratio) || !(out->target_ratio > 0)) return KVTC_ERR_CORRUPT;
    p += 16;
    for (int s = 0; s < 2; s++) {
        dp_group *g = malloc(sizeof(dp_group) * (n[s] ? n[s] : 1));
        if (!g) { plan_stream_free(&out->k); return KVTC_ERR_OUT_OF_MEMORY; }
        int pad_ok = 1;
        for (uint32_t i = 0; i < n[s]; i++, p += 8) {
            g[i].size = kvi_load_u32(p);
            g[i].bits = p[4];
            pad_ok &= p[5] == 0 && p[6] == 0 && p[7] == 0;
        }
        const basis_stream *bs = s ? &b->v : &b->k;
        kvtc_result r = pad_ok ? plan_stream_from_groups(g, n[s], bs->p, bs->rank, s ? &out->v : &out->k)
                               : KVTC_ERR_CORRUPT;
        free(g);
        if (r) { plan_stream_free(&out->k); return r; }
    }
    basis_plan_update_fingerprint(b, out);
    return KVTC_OK;
}
