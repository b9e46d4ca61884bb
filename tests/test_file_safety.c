/* test_file_safety.c - crash safety of tools/cli_files.c's cli_write_file
 * (tests do not link the tools, so the sources are included directly): a
 * write that fails leaves the previous file intact and no temporary behind.
 *  - the temporary cannot be created (read-only directory; skipped as root,
 *    who may write anyway, and replaced by a missing directory);
 *  - the write fails part-way: RLIMIT_FSIZE below the new size with SIGXFSZ
 *    ignored, so write() returns EFBIG after a partial write;
 *  - the target is a directory (rename fails after a complete write);
 *  - a successful write replaces the content and leaves no temporary.
 * Issue 9 (each failed on main at 9e9b377):
 *  - item 1: a FIFO and a character device (/dev/null) are written into,
 *    never replaced; a symlink is written through; "dir/" and a directory
 *    are refused with "is a directory"; "-" reads stdin;
 *  - item 5: a new file gets 0666 & ~umask, a replaced file keeps its mode;
 *  - item 6: a write killed by a signal (SIGXFSZ from `ulimit -f`, the same
 *    handler as SIGINT/SIGTERM/SIGHUP) leaves no temporary; stale
 *    temporaries of the same output whose process is gone are removed by
 *    the next write; output names of 255 bytes work (the temporary's name
 *    does not grow with the output's). */
#include "cli_files.c"
#include "cli.c"

#include <sys/resource.h>
#include <sys/wait.h>

#include "test.h"

static char DIR_[256];

static int count_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".kvtc-tmp-")) n++;
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

    /* issue 9 item 1: FIFO, character device, symlink, directories */
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/fifo", DIR_);
    CHECK(mkfifo(fifo, 0600) == 0);
    pid_t reader = fork();
    if (reader == 0) { /* drain the FIFO, then exit with whether it got the bytes */
        int fd = open(fifo, O_RDONLY);
        char got[sizeof old];
        ssize_t k = read(fd, got, sizeof got);
        _exit(k == (ssize_t)sizeof old && !memcmp(got, old, sizeof old) ? 0 : 1);
    }
    CHECK(cli_write_file(fifo, old, sizeof old, err, sizeof err) == KVTC_OK);
    int st = 0;
    waitpid(reader, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct stat sb;
    CHECK(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));
    unlink(fifo);
    CHECK_MSG(cli_write_file("/dev/null", old, sizeof old, err, sizeof err) == KVTC_OK, "/dev/null: %s", err);
    CHECK(lstat("/dev/null", &sb) == 0 && S_ISCHR(sb.st_mode));
    char link[300];
    snprintf(link, sizeof link, "%s/link.kvtc", DIR_);
    CHECK(symlink("out.kvtc", link) == 0);
    CHECK(cli_write_file(link, old, sizeof old, err, sizeof err) == KVTC_OK);
    CHECK(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode)); /* the link stays a link */
    CHECK(file_equals(path, old, sizeof old));            /* its target got the bytes */
    unlink(link);
    /* a dangling symlink is refused (README): nothing is created behind it */
    CHECK(symlink("missing-target.kvtc", link) == 0);
    CHECK(cli_write_file(link, old, sizeof old, err, sizeof err) == KVTC_ERR_IO &&
          strstr(err, "symbolic link to a missing file"));
    char target[300];
    snprintf(target, sizeof target, "%s/missing-target.kvtc", DIR_);
    CHECK(access(target, F_OK) != 0 && lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode));
    unlink(link);
    char slash[310];
    snprintf(slash, sizeof slash, "%s/newdir/", DIR_);
    CHECK(cli_write_file(slash, old, sizeof old, err, sizeof err) == KVTC_ERR_IO && strstr(err, "is a directory"));
    CHECK(cli_write_file(dpath, old, sizeof old, err, sizeof err) == KVTC_ERR_IO && strstr(err, "is a directory"));

    /* issue 9 item 5: modes */
    mode_t mask = umask(027);
    char fresh[300];
    snprintf(fresh, sizeof fresh, "%s/fresh.kvtc", DIR_);
    CHECK(cli_write_file(fresh, old, sizeof old, err, sizeof err) == KVTC_OK);
    CHECK(stat(fresh, &sb) == 0 && (sb.st_mode & 0777) == 0640);
    CHECK(chmod(fresh, 0604) == 0);
    CHECK(cli_write_file(fresh, big, 100, err, sizeof err) == KVTC_OK);
    CHECK(stat(fresh, &sb) == 0 && (sb.st_mode & 0777) == 0604);
    umask(mask);
    unlink(fresh);

    /* issue 9 item 6: a 255-byte output name */
    char longname[600];
    int dl = snprintf(longname, sizeof longname, "%s/", DIR_);
    memset(longname + dl, 'n', 255);
    longname[dl + 255] = 0;
    CHECK_MSG(cli_write_file(longname, old, sizeof old, err, sizeof err) == KVTC_OK, "255-byte name: %s", err);
    unlink(longname);

    /* issue 9 item 6: killed mid-write (SIGXFSZ at 64 KiB, default action) */
    pid_t child = fork();
    if (child == 0) {
        struct rlimit l2 = saved;
        l2.rlim_cur = 65536;
        setrlimit(RLIMIT_FSIZE, &l2);
        signal(SIGXFSZ, SIG_DFL);
        cli_write_file(path, big, big_n, err, sizeof err);
        _exit(0);
    }
    waitpid(child, &st, 0);
    CHECK_MSG(WIFSIGNALED(st) && WTERMSIG(st) == SIGXFSZ, "child status %x", st);
    CHECK(count_temporaries(DIR_) == 0);
    CHECK(file_equals(path, old, sizeof old));

    /* issue 9 item 6: stale temporaries of a dead process are removed by the
     * next write of the same output; a live process's and another output's stay */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, &st, 0);
    char stale[400], live[400], other[400];
    snprintf(stale, sizeof stale, "%s/" TMP_PREFIX "%016" PRIx64 "-%ld-AbCdEf", DIR_, name_hash("out.kvtc"), (long)dead);
    snprintf(live, sizeof live, "%s/" TMP_PREFIX "%016" PRIx64 "-%ld-AbCdEf", DIR_, name_hash("out.kvtc"), (long)getppid());
    snprintf(other, sizeof other, "%s/" TMP_PREFIX "%016" PRIx64 "-%ld-AbCdEf", DIR_, name_hash("x.kvtc"), (long)dead);
    CHECK(cli_write_file(stale, "x", 1, err, sizeof err) == KVTC_OK);
    CHECK(cli_write_file(live, "x", 1, err, sizeof err) == KVTC_OK);
    CHECK(cli_write_file(other, "x", 1, err, sizeof err) == KVTC_OK);
    uint64_t hh;
    long pp;
    CHECK(cli_tmp_name_owner(strrchr(stale, '/') + 1, &hh, &pp) == 0 && pp == (long)dead);
    CHECK(cli_write_file(path, old, sizeof old, err, sizeof err) == KVTC_OK);
    CHECK(access(stale, F_OK) != 0 && access(live, F_OK) == 0 && access(other, F_OK) == 0);
    /* cli_remove_stale_tmps (kvtc slots compress): a dead process's
     * temporaries of any output go, a live one's stay */
    cli_remove_stale_tmps(DIR_);
    CHECK(access(other, F_OK) != 0 && access(live, F_OK) == 0);
    unlink(live);
    unlink(other);

    /* cli_write_new_file (kvtc slots expand): creates a new file; never
     * replaces one, a symlink included (a save llama-server made while the
     * slot was decoded is newer); no temporary either way */
    {
        char np[320], lp[320];
        int existed = -1;
        snprintf(np, sizeof np, "%s/new.bin", DIR_);
        CHECK(cli_write_new_file(np, old, sizeof old, &existed, err, sizeof err) == KVTC_OK && existed == 0);
        CHECK(file_equals(np, old, sizeof old));
        CHECK(cli_write_new_file(np, big, 100, &existed, err, sizeof err) == KVTC_ERR_IO && existed == 1);
        CHECK(file_equals(np, old, sizeof old) && count_temporaries(DIR_) == 0);
        snprintf(lp, sizeof lp, "%s/dangling.bin", DIR_);
        CHECK(symlink("/nonexistent/kvtc", lp) == 0);
        CHECK(cli_write_new_file(lp, big, 100, &existed, err, sizeof err) == KVTC_ERR_IO && existed == 1);
        CHECK(access("/nonexistent/kvtc", F_OK) != 0 && count_temporaries(DIR_) == 0);
        /* cli_read_regular: a regular file is read; a symlink, a FIFO (which
         * would block until a writer came) and a directory are refused */
        void *b = NULL;
        size_t bn = 0;
        CHECK(cli_read_regular(np, &b, &bn, err, sizeof err) == KVTC_OK && bn == sizeof old && !memcmp(b, old, bn));
        free(b);
        CHECK(cli_read_regular(lp, &b, &bn, err, sizeof err) == KVTC_ERR_IO && strstr(err, "symbolic link") && !b);
        char fp[320];
        snprintf(fp, sizeof fp, "%s/fifo", DIR_);
        CHECK(mkfifo(fp, 0644) == 0);
        CHECK(cli_read_regular(fp, &b, &bn, err, sizeof err) == KVTC_ERR_IO && strstr(err, "not a regular file"));
        CHECK(cli_read_regular(DIR_, &b, &bn, err, sizeof err) == KVTC_ERR_IO && strstr(err, "not a regular file"));
        unlink(fp);
        unlink(lp);
        unlink(np);
    }

    unlink(inner);
    rmdir(dpath);
    unlink(path);
    CHECK(rmdir(DIR_) == 0);
    free(big);
    return TEST_REPORT();
}
