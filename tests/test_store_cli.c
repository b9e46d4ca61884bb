/* test_store_cli.c - kvtc store put|lookup|get|stats|evict on a file: store:
 * what get writes equals the codec's own decode of the cache put; usage and
 * input errors exit 2 and 1. The tool comes from $KVTC_CLI (set by CMake). */
#define _XOPEN_SOURCE 700 /* nftw */
#include <dirent.h>
#include <sys/wait.h>

#include "io/cache_file.h"
#include "store_fixture.h"

static char g_dir[256], g_cli[1024];
static fixture fx;

/* Run "kvtc ARGS" in g_dir; stdout to out.txt. Returns the exit status, -1 on a crash. */
static int run(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >out.txt 2>err.txt", g_dir, g_cli, args);
    int st = system(cmd);
    return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

static int out_has(const char *text) {
    char p[300];
    snprintf(p, sizeof p, "%s/out.txt", g_dir);
    size_t n = 0;
    char *b = test_read_file(p, &n);
    int has = b && strstr(b, text) != NULL;
    if (!has) fprintf(stderr, "stdout lacks '%s': %s\n", text, b ? b : "(none)");
    free(b);
    return has;
}

/* Entries of a directory other than . and .. (-1 if it cannot be read). */
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static int err_has(const char *text) {
    char p[300];
    snprintf(p, sizeof p, "%s/err.txt", g_dir);
    size_t n = 0;
    char *b = test_read_file(p, &n);
    int has = b && strstr(b, text) != NULL;
    if (!has) fprintf(stderr, "stderr lacks '%s': %s\n", text, b ? b : "(none)");
    free(b);
    return has;
}

static int write_cache(const char *name, const kvtc_cache *c) {
    void *buf = NULL;
    size_t size = 0;
    if (cache_file_serialize(c, &buf, &size)) return -1;
    char p[300];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    int ok = f && fwrite(buf, 1, size, f) == size;
    if (f) fclose(f);
    free(buf);
    return ok ? 0 : -1;
}

static int read_cache(const char *name, cache_file *out) {
    char p[300];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    size_t n = 0;
    char *b = test_read_file(p, &n);
    kvtc_result r = b ? cache_file_parse(b, n, out) : KVTC_ERR_IO;
    free(b);
    return r == KVTC_OK ? 0 : -1;
}

#define STORE_ARGS "--store file:st --basis basis.kvtcb --chunk 32 --ratio 8 --model synthetic"

int main(void) {
    const char *env = getenv("KVTC_CLI");
    if (!env || !*env) {
        printf("test_store_cli: SKIP ($KVTC_CLI not set)\n");
        return 77;
    }
    snprintf(g_cli, sizeof g_cli, "%s", env);
    if (fixture_init(&fx) != 0 || fixture_tmpdir(g_dir, sizeof g_dir, "storecli") != 0) return 1;

    size_t bsize = 0;
    void *bbytes = synth_basis_bytes(fx.basis, &bsize);
    char p[300];
    snprintf(p, sizeof p, "%s/basis.kvtcb", g_dir);
    FILE *f = fopen(p, "wb");
    CHECK(bbytes && f && fwrite(bbytes, 1, bsize, f) == bsize);
    if (f) fclose(f);
    free(bbytes);

    enum { N = 200 };
    synth_cache sc;
    CHECK(fixture_cache(&fx, N, 7, &sc) == 0);
    int32_t tokens[N];
    fixture_tokens(tokens, N, 7);
    CHECK(write_cache("no_ids.safetensors", &sc.c) == 0);
    sc.c.token_ids = tokens;
    CHECK(write_cache("cache.safetensors", &sc.c) == 0);
    sc.c.token_ids = NULL;

    CHECK(run("store put " STORE_ARGS " cache.safetensors") == 0 && out_has("stored 6 new chunks"));
    CHECK(run("store put " STORE_ARGS " cache.safetensors") == 0 && out_has("stored 0 new chunks"));
    CHECK(run("store lookup " STORE_ARGS " cache.safetensors") == 0 && out_has("192 of 200 tokens stored"));
    CHECK(run("store get " STORE_ARGS " cache.safetensors -o got.safetensors") == 0);
    kvtc_cache ref;
    CHECK(fixture_reference_decode(&fx, &sc.c, 192, &ref) == KVTC_OK);
    cache_file got;
    if (read_cache("got.safetensors", &got) == 0) {
        CHECK(got.cache.n_tokens == 192 && got.cache.token_ids && got.cache.token_ids[191] == tokens[191]);
        CHECK_MSG(got.cache.n_tokens == 192 && fixture_prefix_equal(&got.cache, &ref, 192),
                  "kvtc store get differs from the codec's decode");
        cache_file_free(&got);
    } else {
        CHECK(0);
    }
    CHECK(run("store get " STORE_ARGS " cache.safetensors -n 100 -o part.safetensors") == 0);
    if (read_cache("part.safetensors", &got) == 0) {
        CHECK(got.cache.n_tokens == 100 && fixture_prefix_equal(&got.cache, &ref, 100));
        cache_file_free(&got);
    } else {
        CHECK(0);
    }
    CHECK(run("store stats " STORE_ARGS) == 0 && out_has("6 values"));
    CHECK(run("store evict " STORE_ARGS " --max-bytes 0") == 0 && out_has("evicted 6 values"));
    CHECK(run("store lookup " STORE_ARGS " cache.safetensors") == 0 && out_has("0 of 200 tokens stored"));

    /* errors: no prefix stored, no token ids, bad usage, a wrong basis */
    CHECK(run("store get " STORE_ARGS " cache.safetensors -o none.safetensors") == 1);
    snprintf(p, sizeof p, "%s/none.safetensors", g_dir);
    CHECK(access(p, F_OK) != 0);
    CHECK(run("store put " STORE_ARGS " no_ids.safetensors") == 1);
    CHECK(run("store frobnicate " STORE_ARGS) == 2);
    CHECK(run("store put --basis basis.kvtcb cache.safetensors") == 2);
    CHECK(run("store get " STORE_ARGS " cache.safetensors") == 2);
    CHECK(run("store put --store file:st --basis cache.safetensors cache.safetensors") == 1);
    CHECK(run("store put --store redis://127.0.0.1:1/0 --basis basis.kvtcb --chunk 32 --ratio 8 --timeout-ms 200 cache.safetensors") == 1);
    /* review of issue 12's CLI (rev1): an unusable backend is named, not
     * "file input/output error" */
    CHECK(run("store put --store redis://127.0.0.1:1/0 --basis basis.kvtcb --chunk 32 --ratio 8 --timeout-ms 200 cache.safetensors") == 1);
    {
        /* (a build without hiredis says "not supported by this build") */
        char ep[300];
        snprintf(ep, sizeof ep, "%s/err.txt", g_dir);
        size_t en = 0;
        char *eb = test_read_file(ep, &en);
        int unsupported = eb && strstr(eb, "not supported by this build");
        free(eb);
        if (!unsupported) CHECK(err_has("cannot reach or use the Redis server"));
    }
    CHECK(run("store put --store file:cache.safetensors --basis basis.kvtcb --chunk 32 --ratio 8 cache.safetensors") == 1 &&
          err_has("cache.safetensors is not a directory"));
    CHECK(run("store put --store file:nodir/st --basis basis.kvtcb --chunk 32 --ratio 8 cache.safetensors") == 1 &&
          err_has("cannot create the store directory nodir/st: No such file or directory"));
    CHECK(run("store --help") == 0 && out_has("usage: kvtc store"));

    /* a file size limit (ulimit -f, as a full disk): put fails with one line
     * and exit 1 instead of dying of SIGXFSZ with a partial record in tmp/ */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && (ulimit -f 1; exec '%s' store put " STORE_ARGS " cache.safetensors) >out.txt 2>err.txt",
             g_dir, g_cli);
    int st = system(cmd);
    CHECK_MSG(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1, "put under ulimit -f: status %d", st);
    snprintf(p, sizeof p, "%s/err.txt", g_dir);
    size_t en = 0;
    char *err = test_read_file(p, &en);
    CHECK_MSG(err && !strncmp(err, "kvtc: store: ", 13) && strstr(err, "put: ") && strchr(err, '\n') == err + en - 1,
              "put under ulimit -f printed: %s", err ? err : "(nothing)");
    free(err);
    snprintf(p, sizeof p, "%s/st/tmp", g_dir);
    CHECK_MSG(count_entries(p) == 0, "a partial record was left in %s", p);

    /* review of issue 12 (revstore): a stored chunk that fails its checks
     * is a miss. get without -n used to fail with "input corrupt" and write
     * nothing; it writes the prefix before the bad chunk (the longest
     * prefix it can restore); with -n it says why it cannot. Chunks 0-1
     * come from a 64-token cache put first; every chunk after them is
     * damaged in place. */
    {
        synth_cache head;
        CHECK(fixture_cache(&fx, 64, 7, &head) == 0);
        size_t es = kvtc_dtype_size(sc.c.dtype), row = (size_t)sc.c.geometry.head_dim * es;
        uint64_t rows = (uint64_t)sc.c.geometry.n_layers * sc.c.geometry.n_kv_heads;
        for (uint64_t i = 0; i < rows; i++) { /* head = the first 64 tokens of sc, [L][H][n][d] */
            memcpy((char *)head.c.k + i * 64 * row, (const char *)sc.c.k + i * N * row, 64 * row);
            memcpy((char *)head.c.v + i * 64 * row, (const char *)sc.c.v + i * N * row, 64 * row);
        }
        head.c.token_ids = tokens;
        CHECK(write_cache("head.safetensors", &head.c) == 0);
        head.c.token_ids = NULL;
        synth_free(&head);
        CHECK(run("store evict " STORE_ARGS " --max-bytes 0") == 0);
        CHECK(run("store put " STORE_ARGS " head.safetensors") == 0 && out_has("stored 2 new chunks"));
        snprintf(cmd, sizeof cmd,
                 "cd '%s' && find st -mindepth 2 -type f ! -path 'st/tmp/*' | sort >before.txt && "
                 "'%s' store put " STORE_ARGS " cache.safetensors >out.txt 2>err.txt && "
                 "find st -mindepth 2 -type f ! -path 'st/tmp/*' | sort | comm -13 before.txt - | "
                 "while read f; do printf 'XXXX' | dd of=\"$f\" bs=1 seek=300 conv=notrunc 2>/dev/null; done",
                 g_dir, g_cli);
        CHECK(system(cmd) == 0 && out_has("stored 4 new chunks"));
        CHECK(run("store get " STORE_ARGS " cache.safetensors -o short.safetensors") == 0 &&
              out_has("restored 64 of 200 tokens") && out_has("failed their checks"));
        if (read_cache("short.safetensors", &got) == 0) {
            CHECK(got.cache.n_tokens == 64 && got.cache.token_ids && got.cache.token_ids[63] == tokens[63]);
            CHECK_MSG(got.cache.n_tokens == 64 && fixture_prefix_equal(&got.cache, &ref, 64),
                      "the restored prefix differs from the codec's decode");
            cache_file_free(&got);
        } else {
            CHECK(0);
        }
        /* the rejected chunk 2 was removed, put stores it again; chunk 3 is still damaged */
        CHECK(run("store put " STORE_ARGS " cache.safetensors") == 0 && out_has("stored 1 new chunks"));
        CHECK(run("store get " STORE_ARGS " cache.safetensors -n 192 -o bad.safetensors") == 1 &&
              err_has("only 96 of the 192 tokens stored could be restored"));
        snprintf(p, sizeof p, "%s/bad.safetensors", g_dir);
        CHECK(access(p, F_OK) != 0);
        CHECK(run("store get " STORE_ARGS " cache.safetensors -n 0 -o zero.safetensors") == 2);
        /* a cache that does not start at position 0 is named as such */
        int64_t shifted[N];
        for (int i = 0; i < N; i++) shifted[i] = i + 10;
        int64_t *own_positions = sc.c.positions;
        sc.c.positions = shifted;
        sc.c.token_ids = tokens;
        CHECK(write_cache("shifted.safetensors", &sc.c) == 0);
        sc.c.positions = own_positions;
        sc.c.token_ids = NULL;
        CHECK(run("store put " STORE_ARGS " shifted.safetensors") == 1 && err_has("token 0 is at position 10, not 0"));
        /* the basis given as the cache: named, not "input corrupt" */
        CHECK(run("store put " STORE_ARGS " basis.kvtcb") == 1 && err_has("basis.kvtcb is a kvtc basis, not a KV cache"));
        /* a malformed URI is a usage error that says what a URI is */
        CHECK(run("store lookup --store redis://127.0.0.1 --basis basis.kvtcb cache.safetensors") == 2 &&
              err_has("not a store URI (file:DIR, DIR up to 3800 bytes, or redis://HOST:PORT[/DB])"));
        CHECK(run("store lookup --store file: --basis basis.kvtcb cache.safetensors") == 2 && err_has("not a store URI"));
        /* chunk sizes the library refuses get a reason, not "invalid argument" */
        CHECK(run("store put --store file:st --basis basis.kvtcb --chunk 3 cache.safetensors") == 2 &&
              err_has("attention-sink tokens"));
        CHECK(run("store put --store file:st --basis basis.kvtcb --chunk 4294967295 cache.safetensors") == 2 &&
              err_has("over the limit"));
        /* a dead server is named for every operation, not "file input/output error" */
        CHECK(run("store lookup --store redis://127.0.0.1:1/0 --basis basis.kvtcb --chunk 32 --ratio 8 --timeout-ms 200 cache.safetensors") == 1);
        snprintf(p, sizeof p, "%s/err.txt", g_dir);
        size_t en2 = 0;
        char *eb = test_read_file(p, &en2);
        if (!(eb && strstr(eb, "not supported by this build"))) CHECK(err_has("cannot reach or use the Redis server"));
        free(eb);
    }

    synth_cache_free(&ref);
    synth_free(&sc);
    fixture_free(&fx);
    fixture_rmtree(g_dir);
    return TEST_REPORT();
}
