/* test_store.c - the kvtc store on its file: backend: put/lookup/get round
 * trips against the codec, the raw codec, partial gets, corrupted, truncated
 * and swapped values, namespaces, read-only directory, full disk, LRU
 * eviction, the memory tier, bad arguments, and several processes sharing a
 * directory at once. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "store/keys.h"
#include "store/record.h"
#include "util/endian.h"
#include "store_fixture.h"

static fixture fx;

/* Every value path under dir (up to max), sorted; returns the count. */
static int list_values(const char *dir, char paths[][512], int max) {
    int n = 0;
    DIR *top = opendir(dir);
    if (!top) return 0;
    struct dirent *de;
    while ((de = readdir(top)) && n < max) {
        if (strlen(de->d_name) != 2 || de->d_name[0] == '.') continue;
        char sub[300];
        snprintf(sub, sizeof sub, "%s/%.2s", dir, de->d_name);
        DIR *d = opendir(sub);
        if (!d) continue;
        struct dirent *fe;
        while ((fe = readdir(d)) && n < max)
            if (fe->d_name[0] != '.') snprintf(paths[n++], 512, "%s/%.64s", sub, fe->d_name);
        closedir(d);
    }
    closedir(top);
    qsort(paths, (size_t)n, 512, (int (*)(const void *, const void *))strcmp);
    return n;
}

/* An empty file DIR/NAME: 0 on success. */
static int write_file_in(const char *dir, const char *name) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    return f && fclose(f) == 0 ? 0 : -1;
}

/* The value path in `after` that is not in `before`. */
static const char *new_value(char before[][512], int nb, char after[][512], int na) {
    for (int i = 0; i < na; i++) {
        int seen = 0;
        for (int j = 0; j < nb; j++) seen |= !strcmp(after[i], before[j]);
        if (!seen) return after[i];
    }
    return NULL;
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_round_trip(void) {
    char dir[256];
    CHECK(fixture_tmpdir(dir, sizeof dir, "store") == 0);
    char uri[300];
    snprintf(uri, sizeof uri, "file:%s", dir);
    enum { N = 200 }; /* 6 whole chunks of 32 and 8 tokens more */
    synth_cache sc;
    CHECK(fixture_cache(&fx, N, 7, &sc) == 0);
    int32_t tokens[N];
    fixture_tokens(tokens, N, 7);
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    uint64_t stored = 0, hit = 0, got = 0;
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == 0);
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_OK && stored == 6);
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_OK && stored == 0);
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == 192);
    int32_t other[N];
    memcpy(other, tokens, sizeof other);
    other[100] ^= 1; /* chunk 3 differs: the prefix of chunks 0..2 is shared */
    CHECK(kvtc_store_lookup(s, other, N, &hit) == KVTC_OK && hit == 96);

    kvtc_cache ref, out;
    kvtc_store_layout lay;
    CHECK(fixture_reference_decode(&fx, &sc.c, 192, &ref) == KVTC_OK);
    CHECK(fixture_out(&fx, 192, &out, &lay) == 0);
    out.token_ids = calloc(192, sizeof(int32_t));
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == 192);
    CHECK_MSG(fixture_prefix_equal(&out, &ref, 192), "store get differs from the codec's own decode");
    CHECK(out.positions[150] == 150 && out.token_ids[150] == tokens[150]);
    /* the decode is lossy but close: the first 4 (sink) tokens are exact */
    CHECK(synth_token_equal(&out, &sc.c, 0) && synth_token_equal(&out, &sc.c, 3));
    synth_cache_free(&out);

    /* a partial get: 100 tokens (chunk 3 decoded, 4 of its tokens kept) */
    CHECK(fixture_out(&fx, 100, &out, &lay) == 0);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == 100);
    CHECK(fixture_prefix_equal(&out, &ref, 100));
    /* chunks past the known tokens cannot be keyed */
    CHECK(kvtc_store_get(s, tokens, 90, &lay, &got) == KVTC_ERR_INVALID_ARGUMENT);
    /* a sequence diverging in chunk 1: only chunk 0 comes back */
    other[40] ^= 1;
    CHECK(kvtc_store_get(s, other, N, &lay, &got) == KVTC_OK && got == 32);
    synth_cache_free(&out);

    kvtc_store_stats st = {.struct_size = sizeof st};
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK);
    CHECK(st.chunks_put == 6 && st.chunks_already == 6 && st.errors == 0 && st.miss_chunks == 1);
    CHECK_MSG(st.ratio > 3.0, "store ratio %.2f", st.ratio);
    /* a growable output struct: an uninitialized (too large) or too small
     * struct_size is refused and nothing is written past struct_size */
    {
        struct { kvtc_store_stats st; unsigned char guard[64]; } big;
        memset(&big, 0xA5, sizeof big);
        CHECK(kvtc_store_stats_get(s, &big.st) == KVTC_ERR_INVALID_ARGUMENT);
        big.st.struct_size = sizeof big.st - 8;
        CHECK(kvtc_store_stats_get(s, &big.st) == KVTC_ERR_INVALID_ARGUMENT);
        int untouched = 1;
        for (size_t i = sizeof(size_t); i < sizeof big; i++) untouched &= ((unsigned char *)&big)[i] == 0xA5;
        CHECK(untouched);
        CHECK(kvtc_store_stats_get(s, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    }
    uint64_t bytes = 0, nv = 0;
    CHECK(kvtc_store_backend_bytes(s, &bytes, &nv) == KVTC_OK && nv == 6 && bytes == st.bytes_written);

    /* one thread and three threads restore the same bytes */
    for (uint32_t threads = 1; threads <= 3; threads += 2) {
        kvtc_store_options ot = o;
        ot.n_threads = threads;
        kvtc_store *s2 = NULL;
        CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &ot, &s2) == KVTC_OK);
        CHECK(fixture_out(&fx, 192, &out, &lay) == 0);
        CHECK(kvtc_store_get(s2, tokens, N, &lay, &got) == KVTC_OK && got == 192 && fixture_prefix_equal(&out, &ref, 192));
        synth_cache_free(&out);
        kvtc_store_close(s2);
    }

    /* delete: the prefix goes, lookups miss */
    CHECK(kvtc_store_delete(s, tokens, 64) == KVTC_OK);
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == 0);
    kvtc_store_close(s);

    /* the raw codec: exact bytes back */
    o.codec = KVTC_STORE_CODEC_RAW;
    CHECK(kvtc_store_open(uri, NULL, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_OK && stored == 6);
    CHECK(fixture_out(&fx, 192, &out, &lay) == 0);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == 192);
    CHECK(fixture_prefix_equal(&out, &sc.c, 192));
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.ratio > 0.9 && st.ratio < 1.0);
    synth_cache_free(&out);
    kvtc_store_close(s);

    synth_cache_free(&ref);
    synth_free(&sc);
    fixture_rmtree(dir);
}

static void flip_byte(const char *path, long at) {
    int fd = open(path, O_RDWR);
    unsigned char b = 0;
    if (fd < 0) return;
    if (at < 0) at += lseek(fd, 0, SEEK_END);
    if (pread(fd, &b, 1, at) == 1) {
        b ^= 0x40;
        if (pwrite(fd, &b, 1, at) != 1) b = 0;
    }
    close(fd);
}

static void test_damaged_values(void) {
    char dir[256], uri[300];
    CHECK(fixture_tmpdir(dir, sizeof dir, "store") == 0);
    snprintf(uri, sizeof uri, "file:%s", dir);
    enum { N = 128 };
    synth_cache sc;
    CHECK(fixture_cache(&fx, N, 11, &sc) == 0);
    int32_t tokens[N];
    fixture_tokens(tokens, N, 11);
    kvtc_store_options o;
    fixture_options(&o);
    o.n_threads = 1;
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    /* learn which file holds which chunk by putting one chunk at a time */
    static char files[5][8][512];
    int nf[5] = {0};
    const char *chunk_path[4];
    for (int c = 0; c < 4; c++) {
        CHECK(kvtc_store_put(s, tokens, (uint64_t)(c + 1) * FX_C, &sc.c, NULL) == KVTC_OK);
        nf[c + 1] = list_values(dir, files[c + 1], 8);
        chunk_path[c] = new_value(files[c], nf[c], files[c + 1], nf[c + 1]);
    }
    CHECK_MSG(nf[4] == 4 && chunk_path[0] && chunk_path[1] && chunk_path[2] && chunk_path[3], "files %d %d %d %d", nf[1], nf[2], nf[3], nf[4]);
    if (nf[4] != 4 || !chunk_path[0] || !chunk_path[1] || !chunk_path[2] || !chunk_path[3]) return;

    kvtc_cache ref, out;
    kvtc_store_layout lay;
    CHECK(fixture_reference_decode(&fx, &sc.c, N, &ref) == KVTC_OK);
    CHECK(fixture_out(&fx, N, &out, &lay) == 0);
    uint64_t got = 0, hit = 0;
    kvtc_store_stats st = {.struct_size = sizeof st};

    /* a bit flipped inside chunk 1's payload: chunk 0 only, one error, value removed */
    flip_byte(chunk_path[1], 400);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == FX_C);
    CHECK(fixture_prefix_equal(&out, &ref, FX_C));
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.errors == 1);
    CHECK(access(chunk_path[1], F_OK) != 0);
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == FX_C);
    /* put repairs it */
    uint64_t stored = 0;
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_OK && stored == 1);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == N && fixture_prefix_equal(&out, &ref, N));

    /* chunk 2 truncated to half */
    struct stat sb;
    CHECK(stat(chunk_path[2], &sb) == 0 && truncate(chunk_path[2], sb.st_size / 2) == 0);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == 2 * FX_C);
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.errors == 2);
    /* the CRC field itself damaged (last byte) */
    flip_byte(chunk_path[0], -1);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == 0);
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.errors == 3);
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_OK && stored == 2);

    /* chunk 0's (valid) record copied over chunk 3's: another key's KV is never returned */
    size_t len = 0;
    char *rec0 = test_read_file(chunk_path[0], &len);
    CHECK(rec0 != NULL);
    FILE *w = fopen(chunk_path[3], "wb");
    CHECK(w && fwrite(rec0, 1, len, w) == len);
    if (w) fclose(w);
    free(rec0);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == 3 * FX_C);
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.errors == 4);
    /* a file far larger than any record: not read, a miss */
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_OK && stored == 1);
    CHECK(truncate(chunk_path[3], 1 << 30) == 0); /* sparse: no disk used */
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == 3 * FX_C);
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.errors == 5);
    CHECK(access(chunk_path[3], F_OK) != 0);
    /* an empty file and garbage: misses */
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_OK && stored == 1);
    w = fopen(chunk_path[0], "wb");
    if (w) fclose(w);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == 0);
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.errors == 6);
    kvtc_store_close(s);

    /* namespaces: another model, dtype, codec or chunk size sees nothing */
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    CHECK(kvtc_store_put(s, tokens, N, &sc.c, &stored) == KVTC_OK && stored == 1);
    kvtc_store_close(s);
    kvtc_store_options o2 = o;
    o2.model_name = "another-model";
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o2, &s) == KVTC_OK);
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == 0);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == 0);
    kvtc_store_close(s);
    o2 = o;
    o2.chunk_tokens = 64;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o2, &s) == KVTC_OK);
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == 0);
    kvtc_store_close(s);
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_BF16, &o, &s) == KVTC_OK);
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == 0);
    kvtc_store_close(s);
    o2 = o;
    o2.codec = KVTC_STORE_CODEC_RAW;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o2, &s) == KVTC_OK);
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == 0);
    kvtc_store_close(s);
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == N);
    kvtc_store_close(s);
    /* another basis of the same geometry (calibrated on other data): its own namespace */
    synth_params other = fx.sp;
    other.model_seed = 99;
    const double ratios[] = {8.0};
    kvtc_basis *b2 = NULL;
    CHECK(synth_calibrate(&other, 2, 4, 0, ratios, 1, &b2) == KVTC_OK);
    CHECK(b2 && kvtc_basis_fingerprint(b2) != kvtc_basis_fingerprint(fx.basis));
    CHECK(kvtc_store_open(uri, b2, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    CHECK(kvtc_store_lookup(s, tokens, N, &hit) == KVTC_OK && hit == 0);
    CHECK(kvtc_store_get(s, tokens, N, &lay, &got) == KVTC_OK && got == 0);
    kvtc_store_close(s);
    kvtc_basis_free(b2);

    synth_cache_free(&out);
    synth_cache_free(&ref);
    synth_free(&sc);
    fixture_rmtree(dir);
}

/* A child process runs fn and exits with its failure count. */
static int in_child(void (*fn)(const char *), const char *arg) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        test_failed_ = 0;
        fn(arg);
        _exit(test_failed_ ? 1 : 0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void read_only_child(const char *dir) {
    if (geteuid() == 0) { /* root ignores permission bits: become nobody */
        if (setgid(65534) != 0 || setuid(65534) != 0) { test_failed_++; return; }
    }
    char uri[300];
    snprintf(uri, sizeof uri, "file:%s", dir);
    synth_cache sc;
    int32_t tokens[96];
    fixture_tokens(tokens, 96, 21);
    CHECK(fixture_cache(&fx, 96, 21, &sc) == 0);
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    uint64_t hit = 0, got = 0, stored = 9;
    CHECK(kvtc_store_lookup(s, tokens, 96, &hit) == KVTC_OK && hit == 64);
    CHECK(kvtc_store_put(s, tokens, 96, &sc.c, &stored) == KVTC_ERR_IO && stored == 0);
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, 64, &out, &lay) == 0);
    CHECK(kvtc_store_get(s, tokens, 96, &lay, &got) == KVTC_OK && got == 64);
    kvtc_store_stats st = {.struct_size = sizeof st};
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.backend_errors == 1 && st.errors == 0);
    synth_cache_free(&out);
    kvtc_store_close(s);
    synth_free(&sc);
}

static void full_disk_child(const char *dir) {
    /* a file size limit makes write() fail with EFBIG, as a full disk fails with ENOSPC */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {600, 600};
    CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    char uri[300];
    snprintf(uri, sizeof uri, "file:%s", dir);
    synth_cache sc;
    int32_t tokens[96];
    fixture_tokens(tokens, 96, 21);
    CHECK(fixture_cache(&fx, 96, 21, &sc) == 0);
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    uint64_t got = 0;
    CHECK(kvtc_store_put(s, tokens, 96, &sc.c, NULL) == KVTC_ERR_IO);
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, 96, &out, &lay) == 0);
    CHECK(kvtc_store_get(s, tokens, 96, &lay, &got) == KVTC_OK && got == 64);
    synth_cache_free(&out);
    kvtc_store_close(s);
    synth_free(&sc);
}

static void test_read_only_and_full(void) {
    char dir[256], uri[300], tmp[300];
    CHECK(fixture_tmpdir(dir, sizeof dir, "store") == 0);
    snprintf(uri, sizeof uri, "file:%s", dir);
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    synth_cache sc;
    int32_t tokens[96];
    fixture_tokens(tokens, 96, 21);
    CHECK(fixture_cache(&fx, 96, 21, &sc) == 0);
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    CHECK(kvtc_store_put(s, tokens, 64, &sc.c, NULL) == KVTC_OK);
    kvtc_store_close(s);
    CHECK(chmod(dir, 0555) == 0 && chmod(tmp, 0555) == 0);
    CHECK_MSG(in_child(read_only_child, dir) == 0, "read-only directory");
    CHECK(chmod(dir, 0755) == 0 && chmod(tmp, 0755) == 0);
    CHECK_MSG(in_child(full_disk_child, dir) == 0, "full disk");
    CHECK_MSG(count_files(tmp) == 0, "a failed write left a temporary");
    synth_free(&sc);
    fixture_rmtree(dir);
}

/* The store directory removed under a running process (an operator's
 * rm -rf, a tmp cleaner): the next put recreates it instead of failing
 * with KVTC_ERR_IO until the store is reopened; so does a removed DIR/tmp. */
static void test_directory_removed(void) {
    char dir[256], uri[300], tmp[300];
    CHECK(fixture_tmpdir(dir, sizeof dir, "store") == 0);
    snprintf(uri, sizeof uri, "file:%s", dir);
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    synth_cache sc;
    int32_t tokens[96];
    fixture_tokens(tokens, 96, 23);
    CHECK(fixture_cache(&fx, 96, 23, &sc) == 0);
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    uint64_t stored = 0, hit = 9, got = 0;
    CHECK(kvtc_store_put(s, tokens, 32, &sc.c, &stored) == KVTC_OK && stored == 1);
    fixture_rmtree(dir);
    CHECK(kvtc_store_lookup(s, tokens, 96, &hit) == KVTC_OK && hit == 0);
    CHECK(kvtc_store_put(s, tokens, 64, &sc.c, &stored) == KVTC_OK && stored == 2);
    CHECK(rmdir(tmp) == 0);
    CHECK(kvtc_store_put(s, tokens, 96, &sc.c, &stored) == KVTC_OK && stored == 1);
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, 96, &out, &lay) == 0);
    CHECK(kvtc_store_get(s, tokens, 96, &lay, &got) == KVTC_OK && got == 96);
    CHECK(fixture_prefix_equal(&out, &sc.c, 4)); /* the sinks are exact */
    kvtc_store_stats st = {.struct_size = sizeof st};
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.backend_errors == 0 && st.errors == 0);
    synth_cache_free(&out);
    kvtc_store_close(s);
    synth_free(&sc);
    fixture_rmtree(dir);
}

/* Something other than a regular file where a value belongs (a FIFO, which
 * blocked the reader's open() forever; a symlink, whose target the reader
 * read and touched; a directory): a bad value, rejected quickly. */
static void test_not_a_file(void) {
    char dir[256], uri[300], victim[300];
    CHECK(fixture_tmpdir(dir, sizeof dir, "store") == 0);
    snprintf(uri, sizeof uri, "file:%s", dir);
    snprintf(victim, sizeof victim, "%s/victim", dir);
    FILE *vf = fopen(victim, "w");
    if (vf) fclose(vf);
    synth_cache sc;
    int32_t tokens[32];
    fixture_tokens(tokens, 32, 29);
    CHECK(fixture_cache(&fx, 32, 29, &sc) == 0);
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, 32, &out, &lay) == 0);
    struct stat vst0;
    CHECK(stat(victim, &vst0) == 0);
    alarm(30); /* a hang fails the test instead of stalling the suite */
    char paths[4][512];
    /* kinds: FIFO, symlink, empty directory, directory with a file in it
     * (which unlink and rename cannot replace: it used to block its key for
     * good) */
    for (int kind = 0; kind < 4; kind++) {
        CHECK(kvtc_store_put(s, tokens, 32, &sc.c, NULL) == KVTC_OK);
        CHECK(list_values(dir, paths, 4) == 1);
        CHECK(unlink(paths[0]) == 0);
        if (kind == 0) CHECK(mkfifo(paths[0], 0600) == 0);
        if (kind == 1) CHECK(symlink(victim, paths[0]) == 0);
        if (kind >= 2) CHECK(mkdir(paths[0], 0700) == 0);
        if (kind == 3) CHECK(write_file_in(paths[0], "junk") == 0);
        uint64_t hit = 9, got = 9;
        CHECK(kvtc_store_lookup(s, tokens, 32, &hit) == KVTC_OK && hit == 0); /* not a value: not stored */
        kvtc_store_stats st = {.struct_size = sizeof st};
        CHECK(kvtc_store_get(s, tokens, 32, &lay, &got) == KVTC_OK && got == 0);
        CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.errors == (uint64_t)kind + 1 && st.backend_errors == 0);
        struct stat lst;
        CHECK_MSG(lstat(paths[0], &lst) != 0, "kind %d: the bad value was not removed", kind);
    }
    /* put replaces whatever is in a value's place without a get first */
    for (int kind = 0; kind < 4; kind++) {
        if (kind == 0) CHECK(mkfifo(paths[0], 0600) == 0);
        if (kind == 1) CHECK(symlink(victim, paths[0]) == 0);
        if (kind >= 2) CHECK(mkdir(paths[0], 0700) == 0);
        if (kind == 3) CHECK(write_file_in(paths[0], "junk") == 0);
        uint64_t stored = 0, got = 0;
        CHECK(kvtc_store_put(s, tokens, 32, &sc.c, &stored) == KVTC_OK);
        CHECK_MSG(stored == 1, "kind %d: put did not replace the bad value", kind);
        CHECK(kvtc_store_get(s, tokens, 32, &lay, &got) == KVTC_OK && got == 32);
        CHECK(unlink(paths[0]) == 0);
    }
    /* a directory among the values does not stop eviction (unlink failed on
     * it, and every pass ended in KVTC_ERR_IO with nothing evicted) */
    CHECK(mkdir(paths[0], 0700) == 0 && write_file_in(paths[0], "junk") == 0);
    int32_t other[32];
    fixture_tokens(other, 32, 30);
    CHECK(kvtc_store_put(s, other, 32, &sc.c, NULL) == KVTC_OK);
    uint64_t evicted = 0, hit = 9;
    CHECK(kvtc_store_evict(s, 0, &evicted) == KVTC_OK && evicted == 1);
    CHECK(kvtc_store_lookup(s, other, 32, &hit) == KVTC_OK && hit == 0);
    /* no values left: an eviction pass over nothing (qsort of a NULL array
     * before, undefined behaviour that UBSan reports) */
    CHECK(kvtc_store_evict(s, 0, &evicted) == KVTC_OK && evicted == 0);
    alarm(0);
    struct stat vst;
    CHECK(stat(victim, &vst) == 0 && vst.st_mtim.tv_sec == vst0.st_mtim.tv_sec &&
          vst.st_mtim.tv_nsec == vst0.st_mtim.tv_nsec); /* not touched through the symlink */
    synth_cache_free(&out);
    kvtc_store_close(s);
    synth_free(&sc);
    fixture_rmtree(dir);
}

static void test_eviction_and_memory(void) {
    char dir[256], uri[300];
    CHECK(fixture_tmpdir(dir, sizeof dir, "store") == 0);
    snprintf(uri, sizeof uri, "file:%s", dir);
    enum { N = 64 };
    synth_cache a, b;
    int32_t ta[N], tb[N];
    CHECK(fixture_cache(&fx, N, 31, &a) == 0 && fixture_cache(&fx, N, 32, &b) == 0);
    fixture_tokens(ta, N, 31);
    fixture_tokens(tb, N, 32);
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    CHECK(kvtc_store_put(s, ta, N, &a.c, NULL) == KVTC_OK);
    struct timespec pause = {0, 20000000};
    nanosleep(&pause, NULL);
    CHECK(kvtc_store_put(s, tb, N, &b.c, NULL) == KVTC_OK);
    nanosleep(&pause, NULL);
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, N, &out, &lay) == 0);
    uint64_t got = 0, hit = 0, ev = 0, bytes = 0, nv = 0;
    CHECK(kvtc_store_get(s, ta, N, &lay, &got) == KVTC_OK && got == N); /* a is now the most recent */
    CHECK(kvtc_store_backend_bytes(s, &bytes, &nv) == KVTC_OK && nv == 4);
    kvtc_store_stats st = {.struct_size = sizeof st};
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.bytes_read < bytes);
    CHECK(kvtc_store_evict(s, st.bytes_read, &ev) == KVTC_OK && ev == 2); /* exactly a's two records stay */
    CHECK(kvtc_store_lookup(s, ta, N, &hit) == KVTC_OK && hit == N);
    CHECK(kvtc_store_lookup(s, tb, N, &hit) == KVTC_OK && hit == 0);
    CHECK(kvtc_store_evict(s, 0, &ev) == KVTC_OK && ev == 2);
    CHECK(kvtc_store_backend_bytes(s, &bytes, &nv) == KVTC_OK && nv == 0 && bytes == 0);
    kvtc_store_close(s);

    /* a size cap: puts of 10 caches keep the directory near the cap */
    uint64_t cap = 10 * 1024;
    o.max_bytes = cap;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    for (int i = 0; i < 10; i++) {
        int32_t t[N];
        fixture_tokens(t, N, 100 + (uint64_t)i);
        CHECK(kvtc_store_put(s, t, N, &a.c, NULL) == KVTC_OK);
    }
    CHECK(kvtc_store_backend_bytes(s, &bytes, &nv) == KVTC_OK);
    CHECK_MSG(bytes <= cap && nv >= 2, "capped store holds %llu bytes in %llu values (cap %llu)",
              (unsigned long long)bytes, (unsigned long long)nv, (unsigned long long)cap);
    kvtc_store_close(s);

    /* the memory tier serves repeated gets, and equals the backend's answer */
    o.max_bytes = 0;
    o.memory_bytes = 1 << 20;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    CHECK(kvtc_store_put(s, ta, N, &a.c, NULL) == KVTC_OK);
    kvtc_cache ref;
    CHECK(fixture_reference_decode(&fx, &a.c, N, &ref) == KVTC_OK);
    for (int i = 0; i < 3; i++) {
        memset(out.k, 0, 10);
        CHECK(kvtc_store_get(s, ta, N, &lay, &got) == KVTC_OK && got == N && fixture_prefix_equal(&out, &ref, N));
    }
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.memory_hits == 6 && st.hit_chunks == 6);
    /* the backend lost the values (another process evicted them; for Redis,
     * a restart without persistence) while this object's memory tier still
     * holds them: put writes them again for the others, instead of taking
     * the tier's copy for stored */
    {
        kvtc_store_options o2 = o;
        o2.memory_bytes = 0;
        kvtc_store *other = NULL;
        CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o2, &other) == KVTC_OK);
        CHECK(kvtc_store_delete(other, ta, N) == KVTC_OK); /* "another process" */
        CHECK(kvtc_store_lookup(other, ta, N, &hit) == KVTC_OK && hit == 0);
        uint64_t stored = 0;
        CHECK(kvtc_store_put(s, ta, N, &a.c, &stored) == KVTC_OK && stored == 2);
        CHECK(kvtc_store_lookup(other, ta, N, &hit) == KVTC_OK && hit == N);
        kvtc_store_close(other);
    }
    CHECK(kvtc_store_backend_bytes(s, &bytes, &nv) == KVTC_OK);
    CHECK(kvtc_store_evict(s, 0, &ev) == KVTC_OK && ev == 2 + nv); /* 2 in memory, all on disk */
    CHECK(kvtc_store_get(s, ta, N, &lay, &got) == KVTC_OK && got == 0);
    kvtc_store_close(s);
    synth_cache_free(&ref);
    synth_cache_free(&out);
    synth_free(&a);
    synth_free(&b);
    fixture_rmtree(dir);
}

static void test_bad_arguments(void) {
    char dir[256], uri[300];
    CHECK(fixture_tmpdir(dir, sizeof dir, "store") == 0);
    snprintf(uri, sizeof uri, "file:%s", dir);
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, NULL, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_ERR_INVALID_ARGUMENT && !s);
    kvtc_geometry g2 = fx.sp.g;
    g2.n_layers = 3;
    CHECK(kvtc_store_open(uri, fx.basis, &g2, KVTC_DTYPE_F16, &o, &s) == KVTC_ERR_GEOMETRY_MISMATCH && !s);
    CHECK(kvtc_store_open("ftp://x", fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_store_open("file:/proc/kvtc-no", fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_ERR_IO);
    CHECK(kvtc_store_open("redis://nohostport", fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_ERR_INVALID_ARGUMENT);
    o.chunk_tokens = 0;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_ERR_INVALID_ARGUMENT);
    o.chunk_tokens = 2; /* fewer than the 4 sinks */
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_ERR_INVALID_ARGUMENT);
    fixture_options(&o);
    o.struct_size = 8;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_ERR_INVALID_ARGUMENT);
    fixture_options(&o);
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    synth_cache sc;
    int32_t tokens[64];
    fixture_tokens(tokens, 64, 3);
    CHECK(fixture_cache(&fx, 64, 3, &sc) == 0);
    CHECK(kvtc_store_put(s, tokens, 65, &sc.c, NULL) == KVTC_ERR_INVALID_ARGUMENT); /* cache too short */
    int64_t pos[64];
    for (int i = 0; i < 64; i++) pos[i] = i + 5;
    sc.c.positions = pos;
    CHECK(kvtc_store_put(s, tokens, 64, &sc.c, NULL) == KVTC_ERR_INVALID_ARGUMENT); /* not 0..n-1 */
    sc.c.positions = NULL;
    sc.c.dtype = KVTC_DTYPE_BF16;
    CHECK(kvtc_store_put(s, tokens, 64, &sc.c, NULL) == KVTC_ERR_GEOMETRY_MISMATCH);
    sc.c.dtype = KVTC_DTYPE_F16;
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, 32, &out, &lay) == 0);
    uint64_t got = 0;
    lay.kind = (kvtc_store_layout_kind)7;
    CHECK(kvtc_store_get(s, tokens, 64, &lay, &got) == KVTC_ERR_UNSUPPORTED);
    lay.kind = KVTC_STORE_LAYOUT_CONTIGUOUS;
    CHECK(kvtc_store_get(s, NULL, 64, &lay, &got) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_store_lookup(s, tokens, 64, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    kvtc_store_close(s);
    kvtc_store_close(NULL);
    synth_cache_free(&out);
    synth_free(&sc);
    fixture_rmtree(dir);
}

/* ---- several processes at once ------------------------------------------ */

enum { P_TOKENS = 256, P_PROCS = 4, P_ROUNDS = 12 };
static synth_cache p_cache;
static kvtc_cache p_ref;
static int32_t p_tokens[P_PROCS][P_TOKENS];
static int p_me; /* the child's index, set before fork */

static void concurrent_child(const char *uri) {
    int me = p_me;
    kvtc_store_options o;
    fixture_options(&o);
    o.max_bytes = 40 * 1024; /* small: eviction runs while others read and write */
    kvtc_store *s = NULL;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    if (!s) return;
    kvtc_cache out;
    kvtc_store_layout lay;
    CHECK(fixture_out(&fx, P_TOKENS, &out, &lay) == 0);
    uint64_t restored = 0;
    for (int round = 0; round < P_ROUNDS; round++) {
        const int32_t *t = p_tokens[(me + round) % P_PROCS];
        uint64_t n = (uint64_t)(64 + 32 * ((me + round) % 7));
        CHECK(kvtc_store_put(s, t, n, &p_cache.c, NULL) == KVTC_OK);
        const int32_t *u = p_tokens[(me + 2 * round + 1) % P_PROCS];
        uint64_t hit = 0, got = 0;
        CHECK(kvtc_store_lookup(s, u, P_TOKENS, &hit) == KVTC_OK);
        CHECK(kvtc_store_get(s, u, P_TOKENS, &lay, &got) == KVTC_OK);
        /* whatever came back is exactly what was put for these tokens */
        CHECK_MSG(fixture_prefix_equal(&out, &p_ref, got), "process %d round %d: a mixed or torn value", me, round);
        restored += got;
    }
    CHECK_MSG(restored > 0, "process %d restored nothing", me);
    kvtc_store_stats st = {.struct_size = sizeof st};
    CHECK(kvtc_store_stats_get(s, &st) == KVTC_OK && st.errors == 0);
    synth_cache_free(&out);
    kvtc_store_close(s);
}

static void test_processes(void) {
    char dir[256], uri[300];
    CHECK(fixture_tmpdir(dir, sizeof dir, "store") == 0);
    snprintf(uri, sizeof uri, "file:%s", dir);
    CHECK(fixture_cache(&fx, P_TOKENS, 41, &p_cache) == 0);
    CHECK(fixture_reference_decode(&fx, &p_cache.c, P_TOKENS, &p_ref) == KVTC_OK);
    /* the sequences share their first 2 chunks and then differ */
    for (int p = 0; p < P_PROCS; p++) {
        fixture_tokens(p_tokens[p], P_TOKENS, 500 + (uint64_t)p);
        if (p) memcpy(p_tokens[p], p_tokens[0], 64 * sizeof(int32_t));
    }
    fflush(NULL);
    pid_t pids[P_PROCS];
    for (int p = 0; p < P_PROCS; p++) {
        p_me = p;
        pids[p] = fork();
        if (pids[p] == 0) {
            test_failed_ = 0;
            concurrent_child(uri);
            _exit(test_failed_ ? 1 : 0);
        }
    }
    for (int p = 0; p < P_PROCS; p++) {
        int status = 0;
        CHECK(pids[p] > 0 && waitpid(pids[p], &status, 0) == pids[p]);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "process %d failed", p);
    }
    /* the cap held under concurrent writers: at most cap + processes x cap/16 */
    kvtc_store_options o;
    fixture_options(&o);
    kvtc_store *s = NULL;
    uint64_t bytes = 0, nv = 0;
    CHECK(kvtc_store_open(uri, fx.basis, &fx.sp.g, KVTC_DTYPE_F16, &o, &s) == KVTC_OK);
    CHECK(kvtc_store_backend_bytes(s, &bytes, &nv) == KVTC_OK);
    CHECK_MSG(bytes <= 40 * 1024 + P_PROCS * 40 * 1024 / 16 && nv > 0, "%llu bytes in %llu values after 4 capped writers",
              (unsigned long long)bytes, (unsigned long long)nv);
    kvtc_store_close(s);
    synth_cache_free(&p_ref);
    synth_free(&p_cache);
    fixture_rmtree(dir);
}

/* The record check alone: every truncation and every single-bit flip of a
 * record is rejected, and a valid record asked for under another namespace,
 * key, index, codec or token sequence is a mismatch. */
static void test_record_checks(void) {
    uint8_t ns[32], key[32], payload[300];
    int32_t tokens[16];
    for (int i = 0; i < 32; i++) { ns[i] = (uint8_t)i; key[i] = (uint8_t)(100 + i); }
    for (int i = 0; i < 16; i++) tokens[i] = 1000 + 7 * i;
    for (int i = 0; i < 300; i++) payload[i] = (uint8_t)(i * 13);
    store_record_expect e = {ns, key, 5, KVTC_STORE_CODEC_RAW, tokens, 16};
    size_t size = store_record_size(16, sizeof payload);
    uint8_t *rec = malloc(size), *bad = malloc(size);
    store_record_write_header(rec, &e, sizeof payload);
    memcpy(rec + store_record_payload_offset(16), payload, sizeof payload);
    store_record_seal(rec, size);
    const uint8_t *p = NULL;
    size_t pn = 0;
    CHECK(store_record_check(rec, size, &e, &p, &pn) == KVTC_OK && pn == sizeof payload && !memcmp(p, payload, pn));
    int all_rejected = 1;
    for (size_t n = 0; n < size; n++) all_rejected &= store_record_check(rec, n, &e, &p, &pn) != KVTC_OK;
    CHECK_MSG(all_rejected, "a truncated record was accepted");
    all_rejected = 1;
    for (size_t bit = 0; bit < 8 * size; bit++) {
        memcpy(bad, rec, size);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        all_rejected &= store_record_check(bad, size, &e, &p, &pn) != KVTC_OK;
    }
    CHECK_MSG(all_rejected, "a record with one flipped bit was accepted");
    uint8_t other[32];
    memcpy(other, ns, 32);
    other[31] ^= 1;
    store_record_expect x = e;
    x.ns = other;
    CHECK(store_record_check(rec, size, &x, &p, &pn) == KVTC_ERR_BASIS_MISMATCH);
    x = e;
    x.key = other;
    CHECK(store_record_check(rec, size, &x, &p, &pn) == KVTC_ERR_BASIS_MISMATCH);
    x = e;
    x.chunk_index = 4;
    CHECK(store_record_check(rec, size, &x, &p, &pn) == KVTC_ERR_BASIS_MISMATCH);
    x = e;
    x.codec = KVTC_STORE_CODEC_KVTC;
    CHECK(store_record_check(rec, size, &x, &p, &pn) == KVTC_ERR_BASIS_MISMATCH);
    int32_t t2[16];
    memcpy(t2, tokens, sizeof t2);
    t2[15]++;
    x = e;
    x.tokens = t2;
    CHECK(store_record_check(rec, size, &x, &p, &pn) == KVTC_ERR_BASIS_MISMATCH);
    /* a future major version is refused even with a valid CRC */
    memcpy(bad, rec, size);
    bad[8] = 2;
    store_record_seal(bad, size);
    CHECK(store_record_check(bad, size, &e, &p, &pn) == KVTC_ERR_UNSUPPORTED_VERSION);
    free(rec);
    free(bad);
}

/* The keys as docs/STORE.md specifies them, rebuilt here byte by byte. */
static void test_key_spec(void) {
    store_identity id;
    memset(&id, 0, sizeof id);
    id.basis_fingerprint = 0x1122334455667788ull;
    id.model_fingerprint = store_name_fingerprint("m");
    id.geometry = synth_geometry(8, 2, 64, KVTC_ROPE_NORM, 0, 10000.0f);
    id.dtype = KVTC_DTYPE_F16;
    id.chunk_tokens = 4;
    id.codec = KVTC_STORE_CODEC_KVTC;
    id.n_sink = 4;
    id.plan_ratio = 20.0;
    uint8_t buf[128], ns[32], want[32], key[32];
    size_t n = 0;
    memcpy(buf, "kvtc-store-ns-v1", 17); /* with its NUL */
    n = 17;
    kvi_store_u64(buf + n, id.basis_fingerprint); n += 8;
    uint8_t md[32];
    kvtc_sha256("m", 1, md);
    memcpy(buf + n, md, 8); n += 8;
    float theta = 10000.0f;
    uint32_t theta_bits;
    memcpy(&theta_bits, &theta, 4);
    const uint32_t u32s[] = {8, 2, 64, 64, KVTC_ROPE_NORM, theta_bits, KVTC_DTYPE_F16, 4, KVTC_STORE_CODEC_KVTC, 4};
    for (size_t i = 0; i < sizeof u32s / 4; i++, n += 4) kvi_store_u32(buf + n, u32s[i]);
    double ratio = 20.0;
    uint64_t ratio_bits;
    memcpy(&ratio_bits, &ratio, 8);
    kvi_store_u64(buf + n, ratio_bits); n += 8;
    kvtc_sha256(buf, n, want);
    store_namespace(&id, ns);
    CHECK(!memcmp(ns, want, 32));
    const int32_t tokens[8] = {1, -2, 300000, 4, 5, 6, 7, 8};
    memcpy(buf, want, 32);
    for (int i = 0; i < 4; i++) kvi_store_u32(buf + 32 + 4 * i, (uint32_t)tokens[i]);
    kvtc_sha256(buf, 48, want);
    store_chain_key(ns, tokens, 4, key);
    CHECK(!memcmp(key, want, 32));
    memcpy(buf, want, 32);
    for (int i = 0; i < 4; i++) kvi_store_u32(buf + 32 + 4 * i, (uint32_t)tokens[4 + i]);
    kvtc_sha256(buf, 48, want);
    store_chain_key(key, tokens + 4, 4, key); /* out may alias prev */
    CHECK(!memcmp(key, want, 32));
    char hex[65];
    store_key_hex(want, hex);
    CHECK(strlen(hex) == 64 && strspn(hex, "0123456789abcdef") == 64);
}

int main(void) {
    double t0 = test_now();
    test_key_spec();
    test_record_checks();
    if (fixture_init(&fx) != 0) {
        fprintf(stderr, "fixture: calibration failed\n");
        return 1;
    }
    test_round_trip();
    test_damaged_values();
    test_read_only_and_full();
    test_directory_removed();
    test_not_a_file();
    test_eviction_and_memory();
    test_bad_arguments();
    test_processes();
    fixture_free(&fx);
    printf("test_store: %.2f s\n", test_now() - t0);
    return TEST_REPORT();
}
