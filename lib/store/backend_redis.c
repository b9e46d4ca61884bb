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
 * - Redis Cluster: node 0 is the URI's; a MOVED (or ASK) reply names the
 *   node that owns the key's slot, which is then remembered (slot -> node,
 *   up to MAX_NODES nodes) and the whole batch is sent again, once, each
 *   key to its node: one pipeline per node, all flushed before any reply is
 *   read, so a batch is still one round trip. A batch redirected twice (a
 *   slot migrating) is KVTC_ERR_IO. Any transport failure forgets the map.
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
#include "store/redis_slot.h"

#define KEY_LEN 71 /* "kvtc:{" + 64 + "}" */
#define MAX_NODES 64  /* cluster nodes a backend talks to */

typedef struct redis_node {
    char host[256];
    int port;
    redisContext *c;
} redis_node;

typedef struct redis_backend {
    store_backend base;
    unsigned db;
    uint32_t ttl_seconds;
    uint64_t max_value; /* no valid record is larger: read at most this + 1 bytes */
    struct timeval timeout;
    int n_nodes;        /* nodes[0]: the URI's; the others learned from redirections */
    redis_node nodes[MAX_NODES];
    uint8_t slot_node[REDIS_CLUSTER_SLOTS]; /* node of each cluster slot (0 until redirected) */
} redis_backend;

static void key_name(const uint8_t *key, char name[KEY_LEN + 1]) {
    char hex[65];
    store_key_hex(key, hex);
    snprintf(name, KEY_LEN + 1, "kvtc:{%s}", hex);
}

/* Close every connection and forget the cluster map (after a transport
 * failure the topology may have changed; redirections rebuild it). */
static void drop(redis_backend *rb) {
    for (int i = 0; i < rb->n_nodes; i++) {
        if (rb->nodes[i].c) redisFree(rb->nodes[i].c);
        rb->nodes[i].c = NULL;
    }
    rb->n_nodes = 1;
    memset(rb->slot_node, 0, sizeof rb->slot_node);
}

static int node_of(const redis_backend *rb, const char *name) {
    return rb->slot_node[redis_key_slot(name, strlen(name))];
}

/* A MOVED/ASK error reply: remember the slot's node and return 1. */
static int learn_redirect(redis_backend *rb, const redisReply *r) {
    uint16_t slot;
    char host[256];
    int port;
    if (r->type != REDIS_REPLY_ERROR || redis_parse_redirect(r->str, r->len, &slot, host, &port)) return 0;
    int i = 0;
    while (i < rb->n_nodes && (rb->nodes[i].port != port || strcmp(rb->nodes[i].host, host))) i++;
    if (i == rb->n_nodes) {
        if (i == MAX_NODES) return 1; /* still a redirection: the batch fails after its retry */
        memcpy(rb->nodes[i].host, host, strlen(host) + 1);
        rb->nodes[i].port = port;
        rb->nodes[i].c = NULL;
        rb->n_nodes++;
    }
    rb->slot_node[slot] = (uint8_t)i;
    return 1;
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

static int connect_node(redis_backend *rb, int i) {
    redis_node *nd = &rb->nodes[i];
    if (nd->c) return 0;
    redisContext *c = redisConnectWithTimeout(nd->host, nd->port, rb->timeout);
    if (!c || c->err || redisSetTimeout(c, rb->timeout) != REDIS_OK) {
        if (c) redisFree(c);
        return -1;
    }
    nd->c = c;
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

/* Send what was appended to the connections of used[] (all of them before
 * any reply is read: one round trip for a batch over several nodes). */
static int flush_nodes(redis_backend *rb, const uint8_t *used) {
    for (int i = 0; i < rb->n_nodes; i++) {
        int done = 0;
        while (used[i] && !done)
            if (redisBufferWrite(rb->nodes[i].c, &done) != REDIS_OK) return -1;
    }
    return 0;
}

/* Per key of a batch: its node, connected, with the names. -1: a node
 * cannot be reached. */
static int route(redis_backend *rb, const uint8_t *keys, size_t n, char (*names)[KEY_LEN + 1], uint8_t *node,
                 uint8_t *used) {
    memset(used, 0, MAX_NODES);
    for (size_t i = 0; i < n; i++) {
        key_name(keys + 32 * i, names[i]);
        node[i] = (uint8_t)node_of(rb, names[i]);
        if (connect_node(rb, node[i]) != 0) return -1;
        used[node[i]] = 1;
    }
    return 0;
}

/* A bad value for the store's record check to reject (an empty one): the
 * store then counts it and deletes the key, since SET NX never replaces it. */
static int bad_value(uint8_t **val, size_t *len) {
    *len = 0;
    return (*val = malloc(1)) ? 0 : -1;
}

/* A batch: per key its name and node, and the nodes used. */
typedef struct batch {
    char (*names)[KEY_LEN + 1];
    uint8_t *node;
    uint8_t used[MAX_NODES];
} batch;

static int batch_alloc(batch *bt, size_t n) {
    bt->names = malloc(sizeof *bt->names * (n ? n : 1));
    bt->node = malloc(n ? n : 1);
    return bt->names && bt->node ? 0 : -1;
}

static void batch_free(batch *bt) {
    free(bt->names);
    free(bt->node);
}

static redisContext *ctx_of(redis_backend *rb, const batch *bt, size_t i) { return rb->nodes[bt->node[i]].c; }

/* One pipeline of EXISTS + GETRANGE key 0 max_value per key (one round
 * trip). GETRANGE rather than GET: a value larger than any valid record (a
 * foreign or hostile SET of up to 512 MB) is not transferred and copied into
 * memory on every get, only its first max_value + 1 bytes, and then rejected.
 * EXISTS tells a missing key from an empty value, which GETRANGE cannot.
 * *redirected: some key belongs to another cluster node (now learned). */
static kvtc_result get_once(redis_backend *rb, const uint8_t *keys, size_t n, uint8_t **vals, size_t *lens,
                            int *redirected) {
    *redirected = 0;
    kvtc_result res = KVTC_OK;
    char end[32];
    snprintf(end, sizeof end, "%lld", rb->max_value ? (long long)rb->max_value : -1LL); /* -1: to the end */
    batch bt;
    if (batch_alloc(&bt, n)) { batch_free(&bt); return KVTC_ERR_OUT_OF_MEMORY; }
    if (route(rb, keys, n, bt.names, bt.node, bt.used) != 0) res = KVTC_ERR_IO;
    for (size_t i = 0; res == KVTC_OK && i < n; i++) {
        const char *exists[2] = {"EXISTS", bt.names[i]}, *range[4] = {"GETRANGE", bt.names[i], "0", end};
        if (redisAppendCommandArgv(ctx_of(rb, &bt, i), 2, exists, NULL) != REDIS_OK ||
            redisAppendCommandArgv(ctx_of(rb, &bt, i), 4, range, NULL) != REDIS_OK)
            res = KVTC_ERR_IO;
    }
    if (res == KVTC_OK && flush_nodes(rb, bt.used)) res = KVTC_ERR_IO;
    int bad_reply = 0, oom = 0;
    for (size_t i = 0; res == KVTC_OK && i < n; i++) {
        void *reply = NULL, *reply2 = NULL;
        redisContext *c = ctx_of(rb, &bt, i);
        if (redisGetReply(c, &reply) != REDIS_OK || !reply) { res = KVTC_ERR_IO; break; }
        if (redisGetReply(c, &reply2) != REDIS_OK || !reply2) { freeReplyObject(reply); res = KVTC_ERR_IO; break; }
        redisReply *e = reply, *r = reply2;
        if (learn_redirect(rb, e)) {
            *redirected = 1; /* sent again, to its node */
        } else if (e->type != REDIS_REPLY_INTEGER) {
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
        } else if (learn_redirect(rb, r)) {
            *redirected = 1; /* moved between the two commands */
        } else {
            bad_reply = 1;
        }
        freeReplyObject(e);
        freeReplyObject(r);
    }
    batch_free(&bt);
    if (res == KVTC_ERR_IO) drop(rb); /* replies may be left unread: resynchronize */
    else if (oom) res = KVTC_ERR_OUT_OF_MEMORY;
    else if (bad_reply) res = KVTC_ERR_IO;
    return res;
}

/* A batch redirected on its first try is sent once more, each key to the
 * node that said it owns it; redirected again: KVTC_ERR_IO. */
static kvtc_result redis_get(store_backend *b, const uint8_t *keys, size_t n, uint8_t **vals, size_t *lens) {
    redis_backend *rb = (redis_backend *)b;
    sigpipe_guard g;
    sigpipe_block(&g);
    kvtc_result res = KVTC_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        for (size_t i = 0; i < n; i++) {
            vals[i] = NULL;
            lens[i] = 0;
        }
        int redirected = 0;
        res = get_once(rb, keys, n, vals, lens, &redirected);
        if (res == KVTC_OK && redirected) res = KVTC_ERR_IO;
        if (!redirected) break;
        for (size_t i = 0; i < n; i++) free(vals[i]);
    }
    sigpipe_restore(&g);
    if (res)
        for (size_t i = 0; i < n; i++) {
            free(vals[i]);
            vals[i] = NULL;
        }
    return res;
}

/* One pipeline of SET key record NX [EX ttl]; *n_done counts the leading
 * keys stored (or found stored). */
static kvtc_result put_once(redis_backend *rb, const uint8_t *keys, uint8_t *const *vals, const size_t *lens,
                            size_t n, size_t *n_done, int *redirected) {
    *n_done = 0;
    *redirected = 0;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%u", rb->ttl_seconds);
    int argc = rb->ttl_seconds ? 6 : 4;
    kvtc_result res = KVTC_OK;
    batch bt;
    if (batch_alloc(&bt, n)) { batch_free(&bt); return KVTC_ERR_OUT_OF_MEMORY; }
    if (route(rb, keys, n, bt.names, bt.node, bt.used) != 0) res = KVTC_ERR_IO;
    for (size_t i = 0; res == KVTC_OK && i < n; i++) {
        const char *argv[6] = {"SET", bt.names[i], (const char *)vals[i], "NX", "EX", ttl};
        size_t argvlen[6] = {3, strlen(bt.names[i]), lens[i], 2, 2, strlen(ttl)};
        if (redisAppendCommandArgv(ctx_of(rb, &bt, i), argc, argv, argvlen) != REDIS_OK) res = KVTC_ERR_IO;
    }
    if (res == KVTC_OK && flush_nodes(rb, bt.used)) res = KVTC_ERR_IO;
    int refused = 0;
    for (size_t i = 0; res == KVTC_OK && i < n; i++) {
        void *reply = NULL;
        if (redisGetReply(ctx_of(rb, &bt, i), &reply) != REDIS_OK || !reply) { res = KVTC_ERR_IO; break; }
        redisReply *r = reply;
        /* OK: stored; nil: it existed (NX); MOVED: another node's; another
         * error (OOM under noeviction): refused */
        if (learn_redirect(rb, r)) *redirected = refused = 1;
        else if (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_NIL) refused = 1;
        else if (!refused) (*n_done)++;
        freeReplyObject(r);
    }
    batch_free(&bt);
    if (res == KVTC_ERR_IO) drop(rb); /* replies may be left unread: resynchronize */
    else if (refused) res = KVTC_ERR_IO;
    return res;
}

static kvtc_result redis_put(store_backend *b, const uint8_t *keys, uint8_t *const *vals, const size_t *lens, size_t n,
                             size_t *n_done) {
    redis_backend *rb = (redis_backend *)b;
    sigpipe_guard g;
    sigpipe_block(&g);
    kvtc_result res = KVTC_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        int redirected = 0;
        res = put_once(rb, keys, vals, lens, n, n_done, &redirected); /* SET NX: a retry keeps what was stored */
        if (!redirected) break;
    }
    sigpipe_restore(&g);
    return res;
}

static kvtc_result exists_once(redis_backend *rb, const uint8_t *keys, size_t n, uint8_t *present, int *redirected) {
    *redirected = 0;
    kvtc_result res = KVTC_OK;
    batch bt;
    if (batch_alloc(&bt, n)) { batch_free(&bt); return KVTC_ERR_OUT_OF_MEMORY; }
    if (route(rb, keys, n, bt.names, bt.node, bt.used) != 0) res = KVTC_ERR_IO;
    for (size_t i = 0; res == KVTC_OK && i < n; i++) {
        const char *argv[2] = {"EXISTS", bt.names[i]};
        if (redisAppendCommandArgv(ctx_of(rb, &bt, i), 2, argv, NULL) != REDIS_OK) res = KVTC_ERR_IO;
    }
    if (res == KVTC_OK && flush_nodes(rb, bt.used)) res = KVTC_ERR_IO;
    /* read every reply of the pipeline, even after an error reply */
    for (size_t i = 0; res != KVTC_ERR_IO && i < n; i++) {
        void *reply = NULL;
        if (redisGetReply(ctx_of(rb, &bt, i), &reply) != REDIS_OK || !reply) { res = KVTC_ERR_IO; break; }
        redisReply *r = reply;
        if (r->type == REDIS_REPLY_INTEGER) present[i] = r->integer > 0;
        else if (learn_redirect(rb, r)) *redirected = 1;
        else res = KVTC_ERR_CORRUPT; /* remembered; replaced by IO below */
        freeReplyObject(r);
    }
    batch_free(&bt);
    if (res == KVTC_ERR_CORRUPT) res = KVTC_ERR_IO;
    else if (res == KVTC_ERR_IO) drop(rb); /* replies may be left unread: resynchronize */
    return res;
}

static kvtc_result redis_exists(store_backend *b, const uint8_t *keys, size_t n, uint8_t *present) {
    redis_backend *rb = (redis_backend *)b;
    sigpipe_guard g;
    sigpipe_block(&g);
    kvtc_result res = KVTC_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        int redirected = 0;
        res = exists_once(rb, keys, n, present, &redirected);
        if (res == KVTC_OK && redirected) res = KVTC_ERR_IO;
        if (!redirected) break;
    }
    sigpipe_restore(&g);
    return res;
}

static kvtc_result redis_del(store_backend *b, const uint8_t *key) {
    redis_backend *rb = (redis_backend *)b;
    char name[KEY_LEN + 1];
    key_name(key, name);
    const char *argv[2] = {"DEL", name};
    sigpipe_guard g;
    sigpipe_block(&g);
    kvtc_result res = KVTC_ERR_IO;
    for (int attempt = 0; attempt < 2; attempt++) {
        int i = node_of(rb, name);
        redisReply *r = connect_node(rb, i) == 0 ? redisCommandArgv(rb->nodes[i].c, 2, argv, NULL) : NULL;
        if (!r) { drop(rb); break; }
        int moved = learn_redirect(rb, r);
        res = r->type == REDIS_REPLY_INTEGER ? KVTC_OK : KVTC_ERR_IO;
        freeReplyObject(r);
        if (!moved) break;
    }
    sigpipe_restore(&g);
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
    memcpy(rb->nodes[0].host, host, strlen(host) + 1);
    rb->nodes[0].port = port;
    rb->n_nodes = 1;
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
