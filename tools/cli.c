/* cli.c - see cli.h. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_fail(const char *what, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "kvtc: %s: ", what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "kvtc: %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see kvtc %s --help)\n", cmd);
    return 2;
}

kvtc_result cli_read_file(const char *path, void **buf, size_t *size, char *err, size_t errlen) {
    *buf = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return KVTC_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        close(fd);
        return KVTC_ERR_IO;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        close(fd);
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
            close(fd);
            return KVTC_ERR_IO;
        }
        got += (size_t)k;
    }
    close(fd);
    *buf = b;
    *size = n;
    return KVTC_OK;
}

kvtc_result cli_write_file(const char *path, const void *buf, size_t size, char *err, size_t errlen) {
    size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    if (!tmp) {
        snprintf(err, errlen, "out of memory");
        return KVTC_ERR_OUT_OF_MEMORY;
    }
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a temporary file next to %s: %s", path, strerror(errno));
        free(tmp);
        return KVTC_ERR_IO;
    }
    const uint8_t *p = buf;
    size_t done = 0;
    int ok = 1;
    while (done < size) {
        ssize_t k = write(fd, p + done, size - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) { ok = 0; break; }
        done += (size_t)k;
    }
    int saved = errno;
    if (ok && fsync(fd) != 0) { ok = 0; saved = errno; }
    if (fchmod(fd, 0644) != 0) { /* keep mkstemp's 0600 if this fails */ }
    if (close(fd) != 0 && ok) { ok = 0; saved = errno; }
    if (ok && rename(tmp, path) != 0) { ok = 0; saved = errno; }
    if (!ok) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(saved));
        unlink(tmp);
        free(tmp);
        return KVTC_ERR_IO;
    }
    free(tmp);
    return KVTC_OK;
}

int cli_parse_u64(const char *s, uint64_t *out) {
    if (!s || *s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) return -1;
    *out = v;
    return 0;
}

int cli_parse_u32(const char *s, uint32_t *out) {
    uint64_t v;
    if (cli_parse_u64(s, &v) || v > UINT32_MAX) return -1;
    *out = (uint32_t)v;
    return 0;
}

int cli_parse_double(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int cli_progress_enabled(void) { return isatty(2); }

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) return NULL;
    return argv[++*i];
}
