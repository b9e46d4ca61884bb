/* keys.h - the store's namespace and chained chunk keys (docs/STORE.md):
 *   ns      = SHA-256("kvtc-store-ns-v1" || identity fields)
 *   key[0]  = SHA-256(ns || token ids of chunk 0, int32 little-endian)
 *   key[i]  = SHA-256(key[i-1] || token ids of chunk i) */
#ifndef KVTC_STORE_KEYS_H
#define KVTC_STORE_KEYS_H

#include <stdint.h>

#include "kvtc.h"
#include "util/sha256.h"

typedef struct store_identity {
    uint64_t basis_fingerprint;  /* 0 for the raw codec */
    uint64_t model_fingerprint;
    kvtc_geometry geometry;
    kvtc_dtype dtype;
    uint32_t chunk_tokens;
    uint32_t codec;
    uint32_t n_sink;             /* raw sink tokens of chunk 0 (KVTC codec) */
    double plan_ratio;           /* target ratio of the plan used (KVTC codec), else 0 */
} store_identity;

void store_namespace(const store_identity *id, uint8_t ns[KVTC_SHA256_SIZE]);

/* Key of the chunk whose predecessor key (or the namespace, for chunk 0) is
 * prev, from its n token ids. out may alias prev. */
void store_chain_key(const uint8_t prev[KVTC_SHA256_SIZE], const int32_t *tokens, uint32_t n,
                     uint8_t out[KVTC_SHA256_SIZE]);

/* 64 lowercase hex digits and a NUL. */
void store_key_hex(const uint8_t key[KVTC_SHA256_SIZE], char hex[2 * KVTC_SHA256_SIZE + 1]);

/* A 64-bit model fingerprint from a name (the first 8 bytes of its SHA-256). */
uint64_t store_name_fingerprint(const char *name);

#endif
