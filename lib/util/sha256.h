/* sha256.h - SHA-256 (FIPS 180-4), our own implementation: the store chains
 * chunk keys with it (docs/STORE.md). Incremental: init, update any number
 * of times, final. No global state; the context is caller-owned. */
#ifndef KVTC_UTIL_SHA256_H
#define KVTC_UTIL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define KVTC_SHA256_SIZE 32

typedef struct kvtc_sha256_ctx {
    uint32_t h[8];
    uint64_t n_bytes;   /* message bytes so far */
    uint8_t block[64];  /* pending bytes of the current block */
    uint32_t n_block;   /* valid bytes in block */
} kvtc_sha256_ctx;

void kvtc_sha256_init(kvtc_sha256_ctx *s);
void kvtc_sha256_update(kvtc_sha256_ctx *s, const void *data, size_t n);
/* Pad, finish and write the 32-byte digest; s must be re-initialized to reuse. */
void kvtc_sha256_final(kvtc_sha256_ctx *s, uint8_t digest[KVTC_SHA256_SIZE]);

/* One-shot digest of data[0..n). */
void kvtc_sha256(const void *data, size_t n, uint8_t digest[KVTC_SHA256_SIZE]);

#endif
