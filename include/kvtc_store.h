/*
 * kvtc_store.h - a prefix-addressed store of compressed KV caches.
 *
 * Token sequences are cut into chunks of C tokens (default 256). Chunk i of
 * a sequence is stored under a key chained with SHA-256 over the previous
 * chunk's key and chunk i's token ids, inside a namespace that pins the
 * basis, the model, the dtype, C and the codec (docs/STORE.md). So two
 * prompts share the stored KV of exactly their common whole-chunk prefix.
 *
 *   kvtc_store *s;  kvtc_store_open("file:/var/cache/kvtc", basis, &geometry, KVTC_DTYPE_F16, &opts, &s);
 *   kvtc_store_put(s, tokens, n, &cache, &stored);       // chunks not yet stored
 *   kvtc_store_lookup(s, tokens, n, &hit);               // longest stored prefix (tokens)
 *   kvtc_store_get(s, tokens, n, &layout, &restored);    // decode `hit` tokens into a host layout
 *   kvtc_store_close(s);
 *
 * URIs: "file:DIR" (embedded; several processes may share DIR),
 * "redis://HOST:PORT[/DB]" (built when hiredis is available; otherwise
 * KVTC_ERR_UNSUPPORTED). Values are self-contained, checksummed records that
 * carry their namespace, key, chunk index and token ids; a record that fails
 * any check is a miss (counted in kvtc_store_stats.errors and deleted), never
 * someone else's KV.
 *
 * Conventions as in kvtc.h: kvtc_result codes, caller-owned buffers, no
 * global state. One kvtc_store must not be used by two threads at once;
 * open one per thread or process (they may share the backend). Backend
 * failures (a dead server, an unwritable directory) are KVTC_ERR_IO and
 * leave the store usable: the next call reconnects / retries.
 */
#ifndef KVTC_STORE_H
#define KVTC_STORE_H

#include "kvtc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvtc_store kvtc_store;

/* How a chunk's KV is coded in its record. */
#define KVTC_STORE_CODEC_KVTC 1u /* a kvtc stream (kvtc_compress), needs the basis */
#define KVTC_STORE_CODEC_RAW 2u  /* uncompressed K then V in the store's dtype, for comparison */

#define KVTC_STORE_DEFAULT_CHUNK_TOKENS 256u

typedef struct kvtc_store_options {
    size_t struct_size;            /* sizeof(kvtc_store_options) */
    uint32_t chunk_tokens;         /* C, tokens per chunk and key (default 256; 1..2^20,
                                    * and at least n_sink with the KVTC codec) */
    uint32_t codec;                /* KVTC_STORE_CODEC_KVTC (default) or _RAW */
    /* Model identity pinned into the namespace: model_fingerprint, or when it
     * is 0 and model_name is non-NULL, a hash of model_name (read only during
     * kvtc_store_open). Both unset: 0. */
    uint64_t model_fingerprint;
    const char *model_name;
    /* Encoding (KVTC codec): plan ratio (default 20), entropy codec (default
     * DEFLATE), raw sink tokens kept at the start of chunk 0 (default 4).
     * n_threads: chunks encoded (put) and checked and decoded (get) in
     * parallel, one thread per chunk at a time (0 = 1, at most 256). With
     * OpenBLAS, run it single-threaded (see kvtc_encode_options). */
    double ratio;
    uint32_t entropy_codec;
    uint32_t n_sink;
    uint32_t n_threads;
    /* Decoding of bases that recompute layers (kvtc_decode_options). */
    kvtc_recompute_fn recompute;
    void *recompute_user;
    /* file: size cap in bytes with LRU eviction (0 = none). */
    uint64_t max_bytes;
    /* redis: key TTL in seconds (0 = none) and the connect/command timeout
     * in milliseconds (default 2000). */
    uint32_t ttl_seconds;
    uint32_t timeout_ms;
    /* In-process LRU memory tier in front of the backend, in bytes (0 = none). */
    uint64_t memory_bytes;
} kvtc_store_options;

KVTC_API void kvtc_store_options_init(kvtc_store_options *o);

/* Open a store. `basis` is required for the KVTC codec (and must match
 * geometry) and may be NULL for RAW; it is borrowed and must outlive the
 * store. geometry and dtype describe the caches put and got (dtype is pinned
 * into the namespace). opts may be NULL for defaults.
 * Errors: KVTC_ERR_INVALID_ARGUMENT (bad URI, options: chunk_tokens 0 or
 * over 2^20, n_sink > chunk_tokens with the KVTC codec, ...; missing basis),
 * KVTC_ERR_GEOMETRY_MISMATCH, KVTC_ERR_NO_PLAN, KVTC_ERR_UNSUPPORTED (a
 * backend this build lacks), KVTC_ERR_IO (directory not usable; server not
 * reachable is NOT an error here: the store connects lazily). */
KVTC_API kvtc_result kvtc_store_open(const char *uri, const kvtc_basis *basis, const kvtc_geometry *geometry,
                                     kvtc_dtype dtype, const kvtc_store_options *opts, kvtc_store **out);

/* Close and free (NULL is a no-op). */
KVTC_API void kvtc_store_close(kvtc_store *s);

/* Store the whole chunks of tokens[0..n_tokens) (a trailing partial chunk
 * is not stored) that are not stored yet. cache holds at least n_tokens
 * tokens of the store's geometry and dtype; token i is at position i
 * (cache->positions must be NULL or 0..n-1). *n_stored (may be NULL)
 * receives the number of chunks written. Errors: KVTC_ERR_INVALID_ARGUMENT,
 * KVTC_ERR_GEOMETRY_MISMATCH, codec errors, KVTC_ERR_IO (backend; chunks
 * written before the failure stay valid). */
KVTC_API kvtc_result kvtc_store_put(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens, const kvtc_cache *cache,
                                    uint64_t *n_stored);

/* Longest stored whole-chunk prefix of tokens[0..n_tokens), in tokens (a
 * multiple of C), from one batched existence query. A key that exists may
 * still turn out corrupt on get, which then restores fewer tokens. */
KVTC_API kvtc_result kvtc_store_lookup(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens, uint64_t *n_hit);

/* Where kvtc_store_get writes. CONTIGUOUS: `cache` is a kvtc_cache of the
 * store's geometry and dtype whose n_tokens is the number of tokens
 * requested and whose k/v hold kvtc_cache_tensor_bytes() each
 * (positions/token_ids filled when non-NULL). Engine layouts (paged,
 * strided) are kvtc_store_get_layout below, GPU memory kvtc_cuda_store_get
 * (kvtc_cuda.h): new functions rather than new kinds, because a field
 * added here would break callers' positional initializers under
 * -Wextra -Werror. Callers set struct_size. */
typedef enum kvtc_store_layout_kind {
    KVTC_STORE_LAYOUT_CONTIGUOUS = 0
} kvtc_store_layout_kind;

typedef struct kvtc_store_layout {
    size_t struct_size;            /* sizeof(kvtc_store_layout) */
    kvtc_store_layout_kind kind;
    kvtc_cache *cache;             /* CONTIGUOUS: the destination */
} kvtc_store_layout;

/* Decode the first n = layout->cache->n_tokens tokens of the sequence
 * tokens[0..n_tokens) from the store into the layout. n need not be a
 * multiple of C, but the chunks covering it must be whole in tokens
 * (ceil(n / C) * C <= n_tokens; KVTC_ERR_INVALID_ARGUMENT otherwise); only
 * those ceil(n / C) chunks are fetched and decoded, the last one only up to
 * token n. Reads chunks in order and stops at the first one missing or
 * failing its checks: *n_restored receives the tokens written (n when all
 * were there; a multiple of C otherwise), so a miss is KVTC_OK with fewer
 * tokens; the output past *n_restored is unspecified. All chunks are
 * fetched in one batch (one pipeline on Redis) and decoded in parallel.
 * Errors: KVTC_ERR_INVALID_ARGUMENT, KVTC_ERR_GEOMETRY_MISMATCH,
 * KVTC_ERR_UNSUPPORTED (an unknown kind or struct_size),
 * KVTC_ERR_NEEDS_MODEL, KVTC_ERR_IO (backend; *n_restored = 0). */
KVTC_API kvtc_result kvtc_store_get(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens,
                                    const kvtc_store_layout *layout, uint64_t *n_restored);

/* kvtc_store_get into engine memory (kvtc 0.2): `out` is a kvtc_cache_layout
 * (kvtc.h) in host memory of the store's geometry and dtype whose n_tokens
 * is the number of tokens requested: a paged pool with a block table (vLLM
 * NHD/HND, SGLang's token pool), per-layer strided tensors (HF, llama.cpp
 * rows and its transposed V) or contiguous. Each chunk is decoded in place
 * into it (through a view of its tokens), giving the same values, bit for
 * bit, as kvtc_store_get; out->positions / token_ids (when non-NULL)
 * receive 0.. and the ids of the restored tokens. A block size that
 * divides the chunk size C (vLLM's 16 or 32, SGLang's 1, for C = 256) is
 * decoded straight into the pool; any other goes through a chunk-sized
 * copy. The layout is checked as the codec checks it, before anything is
 * fetched or written: KVTC_ERR_GEOMETRY_MISMATCH (geometry or dtype),
 * KVTC_ERR_INVALID_ARGUMENT (missing pointers, strides whose offsets
 * overflow), KVTC_ERR_BAD_BLOCK_TABLE (one of the first ceil(n /
 * block_size) entries outside [0, n_pool_blocks) or repeated). Otherwise
 * as kvtc_store_get. */
KVTC_API kvtc_result kvtc_store_get_layout(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens,
                                           const kvtc_cache_layout *out, uint64_t *n_restored);

/* Bring your own decoder (kvtc 0.2): the GPU get (kvtc_cuda_store_get) and
 * any engine with its own decode path use this. kvtc_store_get_chunks
 * fetches the records of the first n tokens exactly as kvtc_store_get does
 * (one batch, the memory tier first) and checks each record (CRC,
 * namespace, key, index, token ids); the chunks that pass, up to the first
 * that does not, are handed to `decode` in one call, in chunk order, from
 * the calling thread. decode writes results[i] for each: KVTC_OK, or why
 * chunk i could not be decoded. The restored prefix ends at the first
 * chunk that is not KVTC_OK (results after it are not read). A result that
 * blames the record (KVTC_ERR_CORRUPT, _TRUNCATED, _BAD_MAGIC,
 * _UNSUPPORTED_VERSION, _TOO_LARGE, _NUMERIC, _NO_PLAN, _OUT_OF_RANGE)
 * makes the chunk a miss: counted in stats.errors and deleted, as a record
 * failing its checks. Any other is the decoder's problem, not the
 * record's: the get returns it with *n_restored = 0 and the record is kept.
 * That includes KVTC_ERR_CUDA, _UNSUPPORTED, _OUT_OF_MEMORY, _NEEDS_MODEL,
 * _CALLBACK, _INVALID_ARGUMENT, _BUFFER_TOO_SMALL, _BAD_BLOCK_TABLE, _IO
 * and the mismatches _BASIS_MISMATCH, _GEOMETRY_MISMATCH, _MODEL_MISMATCH:
 * the record passed its namespace check (which pins basis, geometry and
 * model), so a mismatch says the decoder was set up for another store, and
 * deleting good records for it would empty the store. decode is not called when no
 * chunk is available. On KVTC_OK *n_restored is as for kvtc_store_get
 * (a multiple of C, or n). */
typedef struct kvtc_store_chunk {
    uint64_t index;                /* chunk i of the sequence */
    uint64_t token_begin;          /* its first token, i * C */
    uint32_t n_tokens;             /* tokens of it to restore: C, or fewer for the chunk holding token n - 1 */
    uint32_t codec;                /* KVTC_STORE_CODEC_KVTC: payload is a kvtc stream of C tokens (docs/STORE.md);
                                    * KVTC_STORE_CODEC_RAW: K then V, [L][H][C][d] each, store dtype */
    const void *payload;           /* valid during the decode call */
    size_t payload_size;
} kvtc_store_chunk;

typedef void (*kvtc_store_decode_fn)(void *user, const kvtc_store_chunk *chunks, uint64_t n_chunks,
                                     kvtc_result *results);

KVTC_API kvtc_result kvtc_store_get_chunks(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens, uint64_t n,
                                           kvtc_store_decode_fn decode, void *user, uint64_t *n_restored);

/* Delete the stored chunks of the whole-chunk prefix of tokens[0..n).
 * Chunks chained after them become unreachable and age out by eviction. */
KVTC_API kvtc_result kvtc_store_delete(kvtc_store *s, const int32_t *tokens, uint64_t n_tokens);

/* Evict least recently used values until the backend holds at most
 * target_bytes (file: backend), and trim the memory tier to target_bytes.
 * redis: the server evicts by itself (maxmemory-policy allkeys-lru, TTLs):
 * only the memory tier is trimmed and the result is KVTC_ERR_UNSUPPORTED.
 * *n_evicted (may be NULL) receives the values removed. */
KVTC_API kvtc_result kvtc_store_evict(kvtc_store *s, uint64_t target_bytes, uint64_t *n_evicted);

/* Counters of this store object since open (not shared across processes).
 * An output struct that may grow (fields are only appended), as
 * kvtc_stream_info: the caller sets struct_size to sizeof the struct it was
 * compiled with and the library fills what fits. */
typedef struct kvtc_store_stats {
    size_t struct_size;            /* set by the caller: sizeof(kvtc_store_stats) */
    uint64_t chunks_put;           /* records written */
    uint64_t chunks_already;       /* put found them stored */
    uint64_t lookups;              /* lookup calls */
    uint64_t hit_chunks;           /* chunks restored by get */
    uint64_t miss_chunks;          /* chunks get wanted and did not find (or rejected) */
    uint64_t memory_hits;          /* of hit_chunks, served by the memory tier */
    uint64_t errors;               /* records rejected: corrupt, truncated, wrong namespace/key/tokens */
    uint64_t backend_errors;       /* I/O or server failures */
    uint64_t evicted;              /* values removed by eviction from this object */
    uint64_t bytes_written;        /* record bytes put */
    uint64_t bytes_read;           /* record bytes read by get */
    uint64_t raw_bytes_written;    /* uncompressed K+V bytes (store dtype) of the chunks put */
    double ratio;                  /* raw_bytes_written / bytes_written (0 before any put) */
} kvtc_store_stats;

/* Fill *out (out->struct_size set by the caller). Errors:
 * KVTC_ERR_INVALID_ARGUMENT (NULL, or a struct_size smaller than this
 * struct's first release or larger than the library's: usually an
 * uninitialized struct_size; nothing is written then). */
KVTC_API kvtc_result kvtc_store_stats_get(const kvtc_store *s, kvtc_store_stats *out);

/* What a store was opened with (kvtc 0.2), so that a caller can size and
 * check a destination or a GPU codec against it. An output struct that may
 * grow, as kvtc_store_stats (struct_size set by the caller). */
typedef struct kvtc_store_info {
    size_t struct_size;            /* set by the caller: sizeof(kvtc_store_info) */
    kvtc_geometry geometry;
    kvtc_dtype dtype;
    uint32_t chunk_tokens;         /* C */
    uint32_t codec;                /* KVTC_STORE_CODEC_KVTC or _RAW */
    uint32_t entropy_codec;        /* what this store's puts write (KVTC codec): KVTC_CODEC_DEFLATE or
                                    * KVTC_CODEC_RANS (the GPU decodes only RANS); 0 for RAW. Records
                                    * put by other writers may use the other one. */
    const kvtc_basis *basis;       /* the borrowed basis (NULL for RAW) */
} kvtc_store_info;

/* Errors: KVTC_ERR_INVALID_ARGUMENT (NULL, or a struct_size as for
 * kvtc_store_stats_get). */
KVTC_API kvtc_result kvtc_store_info_get(const kvtc_store *s, kvtc_store_info *out);

/* Bytes the backend holds now (file: all values in DIR; redis: DBSIZE is not
 * bytes, so KVTC_ERR_UNSUPPORTED). */
KVTC_API kvtc_result kvtc_store_backend_bytes(kvtc_store *s, uint64_t *bytes, uint64_t *n_values);

#ifdef __cplusplus
}
#endif

#endif /* KVTC_STORE_H */
