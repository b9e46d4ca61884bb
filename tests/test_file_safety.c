/* test_file_safety.c - crash safety of tools/cli.c's cli_write_file (tests do
 * not link the tools, so cli.c is included directly): a write that fails
 * leaves the previous file intact and no temporary behind.
 *  - the temporary cannot be created (read-only directory; skipped as root,
 *    who may write anyway, and replaced by a missing directory);
 *  - the write fails part-way: RLIMIT_FSIZE below the new size with SIGXFSZ
 *    ignored, so write() returns EFBIG after a partial write;
 *  - the target is a directory (rename fails after a complete write);
 *  - a successful write replaces the content and leaves no temporary. */
#include "cli.c"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>

#include "test.h"

static char DIR_[256];

static int count_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

static int file_equals(const char *path, const void *want, size_t n) {
    void *b = NULL;
    size_t got = 0;
    char err[256];
    if (cli_read_file(path, &b, &got, err, sizeof err) != KVTC_OK) return 0;
    int eq = got == n && memcmp(b, want, n) == 0;
    free(b);
    return eq;
}

int main(void) {
    char err[512];
    snprintf(DIR_, sizeof DIR_, "/tmp/kvtc_file_safety_%d", (int)getpid());
    CHECK(mkdir(DIR_, 0755) == 0);
    char path[300];
    snprintf(path, sizeof path, "%s/out.kvtc", DIR_);
    static const char old[] = "the previous file, which must survive";
    CHECK(cli_write_file(path, old, sizeof old, err, sizeof err) == KVTC_OK);
    CHECK(file_equals(path, old, sizeof old));
    CHECK(count_temporaries(DIR_) == 0);

    size_t big_n = 1u << 20;
    uint8_t *big = malloc(big_n);
    for (size_t i = 0; i < big_n; i++) big[i] = (uint8_t)(i * 131u);

    /* 1. the write fails part-way (EFBIG at 64 KiB) */
    struct rlimit saved, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = saved;
    lim.rlim_cur = 65536;
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    kvtc_result r = cli_write_file(path, big, big_n, err, sizeof err);
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    signal(SIGXFSZ, prev);
    CHECK_MSG(r == KVTC_ERR_IO, "partial write: %s", kvtc_result_string(r));
    CHECK(strstr(err, "cannot write") != NULL);
    CHECK(file_equals(path, old, sizeof old));
    CHECK(count_temporaries(DIR_) == 0);

    /* 2. the temporary cannot be created */
    char missing[400];
    snprintf(missing, sizeof missing, "%s/no/such/dir/out.kvtc", DIR_);
    CHECK(cli_write_file(missing, old, sizeof old, err, sizeof err) == KVTC_ERR_IO);
    if (geteuid() != 0) {
        CHECK(chmod(DIR_, 0555) == 0);
        CHECK(cli_write_file(path, big, big_n, err, sizeof err) == KVTC_ERR_IO);
        CHECK(chmod(DIR_, 0755) == 0);
        CHECK(file_equals(path, old, sizeof old));
    }
    CHECK(count_temporaries(DIR_) == 0);

    /* 3. rename fails: the target is a non-empty directory */
    char dpath[300], inner[400];
    snprintf(dpath, sizeof dpath, "%s/adir", DIR_);
    CHECK(mkdir(dpath, 0755) == 0);
    snprintf(inner, sizeof inner, "%s/keep", dpath);
    CHECK(cli_write_file(inner, old, sizeof old, err, sizeof err) == KVTC_OK);
    CHECK(cli_write_file(dpath, big, big_n, err, sizeof err) == KVTC_ERR_IO);
    CHECK(file_equals(inner, old, sizeof old));
    CHECK(count_temporaries(DIR_) == 0);

    /* 4. success replaces the file */
    CHECK(cli_write_file(path, big, big_n, err, sizeof err) == KVTC_OK);
    CHECK(file_equals(path, big, big_n));
    CHECK(count_temporaries(DIR_) == 0);

    unlink(inner);
    rmdir(dpath);
    unlink(path);
    CHECK(rmdir(DIR_) == 0);
    free(big);
    return TEST_REPORT();
}
