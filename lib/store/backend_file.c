/* backend_file.c - the embedded file: backend.
 *
 * Layout: DIR/<2 hex>/<62 hex> holds the record of one key; DIR/tmp/ holds
 * writes in progress; DIR/.evict.lock serializes eviction passes.
 * - put: write DIR/tmp/<hex>.<pid>.<n>, fsync, rename over the final name,
 *   fsync the directory: a reader sees no value or a whole one.
 * - recency: a get sets the file's mtime to now (futimens), so mtime is the
 *   last use; this is one atomic metadata update, safe from any process, and
 *   independent of how the filesystem is mounted (atime/relatime).
 * - eviction (cap or explicit): under flock(DIR/.evict.lock) one process at a
 *   time scans all values, sorts them by mtime and unlinks the oldest until
 *   the target is met. A concurrent reader that already opened a file keeps
 *   reading it (POSIX unlink); one that has not sees a miss. Temporaries
 *   older than an hour (a writer that died) are removed by the same scan.
 * - the cap is soft: each process rescans after writing max_bytes/16 bytes
 *   or when its estimate passes the cap, so the directory exceeds the cap by
 *   at most (processes x max_bytes / 16). */
#define _DEFAULT_SOURCE /* flock */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/backend.h"
#include "store/keys.h"

typedef struct file_backend {
    store_backend base;
    char *dir;
    size_t dir_len;
    uint64_t max_bytes;
    uint64_t max_value;      /* larger files are returned empty, not read */
    uint64_t est_bytes;      /* bytes at the last scan plus our writes since */
    uint64_t since_scan;     /* bytes we wrote since the last scan */
    uint64_t tmp_counter;
} file_backend;

/* path = DIR/xx/<rest> (or just DIR/xx when dir_only) */
static char *key_path(const file_backend *f, const uint8_t *key, int dir_only) {
    char hex[65];
    store_key_hex(key, hex);
    char *p = malloc(f->dir_len + 70);
    if (!p) return NULL;
    if (dir_only) snprintf(p, f->dir_len + 70, "%s/%.2s", f->dir, hex);
    else snprintf(p, f->dir_len + 70, "%s/%.2s/%s", f->dir, hex, hex + 2);
    return p;
}

static int fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

/* A value that is there but cannot be a record: empty, for the check to reject. */
static kvtc_result bad_value(uint8_t **val, size_t *len, int *found) {
    *len = 0;
    *found = 1;
    return (*val = malloc(1)) ? KVTC_OK : KVTC_ERR_OUT_OF_MEMORY;
}

static kvtc_result file_get_one(store_backend *b, const uint8_t *key, uint8_t **val, size_t *len, int *found) {
    file_backend *f = (file_backend *)b;
    *val = NULL;
    *len = 0;
    *found = 0;
    char *path = key_path(f, key, 0);
    if (!path) return KVTC_ERR_OUT_OF_MEMORY;
    /* Only a regular file is a value. O_NOFOLLOW: a planted symlink is not
     * followed (its target neither read nor touched by futimens); O_NONBLOCK:
     * a FIFO does not block open() until some writer comes. Either, or a
     * directory, is a bad value: found and empty, which the record check
     * rejects, so the store counts it and removes it. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    free(path);
    if (fd < 0 && errno == ELOOP) return bad_value(val, len, found);
    if (fd < 0) return errno == ENOENT || errno == ENOTDIR ? KVTC_OK : KVTC_ERR_IO;
    struct stat st;
    kvtc_result r = KVTC_OK;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) != 0 || st.st_size < 0) { r = KVTC_ERR_IO; goto done; }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return bad_value(val, len, found);
    }
    /* a file larger than any valid record: an empty value, which the record
     * check rejects, rather than reading a hostile size into memory */
    size_t n = f->max_value && (uint64_t)st.st_size > f->max_value ? 0 : (size_t)st.st_size, got = 0;
    buf = malloc(n ? n : 1);
    if (!buf) { r = KVTC_ERR_OUT_OF_MEMORY; goto done; }
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break; /* shorter than fstat said: the record check will see it */
        got += (size_t)k;
    }
    /* the last use, for LRU eviction (fails harmlessly on a read-only store) */
    struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    (void)futimens(fd, ts);
    *val = buf;
    *len = got;
    *found = 1;
    buf = NULL;
done:
    free(buf);
    close(fd);
    return r;
}

static kvtc_result file_get(store_backend *b, const uint8_t *keys, size_t n, uint8_t **vals, size_t *lens) {
    for (size_t i = 0; i < n; i++) vals[i] = NULL;
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        kvtc_result r = file_get_one(b, keys + 32 * i, &vals[i], &lens[i], &found);
        if (r) {
            for (size_t j = 0; j < i; j++) { free(vals[j]); vals[j] = NULL; }
            return r;
        }
    }
    return KVTC_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static kvtc_result file_evict_locked(file_backend *f, uint64_t target, int wait, uint64_t *n_evicted);

/* A directory where a value belongs (planted, or left by a broken tool)
 * cannot be unlinked, and rename() cannot replace it unless it is empty: it
 * would block its key for good (put skipping it, every get rejecting it).
 * Move it into DIR/tmp/ under a unique name instead and remove it there if
 * it is empty; a non-empty one is left in tmp/, off every key's path, for an
 * operator to look at (its contents are not ours to delete). */
static int move_dir_aside(file_backend *f, const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return -1;
    char aside[4096 + 128];
    snprintf(aside, sizeof aside, "%s/tmp/bad-dir.%ld.%llu", f->dir, (long)getpid(),
             (unsigned long long)f->tmp_counter++);
    if (rename(path, aside) != 0) return -1;
    (void)rmdir(aside);
    return 0;
}

/* DIR and DIR/tmp again, for a write that found them gone: removed under a
 * running process (an operator's rm -rf, a tmp cleaner), the store heals on
 * its next put instead of failing until it is reopened. */
static int remake_store_dirs(const file_backend *f) {
    char tdir[4096];
    if (mkdir(f->dir, 0777) != 0 && errno != EEXIST) return -1;
    snprintf(tdir, sizeof tdir, "%s/tmp", f->dir);
    return mkdir(tdir, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

static kvtc_result file_put_one(store_backend *b, const uint8_t *key, const uint8_t *val, size_t len) {
    file_backend *f = (file_backend *)b;
    char *dir = key_path(f, key, 1), *path = key_path(f, key, 0);
    char *tmp = malloc(f->dir_len + 128);
    kvtc_result r = KVTC_ERR_IO;
    int fd = -1;
    if (!dir || !path || !tmp) { r = KVTC_ERR_OUT_OF_MEMORY; goto done; }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST &&
        (errno != ENOENT || remake_store_dirs(f) != 0 || (mkdir(dir, 0777) != 0 && errno != EEXIST)))
        goto done;
    char hex[65];
    store_key_hex(key, hex);
    snprintf(tmp, f->dir_len + 128, "%s/tmp/%.16s.%ld.%llu", f->dir, hex, (long)getpid(),
             (unsigned long long)f->tmp_counter++);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0 && errno == ENOENT && remake_store_dirs(f) == 0) fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
    if (fd < 0) goto done;
    if (write_all(fd, val, len) != 0 || fsync(fd) != 0) goto fail_tmp;
    if (close(fd) != 0) { fd = -1; goto fail_tmp; }
    fd = -1;
    if (rename(tmp, path) != 0 &&
        (!(errno == EISDIR || errno == ENOTEMPTY || errno == EEXIST) || move_dir_aside(f, path) != 0 ||
         rename(tmp, path) != 0))
        goto fail_tmp;
    if (fsync_dir(dir) != 0) goto done;
    r = KVTC_OK;
    f->est_bytes += len;
    f->since_scan += len;
    if (f->max_bytes && (f->est_bytes > f->max_bytes || f->since_scan > f->max_bytes / 16))
        (void)file_evict_locked(f, f->max_bytes - f->max_bytes / 10, 0, NULL);
    goto done;
fail_tmp:
    if (fd >= 0) close(fd);
    fd = -1;
    unlink(tmp);
done:
    if (fd >= 0) close(fd);
    free(dir);
    free(path);
    free(tmp);
    return r;
}

static kvtc_result file_put(store_backend *b, const uint8_t *keys, uint8_t *const *vals, const size_t *lens, size_t n,
                            size_t *n_done) {
    *n_done = 0;
    for (size_t i = 0; i < n; i++) {
        kvtc_result r = file_put_one(b, keys + 32 * i, vals[i], lens[i]);
        if (r) return r;
        (*n_done)++;
    }
    return KVTC_OK;
}

static kvtc_result file_exists(store_backend *b, const uint8_t *keys, size_t n, uint8_t *present) {
    file_backend *f = (file_backend *)b;
    for (size_t i = 0; i < n; i++) {
        char *path = key_path(f, keys + 32 * i, 0);
        if (!path) return KVTC_ERR_OUT_OF_MEMORY;
        struct stat st;
        int r = lstat(path, &st);
        int e = errno;
        free(path);
        if (r != 0 && e != ENOENT && e != ENOTDIR) return KVTC_ERR_IO;
        /* only a regular file can be a value: anything else in its place is
         * not stored (put then replaces it) */
        present[i] = r == 0 && S_ISREG(st.st_mode);
    }
    return KVTC_OK;
}

static kvtc_result file_del(store_backend *b, const uint8_t *key) {
    file_backend *f = (file_backend *)b;
    char *path = key_path(f, key, 0);
    if (!path) return KVTC_ERR_OUT_OF_MEMORY;
    int r = unlink(path);
    int e = errno;
    if (r != 0 && (e == EISDIR || e == EPERM) && move_dir_aside(f, path) == 0) r = 0;
    free(path);
    return r == 0 || e == ENOENT || e == ENOTDIR ? KVTC_OK : KVTC_ERR_IO;
}

typedef struct value_entry {
    struct timespec mtime;
    uint64_t size;
    char *path;
} value_entry;

static int by_mtime(const void *a, const void *b) {
    const value_entry *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec) return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec) return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->path, y->path);
}

static int is_hex2(const char *s) {
    return strlen(s) == 2 && strspn(s, "0123456789abcdef") == 2;
}

/* All values in DIR (and stale temporaries removed). Caller frees. */
static kvtc_result scan_values(file_backend *f, value_entry **out, size_t *n_out, uint64_t *total) {
    *out = NULL;
    *n_out = 0;
    *total = 0;
    size_t n = 0, cap = 0;
    value_entry *v = NULL;
    DIR *top = opendir(f->dir);
    if (!top) return KVTC_ERR_IO;
    kvtc_result r = KVTC_OK;
    struct dirent *de;
    size_t plen = f->dir_len + 80;
    while (r == KVTC_OK && (de = readdir(top)) != NULL) {
        if (!is_hex2(de->d_name)) continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", f->dir, de->d_name);
        DIR *d = opendir(sub);
        if (!d) continue; /* removed meanwhile */
        struct dirent *fe;
        while ((fe = readdir(d)) != NULL) {
            if (strlen(fe->d_name) != 62 || strspn(fe->d_name, "0123456789abcdef") != 62) continue;
            char *p = malloc(plen);
            if (!p) { r = KVTC_ERR_OUT_OF_MEMORY; break; }
            snprintf(p, plen, "%s/%s/%s", f->dir, de->d_name, fe->d_name);
            /* lstat: a planted symlink counts as itself, not as its target; a
             * directory is no value (unlink would fail and stop every
             * eviction pass; put and get move it aside) */
            struct stat st;
            if (lstat(p, &st) != 0 || S_ISDIR(st.st_mode)) { free(p); continue; }
            if (n == cap) {
                size_t nc = cap ? 2 * cap : 256;
                value_entry *nv = realloc(v, nc * sizeof *v);
                if (!nv) { free(p); r = KVTC_ERR_OUT_OF_MEMORY; break; }
                v = nv;
                cap = nc;
            }
            v[n].mtime = st.st_mtim;
            v[n].size = (uint64_t)st.st_size;
            v[n].path = p;
            *total += (uint64_t)st.st_size;
            n++;
        }
        closedir(d);
    }
    closedir(top);
    /* temporaries of writers that died */
    char tdir[4096];
    snprintf(tdir, sizeof tdir, "%s/tmp", f->dir);
    DIR *t = opendir(tdir);
    if (t) {
        time_t now = time(NULL);
        while ((de = readdir(t)) != NULL) {
            if (de->d_name[0] == '.') continue;
            char p[4096 + 256];
            snprintf(p, sizeof p, "%s/%s", tdir, de->d_name);
            struct stat st;
            if (stat(p, &st) == 0 && now - st.st_mtim.tv_sec > 3600) unlink(p);
        }
        closedir(t);
    }
    if (r) {
        for (size_t i = 0; i < n; i++) free(v[i].path);
        free(v);
        return r;
    }
    *out = v;
    *n_out = n;
    return KVTC_OK;
}

static kvtc_result file_evict_locked(file_backend *f, uint64_t target, int wait, uint64_t *n_evicted) {
    if (n_evicted) *n_evicted = 0;
    char lock[4096];
    snprintf(lock, sizeof lock, "%s/.evict.lock", f->dir);
    int lfd = open(lock, O_RDWR | O_CREAT, 0666);
    if (lfd < 0) return KVTC_ERR_IO;
    if (flock(lfd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
        close(lfd);
        /* another process is evicting right now: its pass serves us too */
        return wait ? KVTC_ERR_IO : KVTC_OK;
    }
    value_entry *v = NULL;
    size_t n = 0;
    uint64_t total = 0, removed = 0;
    kvtc_result r = scan_values(f, &v, &n, &total);
    if (r == KVTC_OK) {
        if (n) qsort(v, n, sizeof *v, by_mtime); /* v is NULL for an empty store */
        for (size_t i = 0; i < n && total > target; i++) {
            if (unlink(v[i].path) == 0) {
                total -= v[i].size;
                removed++;
            } else if (errno != ENOENT) {
                r = KVTC_ERR_IO;
                break;
            }
        }
        f->est_bytes = total;
        f->since_scan = 0;
    }
    for (size_t i = 0; i < n; i++) free(v[i].path);
    free(v);
    flock(lfd, LOCK_UN);
    close(lfd);
    if (n_evicted) *n_evicted = removed;
    return r;
}

static kvtc_result file_evict(store_backend *b, uint64_t target, uint64_t *n_evicted) {
    return file_evict_locked((file_backend *)b, target, 1, n_evicted);
}

static kvtc_result file_usage(store_backend *b, uint64_t *bytes, uint64_t *n_values) {
    file_backend *f = (file_backend *)b;
    value_entry *v = NULL;
    size_t n = 0;
    uint64_t total = 0;
    kvtc_result r = scan_values(f, &v, &n, &total);
    if (r) return r;
    for (size_t i = 0; i < n; i++) free(v[i].path);
    free(v);
    if (bytes) *bytes = total;
    if (n_values) *n_values = n;
    return KVTC_OK;
}

static void file_close(store_backend *b) {
    file_backend *f = (file_backend *)b;
    if (!f) return;
    free(f->dir);
    free(f);
}

static const store_backend_ops file_ops = {file_get, file_put, file_exists, file_del,
                                           file_evict, file_usage, file_close};

kvtc_result store_file_open(const char *dir, const store_backend_config *cfg, store_backend **out) {
    *out = NULL;
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    if (len == 0 || len > 3800) return KVTC_ERR_INVALID_ARGUMENT;
    file_backend *f = calloc(1, sizeof *f);
    if (!f) return KVTC_ERR_OUT_OF_MEMORY;
    f->base.ops = &file_ops;
    f->dir = malloc(len + 1);
    if (!f->dir) { free(f); return KVTC_ERR_OUT_OF_MEMORY; }
    memcpy(f->dir, dir, len);
    f->dir[len] = '\0';
    f->dir_len = len;
    f->max_bytes = cfg ? cfg->max_bytes : 0;
    f->max_value = cfg ? cfg->max_value : 0;
    /* a read-only store is fine for lookups and gets: only a missing,
     * uncreatable directory is an error */
    struct stat st;
    if (mkdir(f->dir, 0777) != 0 && errno != EEXIST) { file_close(&f->base); return KVTC_ERR_IO; }
    if (stat(f->dir, &st) != 0 || !S_ISDIR(st.st_mode)) { file_close(&f->base); return KVTC_ERR_IO; }
    char tdir[4096];
    snprintf(tdir, sizeof tdir, "%s/tmp", f->dir);
    (void)mkdir(tdir, 0777); /* fails on a read-only store; puts then fail with KVTC_ERR_IO */
    if (f->max_bytes) {
        uint64_t total = 0;
        if (file_usage(&f->base, &total, NULL) == KVTC_OK) f->est_bytes = total;
    }
    *out = &f->base;
    return KVTC_OK;
}
