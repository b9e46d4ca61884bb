/* memory_tier.c - separate chaining over a power-of-two bucket array that
 * doubles with the entry count; a doubly linked list in recency order. */
#include "store/memory_tier.h"

#include <stdlib.h>
#include <string.h>

#include "util/endian.h"

typedef struct entry {
    uint8_t key[32];
    uint8_t *val;
    size_t len;
    struct entry *next_in_bucket;
    struct entry *newer, *older;
} entry;

struct memory_tier {
    uint64_t max_bytes, bytes;
    size_t n, n_buckets;
    entry **buckets;
    entry *newest, *oldest;
};

/* keys are SHA-256 digests: any 8 of their bytes are a uniform hash */
static size_t bucket_of(const memory_tier *m, const uint8_t *key) {
    return (size_t)(kvi_load_u64(key) & (m->n_buckets - 1));
}

kvtc_result memory_tier_alloc(uint64_t max_bytes, memory_tier **out) {
    *out = NULL;
    memory_tier *m = calloc(1, sizeof *m);
    if (!m) return KVTC_ERR_OUT_OF_MEMORY;
    m->max_bytes = max_bytes;
    m->n_buckets = 64;
    m->buckets = calloc(m->n_buckets, sizeof *m->buckets);
    if (!m->buckets) { free(m); return KVTC_ERR_OUT_OF_MEMORY; }
    *out = m;
    return KVTC_OK;
}

static void unlink_entry(memory_tier *m, entry *e) {
    entry **pp = &m->buckets[bucket_of(m, e->key)];
    while (*pp != e) pp = &(*pp)->next_in_bucket;
    *pp = e->next_in_bucket;
    if (e->newer) e->newer->older = e->older; else m->newest = e->older;
    if (e->older) e->older->newer = e->newer; else m->oldest = e->newer;
    m->bytes -= e->len;
    m->n--;
    free(e->val);
    free(e);
}

void memory_tier_free(memory_tier *m) {
    if (!m) return;
    while (m->oldest) unlink_entry(m, m->oldest);
    free(m->buckets);
    free(m);
}

static entry *find(const memory_tier *m, const uint8_t *key) {
    for (entry *e = m->buckets[bucket_of(m, key)]; e; e = e->next_in_bucket)
        if (!memcmp(e->key, key, 32)) return e;
    return NULL;
}

static void make_newest(memory_tier *m, entry *e) {
    if (m->newest == e) return;
    /* detach */
    if (e->newer) e->newer->older = e->older;
    if (e->older) e->older->newer = e->newer; else if (m->oldest == e) m->oldest = e->newer;
    /* attach at the front */
    e->older = m->newest;
    e->newer = NULL;
    if (m->newest) m->newest->newer = e;
    m->newest = e;
    if (!m->oldest) m->oldest = e;
}

const uint8_t *memory_tier_get(memory_tier *m, const uint8_t *key, size_t *len) {
    entry *e = find(m, key);
    if (!e) return NULL;
    make_newest(m, e);
    *len = e->len;
    return e->val;
}

int memory_tier_has(const memory_tier *m, const uint8_t *key) { return find(m, key) != NULL; }

void memory_tier_del(memory_tier *m, const uint8_t *key) {
    entry *e = find(m, key);
    if (e) unlink_entry(m, e);
}

uint64_t memory_tier_trim(memory_tier *m, uint64_t target) {
    uint64_t removed = 0;
    while (m->bytes > target && m->oldest) {
        unlink_entry(m, m->oldest);
        removed++;
    }
    return removed;
}

static void grow(memory_tier *m) {
    size_t nb = m->n_buckets * 2;
    entry **b = calloc(nb, sizeof *b);
    if (!b) return; /* stay at this size: longer chains, still correct */
    for (size_t i = 0; i < m->n_buckets; i++) {
        entry *e = m->buckets[i];
        while (e) {
            entry *next = e->next_in_bucket;
            size_t j = (size_t)(kvi_load_u64(e->key) & (nb - 1));
            e->next_in_bucket = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = nb;
}

kvtc_result memory_tier_put(memory_tier *m, const uint8_t *key, const uint8_t *val, size_t len) {
    memory_tier_del(m, key);
    if (len > m->max_bytes) return KVTC_OK;
    memory_tier_trim(m, m->max_bytes - len);
    entry *e = calloc(1, sizeof *e);
    uint8_t *copy = malloc(len ? len : 1);
    if (!e || !copy) { free(e); free(copy); return KVTC_ERR_OUT_OF_MEMORY; }
    memcpy(copy, val, len);
    memcpy(e->key, key, 32);
    e->val = copy;
    e->len = len;
    if (m->n + 1 > m->n_buckets) grow(m);
    size_t b = bucket_of(m, key);
    e->next_in_bucket = m->buckets[b];
    m->buckets[b] = e;
    e->older = m->newest;
    if (m->newest) m->newest->newer = e;
    m->newest = e;
    if (!m->oldest) m->oldest = e;
    m->bytes += len;
    m->n++;
    return KVTC_OK;
}
