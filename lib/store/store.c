/* store.c - the public kvtc_store API: chunking, keys, records and codecs
 * over a backend (backend.h) with an optional memory tier (memory_tier.h).
 *
 * A chunk is coded alone so that it decodes alone: chunk 0 keeps the first
 * n_sink tokens raw (attention sinks, outside the basis' calibration), every
 * chunk has n_window = 0, and chunks after the first carry their explicit
 * positions (i*C ...) so that RoPE is removed and re-applied where it was. */
#include "kvtc_store.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "store/backend.h"
#include "store/keys.h"
#include "store/memory_tier.h"
#include "store/record.h"
#include "util/cache.h"
#include "util/layout.h"
#include "util/out_struct.h"
#include "util/parallel.h"

#define MAX_CHUNK_TOKENS (1u << 20)
#define MAX_WORKERS 256u
#define PUT_BATCH_PER_WORKER 8u /* chunks encoded per worker before they are written */

/* What one thread needs to code one chunk: the codec objects (one object
 * must not be used by two threads at once) and the chunk's scratch. Chunks
 * are coded in parallel across workers; each codec call is single-threaded. */
typedef struct store_worker {
    kvtc_encoder *enc_first, *enc_rest; /* chunk 0 (with sinks), later chunks */
    kvtc_decoder *dec;
    uint8_t *ck, *cv;                   /* the chunk's K and V, [L][H][C][d] */
    int64_t *pos;
    int32_t *ids;
    void **k_layers, **v_layers;        /* [n_layers]: a chunk's view of per-layer destinations */
    uint8_t *rec;                       /* a record being built (rec_cap bytes) */
} store_worker;

struct kvtc_store {
    store_backend *be;
    memory_tier *mem;
    const kvtc_basis *basis;
    kvtc_geometry g;
    kvtc_dtype dtype;
    uint32_t C, codec;
    uint32_t entropy_codec; /* KVTC codec's entropy coder, 0 for raw */
    size_t es;           /* bytes per element */
    size_t tok_bytes;    /* bytes of one token in one [L][H] row block: head_dim * es */
    uint64_t lh;         /* n_layers * n_kv_heads */
    uint8_t ns[KVTC_SHA256_SIZE];
    size_t rec_cap;      /* largest record */
    uint32_t n_workers;
    store_worker *w;
    kvtc_store_stats st;
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

static void worker_free(store_worker *w) {
    kvtc_encoder_free(w->enc_first);
    kvtc_encoder_free(w->enc_rest);
    kvtc_decoder_free(w->dec);
    free(w->ck);
    free(w->cv);
    free(w->pos);
    free(w->ids);
    free(w->k_layers);
    free(w->v_layers);
    free(w->rec);
}

void kvtc_store_close(kvtc_store *s) {
    if (!s) return;
    if (s->be) s->be->ops->close(s->be);
    memory_tier_free(s->mem);
    for (uint32_t i = 0; s->w && i < s->n_workers; i++) worker_free(&s->w[i]);
    free(s->w);
    free(s);
}

/* The chunk as a kvtc_cache over a worker's scratch buffers. */
static kvtc_cache chunk_cache(const kvtc_store *s, store_worker *w, uint64_t index) {
    kvtc_cache c;
    memset(&c, 0, sizeof c);
    c.geometry = s->g;
    c.dtype = s->dtype;
    c.n_tokens = s->C;
    c.k = w->ck;
    c.v = w->cv;
    if (index > 0) {
        for (uint32_t t = 0; t < s->C; t++) w->pos[t] = (int64_t)(index * s->C + t);
        c.positions = w->pos;
    }
    return c;
}

/* The identity fields of the KVTC codec and the largest record. */
static kvtc_result codec_identity(kvtc_store *s, const kvtc_store_options *o, store_identity *id) {
    if (o->codec == KVTC_STORE_CODEC_RAW) {
        s->rec_cap = store_record_size(s->C, 2 * s->lh * s->C * s->tok_bytes);
        return s->rec_cap ? KVTC_OK : KVTC_ERR_TOO_LARGE;
    }
    if (!s->basis) return KVTC_ERR_INVALID_ARGUMENT;
    if (!kvi_geometry_equal(kvtc_basis_geometry(s->basis), &s->g)) return KVTC_ERR_GEOMETRY_MISMATCH;
    if (o->n_sink > s->C) return KVTC_ERR_INVALID_ARGUMENT;
    uint32_t plan = 0;
    kvtc_plan_info pi = {.struct_size = sizeof pi};
    kvtc_result r;
    if ((r = kvtc_basis_find_plan(s->basis, o->ratio, &plan)) != KVTC_OK) return r;
    if ((r = kvtc_basis_plan_info(s->basis, plan, &pi)) != KVTC_OK) return r;
    id->basis_fingerprint = kvtc_basis_fingerprint(s->basis);
    id->plan_ratio = pi.target_ratio;
    id->n_sink = o->n_sink;
    return KVTC_OK;
}

static kvtc_result worker_init(kvtc_store *s, store_worker *w, const kvtc_store_options *o) {
    size_t chunk_bytes = (size_t)kvtc_cache_tensor_bytes(&s->g, s->dtype, s->C);
    w->ck = malloc(chunk_bytes);
    w->cv = malloc(chunk_bytes);
    w->pos = malloc(sizeof(int64_t) * s->C);
    w->ids = malloc(sizeof(int32_t) * s->C);
    w->k_layers = malloc(sizeof(void *) * s->g.n_layers);
    w->v_layers = malloc(sizeof(void *) * s->g.n_layers);
    if (!w->ck || !w->cv || !w->pos || !w->ids || !w->k_layers || !w->v_layers) return KVTC_ERR_OUT_OF_MEMORY;
    if (s->codec == KVTC_STORE_CODEC_RAW) return KVTC_OK;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = o->ratio;
    eo.n_sink = o->n_sink;
    eo.n_window = 0;
    eo.chunk_tokens = s->C;
    eo.n_threads = 1;
    eo.entropy_codec = o->entropy_codec ? o->entropy_codec : KVTC_CODEC_DEFLATE;
    kvtc_result r;
    if ((r = kvtc_encoder_alloc(s->basis, &eo, &w->enc_first)) != KVTC_OK) return r;
    eo.n_sink = 0;
    if ((r = kvtc_encoder_alloc(s->basis, &eo, &w->enc_rest)) != KVTC_OK) return r;
    kvtc_decode_options dopt;
    kvtc_decode_options_init(&dopt);
    dopt.n_threads = 1;
    dopt.recompute = o->recompute;
    dopt.recompute_user = o->recompute_user;
    if ((r = kvtc_decoder_alloc(s->basis, &dopt, &w->dec)) != KVTC_OK) return r;
    /* the bound of a chunk with positions (the larger of the two encoders) */
    kvtc_cache c = chunk_cache(s, w, 1);
    size_t b0 = kvtc_compress_bound(w->enc_first, &c), b1 = kvtc_compress_bound(w->enc_rest, &c);
    size_t bound = b0 > b1 ? b0 : b1;
    size_t cap = bound ? store_record_size(s->C, bound) : 0;
    if (!cap) return KVTC_ERR_TOO_LARGE;
    if (cap > s->rec_cap) s->rec_cap = cap;
    return KVTC_OK;
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
    if (o.n_threads > MAX_WORKERS) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = kvi_geometry_check(geometry);
    if (r) return r;
    if (!kvtc_dtype_size(dtype)) return KVTC_ERR_INVALID_ARGUMENT;
    if (!kvtc_cache_tensor_bytes(geometry, dtype, o.chunk_tokens)) return KVTC_ERR_TOO_LARGE;

    kvtc_store *s = calloc(1, sizeof *s);
    if (!s) return KVTC_ERR_OUT_OF_MEMORY;
    s->basis = basis;
    s->g = *geometry;
    s->dtype = dtype;
    s->C = o.chunk_tokens;
    s->codec = o.codec;
    if (o.codec == KVTC_STORE_CODEC_KVTC) s->entropy_codec = o.entropy_codec ? o.entropy_codec : KVTC_CODEC_DEFLATE;
    s->es = kvtc_dtype_size(dtype);
    s->tok_bytes = (size_t)geometry->head_dim * s->es;
    s->lh = (uint64_t)geometry->n_layers * geometry->n_kv_heads;

    store_identity id;
    memset(&id, 0, sizeof id);
    id.model_fingerprint = o.model_fingerprint ? o.model_fingerprint
                                               : (o.model_name ? store_name_fingerprint(o.model_name) : 0);
    id.geometry = *geometry;
    id.dtype = dtype;
    id.chunk_tokens = s->C;
    id.codec = s->codec;
    if ((r = codec_identity(s, &o, &id)) != KVTC_OK) { kvtc_store_close(s); return r; }
    store_namespace(&id, s->ns);

    s->n_workers = o.n_threads ? o.n_threads : 1;
    s->w = calloc(s->n_workers, sizeof *s->w);
    if (!s->w) { s->n_workers = 0; kvtc_store_close(s); return KVTC_ERR_OUT_OF_MEMORY; }
    for (uint32_t i = 0; i < s->n_workers; i++)
        if ((r = worker_init(s, &s->w[i], &o)) != KVTC_OK) { kvtc_store_close(s); return r; }
    for (uint32_t i = 0; i < s->n_workers; i++)
        if (!(s->w[i].rec = malloc(s->rec_cap))) { kvtc_store_close(s); return KVTC_ERR_OUT_OF_MEMORY; }
    if (o.memory_bytes && (r = memory_tier_alloc(o.memory_bytes, &s->mem)) != KVTC_OK) {
        kvtc_store_close(s);
        return r;
    }

    store_backend_config cfg = {o.max_bytes, s->rec_cap, o.ttl_seconds, o.timeout_ms ? o.timeout_ms : 2000};
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

/* present[i] for every key, in one backend batch; with memory_first, what
 * the memory tier holds counts as present without asking the backend (a
 * lookup); put asks the backend alone, since the tier may hold chunks the
 * shared backend lost (a restarted Redis, another process's eviction) and
 * must write them again for other processes and machines. */
static kvtc_result keys_present(kvtc_store *s, const uint8_t *keys, uint64_t n, int memory_first, uint8_t *present) {
    uint8_t *ask = malloc(32 * (size_t)(n ? n : 1));
    uint8_t *ans = malloc((size_t)(n ? n : 1));
    uint64_t *where = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    if (!ask || !ans || !where) { free(ask); free(ans); free(where); return KVTC_ERR_OUT_OF_MEMORY; }
    uint64_t m = 0;
    for (uint64_t i = 0; i < n; i++) {
        present[i] = memory_first && s->mem && memory_tier_has(s->mem, keys + 32 * i);
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
    kvtc_result r = kvi_cache_check(c);
    if (r) return r;
    if (!kvi_geometry_equal(&c->geometry, &s->g) || c->dtype != s->dtype) return KVTC_ERR_GEOMETRY_MISMATCH;
    return KVTC_OK;
}

/* ---- put ------------------------------------------------------------------ */

typedef struct put_job {
    kvtc_store *s;
    const kvtc_cache *cache;
    const int32_t *tokens;
    const uint8_t *keys;
    const uint64_t *index;   /* chunk index of each item */
    uint8_t **recs;          /* out: malloc'd record per item */
    size_t *sizes;
    kvtc_result *res;
} put_job;

/* Encode one chunk into a malloc'd record (a parallel item). */
static int encode_item(void *ctx, uint32_t item, uint32_t worker) {
    put_job *j = ctx;
    kvtc_store *s = j->s;
    store_worker *w = &s->w[worker];
    uint64_t index = j->index[item], N = j->cache->n_tokens;
    size_t row = s->C * s->tok_bytes;
    for (uint64_t lh = 0; lh < s->lh; lh++) {
        size_t src = (size_t)((lh * N + index * s->C) * s->tok_bytes);
        memcpy(w->ck + lh * row, (const uint8_t *)j->cache->k + src, row);
        memcpy(w->cv + lh * row, (const uint8_t *)j->cache->v + src, row);
    }
    const int32_t *chunk_tokens = j->tokens + index * s->C;
    memcpy(w->ids, chunk_tokens, sizeof(int32_t) * s->C);
    store_record_expect e = {s->ns, j->keys + 32 * index, index, s->codec, chunk_tokens, s->C};
    size_t off = store_record_payload_offset(s->C), payload = 0;
    kvtc_result r = KVTC_OK;
    if (s->codec == KVTC_STORE_CODEC_RAW) {
        payload = 2 * (size_t)s->lh * row;
        memcpy(w->rec + off, w->ck, (size_t)s->lh * row);
        memcpy(w->rec + off + s->lh * row, w->cv, (size_t)s->lh * row);
    } else {
        kvtc_cache c = chunk_cache(s, w, index);
        if (kvtc_basis_recomputed_layers(s->basis) > 0) c.token_ids = w->ids;
        r = kvtc_compress(index ? w->enc_rest : w->enc_first, &c, w->rec + off, s->rec_cap - off - 4, &payload);
    }
    if (r == KVTC_OK) {
        store_record_write_header(w->rec, &e, payload);
        size_t size = store_record_size(s->C, payload);
        store_record_seal(w->rec, size);
        j->recs[item] = malloc(size);
        if (!j->recs[item]) r = KVTC_ERR_OUT_OF_MEMORY;
        else {
            memcpy(j->recs[item], w->rec, size);
            j->sizes[item] = size;
        }
    }
    j->res[item] = r;
    return 0;
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
    uint32_t batch = s->n_workers * PUT_BATCH_PER_WORKER;
    uint8_t *keys = NULL, *present = malloc((size_t)n_chunks);
    uint64_t *missing = malloc(sizeof(uint64_t) * (size_t)n_chunks);
    uint8_t **recs = calloc(batch, sizeof *recs), *bkeys = malloc(32 * (size_t)batch);
    size_t *sizes = calloc(batch, sizeof *sizes);
    kvtc_result *res = calloc(batch, sizeof *res);
    if (!present || !missing || !recs || !bkeys || !sizes || !res) r = KVTC_ERR_OUT_OF_MEMORY;
    if (r == KVTC_OK) r = chunk_keys(s, tokens, n_chunks, &keys);
    if (r == KVTC_OK) r = keys_present(s, keys, n_chunks, 0, present);
    uint64_t n_missing = 0;
    for (uint64_t i = 0; r == KVTC_OK && i < n_chunks; i++) {
        if (present[i]) s->st.chunks_already++;
        else missing[n_missing++] = i;
    }
    /* encode a batch in parallel, then write it in chunk order */
    for (uint64_t b0 = 0; r == KVTC_OK && b0 < n_missing; b0 += batch) {
        uint32_t nb = (uint32_t)(n_missing - b0 < batch ? n_missing - b0 : batch);
        put_job j = {s, cache, tokens, keys, missing + b0, recs, sizes, res};
        kvi_parallel_for(s->n_workers, nb, encode_item, &j);
        /* the encoded prefix of the batch in one backend batch, in chunk order */
        uint32_t ok = 0;
        while (ok < nb && res[ok] == KVTC_OK) ok++;
        for (uint32_t k = 0; k < ok; k++) memcpy(bkeys + 32 * k, keys + 32 * missing[b0 + k], 32);
        size_t done = 0;
        kvtc_result pr = ok ? s->be->ops->put(s->be, bkeys, recs, sizes, ok, &done) : KVTC_OK;
        if (pr != KVTC_OK) s->st.backend_errors++;
        for (size_t k = 0; k < done; k++) {
            if (s->mem) (void)memory_tier_put(s->mem, bkeys + 32 * k, recs[k], sizes[k]); /* a cache: failure is harmless */
            s->st.chunks_put++;
            s->st.bytes_written += sizes[k];
            s->st.raw_bytes_written += 2 * s->lh * s->C * s->tok_bytes;
            if (n_stored) (*n_stored)++;
        }
        r = pr != KVTC_OK ? pr : ok < nb ? res[ok] : KVTC_OK;
        for (uint32_t k = 0; k < nb; k++) {
            free(recs[k]);
            recs[k] = NULL;
        }
    }
    free(keys);
    free(present);
    free(missing);
    free(recs);
    free(bkeys);
    free(sizes);
    free(res);
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
    if (r == KVTC_OK) r = keys_present(s, keys, n_chunks, 1, present);
    if (r == KVTC_OK) {
        uint64_t i = 0;
        while (i < n_chunks && present[i]) i++;
        *n_hit = i * s->C;
    }
    free(keys);
    free(present);
    return r;
}

/* ---- get ------------------------------------------------------------------ */

typedef struct check_job {
    kvtc_store *s;
    const int32_t *tokens;
    const uint8_t *keys;
    const uint8_t **recs;   /* the record of each chunk */
    const size_t *lens;
    kvtc_store_chunk *chunks; /* out: the checked payload of each */
    kvtc_result *res;
} check_job;

/* Check one chunk's record against what was asked for (a parallel item). */
static int check_item(void *ctx, uint32_t item, uint32_t worker) {
    (void)worker;
    check_job *j = ctx;
    kvtc_store *s = j->s;
    store_record_expect e = {s->ns, j->keys + 32 * (size_t)item, item, s->codec, j->tokens + (uint64_t)item * s->C, s->C};
    const uint8_t *p = NULL;
    size_t n = 0;
    j->res[item] = store_record_check(j->recs[item], j->lens[item], &e, &p, &n);
    j->chunks[item].payload = p;
    j->chunks[item].payload_size = n;
    return 0;
}

/* A record that failed its checks: count it and remove it, so that the next
 * put stores a good one (best effort: a failure here changes nothing). */
static void reject(kvtc_store *s, const uint8_t *key) {
    s->st.errors++;
    if (s->mem) memory_tier_del(s->mem, key);
    (void)s->be->ops->del(s->be, key);
}

/* 1 when a decoder's result says the record is bad (kvtc_store.h lists
 * them); the others are the decoder's or the caller's problem and must not
 * delete a good value (a GPU codec refusing DEFLATE streams, a CUDA error). */
static int blames_record(kvtc_result r) {
    switch (r) {
    case KVTC_ERR_CORRUPT: case KVTC_ERR_TRUNCATED: case KVTC_ERR_BAD_MAGIC: case KVTC_ERR_UNSUPPORTED_VERSION:
    case KVTC_ERR_TOO_LARGE: case KVTC_ERR_NUMERIC: case KVTC_ERR_NO_PLAN: case KVTC_ERR_OUT_OF_RANGE:
        return 1;
    default:
        return 0;
    }
}

kvtc_result kvtc_store_get_chunks(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens, uint64_t n,
                                  kvtc_store_decode_fn decode, void *user, uint64_t *n_restored) {
    if (n_restored) *n_restored = 0;
    if (!s || !decode || (!tokens && n_tokens)) return KVTC_ERR_INVALID_ARGUMENT;
    uint64_t n_chunks = n / s->C + (n % s->C != 0);
    if (n_chunks > n_tokens / s->C) return KVTC_ERR_INVALID_ARGUMENT;
    if (!n_chunks) return KVTC_OK;
    if (n_chunks > UINT32_MAX || n_chunks > SIZE_MAX / 32) return KVTC_ERR_TOO_LARGE;
    size_t nc = (size_t)n_chunks;
    kvtc_result r = KVTC_OK;
    uint8_t *keys = NULL, *ask = malloc(32 * nc), **fetched = calloc(nc, sizeof *fetched);
    const uint8_t **recs = calloc(nc, sizeof *recs);
    size_t *lens = calloc(nc, sizeof *lens), *flens = calloc(nc, sizeof *flens);
    uint64_t *where = malloc(sizeof(uint64_t) * nc);
    kvtc_result *chk = calloc(nc, sizeof *chk), *res = calloc(nc, sizeof *res);
    kvtc_store_chunk *chunks = calloc(nc, sizeof *chunks);
    uint8_t *from_memory = calloc(nc, 1);
    if (!ask || !fetched || !recs || !lens || !flens || !where || !chk || !res || !chunks || !from_memory)
        r = KVTC_ERR_OUT_OF_MEMORY;
    if (r == KVTC_OK) r = chunk_keys(s, tokens, n_chunks, &keys);

    /* 1. the records: the memory tier's (borrowed until the tier changes,
     *    which happens only in step 4), the rest in one backend batch */
    uint64_t n_ask = 0;
    for (uint64_t i = 0; r == KVTC_OK && i < n_chunks; i++) {
        recs[i] = s->mem ? memory_tier_get(s->mem, keys + 32 * i, &lens[i]) : NULL;
        if (recs[i]) from_memory[i] = 1;
        else {
            memcpy(ask + 32 * n_ask, keys + 32 * i, 32);
            where[n_ask++] = i;
        }
    }
    if (r == KVTC_OK && n_ask) {
        r = s->be->ops->get(s->be, ask, (size_t)n_ask, fetched, flens);
        if (r == KVTC_ERR_IO) s->st.backend_errors++;
        for (uint64_t k = 0; r == KVTC_OK && k < n_ask; k++) {
            recs[where[k]] = fetched[k];
            lens[where[k]] = flens[k];
        }
    }
    uint64_t n_avail = 0;
    while (r == KVTC_OK && n_avail < n_chunks && recs[n_avail]) n_avail++;

    /* 2. check the available prefix's records in parallel */
    if (r == KVTC_OK && n_avail) {
        check_job j = {s, tokens, keys, recs, lens, chunks, chk};
        kvi_parallel_for(s->n_workers, (uint32_t)n_avail, check_item, &j);
    }
    uint64_t n_ok = 0;
    while (r == KVTC_OK && n_ok < n_avail && chk[n_ok] == KVTC_OK) n_ok++;

    /* 3. decode the checked prefix */
    for (uint64_t i = 0; i < n_ok; i++) {
        chunks[i].index = i;
        chunks[i].token_begin = i * s->C;
        chunks[i].n_tokens = (uint32_t)(n - i * s->C < s->C ? n - i * s->C : s->C);
        chunks[i].codec = s->codec;
        res[i] = KVTC_ERR_INVALID_ARGUMENT; /* a decoder that writes nothing restores nothing */
    }
    if (r == KVTC_OK && n_ok) decode(user, chunks, n_ok, res);

    /* 4. the first failure ends the restored prefix */
    uint64_t good = 0;
    while (r == KVTC_OK && good < n_ok && res[good] == KVTC_OK) good++;
    if (r == KVTC_OK && good < n_chunks) {
        if (good < n_ok && !blames_record(res[good])) {
            r = res[good];
        } else {
            if (good < n_avail) reject(s, keys + 32 * good);
            s->st.miss_chunks++;
        }
    }
    for (uint64_t i = 0; r == KVTC_OK && i < good; i++) {
        s->st.hit_chunks++;
        s->st.bytes_read += lens[i];
        if (from_memory[i]) s->st.memory_hits++;
    }
    if (s->mem && r == KVTC_OK)
        for (uint64_t k = 0; k < n_ask; k++)
            if (where[k] < good) (void)memory_tier_put(s->mem, keys + 32 * where[k], fetched[k], flens[k]);
    for (uint64_t k = 0; fetched && k < n_ask; k++) free(fetched[k]);
    free(keys);
    free(ask);
    free(fetched);
    free(recs);
    free(lens);
    free(flens);
    free(where);
    free(chk);
    free(res);
    free(chunks);
    free(from_memory);
    if (n_restored && r == KVTC_OK) *n_restored = good * s->C < n ? good * s->C : n;
    return r;
}

/* The CPU decoder of kvtc_store_get: chunks go straight into the caller's
 * layout (decoded in place through a view of their tokens), in parallel;
 * they write disjoint tokens (the block table has no repeats). */
typedef struct decode_job {
    kvtc_store *s;
    const kvtc_store_chunk *chunks;
    kvtc_result *res;
    const kvtc_cache_layout *dst;
} decode_job;

static int decode_item(void *ctx, uint32_t item, uint32_t worker) {
    decode_job *j = ctx;
    kvtc_store *s = j->s;
    store_worker *w = &s->w[worker];
    const kvtc_store_chunk *ch = &j->chunks[item];
    uint32_t L = s->g.n_layers;
    size_t half = (size_t)s->lh * s->C * s->tok_bytes;
    kvtc_result r = KVTC_OK;
    kvtc_cache c;
    if (ch->codec == KVTC_STORE_CODEC_RAW) {
        if (ch->payload_size != 2 * half) r = KVTC_ERR_CORRUPT;
        else {
            /* the payload as a read-only contiguous chunk */
            c = chunk_cache(s, w, 0);
            c.k = (void *)(uintptr_t)ch->payload;
            c.v = (void *)((uintptr_t)ch->payload + half);
        }
    } else {
        kvtc_stream_info info = {.struct_size = sizeof info};
        r = kvtc_stream_get_info(ch->payload, ch->payload_size, &info);
        if (r == KVTC_OK && (info.n_tokens != s->C || info.dtype != s->dtype)) r = KVTC_ERR_CORRUPT;
        kvtc_cache_layout view;
        kvtc_result v = r ? r : kvi_layout_token_view(j->dst, ch->token_begin, ch->n_tokens, w->k_layers, w->v_layers, &view);
        if (r == KVTC_OK && v == KVTC_OK) {
            kvtc_decode_range range = {0, ch->n_tokens, 0, 0};
            r = kvtc_decompress_layout(w->dec, ch->payload, ch->payload_size, &range, &view);
            if (r == KVTC_ERR_BASIS_MISMATCH || r == KVTC_ERR_GEOMETRY_MISMATCH) r = KVTC_ERR_CORRUPT; /* as below */
            j->res[item] = r;
            return 0;
        }
        /* a block size that does not divide C: decode the chunk, then copy */
        if (r == KVTC_OK) {
            c = chunk_cache(s, w, 0);
            r = kvtc_decompress(w->dec, ch->payload, ch->payload_size, &c);
        }
    }
    if (r == KVTC_OK) {
        kvtc_cache_layout src;
        kvtc_cache_layout_from_cache(&c, &src);
        kvi_layout_copy_tokens(&src, 0, j->dst, ch->token_begin, ch->n_tokens, 1, 0, L);
        kvi_layout_copy_tokens(&src, 0, j->dst, ch->token_begin, ch->n_tokens, 0, 0, L);
    }
    /* the store's own decoder has the namespace's basis and geometry: a
     * mismatch is the record's (kvtc_store_get_chunks keeps records on
     * mismatches, which from other decoders mean a misconfigured decoder) */
    if (r == KVTC_ERR_BASIS_MISMATCH || r == KVTC_ERR_GEOMETRY_MISMATCH) r = KVTC_ERR_CORRUPT;
    j->res[item] = r;
    return 0;
}

static void cpu_decode(void *user, const kvtc_store_chunk *chunks, uint64_t n_chunks, kvtc_result *results) {
    decode_job *j = user;
    j->chunks = chunks;
    j->res = results;
    kvi_parallel_for(j->s->n_workers, (uint32_t)n_chunks, decode_item, j);
}

/* Decode into a checked destination layout, then its positions and ids. */
static kvtc_result get_into(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens, const kvtc_cache_layout *dst,
                            uint64_t *n_restored) {
    decode_job j = {s, NULL, NULL, dst};
    uint64_t done = 0;
    kvtc_result r = kvtc_store_get_chunks(s, tokens, n_tokens, dst->n_tokens, cpu_decode, &j, &done);
    for (uint64_t t = 0; t < done; t++) {
        if (dst->positions) dst->positions[t] = (int64_t)t;
        if (dst->token_ids) dst->token_ids[t] = tokens[t];
    }
    if (n_restored) *n_restored = done;
    return r;
}

kvtc_result kvtc_store_get(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens,
                           const kvtc_store_layout *layout, uint64_t *n_restored) {
    if (n_restored) *n_restored = 0;
    if (!s || !layout || (!tokens && n_tokens)) return KVTC_ERR_INVALID_ARGUMENT;
    if (layout->struct_size != sizeof *layout || layout->kind != KVTC_STORE_LAYOUT_CONTIGUOUS) return KVTC_ERR_UNSUPPORTED;
    kvtc_result r = check_cache(s, layout->cache);
    if (r) return r;
    kvtc_cache_layout dst;
    kvtc_cache_layout_from_cache(layout->cache, &dst);
    return get_into(s, tokens, n_tokens, &dst, n_restored);
}

kvtc_result kvtc_store_get_layout(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens,
                                  const kvtc_cache_layout *out, uint64_t *n_restored) {
    if (n_restored) *n_restored = 0;
    if (!s || !out || (!tokens && n_tokens)) return KVTC_ERR_INVALID_ARGUMENT;
    if (!kvi_geometry_equal(&out->geometry, &s->g) || out->dtype != s->dtype) return KVTC_ERR_GEOMETRY_MISMATCH;
    kvtc_result r = kvi_layout_check(out, 0, s->g.n_layers);
    if (r) return r;
    return get_into(s, tokens, n_tokens, out, n_restored);
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

/* The struct as kvtc_store.h first exported it (kvtc 0.1.0). */
#define KVI_STORE_STATS_MIN_SIZE (offsetof(kvtc_store_stats, ratio) + sizeof(double))

kvtc_result kvtc_store_stats_get(const kvtc_store *s, kvtc_store_stats *out) {
    if (!s || !out) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_store_stats full = s->st;
    full.ratio = s->st.bytes_written ? (double)s->st.raw_bytes_written / (double)s->st.bytes_written : 0.0;
    return kvi_out_struct_fill(out, &full, sizeof full, KVI_STORE_STATS_MIN_SIZE);
}

kvtc_result kvtc_store_info_get(const kvtc_store *s, kvtc_store_info *out) {
    if (!s || !out) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_store_info full;
    memset(&full, 0, sizeof full);
    full.struct_size = sizeof full;
    full.geometry = s->g;
    full.dtype = s->dtype;
    full.chunk_tokens = s->C;
    full.codec = s->codec;
    full.entropy_codec = s->entropy_codec;
    full.basis = s->codec == KVTC_STORE_CODEC_KVTC ? s->basis : NULL;
    return kvi_out_struct_fill(out, &full, sizeof full, sizeof full);
}

kvtc_result kvtc_store_backend_bytes(kvtc_store *s, uint64_t *bytes, uint64_t *n_values) {
    if (!s) return KVTC_ERR_INVALID_ARGUMENT;
    if (!s->be->ops->usage) return KVTC_ERR_UNSUPPORTED;
    return s->be->ops->usage(s->be, bytes, n_values);
}
