/* test_store_redis_cluster.c - the kvtc store on a 3-node Redis Cluster
 * (issue 12): three redis-server processes in cluster mode on free loopback
 * ports, joined by `redis-cli --cluster create`, stopped by their PIDs.
 *  - the backend's slot function equals the servers' CLUSTER KEYSLOT;
 *  - a store given one node follows MOVED replies: a put spreads one
 *    sequence's chunks over the nodes, each record one key on one node;
 *    lookup and get (from any node) return the whole prefix, bit for bit;
 *  - a damaged record on another node is a miss, counted and deleted there;
 *  - delete removes the records from every node;
 *  - a node killed: KVTC_ERR_IO, no crash, no record rejected.
 * Skipped (exit 77) without redis-server / redis-cli or hiredis. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "store_fixture.h"

#ifndef KVTC_HAVE_HIREDIS
int main(void) {
    printf("test_store_redis_cluster: SKIP (built without hiredis)\n");
    return 77;
}
#else

#include "redis_fixture.h"

#include "store/redis_slot.h"

#define N_NODES 3
#define N_CHUNKS 16
#define N_TOK (N_CHUNKS * FX_C)

static int ports[N_NODES];
static pid_t pids[N_NODES] = {-1, -1, -1};
static char dir[256];

static redisContext *admin(int node) { return rf_connect(ports[node], 2); }

/* A reply's integer, or a negative code. */
static long long admin_int(int node, const char *fmt, const char *arg) {
    redisContext *c = admin(node);
    if (!c) return -99;
    redisReply *r = redisCommand(c, fmt, arg);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -98;
    if (r) freeReplyObject(r);
    redisFree(c);
    return v;
}

static int start_node(int i) {
    char port[16], conf[64], log[64];
    snprintf(port, sizeof port, "%d", ports[i]);
    snprintf(conf, sizeof conf, "nodes-%d.conf", ports[i]);
    snprintf(log, sizeof log, "redis-%d.log", ports[i]);
    fflush(NULL);
    pids[i] = fork();
    if (pids[i] == 0) {
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
               "--cluster-config-file", conf, "--cluster-node-timeout", "3000", "--save", "", "--appendonly", "no",
               "--dir", dir, "--logfile", log, "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    return rf_wait_ready(ports[i]);
}

static void stop_node(int i) {
    if (pids[i] <= 0) return;
    kill(pids[i], SIGKILL);
    waitpid(pids[i], NULL, 0);
    pids[i] = -1;
}

/* redis-cli --cluster create, then wait for cluster_state:ok everywhere. */
static int create_cluster(void) {
    char a[N_NODES][32];
    for (int i = 0; i < N_NODES; i++) snprintf(a[i], sizeof a[i], "127.0.0.1:%d", ports[i]);
    fflush(NULL);
    pid_t p = fork();
    if (p == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) { dup2(null, 1); dup2(null, 2); }
        execlp("redis-cli", "redis-cli", "--cluster", "create", a[0], a[1], a[2], "--cluster-replicas", "0",
               "--cluster-yes", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return -1;
    for (int t = 0; t < 500; t++) {
        int ok = 0;
        for (int i = 0; i < N_NODES; i++) {
            redisContext *c = admin(i);
            redisReply *r = c ? redisCommand(c, "CLUSTER INFO") : NULL;
            if (r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok")) ok++;
            if (r) freeReplyObject(r);
            if (c) redisFree(c);
        }
        if (ok == N_NODES) return 0;
        rf_sleep_ms(20);
    }
    return -1;
}

/* The kvtc keys each node holds (names into keys[node][...], count returned in n[node]). */
static void node_keys(char keys[N_NODES][N_CHUNKS + 4][80], int n[N_NODES]) {
    for (int i = 0; i < N_NODES; i++) {
        n[i] = 0;
        redisContext *c = admin(i);
        redisReply *r = c ? redisCommand(c, "KEYS kvtc:*") : NULL;
        for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k < r->elements && n[i] < N_CHUNKS + 4; k++)
            snprintf(keys[i][n[i]++], 80, "%s", r->element[k]->str);
        if (r) freeReplyObject(r);
        if (c) redisFree(c);
    }
}

static kvtc_store *open_at(const fixture *fx, int node) {
    char uri[64];
    snprintf(uri, sizeof uri, "redis://127.0.0.1:%d", ports[node]);
    kvtc_store_options o;
    fixture_options(&o);
    o.timeout_ms = 2000;
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx->basis, &fx->sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    return s;
}

static kvtc_store_stats stats(const kvtc_store *s) {
    kvtc_store_stats st = {.struct_size = sizeof st};
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK);
    return st;
}

static void test_slots(void) {
    /* the specification's check value: CRC16("123456789") = 0x31C3 */
    CHECK(redis_key_slot("123456789", 9) == (0x31C3 & 16383));
    const char *names[] = {"kvtc:{00ff}", "plain", "a{}b", "{user1000}.following", "x{y}z{w}"};
    for (int i = 0; i < 5; i++)
        CHECK(admin_int(0, "CLUSTER KEYSLOT %s", names[i]) == (long long)redis_key_slot(names[i], strlen(names[i])));
    uint16_t slot;
    char host[256];
    int port;
    const char moved[] = "MOVED 3999 127.0.0.1:6381";
    CHECK(redis_parse_redirect(moved, strlen(moved), &slot, host, &port) == 0 && slot == 3999 && port == 6381 &&
          !strcmp(host, "127.0.0.1"));
    CHECK(redis_parse_redirect("WRONGTYPE x", 11, &slot, host, &port) == -1);
    CHECK(redis_parse_redirect("MOVED 16384 h:1", 15, &slot, host, &port) == -1);
}

static void test_cluster(const fixture *fx) {
    synth_cache sc;
    CHECK(fixture_cache(fx, N_TOK, 5, &sc) == 0);
    int32_t tokens[N_TOK];
    fixture_tokens(tokens, N_TOK, 77);
    kvtc_cache want;
    CHECK(fixture_reference_decode(fx, &sc.c, N_TOK, &want) == KVTC_OK);

    kvtc_store *s = open_at(fx, 0);
    uint64_t stored = 0, hit = 0, got = 0;
    CHECK(kvtc_store_put(s, tokens, N_TOK, &sc.c, &stored) == KVTC_OK && stored == N_CHUNKS);
    static char keys[N_NODES][N_CHUNKS + 4][80];
    int n[N_NODES], total = 0, nodes_used = 0;
    node_keys(keys, n);
    for (int i = 0; i < N_NODES; i++) {
        total += n[i];
        nodes_used += n[i] > 0;
    }
    printf("chunks per node: %d %d %d\n", n[0], n[1], n[2]);
    CHECK(total == N_CHUNKS && nodes_used >= 2); /* one key per record, spread over the shards */

    /* lookup and get through a store that knows only node 2 */
    kvtc_store *s2 = open_at(fx, 2);
    CHECK(kvtc_store_lookup(s2, tokens, N_TOK, &hit) == KVTC_OK && hit == N_TOK);
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(fx, N_TOK, &out, &lay) == 0);
    CHECK(kvtc_store_get(s2, tokens, N_TOK, &lay, &got) == KVTC_OK && got == N_TOK);
    CHECK(fixture_prefix_equal(&out, &want, N_TOK));
    CHECK(stats(s2).errors == 0 && stats(s2).backend_errors == 0);

    /* a damaged record on a node other than node 0 */
    int dn = n[1] ? 1 : 2;
    redisContext *c = admin(dn);
    redisReply *r = c ? redisCommand(c, "SET %s %s", keys[dn][0], "not a record") : NULL;
    CHECK(r && r->type == REDIS_REPLY_STATUS);
    if (r) freeReplyObject(r);
    if (c) redisFree(c);
    CHECK(kvtc_store_get(s, tokens, N_TOK, &lay, &got) == KVTC_OK && got < N_TOK && got % FX_C == 0);
    CHECK(stats(s).errors == 1);
    CHECK(admin_int(dn, "EXISTS %s", keys[dn][0]) == 0);
    CHECK(fixture_prefix_equal(&out, &want, got));
    /* put repairs it; delete empties every node */
    CHECK(kvtc_store_put(s, tokens, N_TOK, &sc.c, &stored) == KVTC_OK && stored == 1);
    CHECK(kvtc_store_get(s, tokens, N_TOK, &lay, &got) == KVTC_OK && got == N_TOK);
    CHECK(kvtc_store_delete(s, tokens, N_TOK) == KVTC_OK);
    node_keys(keys, n);
    CHECK(n[0] + n[1] + n[2] == 0);

    /* a node killed: the batches touching it fail cleanly */
    CHECK(kvtc_store_put(s, tokens, N_TOK, &sc.c, &stored) == KVTC_OK);
    node_keys(keys, n);
    int victim = n[1] ? 1 : 2;
    stop_node(victim);
    kvtc_store_stats before = stats(s);
    kvtc_result pr = kvtc_store_lookup(s, tokens, N_TOK, &hit);
    kvtc_result gr = kvtc_store_get(s, tokens, N_TOK, &lay, &got);
    CHECK(pr == KVTC_ERR_IO && gr == KVTC_ERR_IO && got == 0);
    CHECK(stats(s).errors == before.errors);

    kvtc_store_close(s);
    kvtc_store_close(s2);
    synth_cache_free(&out);
    synth_cache_free(&want);
    synth_free(&sc);
}

int main(void) {
    if (!rf_find_in_path("redis-server") || !rf_find_in_path("redis-cli")) {
        printf("test_store_redis_cluster: SKIP (redis-server / redis-cli not installed)\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    fixture fx;
    CHECK(fixture_init(&fx) == 0);
    CHECK(fixture_tmpdir(dir, sizeof dir, "store_cluster") == 0);
    CHECK(rf_free_ports(ports, N_NODES, 55536) == 0); /* below 55536: the cluster bus is port + 10000 */
    int up = 1;
    for (int i = 0; i < N_NODES; i++) up = up && start_node(i) == 0;
    CHECK(up);
    int cluster = up && create_cluster() == 0;
    CHECK(cluster);
    if (cluster) {
        test_slots();
        test_cluster(&fx);
    }
    for (int i = 0; i < N_NODES; i++) stop_node(i);
    fixture_rmtree(dir);
    fixture_free(&fx);
    return TEST_REPORT();
}
#endif
