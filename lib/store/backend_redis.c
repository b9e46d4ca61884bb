/* backend_redis.c - the redis:// backend, over hiredis (synchronous API).
 *
 * - key: "kvtc:{<64 hex of the chunk key>}". The hash tag is the whole chunk
 *   key, so Redis Cluster places every chunk by its own hash: chunks spread
 *   evenly over the shards (a shared system prompt does not pin one shard),
 *   and a value is one key (no second metadata key that could race it).
 * - put: SET key record NX [EX ttl]: atomic; an existing value is kept.
 * - exists: one pipeline of EXISTS (one round trip for a whole lookup).
 * - get: one pipeline of EXISTS + GETRANGE 0 max_value per key (one round
 *   trip; a value larger than any record is never transferred whole).
 * - timeouts: connect and every command are bounded by timeout_ms, so a dead
 *   or hung server is KVTC_ERR_IO, not a hang. After any failure the
 *   connection is dropped and the next call reconnects (a restarted server
 *   is picked up without reopening the store).
 * - SIGPIPE: writing to a socket the server closed raises SIGPIPE; the
 *   library must not change the process's handlers, so each command blocks
 *   SIGPIPE in the calling thread and consumes one it caused.
 * Eviction is the server's (maxmemory + maxmemory-policy allkeys-lru). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/backend.h"

/* "HOST:PORT[/DB]": 0, or -1 for a malformed URI (checked with or without hiredis). */
static int parse_address(const char *hostportdb, char host[256], int *port, unsigned *db) {
    const char *colon = strrchr(hostportdb, ':');
    if (!colon || colon == hostportdb || (size_t)(colon - hostportdb) >= 256) return -1;
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || p <= 0 || p > 65535) return -1;
    unsigned long d = 0;
    if (*end == '/') {
        const char *ds = end + 1;
        d = strtoul(ds, &end, 10);
        if (end == ds || d > 1000000) return -1;
    }
    if (*end != '\0') return -1;
    memcpy(host, hostportdb, (size_t)(colon - hostportdb));
    host[colon - hostportdb] = '\0';
    *port = (int)p;
    *db = (unsigned)d;
    return 0;
}

#ifndef KVTC_HAVE_HIREDIS

kvtc_result store_redis_open(const char *hostportdb, const store_backend_config *cfg, store_backend **out) {
    (void)cfg;
    *out = NULL;
    char host[256];
    int port;
    unsigned db;
    return parse_address(hostportdb, host, &port, &db) ? KVTC_ERR_INVALID_ARGUMENT : KVTC_ERR_UNSUPPORTED;
}

#else

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

#include "store/keys.h"

#define KEY_LEN 71 /* "kvtc:{" + 64 + "}" */

typedef struct redis_backend {
    store_backend base;
    char host[256];
    int port;
    unsigned db;
    uint32_t ttl_seconds;
    uint64_t max_value; /* no valid record is larger: read at most this + 1 bytes */
    struct timeval timeout;
    redisContext *c;
} redis_backend;

static void key_name(const uint8_t *key, char name[KEY_LEN + 1]) {
    char hex[65];
    store_key_hex(key, hex);
    snprintf(name, KEY_LEN + 1, "kvtc:{%s}", hex);
}

static void drop(redis_backend *rb) {
    if (rb->c) redisFree(rb->c);
    rb->c = NULL;
}

/* SIGPIPE blocked in this thread for the duration of one exchange. */
typedef struct sigpipe_guard {
    sigset_t old;
    int was_pending;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g) {
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old);
}

static void sigpipe_restore(sigpipe_guard *g) {
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        (void)sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static int connect_if_needed(redis_backend *rb) {
    if (rb->c) return 0;
    redisContext *c = redisConnectWithTimeout(rb->host, rb->port, rb->timeout);
    if (!c || c->err || redisSetTimeout(c, rb->timeout) != REDIS_OK) {
        if (c) redisFree(c);
        return -1;
    }
    rb->c = c;
    if (rb->db) {
        char db[16];
        snprintf(db, sizeof db, "%u", rb->db);
        const char *argv[2] = {"SELECT", db};
        redisReply *r = redisCommandArgv(c, 2, argv, NULL);
        int ok = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
        if (!ok) { drop(rb); return -1; }
    }
    return 0;
}

/* One command; NULL (and the connection dropped) on a transport failure. */
static redisReply *command(redis_backend *rb, int argc, const char **argv, const size_t *argvlen) {
    sigpipe_guard g;
    sigpipe_block(&g);
    redisReply *r = NULL;
    if (connect_if_needed(rb) == 0) {
        r = redisCommandArgv(rb->c, argc, argv, argvlen);
        if (!r) drop(rb);
    }
    sigpipe_restore(&g);
    return r;
}

/* A bad value for the store's record check to reject (an empty one): the
 * store then counts it and deletes the key, since SET NX never replaces it. */
static int bad_value(uint8_t **val, size_t *len) {
    *len = 0;
    return (*val = malloc(1)) ? 0 : -1;
}

/* One pipeline of EXISTS + GETRANGE key 0 max_value per key (one round
 * trip). GETRANGE rather than GET: a value larger than any valid record (a
 * foreign or hostile SET of up to 512 MB) is not transferred and copied into
 * memory on every get, only its first max_value + 1 bytes, and then rejected.
 * EXISTS tells a missing key from an empty value, which GETRANGE cannot. */
static kvtc_result redis_get(store_backend *b, const uint8_t *keys, size_t n, uint8_t **vals, size_t *lens) {
    redis_backend *rb = (redis_backend *)b;
    for (size_t i = 0; i < n; i++) {
        vals[i] = NULL;
        lens[i] = 0;
    }
    sigpipe_guard g;
    sigpipe_block(&g);
    kvtc_result res = KVTC_OK;
    char end[32];
    snprintf(end, sizeof end, "%lld", rb->max_value ? (long long)rb->max_value : -1LL); /* -1: to the end */
    if (connect_if_needed(rb) != 0) res = KVTC_ERR_IO;
    for (size_t i = 0; res == KVTC_OK && i < n; i++) {
        char name[KEY_LEN + 1];
        key_name(keys + 32 * i, name);
        const char *exists[2] = {"EXISTS", name}, *range[4] = {"GETRANGE", name, "0", end};
        if (redisAppendCommandArgv(rb->c, 2, exists, NULL) != REDIS_OK ||
            redisAppendCommandArgv(rb->c, 4, range, NULL) != REDIS_OK)
            res = KVTC_ERR_IO;
    }
    int bad_reply = 0, oom = 0;
    for (size_t i = 0; res == KVTC_OK && i < n; i++) {
        void *reply = NULL, *reply2 = NULL;
        if (redisGetReply(rb->c, &reply) != REDIS_OK || !reply) { res = KVTC_ERR_IO; break; }
        if (redisGetReply(rb->c, &reply2) != REDIS_OK || !reply2) { freeReplyObject(reply); res = KVTC_ERR_IO; break; }
        redisReply *e = reply, *r = reply2;
        if (e->type != REDIS_REPLY_INTEGER) {
            bad_reply = 1; /* e.g. LOADING while a restarted server reads its data */
        } else if (e->integer == 0) {
            /* missing (a value that appeared since EXISTS is left for the next get) */
        } else if (r->type == REDIS_REPLY_STRING) {
            if (rb->max_value && (uint64_t)r->len > rb->max_value) {
                if (bad_value(&vals[i], &lens[i])) oom = 1;
            } else if (!(vals[i] = malloc(r->len ? r->len : 1))) {
                oom = 1; /* keep reading the pipeline's replies */
            } else {
                memcpy(vals[i], r->str, r->len);
                lens[i] = r->len;
            }
        } else if (r->type == REDIS_REPLY_ERROR && r->len >= 9 && !memcmp(r->str, "WRONGTYPE", 9)) {
            /* a key of ours holding a list, hash...: a bad value, not a
             * server failure (every get would fail otherwise) */
            if (bad_value(&vals[i], &lens[i])) oom = 1;
        } else {
            bad_reply = 1;
        }
        freeReplyObject(e);
        freeReplyObject(r);
    }
    if (res == KVTC_ERR_IO) drop(rb); /* replies may be left unread: resynchronize */
    else if (oom) res = KVTC_ERR_OUT_OF_MEMORY;
    else if (bad_reply) res = KVTC_ERR_IO;
    sigpipe_restore(&g);
    if (res)
        for (size_t i = 0; i < n; i++) {
            free(vals[i]);
            vals[i] = NULL;
        }
    return res;
}

/* One pipeline of SET key record NX [EX ttl]. */
static kvtc_result redis_put(store_backend *b, const uint8_t *keys, uint8_t *const *vals, const size_t *lens, size_t n,
                             size_t *n_done) {
    redis_backend *rb = (redis_backend *)b;
    *n_done = 0;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%u", rb->ttl_seconds);
    int argc = rb->ttl_seconds ? 6 : 4;
    sigpipe_guard g;
    sigpipe_block(&g);
    kvtc_result res = KVTC_OK;
    if (connect_if_needed(rb) != 0) res = KVTC_ERR_IO;
    for (size_t i = 0; res == KVTC_OK && i < n; i++) {
        char name[KEY_LEN + 1];
        key_name(keys + 32 * i, name);
        const char *argv[6] = {"SET", name, (const char *)vals[i], "NX", "EX", ttl};
        size_t argvlen[6] = {3, strlen(name), lens[i], 2, 2, strlen(ttl)};
        if (redisAppendCommandArgv(rb->c, argc, argv, argvlen) != REDIS_OK) res = KVTC_ERR_IO;
    }
    int refused = 0;
    for (size_t i = 0; res == KVTC_OK && i < n; i++) {
        void *reply = NULL;
        if (redisGetReply(rb->c, &reply) != REDIS_OK || !reply) { res = KVTC_ERR_IO; break; }
        redisReply *r = reply;
        /* OK: stored; nil: it existed (NX); an error (OOM under noeviction): refused */
        if (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_NIL) refused = 1;
        else if (!refused) (*n_done)++;
        freeReplyObject(r);
    }
    if (res == KVTC_ERR_IO) drop(rb); /* replies may be left unread: resynchronize */
    else if (refused) res = KVTC_ERR_IO;
    sigpipe_restore(&g);
    return res;
}

static kvtc_result redis_exists(store_backend *b, const uint8_t *keys, size_t n, uint8_t *present) {
    redis_backend *rb = (redis_backend *)b;
    sigpipe_guard g;
    sigpipe_block(&g);
    kvtc_result res = KVTC_OK;
    if (connect_if_needed(rb) != 0) res = KVTC_ERR_IO;
    for (size_t i = 0; res == KVTC_OK && i < n; i++) {
        char name[KEY_LEN + 1];
        key_name(keys + 32 * i, name);
        const char *argv[2] = {"EXISTS", name};
        if (redisAppendCommandArgv(rb->c, 2, argv, NULL) != REDIS_OK) res = KVTC_ERR_IO;
    }
    /* read every reply of the pipeline, even after an error reply */
    for (size_t i = 0; res != KVTC_ERR_IO && i < n; i++) {
        void *reply = NULL;
        if (redisGetReply(rb->c, &reply) != REDIS_OK || !reply) { res = KVTC_ERR_IO; break; }
        redisReply *r = reply;
        if (r->type == REDIS_REPLY_INTEGER) present[i] = r->integer > 0;
        else res = KVTC_ERR_CORRUPT; /* remembered; replaced by IO below */
        freeReplyObject(r);
    }
    if (res == KVTC_ERR_CORRUPT) res = KVTC_ERR_IO;
    else if (res == KVTC_ERR_IO) drop(rb); /* replies may be left unread: resynchronize */
    sigpipe_restore(&g);
    return res;
}

static kvtc_result redis_del(store_backend *b, const uint8_t *key) {
    redis_backend *rb = (redis_backend *)b;
    char name[KEY_LEN + 1];
    key_name(key, name);
    const char *argv[2] = {"DEL", name};
    redisReply *r = command(rb, 2, argv, NULL);
    if (!r) return KVTC_ERR_IO;
    kvtc_result res = r->type == REDIS_REPLY_INTEGER ? KVTC_OK : KVTC_ERR_IO;
    freeReplyObject(r);
    return res;
}

static void redis_close(store_backend *b) {
    redis_backend *rb = (redis_backend *)b;
    if (!rb) return;
    drop(rb);
    free(rb);
}

static const store_backend_ops redis_ops = {redis_get, redis_put, redis_exists, redis_del, NULL, NULL, redis_close};

kvtc_result store_redis_open(const char *hostportdb, const store_backend_config *cfg, store_backend **out) {
    *out = NULL;
    char host[256];
    int port;
    unsigned db;
    if (parse_address(hostportdb, host, &port, &db)) return KVTC_ERR_INVALID_ARGUMENT;
    redis_backend *rb = calloc(1, sizeof *rb);
    if (!rb) return KVTC_ERR_OUT_OF_MEMORY;
    rb->base.ops = &redis_ops;
    memcpy(rb->host, host, strlen(host) + 1);
    rb->port = port;
    rb->db = db;
    rb->ttl_seconds = cfg ? cfg->ttl_seconds : 0;
    rb->max_value = cfg ? cfg->max_value : 0;
    uint32_t ms = cfg && cfg->timeout_ms ? cfg->timeout_ms : 2000;
    rb->timeout.tv_sec = ms / 1000;
    rb->timeout.tv_usec = (ms % 1000) * 1000;
    *out = &rb->base;
    return KVTC_OK;
}

#endif
