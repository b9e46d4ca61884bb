/* test_store_redis.c - the kvtc store on a real redis-server, started here on
 * a free loopback port in a temporary directory and stopped by its PID:
 * round trip against the codec, databases and TTL, values corrupted and
 * truncated in place, a frozen server (timeouts, no hang), and the server
 * killed during puts and restarted, without and with persistence.
 * Skipped (exit 77) when redis-server is not installed or hiredis was not
 * found at build time. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "store_fixture.h"

#ifndef KVTC_HAVE_HIREDIS
int main(void) {
    printf("test_store_redis: SKIP (built without hiredis)\n");
    return 77;
}
#else

#include "redis_fixture.h"

/* The test server, for the test's own commands. */
static int port;
static redisContext *admin(void) { return rf_connect(port, 1); }

static fixture fx;
static char dir[256];
static pid_t server = -1;

/* Start redis-server (persist: append-only file, fsync always) and wait
 * until it answers PING with PONG (it refuses commands while loading). */
static int start_server(int persist) {
    char ports[16];
    snprintf(ports, sizeof ports, "%d", port);
    fflush(NULL);
    server = fork();
    if (server == 0) {
        execlp("redis-server", "redis-server", "--port", ports, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", persist ? "yes" : "no", "--appendfsync", "always", "--dir", dir,
               "--logfile", "redis.log", "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    return rf_wait_ready(port);
}

static void stop_server(int sig) {
    if (server <= 0) return;
    kill(server, sig);
    waitpid(server, NULL, 0);
    server = -1;
}

static void uri_for(int db, char *uri, size_t cap) { snprintf(uri, cap, "redis://127.0.0.1:%d/%d", port, db); }

/* The only kvtc key of database db (NULL-terminated copy in name). */
static int only_key(int db, char *name, size_t cap) {
    redisContext *c = admin();
    if (!c) return -1;
    redisReply *r = redisCommand(c, "SELECT %d", db);
    if (r) freeReplyObject(r);
    r = redisCommand(c, "KEYS kvtc:*");
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 1;
    if (ok) snprintf(name, cap, "%s", r->element[0]->str);
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok ? 0 : -1;
}

static long long admin_int(int db, const char *cmd, const char *key) {
    redisContext *c = admin();
    if (!c) return -99;
    redisReply *r = redisCommand(c, "SELECT %d", db);
    if (r) freeReplyObject(r);
    r = redisCommand(c, cmd, key);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -98;
    if (r) freeReplyObject(r);
    redisFree(c);
    return v;
}

static void test_round_trip(void) {
    char uri[128];
    uri_for(0, uri, sizeof uri);
    enum { N = 200 };
    synth_cache sc;
    CHECK(fixture_cache(&fx, N, 7, &sc) == 0);
    int32_t tokens[N];
    fixture_tokens(tokens, N, 7);
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    if (!s) return;
    uint64_t stored = 0, hit = 0, got = 0;
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_OK && stored == 6);
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_OK && stored == 0);
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == 192);
    kvtc_cache ref, out;
    kvtc_store_layout lay;
    CHECK(fixture_reference_decode(&fx, &sc.c, 192, &ref) == KVTC_OK);
    CHECK(fixture_out(&fx, 150, &out, &lay) == 0);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == 150);
    CHECK_MSG(fixture_prefix_equal(&out, &ref, 150), "redis get differs from the codec's own decode");
    CHECK(kvtc_store_delete(s, tokens, N) == KVTC_OK);
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == 0);
    CHECK(kvtc_store_evict(s, 0, NULL) == KVTC_ERR_UNSUPPORTED);
    kvtc_store_close(s);

    /* database 1 with a TTL: a key there expires, database 0 does not see it */
    uri_for(1, uri, sizeof uri);
    o.ttl_seconds = 100;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    CHECK(kvtc_store_put(s, tokens, 32, &sc.c, &stored) == KVTC_OK && stored == 1);
    kvtc_store_close(s);
    char key[128];
    CHECK(only_key(1, key, sizeof key) == 0);
    long long ttl = admin_int(1, "TTL %s", key);
    CHECK_MSG(ttl > 0 && ttl <= 100, "TTL %lld", ttl);
    CHECK(admin_int(0, "EXISTS %s", key) == 0);

    synth_cache_free(&out);
    synth_cache_free(&ref);
    synth_free(&sc);
}

static void admin_cmd(const char *cmd) {
    redisContext *c = admin();
    if (!c) return;
    redisReply *r = redisCommand(c, cmd);
    if (r) freeReplyObject(r);
    redisFree(c);
}

static long long used_memory(void) {
    redisContext *c = admin();
    if (!c) return -1;
    redisReply *r = redisCommand(c, "INFO memory");
    long long v = -1;
    const char *at = r && r->type == REDIS_REPLY_STRING ? r->str : NULL;
    if (at && (at = strstr(at, "used_memory:"))) v = atoll(at + 12);
    if (r) freeReplyObject(r);
    redisFree(c);
    return v;
}

/* A full server that does not evict refuses SETs: KVTC_ERR_IO, and the chunks
 * stored before the refusal are reported, readable and exact. */
static void test_full_server(void) {
    char uri[128];
    uri_for(4, uri, sizeof uri);
    enum { N = 20 * FX_C };
    synth_cache sc;
    CHECK(fixture_cache(&fx, N, 13, &sc) == 0);
    int32_t tokens[N];
    fixture_tokens(tokens, N, 13);
    kvtc_store_options o;
    fixture_options(&o);
    o.codec = KVTC_STORE_CODEC_RAW; /* 16 KB a chunk */
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, NULL, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    long long used = used_memory();
    CHECK(used > 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "CONFIG SET maxmemory %lld", used + 100000);
    admin_cmd("CONFIG SET maxmemory-policy noeviction");
    admin_cmd(cmd);
    uint64_t stored = 0, hit = 0, got = 0;
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_ERR_IO);
    CHECK_MSG(stored > 0 && stored < 20, "%llu of 20 chunks stored under a 100 KB margin", (unsigned long long)stored);
    admin_cmd("CONFIG SET maxmemory 0");
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == stored * FX_C);
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, hit ? hit : 1, &out, &lay) == 0);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == hit && fixture_prefix_equal(&out, &sc.c, got));
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_OK); /* room again: the rest goes in */
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == N);
    CHECK(kvtc_store_delete(s, tokens, N) == KVTC_OK);
    synth_cache_free(&out);
    synth_free(&sc);
    kvtc_store_close(s);
}

static void test_damaged_values(void) {
    char uri[128], key[128];
    uri_for(2, uri, sizeof uri);
    synth_cache sc;
    CHECK(fixture_cache(&fx, 32, 9, &sc) == 0);
    int32_t tokens[32];
    fixture_tokens(tokens, 32, 9);
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    if (!s) return;
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, 32, &out, &lay) == 0);
    uint64_t got = 0;
    kvtc_store_stats st = {.struct_size = sizeof st};
    /* bytes changed, a short value, and a value of another type (a list: GET
     * answers WRONGTYPE, which was a KVTC_ERR_IO on every get, and SET NX
     * never replaced it) */
    const char *damage[3][2] = {{"SETRANGE %s 300 X", NULL}, {"SET %s truncated", NULL}, {"DEL %s", "LPUSH %s x"}};
    for (int d = 0; d < 3; d++) {
        CHECK(kvtc_store_put(s, tokens, 32, &sc.c, NULL) == KVTC_OK);
        CHECK(kvtc_store_get(s, tokens, 32, &lay, &got) == KVTC_OK && got == 32);
        CHECK(only_key(2, key, sizeof key) == 0);
        redisContext *c = admin();
        CHECK(c != NULL);
        if (c) {
            redisReply *r = redisCommand(c, "SELECT 2");
            if (r) freeReplyObject(r);
            for (int k = 0; k < 2 && damage[d][k]; k++) {
                r = redisCommand(c, damage[d][k], key);
                if (r) freeReplyObject(r);
            }
            redisFree(c);
        }
        CHECK(kvtc_store_get(s, tokens, 32, &lay, &got) == KVTC_OK && got == 0);
        CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.errors == (uint64_t)d + 1);
        CHECK(admin_int(2, "EXISTS %s", key) == 0); /* the bad value was removed */
    }
    kvtc_store_close(s);
    synth_cache_free(&out);
    synth_free(&sc);
}

/* Redis's counter of bytes sent to clients. */
static long long net_output_bytes(void) {
    redisContext *c = admin();
    if (!c) return -1;
    redisReply *r = redisCommand(c, "INFO stats");
    long long v = -1;
    const char *at = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "total_net_output_bytes:") : NULL;
    if (at) v = atoll(at + strlen("total_net_output_bytes:"));
    if (r) freeReplyObject(r);
    redisFree(c);
    return v;
}

/* A value far larger than any valid record under one of our keys (a foreign
 * or hostile SET): rejected and deleted without being transferred whole. */
static void test_oversized_value(void) {
    char uri[128], key[128];
    uri_for(3, uri, sizeof uri);
    synth_cache sc;
    CHECK(fixture_cache(&fx, 32, 11, &sc) == 0);
    int32_t tokens[32];
    fixture_tokens(tokens, 32, 11);
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    if (!s) { synth_free(&sc); return; }
    CHECK(kvtc_store_put(s, tokens, 32, &sc.c, NULL) == KVTC_OK);
    CHECK(only_key(3, key, sizeof key) == 0);
    size_t big = (size_t)32 << 20;
    char *junk = calloc(big, 1);
    redisContext *c = admin();
    CHECK(junk && c);
    if (junk && c) {
        redisReply *r = redisCommand(c, "SELECT 3");
        if (r) freeReplyObject(r);
        r = redisCommand(c, "SET %s %b", key, junk, big);
        CHECK(r && r->type == REDIS_REPLY_STATUS);
        if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    free(junk);
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, 32, &out, &lay) == 0);
    uint64_t got = 9;
    kvtc_store_stats st = {.struct_size = sizeof st};
    long long sent0 = net_output_bytes();
    CHECK(kvtc_store_get(s, tokens, 32, &lay, &got) == KVTC_OK && got == 0);
    long long sent = net_output_bytes() - sent0;
    CHECK_MSG(sent0 >= 0 && sent < (1 << 20), "get transferred %lld bytes of a %zu-byte value", sent, big);
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.errors == 1);
    CHECK(admin_int(3, "EXISTS %s", key) == 0); /* removed: the next put stores a good one */
    CHECK(kvtc_store_put(s, tokens, 32, &sc.c, NULL) == KVTC_OK);
    CHECK(kvtc_store_get(s, tokens, 32, &lay, &got) == KVTC_OK && got == 32);
    kvtc_store_close(s);
    synth_cache_free(&out);
    synth_free(&sc);
}

static void test_frozen_server(void) {
    char uri[128];
    uri_for(0, uri, sizeof uri);
    int32_t tokens[64];
    fixture_tokens(tokens, 64, 5);
    kvtc_store_options o;
    fixture_options(&o);
    o.timeout_ms = 300;
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    if (!s) return;
    uint64_t hit = 9;
    CHECK(kvtc_store_lookup(s, tokens, 64, &hit) == KVTC_OK && hit == 0); /* connected */
    kill(server, SIGSTOP);
    double t0 = test_now();
    CHECK(kvtc_store_lookup(s, tokens, 64, &hit) == KVTC_ERR_IO);
    double waited = test_now() - t0;
    CHECK_MSG(waited < 2.0, "a frozen server held lookup for %.2f s (timeout 0.3 s)", waited);
    kill(server, SIGCONT);
    CHECK(kvtc_store_lookup(s, tokens, 64, &hit) == KVTC_OK && hit == 0); /* reconnected */
    kvtc_store_close(s);

    /* with a memory tier, what it holds is served while the server is frozen */
    o.memory_bytes = 1 << 20;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    if (!s) return;
    synth_cache sc;
    CHECK(fixture_cache(&fx, 64, 5, &sc) == 0);
    CHECK(kvtc_store_put(s, tokens, 64, &sc.c, NULL) == KVTC_OK);
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, 64, &out, &lay) == 0);
    uint64_t got = 0;
    kill(server, SIGSTOP);
    CHECK(kvtc_store_lookup(s, tokens, 64, &hit) == KVTC_OK && hit == 64);
    CHECK(kvtc_store_get(s, tokens, 64, &lay, &got) == KVTC_OK && got == 64);
    kill(server, SIGCONT);
    kvtc_store_stats st = {.struct_size = sizeof st};
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.memory_hits == 2 && st.backend_errors == 0);
    CHECK(kvtc_store_delete(s, tokens, 64) == KVTC_OK);
    synth_cache_free(&out);
    synth_free(&sc);
    kvtc_store_close(s);
}

/* ---- killed during puts ----------------------------------------------------- */

enum { K_SEQS = 2000, K_TOKENS = 128 };
static synth_cache k_cache;
static kvtc_cache k_ref;

static void seq_tokens(int32_t *t, int i) { fixture_tokens(t, K_TOKENS, 10000 + (uint64_t)i); }

/* Puts sequences until it has seen the server go away and come back; writes
 * the number of sequences stored before the first failure to dir/first_error. */
static void putter_child(const char *uri) {
    kvtc_store_options o;
    fixture_options(&o);
    o.timeout_ms = 500;
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    if (!s) return;
    int first_error = -1, ok_after = 0, other_errors = 0;
    double t0 = test_now();
    for (int i = 0; i < K_SEQS && ok_after < 5 && test_now() - t0 < 20; i++) {
        int32_t t[K_TOKENS];
        seq_tokens(t, i);
        kvtc_result r = kvtc_store_put(s, t, K_TOKENS, &k_cache.c, NULL);
        if (r == KVTC_ERR_IO) {
            if (first_error < 0) first_error = i;
            rf_sleep_ms(20);
        } else if (r == KVTC_OK) {
            if (first_error >= 0) ok_after++;
            rf_sleep_ms(1); /* a steady rate: the kill lands in the middle */
        } else {
            other_errors++;
        }
    }
    CHECK_MSG(first_error >= 0 && ok_after >= 5, "first error %d, puts after restart %d", first_error, ok_after);
    CHECK(other_errors == 0);
    char path[300];
    snprintf(path, sizeof path, "%s/first_error", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%d\n", first_error);
        fclose(f);
    }
    kvtc_store_close(s);
}

static void test_killed(int persist) {
    char uri[128];
    uri_for(3, uri, sizeof uri);
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        test_failed_ = 0;
        putter_child(uri);
        _exit(test_failed_ ? 1 : 0);
    }
    rf_sleep_ms(300);
    stop_server(SIGKILL);
    rf_sleep_ms(200);
    CHECK(start_server(persist) == 0);
    int status = 0;
    CHECK(child > 0 && waitpid(child, &status, 0) == child);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "putter (persist %d) failed", persist);
    char path[300];
    snprintf(path, sizeof path, "%s/first_error", dir);
    size_t len = 0;
    char *txt = test_read_file(path, &len);
    int first_error = txt ? atoi(txt) : -1;
    free(txt);

    /* every value there is what was put; with persistence, all acknowledged puts survived */
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    if (!s) return;
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, K_TOKENS, &out, &lay) == 0);
    int mismatches = 0, lost = 0, restored_total = 0;
    for (int i = 0; i < K_SEQS; i++) {
        int32_t t[K_TOKENS];
        seq_tokens(t, i);
        uint64_t got = 0;
        CHECK(kvtc_store_get(s, t, K_TOKENS, &lay, &got) == KVTC_OK);
        if (!fixture_prefix_equal(&out, &k_ref, got)) mismatches++;
        if (persist && i < first_error && got != K_TOKENS) lost++;
        restored_total += got > 0;
    }
    kvtc_store_stats st = {.struct_size = sizeof st};
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK);
    CHECK_MSG(mismatches == 0 && st.errors == 0, "%d mismatched sequences, %llu bad records", mismatches,
              (unsigned long long)st.errors);
    CHECK_MSG(lost == 0, "%d acknowledged sequences lost despite appendfsync always", lost);
    CHECK(restored_total >= 5);
    printf("killed during puts (persist %d): first error after %d sequences, %d sequences readable\n", persist,
           first_error, restored_total);
    /* clean up database 3 for the next round */
    redisContext *c = admin();
    if (c) {
        redisReply *r = redisCommand(c, "SELECT 3");
        if (r) freeReplyObject(r);
        r = redisCommand(c, "FLUSHDB");
        if (r) freeReplyObject(r);
        redisFree(c);
    }
    synth_cache_free(&out);
    kvtc_store_close(s);
}

int main(void) {
    if (!rf_find_in_path("redis-server")) {
        printf("test_store_redis: SKIP (redis-server not installed)\n");
        return 77;
    }
    double t0 = test_now();
    if (rf_free_ports(&port, 1, 65536)) port = -1;
    if (port <= 0 || fixture_tmpdir(dir, sizeof dir, "redis") != 0 || start_server(0) != 0) {
        fprintf(stderr, "test_store_redis: could not start redis-server on port %d\n", port);
        stop_server(SIGKILL);
        return 1;
    }
    if (fixture_init(&fx) != 0) {
        stop_server(SIGKILL);
        return 1;
    }
    test_round_trip();
    test_damaged_values();
    test_oversized_value();
    test_full_server();
    test_frozen_server();
    CHECK(fixture_cache(&fx, K_TOKENS, 77, &k_cache) == 0);
    CHECK(fixture_reference_decode(&fx, &k_cache.c, K_TOKENS, &k_ref) == KVTC_OK);
    test_killed(0);
    stop_server(SIGTERM);
    CHECK(start_server(1) == 0);
    test_killed(1);
    stop_server(SIGTERM);
    synth_cache_free(&k_ref);
    synth_free(&k_cache);
    fixture_free(&fx);
    fixture_rmtree(dir);
    printf("test_store_redis: %.2f s\n", test_now() - t0);
    return TEST_REPORT();
}

#endif
