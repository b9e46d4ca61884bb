/* cli_files.c - how the kvtc tool reads its inputs and writes its outputs
 * (issue 9 items 1, 5, 6). See cli.h for the contract; the reasons:
 *
 * - Only a regular file (or a name that does not exist yet) is replaced
 *   atomically (temporary file, fsync, rename, fsync of the directory):
 *   renaming over /dev/null or a FIFO would destroy it, so anything else
 *   (character device, FIFO, socket, "-" for stdout) is written directly
 *   and never unlinked, as cp and zstd do. A symlink is written through:
 *   its target is what gets replaced, the link stays.
 * - New files get 0666 minus the umask; a replaced file keeps its mode.
 * - Temporary files are named ".kvtc-tmp-<16 hex>-<pid>-XXXXXX" next to the
 *   output, the hex being a hash of the output's file name: short (so
 *   255-byte names work), easy to recognise and clean up, and a later run
 *   for the same output can tell which stale ones are its own (their pid is
 *   gone) and remove them. SIGINT/SIGTERM/SIGHUP during a write remove the
 *   temporary before the process dies; only SIGKILL can leave one behind.
 *
 * The tool is single-threaded where it writes files, so the one piece of
 * process state here (the temporary to remove from a signal handler) is a
 * static, as signal handlers require. */
/* realpath() is XSI */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "internal.h"

#define TMP_PREFIX ".kvtc-tmp-"

/* ---- reading ------------------------------------------------------------ */

/* Read fd to EOF into a growing buffer (stdin, FIFOs, character devices). */
static kvtc_result read_stream(int fd, const char *name, void **buf, size_t *size, char *err, size_t errlen) {
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    if (!b) goto oom;
    for (;;) {
        if (n == cap) {
            if (cap > SIZE_MAX / 2) { free(b); goto oom; }
            uint8_t *nb = realloc(b, cap * 2);
            if (!nb) { free(b); goto oom; }
            b = nb;
            cap *= 2;
        }
        ssize_t k = read(fd, b + n, cap - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            snprintf(err, errlen, "cannot read %s: %s", name, strerror(errno));
            free(b);
            return KVTC_ERR_IO;
        }
        if (k == 0) break;
        n += (size_t)k;
    }
    *buf = b;
    *size = n;
    return KVTC_OK;
oom:
    snprintf(err, errlen, "out of memory reading %s", name);
    return KVTC_ERR_OUT_OF_MEMORY;
}

/* Inputs that can be read only once (standard input, a FIFO, a process
 * substitution) but whose first bytes cli_peek_file looked at: their bytes,
 * kept until cli_read_file of the same name takes them. */
typedef struct stream_input {
    char *path;
    void *buf;
    size_t size;
} stream_input;
static stream_input *g_peeked;
static size_t g_n_peeked;

static int take_peeked(const char *path, void **buf, size_t *size) {
    for (size_t i = 0; i < g_n_peeked; i++) {
        if (strcmp(g_peeked[i].path, path)) continue;
        *buf = g_peeked[i].buf;
        *size = g_peeked[i].size;
        free(g_peeked[i].path);
        g_peeked[i] = g_peeked[--g_n_peeked];
        if (!g_n_peeked) {
            free(g_peeked);
            g_peeked = NULL;
        }
        return 1;
    }
    return 0;
}

static kvtc_result read_input(const char *path, void **buf, size_t *size, char *err, size_t errlen);

size_t cli_peek_file(const char *path, void *head, size_t n) {
    struct stat st;
    int is_stream = !strcmp(path, "-") || (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode));
    if (!is_stream) {
        int fd = open(path, O_RDONLY);
        if (fd < 0) return 0;
        ssize_t k = read(fd, head, n);
        close(fd);
        return k > 0 ? (size_t)k : 0;
    }
    for (size_t i = 0; i < g_n_peeked; i++)
        if (!strcmp(g_peeked[i].path, path)) {
            size_t k = g_peeked[i].size < n ? g_peeked[i].size : n;
            memcpy(head, g_peeked[i].buf, k);
            return k;
        }
    /* read it whole now and keep it for cli_read_file; on failure keep
     * nothing, the real read reports the error */
    char err[256];
    void *b = NULL;
    size_t size = 0;
    stream_input *grown = realloc(g_peeked, (g_n_peeked + 1) * sizeof *grown);
    if (!grown) return 0;
    g_peeked = grown;
    char *name = malloc(strlen(path) + 1);
    if (!name) return 0;
    if (read_input(path, &b, &size, err, sizeof err)) {
        free(name);
        return 0;
    }
    strcpy(name, path);
    g_peeked[g_n_peeked++] = (stream_input){name, b, size};
    size_t k = size < n ? size : n;
    memcpy(head, b, k);
    return k;
}

kvtc_result cli_read_file(const char *path, void **buf, size_t *size, char *err, size_t errlen) {
    *buf = NULL;
    *size = 0;
    if (take_peeked(path, buf, size)) return KVTC_OK;
    return read_input(path, buf, size, err, errlen);
}

/* A regular file's st_size bytes in one allocation (not grown by doubling:
 * a slot file can be gigabytes). */
static kvtc_result read_sized(int fd, const char *path, const struct stat *st, void **buf, size_t *size, char *err,
                              size_t errlen) {
    size_t n = (size_t)st->st_size;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        snprintf(err, errlen, "out of memory reading %s (%zu bytes)", path, n);
        return KVTC_ERR_OUT_OF_MEMORY;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, b + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            snprintf(err, errlen, "cannot read %s: %s", path, k < 0 ? strerror(errno) : "file shrank");
            free(b);
            return KVTC_ERR_IO;
        }
        got += (size_t)k;
    }
    *buf = b;
    *size = n;
    return KVTC_OK;
}

kvtc_result cli_read_regular(const char *path, void **buf, size_t *size, char *err, size_t errlen) {
    *buf = NULL;
    *size = 0;
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        struct stat st;
        if (e == ELOOP && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
            snprintf(err, errlen, "%s is a symbolic link, not a regular file", path);
        else
            snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return KVTC_ERR_IO;
    }
    struct stat st;
    kvtc_result r;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        r = KVTC_ERR_IO;
    } else if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        r = KVTC_ERR_IO;
    } else {
        r = read_sized(fd, path, &st, buf, size, err, errlen);
    }
    close(fd);
    return r;
}

static kvtc_result read_input(const char *path, void **buf, size_t *size, char *err, size_t errlen) {
    *buf = NULL;
    *size = 0;
    if (!strcmp(path, "-")) return read_stream(0, "standard input", buf, size, err, errlen);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return KVTC_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return KVTC_ERR_IO;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is a directory, not a file", path);
        close(fd);
        return KVTC_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) { /* a FIFO, /dev/stdin, a process substitution */
        kvtc_result r = read_stream(fd, path, buf, size, err, errlen);
        close(fd);
        return r;
    }
    kvtc_result r = read_sized(fd, path, &st, buf, size, err, errlen);
    close(fd);
    return r;
}

/* ---- writing ------------------------------------------------------------ */

static int write_all(int fd, const void *buf, size_t size) {
    const uint8_t *p = buf;
    size_t done = 0;
    while (done < size) {
        ssize_t k = write(fd, p + done, size - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO;
            return -1;
        }
        done += (size_t)k;
    }
    return 0;
}

/* The temporary a signal handler must remove ("" when none). */
static char g_tmp_path[PATH_MAX + 64];

static void remove_tmp_and_die(int sig) {
    if (g_tmp_path[0]) unlink(g_tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* SIGXFSZ: a write past `ulimit -f` kills by default; clean up then too. */
static const int cleanup_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGXFSZ};
#define N_CLEANUP_SIGNALS (sizeof cleanup_signals / sizeof cleanup_signals[0])

static void cleanup_handlers(int install, struct sigaction *saved) {
    for (size_t i = 0; i < N_CLEANUP_SIGNALS; i++) {
        if (install) {
            /* a signal the caller ignores (nohup, SIGXFSZ ignored to get
             * EFBIG) stays ignored: the write then fails and cleans up */
            sigaction(cleanup_signals[i], NULL, &saved[i]);
            if (saved[i].sa_handler == SIG_IGN) continue;
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = remove_tmp_and_die;
            sigemptyset(&sa.sa_mask);
            sigaction(cleanup_signals[i], &sa, &saved[i]);
        } else {
            sigaction(cleanup_signals[i], &saved[i], NULL);
        }
    }
}

/* dir and base of path (dir "." when path has no slash). */
static int split_path(const char *path, char *dir, size_t dcap, const char **base) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, dcap, ".");
        *base = path;
        return 0;
    }
    size_t dl = (size_t)(slash - path);
    if (dl == 0) dl = 1; /* "/name" */
    if (dl >= dcap) return -1;
    memcpy(dir, path, dl);
    dir[dl] = 0;
    *base = slash + 1;
    return 0;
}

static uint64_t name_hash(const char *base) {
    return kvi_hash_mix(kvi_hash_update(KVTC_HASH_SEED, base, strlen(base)));
}

int cli_tmp_name_owner(const char *name, uint64_t *hash, long *pid) {
    size_t pl = sizeof TMP_PREFIX - 1;
    if (strncmp(name, TMP_PREFIX, pl) != 0) return -1;
    const char *p = name + pl;
    uint64_t h = 0;
    for (int i = 0; i < 16; i++, p++) {
        int c = *p;
        int v = c >= '0' && c <= '9' ? c - '0' : (c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1);
        if (v < 0) return -1;
        h = h << 4 | (uint64_t)v;
    }
    if (*p++ != '-') return -1;
    long id = 0;
    if (*p < '0' || *p > '9') return -1;
    while (*p >= '0' && *p <= '9') {
        if (id > (LONG_MAX - 9) / 10) return -1;
        id = id * 10 + (*p++ - '0');
    }
    if (*p++ != '-' || strlen(p) != 6) return -1;
    *hash = h;
    *pid = id;
    return 0;
}

/* Remove our stale temporaries for this output name: same name hash, owned
 * by us, and the process that made them is gone. */
static void remove_stale_tmps(const char *dir, uint64_t hash, int any_name) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t h;
        long pid;
        if (cli_tmp_name_owner(e->d_name, &h, &pid) || (!any_name && h != hash)) continue;
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[PATH_MAX];
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= sizeof p) continue;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid()) unlink(p);
    }
    closedir(d);
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    fsync(fd); /* best effort: some filesystems refuse directory fsync */
    close(fd);
}

/* Write directly into something that is not a regular file. */
static kvtc_result write_direct(int fd, const char *name, const void *buf, size_t size, char *err, size_t errlen) {
    if (write_all(fd, buf, size) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", name, strerror(errno));
        return KVTC_ERR_IO;
    }
    return KVTC_OK;
}

/* no_replace: link() the temporary to path instead of rename(): fails with
 * EEXIST, atomically, when path exists (cli_write_new_file). */
static kvtc_result replace_regular(const char *path, const struct stat *old, int no_replace, const void *buf,
                                   size_t size, char *err, size_t errlen) {
    char dir[PATH_MAX];
    const char *base;
    if (split_path(path, dir, sizeof dir, &base) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(ENAMETOOLONG));
        return KVTC_ERR_IO;
    }
    uint64_t hash = name_hash(base);
    remove_stale_tmps(dir, hash, 0);
    if ((size_t)snprintf(g_tmp_path, sizeof g_tmp_path, "%s/" TMP_PREFIX "%016" PRIx64 "-%ld-XXXXXX", dir, hash,
                         (long)getpid()) >= sizeof g_tmp_path) {
        g_tmp_path[0] = 0;
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(ENAMETOOLONG));
        return KVTC_ERR_IO;
    }
    struct sigaction saved[N_CLEANUP_SIGNALS];
    cleanup_handlers(1, saved);
    int fd = mkstemp(g_tmp_path);
    if (fd < 0) {
        int e = errno;
        g_tmp_path[0] = 0;
        cleanup_handlers(0, saved);
        snprintf(err, errlen, "cannot create a temporary file in %s: %s", dir, strerror(e));
        return KVTC_ERR_IO;
    }
    mode_t mode;
    if (old) {
        mode = old->st_mode & 07777;
    } else {
        mode_t mask = umask(0);
        umask(mask);
        mode = 0666 & ~mask;
    }
    int ok = write_all(fd, buf, size) == 0;
    int saved_errno = errno;
    if (ok && fchmod(fd, mode) != 0) { ok = 0; saved_errno = errno; }
    if (ok && fsync(fd) != 0) { ok = 0; saved_errno = errno; }
    if (close(fd) != 0 && ok) { ok = 0; saved_errno = errno; }
    if (ok && (no_replace ? link(g_tmp_path, path) : rename(g_tmp_path, path)) != 0) { ok = 0; saved_errno = errno; }
    if (!ok || no_replace) unlink(g_tmp_path);
    g_tmp_path[0] = 0;
    cleanup_handlers(0, saved);
    if (!ok) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(saved_errno));
        errno = saved_errno; /* cli_write_new_file tells EEXIST apart */
        return KVTC_ERR_IO;
    }
    fsync_dir(dir);
    return KVTC_OK;
}

kvtc_result cli_write_file(const char *path, const void *buf, size_t size, char *err, size_t errlen) {
    if (!strcmp(path, "-")) return write_direct(1, "standard output", buf, size, err, errlen);
    size_t len = strlen(path);
    if (len == 0) {
        snprintf(err, errlen, "empty output file name");
        return KVTC_ERR_IO;
    }
    struct stat st;
    int exists = stat(path, &st) == 0; /* follows symlinks: we write their target */
    if (!exists && errno != ENOENT) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return KVTC_ERR_IO;
    }
    if ((exists && S_ISDIR(st.st_mode)) || path[len - 1] == '/') {
        snprintf(err, errlen, "%s is a directory: give a file name for the output", path);
        return KVTC_ERR_IO;
    }
    char target[PATH_MAX];
    struct stat lst;
    if (lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        /* write through the link: replace its target, keep the link */
        if (!exists || !realpath(path, target)) {
            snprintf(err, errlen, "%s is a symbolic link to a missing file", path);
            return KVTC_ERR_IO;
        }
        path = target;
    }
    if (exists && !S_ISREG(st.st_mode)) {
        /* device, FIFO, socket: write into it, never replace it */
        int fd = open(path, O_WRONLY);
        if (fd < 0) {
            snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
            return KVTC_ERR_IO;
        }
        kvtc_result r = write_direct(fd, path, buf, size, err, errlen);
        close(fd);
        return r;
    }
    return replace_regular(path, exists ? &st : NULL, 0, buf, size, err, errlen);
}

int cli_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (!a || !b || !strcmp(a, "-") || !strcmp(b, "-")) return 0;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

kvtc_result cli_check_output(const char *path, char *err, size_t errlen) {
    if (!strcmp(path, "-")) return KVTC_OK;
    size_t len = strlen(path);
    if (len == 0) {
        snprintf(err, errlen, "empty output file name");
        return KVTC_ERR_IO;
    }
    struct stat st, lst;
    int exists = stat(path, &st) == 0;
    if ((exists && S_ISDIR(st.st_mode)) || path[len - 1] == '/') {
        snprintf(err, errlen, "%s is a directory: give a file name for the output", path);
        return KVTC_ERR_IO;
    }
    if (!exists && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
        snprintf(err, errlen, "%s is a symbolic link to a missing file", path);
        return KVTC_ERR_IO;
    }
    if (exists && !S_ISREG(st.st_mode)) return KVTC_OK; /* a device or FIFO: written into directly */
    /* a regular file or a new name: the temporary goes into its directory */
    char target[PATH_MAX], dir[PATH_MAX];
    const char *base;
    if (exists && realpath(path, target)) path = target;
    if (split_path(path, dir, sizeof dir, &base)) {
        snprintf(err, errlen, "output path too long: %s", path);
        return KVTC_ERR_IO;
    }
    struct stat ds;
    if (stat(dir, &ds) != 0 || !S_ISDIR(ds.st_mode)) {
        snprintf(err, errlen, "cannot write %s: directory %s %s", path, dir,
                 stat(dir, &ds) != 0 ? "does not exist" : "is not a directory");
        return KVTC_ERR_IO;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(err, errlen, "cannot write %s: directory %s: %s", path, dir, strerror(errno));
        return KVTC_ERR_IO;
    }
    return KVTC_OK;
}

void cli_remove_stale_tmps(const char *dir) { remove_stale_tmps(dir, 0, 1); }

kvtc_result cli_write_new_file(const char *path, const void *buf, size_t size, int *existed, char *err,
                               size_t errlen) {
    *existed = 0;
    kvtc_result r = replace_regular(path, NULL, 1, buf, size, err, errlen);
    if (r == KVTC_ERR_IO && errno == EEXIST) {
        *existed = 1;
        snprintf(err, errlen, "%s exists", path);
    }
    return r;
}
