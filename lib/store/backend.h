/* backend.h - where the store keeps its records: a small key-value interface
 * over 32-byte chunk keys, implemented by the file: and redis:// backends.
 * Every call returns KVTC_OK, or KVTC_ERR_IO for a failure of the medium
 * (the backend stays usable: the next call retries / reconnects). */
#ifndef KVTC_STORE_BACKEND_H
#define KVTC_STORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kvtc.h"
#include "util/sha256.h"

typedef struct store_backend store_backend;

typedef struct store_backend_ops {
    /* The values of n keys (32 bytes each, back to back), in one batch (one
     * round trip for a server): vals[i] malloc'd (caller frees) or NULL on a
     * miss. On failure every vals[i] is NULL. */
    kvtc_result (*get)(store_backend *b, const uint8_t *keys, size_t n, uint8_t **vals, size_t *lens);
    /* Store vals[i] under keys[i] (32 bytes each, back to back), each
     * atomically (readers see the old value, none, or the whole new one), in
     * one batch (one round trip for a server). A key that already exists may
     * be left as it is. *n_done: the leading entries stored (all on success). */
    kvtc_result (*put)(store_backend *b, const uint8_t *keys, uint8_t *const *vals, const size_t *lens, size_t n,
                       size_t *n_done);
    /* present[i] = whether keys[i] (32 bytes each, back to back) exists, in
     * one batch (one round trip for a server). */
    kvtc_result (*exists)(store_backend *b, const uint8_t *keys, size_t n, uint8_t *present);
    kvtc_result (*del)(store_backend *b, const uint8_t *key);
    /* Remove least recently used values until at most target bytes remain. */
    kvtc_result (*evict)(store_backend *b, uint64_t target, uint64_t *n_evicted);
    kvtc_result (*usage)(store_backend *b, uint64_t *bytes, uint64_t *n_values);
    void (*close)(store_backend *b);
} store_backend_ops;

struct store_backend {
    const store_backend_ops *ops;
};

typedef struct store_backend_config {
    uint64_t max_bytes;   /* file: cap (0 = none) */
    uint64_t max_value;   /* file and redis: values larger than this (no valid record
                           * is) are returned empty instead of read (0 = no limit) */
    uint32_t ttl_seconds; /* redis */
    uint32_t timeout_ms;  /* redis */
} store_backend_config;

/* "file:DIR": creates DIR if missing. KVTC_ERR_IO if it cannot be used. */
kvtc_result store_file_open(const char *dir, const store_backend_config *cfg, store_backend **out);

/* "redis://HOST:PORT[/DB]" (the part after "redis://"). Connects lazily.
 * KVTC_ERR_UNSUPPORTED when built without hiredis. */
kvtc_result store_redis_open(const char *hostportdb, const store_backend_config *cfg, store_backend **out);

#endif
