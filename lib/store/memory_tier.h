/* memory_tier.h - an in-process LRU cache of records, in front of a backend:
 * a hash table over the 32-byte keys plus a recency list, bounded in bytes.
 * It caches records as the backend returned them; the store verifies a
 * record every time it uses one, from here or from the backend. */
#ifndef KVTC_STORE_MEMORY_TIER_H
#define KVTC_STORE_MEMORY_TIER_H

#include <stddef.h>
#include <stdint.h>

#include "kvtc.h"

typedef struct memory_tier memory_tier;

kvtc_result memory_tier_alloc(uint64_t max_bytes, memory_tier **out);
void memory_tier_free(memory_tier *m);

/* The record of key (borrowed until the next call that changes the tier),
 * marked most recently used; NULL if absent. */
const uint8_t *memory_tier_get(memory_tier *m, const uint8_t *key, size_t *len);
int memory_tier_has(const memory_tier *m, const uint8_t *key);

/* Copy val in (replacing an existing entry), evicting least recently used
 * entries to stay within max_bytes; values larger than that are not kept. */
kvtc_result memory_tier_put(memory_tier *m, const uint8_t *key, const uint8_t *val, size_t len);
void memory_tier_del(memory_tier *m, const uint8_t *key);
/* Evict down to target bytes; returns the entries removed. */
uint64_t memory_tier_trim(memory_tier *m, uint64_t target);

#endif
