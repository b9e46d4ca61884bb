/* hash.h - a 64-bit content fingerprint (not cryptographic): detects that a
 * stream is decoded with another basis or plan than it was written with. */
#ifndef KVTC_UTIL_HASH_H
#define KVTC_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define KVTC_HASH_SEED 0x6b7674632d667031ull /* "kvtc-fp1" */

static inline uint64_t kvi_hash_mix(uint64_t h) {
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* Continue hash h over buf[0..n). */
static inline uint64_t kvi_hash_update(uint64_t h, const void *buf, size_t n) {
    const uint8_t *p = (const uint8_t *)buf;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ (w * 0x9e3779b97f4a7c15ull));
        h = ((h << 29) | (h >> 35)) * 0xbf58476d1ce4e5b9ull;
    }
    uint64_t t = 0;
    for (size_t j = 0; i + j < n; j++) t |= (uint64_t)p[i + j] << (8 * j);
    h = kvi_hash_mix(h ^ t ^ ((uint64_t)n << 56));
    return h;
}

#endif
