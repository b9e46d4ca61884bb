/* store.c - the public kvtc_store API: chunking, keys, records and codecs
 * over a backend (backend.h) with an optional memory tier (memory_tier.h).
 *
 * A chunk is coded alone so that it decodes alone: chunk 0 keeps the first
 * n_sink tokens raw (attention sinks, outside the basis' calibration), every
 * chunk has n_window = 0, and chunks after the first carry their explicit
 * positions (i*C ...) so that RoPE is removed and re-applied where it was. */
#include "kvtc_store.h"

#include <stdlib.h>
#include <string.h>

#include "store/backend.h"
#include "store/keys.h"
#include "store/memory_tier.h"
#include "store/record.h"
#include "util/cache.h"

#define MAX_CHUNK_TOKENS (1u << 20)

struct kvtc_store {
    store_backend *be;
    memory_tier *mem;
    const kvtc_basis *basis;
    kvtc_geometry g;
    kvtc_dtype dtype;
    uint32_t C, codec;
    size_t es;           /* bytes per element */
    size_t tok_bytes;    /* bytes of one token in one [L][H] row block: head_dim * es */
    uint64_t lh;         /* n_layers * n_kv_heads */
    uint8_t ns[KVTC_SHA256_SIZE];
    kvtc_encoder *enc_first, *enc_rest; /* chunk 0 (with sinks), later chunks */
    kvtc_decoder *dec;
    kvtc_store_stats st;
    /* scratch of one chunk */
    uint8_t *ck, *cv;
    int64_t *pos;
    int32_t *ids;
    uint8_t *rec;
    size_t rec_cap;
};

void kvtc_store_options_init(kvtc_store_options *o) {
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->chunk_tokens = KVTC_STORE_DEFAULT_CHUNK_TOKENS;
    o->codec = KVTC_STORE_CODEC_KVTC;
    o->ratio = 20.0;
    o->entropy_codec = KVTC_CODEC_DEFLATE;
    o->n_sink = 4;
    o->timeout_ms = 2000;
}

void kvtc_store_close(kvtc_store *s) {
    if (!s) return;
    if (s->be) s->be->ops->close(s->be);
    memory_tier_free(s->mem);
    kvtc_encoder_free(s->enc_first);
    kvtc_encoder_free(s->enc_rest);
    kvtc_decoder_free(s->dec);
    free(s->ck);
    free(s->cv);
    free(s->pos);
    free(s->ids);
    free(s->rec);
    free(s);
}

/* The chunk as a kvtc_cache over the scratch buffers. */
static kvtc_cache chunk_cache(kvtc_store *s, uint64_t index) {
    kvtc_cache c;
    memset(&c, 0, sizeof c);
    c.geometry = s->g;
    c.dtype = s->dtype;
    c.n_tokens = s->C;
    c.k = s->ck;
    c.v = s->cv;
    if (index > 0) {
        for (uint32_t t = 0; t < s->C; t++) s->pos[t] = (int64_t)(index * s->C + t);
        c.positions = s->pos;
    }
    return c;
}

static kvtc_result open_codec(kvtc_store *s, const kvtc_store_options *o, store_identity *id) {
    kvtc_result r = KVTC_OK;
    if (o->codec == KVTC_STORE_CODEC_RAW) {
        s->rec_cap = store_record_size(s->C, 2 * s->lh * s->C * s->tok_bytes);
        return s->rec_cap ? KVTC_OK : KVTC_ERR_TOO_LARGE;
    }
    if (!s->basis) return KVTC_ERR_INVALID_ARGUMENT;
    if (!kvtc_geometry_equal(kvtc_basis_geometry(s->basis), &s->g)) return KVTC_ERR_GEOMETRY_MISMATCH;
    if (o->n_sink > s->C) return KVTC_ERR_INVALID_ARGUMENT;
    uint32_t plan = 0;
    kvtc_plan_info pi;
    if ((r = kvtc_basis_find_plan(s->basis, o->ratio, &plan)) != KVTC_OK) return r;
    if ((r = kvtc_basis_plan_info(s->basis, plan, &pi)) != KVTC_OK) return r;
    id->basis_fingerprint = kvtc_basis_fingerprint(s->basis);
    id->plan_ratio = pi.target_ratio;
    id->n_sink = o->n_sink;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = o->ratio;
    eo.n_sink = o->n_sink;
    eo.n_window = 0;
    eo.chunk_tokens = s->C;
    eo.n_threads = o->n_threads;
    eo.entropy_codec = o->entropy_codec ? o->entropy_codec : KVTC_CODEC_DEFLATE;
    if ((r = kvtc_encoder_alloc(s->basis, &eo, &s->enc_first)) != KVTC_OK) return r;
    eo.n_sink = 0;
    if ((r = kvtc_encoder_alloc(s->basis, &eo, &s->enc_rest)) != KVTC_OK) return r;
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.n_threads = o->n_threads;
    dopt.recompute = o->recompute;
    dopt.recompute_user = o->recompute_user;
    if ((r = kvtc_decoder_alloc(s->basis, &dopt, &s->dec)) != KVTC_OK) return r;
    /* the bound of a chunk with positions (the larger of the two encoders) */
    kvtc_cache c = chunk_cache(s, 1);
    size_t b0 = kvtc_compress_bound(s->enc_first, &c), b1 = kvtc_compress_bound(s->enc_rest, &c);
    size_t bound = b0 > b1 ? b0 : b1;
    if (!bound) return KVTC_ERR_TOO_LARGE;
    s->rec_cap = store_record_size(s->C, bound);
    return s->rec_cap ? KVTC_OK : KVTC_ERR_TOO_LARGE;
}

kvtc_result kvtc_store_open(const char *uri, const kvtc_basis *basis, const kvtc_geometry *geometry,
                            kvtc_dtype dtype, const kvtc_store_options *opts, kvtc_store **out) {
    if (!out) return KVTC_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!uri || !geometry) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_store_options o;
    kvtc_store_options_init(&o);
    if (opts) {
        if (opts->struct_size != sizeof o) return KVTC_ERR_INVALID_ARGUMENT;
        o = *opts;
    }
    if (o.chunk_tokens == 0 || o.chunk_tokens > MAX_CHUNK_TOKENS) return KVTC_ERR_INVALID_ARGUMENT;
    if (o.codec != KVTC_STORE_CODEC_KVTC && o.codec != KVTC_STORE_CODEC_RAW) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = kvtc_geometry_check(geometry);
    if (r) return r;
    if (!kvtc_dtype_size(dtype)) return KVTC_ERR_INVALID_ARGUMENT;

    kvtc_store *s = calloc(1, sizeof *s);
    if (!s) return KVTC_ERR_OUT_OF_MEMORY;
    s->basis = basis;
    s->g = *geometry;
    s->dtype = dtype;
    s->C = o.chunk_tokens;
    s->codec = o.codec;
    s->es = kvtc_dtype_size(dtype);
    s->tok_bytes = (size_t)geometry->head_dim * s->es;
    s->lh = (uint64_t)geometry->n_layers * geometry->n_kv_heads;
    if (!kvtc_cache_tensor_bytes(geometry, dtype, s->C)) { kvtc_store_close(s); return KVTC_ERR_TOO_LARGE; }
    size_t chunk_bytes = (size_t)kvtc_cache_tensor_bytes(geometry, dtype, s->C);
    s->ck = malloc(chunk_bytes);
    s->cv = malloc(chunk_bytes);
    s->pos = malloc(sizeof(int64_t) * s->C);
    s->ids = malloc(sizeof(int32_t) * s->C);
    if (!s->ck || !s->cv || !s->pos || !s->ids) { kvtc_store_close(s); return KVTC_ERR_OUT_OF_MEMORY; }

    store_identity id;
    memset(&id, 0, sizeof id);
    id.model_fingerprint = o.model_fingerprint ? o.model_fingerprint
                                               : (o.model_name ? store_name_fingerprint(o.model_name) : 0);
    id.geometry = *geometry;
    id.dtype = dtype;
    id.chunk_tokens = s->C;
    id.codec = s->codec;
    if ((r = open_codec(s, &o, &id)) != KVTC_OK) { kvtc_store_close(s); return r; }
    store_namespace(&id, s->ns);
    s->rec = malloc(s->rec_cap);
    if (!s->rec) { kvtc_store_close(s); return KVTC_ERR_OUT_OF_MEMORY; }
    if (o.memory_bytes && (r = memory_tier_alloc(o.memory_bytes, &s->mem)) != KVTC_OK) {
        kvtc_store_close(s);
        return r;
    }

    store_backend_config cfg = {o.max_bytes, o.ttl_seconds, o.timeout_ms ? o.timeout_ms : 2000};
    if (!strncmp(uri, "file:", 5)) r = store_file_open(uri + 5, &cfg, &s->be);
    else if (!strncmp(uri, "redis://", 8)) r = store_redis_open(uri + 8, &cfg, &s->be);
    else r = KVTC_ERR_INVALID_ARGUMENT;
    if (r) { kvtc_store_close(s); return r; }
    *out = s;
    return KVTC_OK;
}

/* keys[32 * i] for chunks 0..n_chunks-1 (malloc'd) */
static kvtc_result chunk_keys(const kvtc_store *s, const int32_t *tokens, uint64_t n_chunks, uint8_t **keys) {
    *keys = malloc(32 * (size_t)(n_chunks ? n_chunks : 1));
    if (!*keys) return KVTC_ERR_OUT_OF_MEMORY;
    const uint8_t *prev = s->ns;
    for (uint64_t i = 0; i < n_chunks; i++) {
        store_chain_key(prev, tokens + i * s->C, s->C, *keys + 32 * i);
        prev = *keys + 32 * i;
    }
    return KVTC_OK;
}

/* present[i] for every key: the memory tier first, the rest in one backend batch. */
static kvtc_result keys_present(kvtc_store *s, const uint8_t *keys, uint64_t n, uint8_t *present) {
    uint8_t *ask = malloc(32 * (size_t)(n ? n : 1));
    uint8_t *ans = malloc((size_t)(n ? n : 1));
    uint64_t *where = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    if (!ask || !ans || !where) { free(ask); free(ans); free(where); return KVTC_ERR_OUT_OF_MEMORY; }
    uint64_t m = 0;
    for (uint64_t i = 0; i < n; i++) {
        present[i] = s->mem && memory_tier_has(s->mem, keys + 32 * i);
        if (!present[i]) {
            memcpy(ask + 32 * m, keys + 32 * i, 32);
            where[m++] = i;
        }
    }
    kvtc_result r = m ? s->be->ops->exists(s->be, ask, (size_t)m, ans) : KVTC_OK;
    if (r == KVTC_OK)
        for (uint64_t j = 0; j < m; j++) present[where[j]] = ans[j];
    else
        s->st.backend_errors++;
    free(ask);
    free(ans);
    free(where);
    return r;
}

static kvtc_result check_cache(const kvtc_store *s, const kvtc_cache *c) {
    kvtc_result r = kvtc_cache_check(c);
    if (r) return r;
    if (!kvtc_geometry_equal(&c->geometry, &s->g) || c->dtype != s->dtype) return KVTC_ERR_GEOMETRY_MISMATCH;
    return KVTC_OK;
}

/* Encode chunk `index` of cache into s->rec; *size receives the record size. */
static kvtc_result encode_chunk(kvtc_store *s, const kvtc_cache *cache, const int32_t *tokens, uint64_t index,
                                const uint8_t *key, size_t *size) {
    uint64_t N = cache->n_tokens;
    size_t row = s->C * s->tok_bytes;
    for (uint64_t lh = 0; lh < s->lh; lh++) {
        size_t src = (size_t)((lh * N + index * s->C) * s->tok_bytes);
        memcpy(s->ck + lh * row, (const uint8_t *)cache->k + src, row);
        memcpy(s->cv + lh * row, (const uint8_t *)cache->v + src, row);
    }
    const int32_t *chunk_tokens = tokens + index * s->C;
    memcpy(s->ids, chunk_tokens, sizeof(int32_t) * s->C);
    store_record_expect e = {s->ns, key, index, s->codec, chunk_tokens, s->C};
    size_t off = store_record_payload_offset(s->C), payload = 0;
    if (s->codec == KVTC_STORE_CODEC_RAW) {
        payload = 2 * (size_t)s->lh * row;
        memcpy(s->rec + off, s->ck, (size_t)s->lh * row);
        memcpy(s->rec + off + s->lh * row, s->cv, (size_t)s->lh * row);
    } else {
        kvtc_cache c = chunk_cache(s, index);
        if (kvtc_basis_recomputed_layers(s->basis) > 0) c.token_ids = s->ids;
        kvtc_result r = kvtc_compress(index ? s->enc_rest : s->enc_first, &c, s->rec + off, s->rec_cap - off - 4, &payload);
        if (r) return r;
    }
    store_record_write_header(s->rec, &e, payload);
    *size = store_record_size(s->C, payload);
    store_record_seal(s->rec, *size);
    return KVTC_OK;
}

kvtc_result kvtc_store_put(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens, const kvtc_cache *cache,
                           uint64_t *n_stored) {
    if (n_stored) *n_stored = 0;
    if (!s || (!tokens && n_tokens)) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = check_cache(s, cache);
    if (r) return r;
    if (cache->n_tokens < n_tokens) return KVTC_ERR_INVALID_ARGUMENT;
    if (cache->positions)
        for (uint64_t i = 0; i < n_tokens; i++)
            if (cache->positions[i] != (int64_t)i) return KVTC_ERR_INVALID_ARGUMENT;
    uint64_t n_chunks = n_tokens / s->C;
    if (!n_chunks) return KVTC_OK;
    uint8_t *keys = NULL, *present = malloc((size_t)n_chunks);
    if (!present) return KVTC_ERR_OUT_OF_MEMORY;
    if ((r = chunk_keys(s, tokens, n_chunks, &keys)) != KVTC_OK) { free(present); return r; }
    r = keys_present(s, keys, n_chunks, present);
    for (uint64_t i = 0; r == KVTC_OK && i < n_chunks; i++) {
        if (present[i]) { s->st.chunks_already++; continue; }
        size_t size = 0;
        if ((r = encode_chunk(s, cache, tokens, i, keys + 32 * i, &size)) != KVTC_OK) break;
        if ((r = s->be->ops->put(s->be, keys + 32 * i, s->rec, size)) != KVTC_OK) {
            s->st.backend_errors++;
            break;
        }
        if (s->mem) (void)memory_tier_put(s->mem, keys + 32 * i, s->rec, size); /* a cache: failure is harmless */
        s->st.chunks_put++;
        s->st.bytes_written += size;
        s->st.raw_bytes_written += 2 * s->lh * s->C * s->tok_bytes;
        if (n_stored) (*n_stored)++;
    }
    free(keys);
    free(present);
    return r;
}

kvtc_result kvtc_store_lookup(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens, uint64_t *n_hit) {
    if (n_hit) *n_hit = 0;
    if (!s || !n_hit || (!tokens && n_tokens)) return KVTC_ERR_INVALID_ARGUMENT;
    s->st.lookups++;
    uint64_t n_chunks = n_tokens / s->C;
    if (!n_chunks) return KVTC_OK;
    uint8_t *keys = NULL, *present = malloc((size_t)n_chunks);
    if (!present) return KVTC_ERR_OUT_OF_MEMORY;
    kvtc_result r = chunk_keys(s, tokens, n_chunks, &keys);
    if (r == KVTC_OK) r = keys_present(s, keys, n_chunks, present);
    if (r == KVTC_OK) {
        uint64_t i = 0;
        while (i < n_chunks && present[i]) i++;
        *n_hit = i * s->C;
    }
    free(keys);
    free(present);
    return r;
}

/* A record that failed its checks: count it and remove it, so that the next
 * put stores a good one (best effort: a failure here changes nothing). */
static void reject(kvtc_store *s, const uint8_t *key) {
    s->st.errors++;
    if (s->mem) memory_tier_del(s->mem, key);
    (void)s->be->ops->del(s->be, key);
}

/* Decode a checked payload into the chunk scratch. */
static kvtc_result decode_payload(kvtc_store *s, uint64_t index, const uint8_t *p, size_t n) {
    size_t half = (size_t)s->lh * s->C * s->tok_bytes;
    if (s->codec == KVTC_STORE_CODEC_RAW) {
        if (n != 2 * half) return KVTC_ERR_CORRUPT;
        memcpy(s->ck, p, half);
        memcpy(s->cv, p + half, half);
        return KVTC_OK;
    }
    kvtc_stream_info info;
    kvtc_result r = kvtc_stream_get_info(p, n, &info);
    if (r) return r;
    if (info.n_tokens != s->C || info.dtype != s->dtype) return KVTC_ERR_CORRUPT;
    kvtc_cache c = chunk_cache(s, index);
    c.positions = NULL; /* decoded from the stream; not needed back */
    return kvtc_decompress(s->dec, p, n, &c);
}

kvtc_result kvtc_store_get(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens,
                           const kvtc_store_layout *layout, uint64_t *n_restored) {
    if (n_restored) *n_restored = 0;
    if (!s || !layout || (!tokens && n_tokens)) return KVTC_ERR_INVALID_ARGUMENT;
    if (layout->struct_size != sizeof *layout || layout->kind != KVTC_STORE_LAYOUT_CONTIGUOUS) return KVTC_ERR_UNSUPPORTED;
    kvtc_cache *out = layout->cache;
    kvtc_result r = check_cache(s, out);
    if (r) return r;
    uint64_t n = out->n_tokens;
    uint64_t n_chunks = (n + s->C - 1) / s->C;
    if (n_chunks * s->C > n_tokens) return KVTC_ERR_INVALID_ARGUMENT;
    if (!n_chunks) return KVTC_OK;
    uint8_t *keys = NULL;
    if ((r = chunk_keys(s, tokens, n_chunks, &keys)) != KVTC_OK) return r;
    uint64_t done = 0;
    for (uint64_t i = 0; i < n_chunks; i++) {
        const uint8_t *key = keys + 32 * i;
        uint8_t *val = NULL;
        size_t len = 0;
        int found = 0, from_memory = 0;
        const uint8_t *rec = s->mem ? memory_tier_get(s->mem, key, &len) : NULL;
        if (rec) {
            from_memory = 1;
        } else {
            if ((r = s->be->ops->get(s->be, key, &val, &len, &found)) != KVTC_OK) {
                s->st.backend_errors++;
                break;
            }
            rec = found ? val : NULL;
        }
        if (!rec) { s->st.miss_chunks++; break; }
        s->st.bytes_read += len;
        store_record_expect e = {s->ns, key, i, s->codec, tokens + i * s->C, s->C};
        const uint8_t *payload = NULL;
        size_t payload_len = 0;
        kvtc_result cr = store_record_check(rec, len, &e, &payload, &payload_len);
        if (cr == KVTC_OK) cr = decode_payload(s, i, payload, payload_len);
        if (cr == KVTC_ERR_NEEDS_MODEL || cr == KVTC_ERR_OUT_OF_MEMORY || cr == KVTC_ERR_CALLBACK) {
            free(val); /* not the record's fault */
            r = cr;
            break;
        }
        if (cr != KVTC_OK) {
            free(val); /* before reject(): rec may point into the memory tier */
            reject(s, key);
            s->st.miss_chunks++;
            break;
        }
        if (!from_memory && s->mem) (void)memory_tier_put(s->mem, key, val, len);
        free(val);
        s->st.hit_chunks++;
        if (from_memory) s->st.memory_hits++;
        uint64_t m = n - i * s->C < s->C ? n - i * s->C : s->C;
        size_t row = s->C * s->tok_bytes;
        for (uint64_t lh = 0; lh < s->lh; lh++) {
            size_t dst = (size_t)((lh * n + i * s->C) * s->tok_bytes);
            memcpy((uint8_t *)out->k + dst, s->ck + lh * row, (size_t)m * s->tok_bytes);
            memcpy((uint8_t *)out->v + dst, s->cv + lh * row, (size_t)m * s->tok_bytes);
        }
        for (uint64_t t = 0; t < m; t++) {
            if (out->positions) out->positions[i * s->C + t] = (int64_t)(i * s->C + t);
            if (out->token_ids) out->token_ids[i * s->C + t] = tokens[i * s->C + t];
        }
        done += m;
    }
    free(keys);
    if (n_restored) *n_restored = done;
    return r;
}

kvtc_result kvtc_store_delete(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens) {
    if (!s || (!tokens && n_tokens)) return KVTC_ERR_INVALID_ARGUMENT;
    uint64_t n_chunks = n_tokens / s->C;
    if (!n_chunks) return KVTC_OK;
    uint8_t *keys = NULL;
    kvtc_result r = chunk_keys(s, tokens, n_chunks, &keys);
    for (uint64_t i = 0; r == KVTC_OK && i < n_chunks; i++) {
        if (s->mem) memory_tier_del(s->mem, keys + 32 * i);
        if ((r = s->be->ops->del(s->be, keys + 32 * i)) != KVTC_OK) s->st.backend_errors++;
    }
    free(keys);
    return r;
}

kvtc_result kvtc_store_evict(kvtc_store *s, uint64_t target_bytes, uint64_t *n_evicted) {
    if (n_evicted) *n_evicted = 0;
    if (!s) return KVTC_ERR_INVALID_ARGUMENT;
    uint64_t n = s->mem ? memory_tier_trim(s->mem, target_bytes) : 0, m = 0;
    kvtc_result r = s->be->ops->evict ? s->be->ops->evict(s->be, target_bytes, &m) : KVTC_ERR_UNSUPPORTED;
    if (r == KVTC_ERR_IO) s->st.backend_errors++;
    s->st.evicted += n + m;
    if (n_evicted) *n_evicted = n + m;
    return r;
}

kvtc_result kvtc_store_stats_get(const kvtc_store *s, kvtc_store_stats *out) {
    if (!s || !out) return KVTC_ERR_INVALID_ARGUMENT;
    *out = s->st;
    out->ratio = s->st.bytes_written ? (double)s->st.raw_bytes_written / (double)s->st.bytes_written : 0.0;
    return KVTC_OK;
}

kvtc_result kvtc_store_backend_bytes(kvtc_store *s, uint64_t *bytes, uint64_t *n_values) {
    if (!s) return KVTC_ERR_INVALID_ARGUMENT;
    if (!s->be->ops->usage) return KVTC_ERR_UNSUPPORTED;
    return s->be->ops->usage(s->be, bytes, n_values);
}
