/* test.h - a minimal test harness: CHECK records a failure and continues;
 * each test program ends with TEST_REPORT(), printing "N passed, N failed". */
#ifndef KVTC_TEST_H
#define KVTC_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

static int test_passed_, test_failed_;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (cond) {                                                                    \
            test_passed_++;                                                            \
        } else {                                                                       \
            test_failed_++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

#define CHECK_MSG(cond, ...)                                                           \
    do {                                                                               \
        if (cond) {                                                                    \
            test_passed_++;                                                            \
        } else {                                                                       \
            test_failed_++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
        }                                                                              \
    } while (0)

/* Monotonic seconds, for the timings tests print. */
static inline double test_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A whole file, NUL-terminated (malloc'd), or NULL; *len its size. */
static inline char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = '\0';
        *len = (size_t)n;
    }
    return b;
}

/* system(cmd), whose stderr goes to err_path: the exit status, or -1 for a
 * crash (no normal exit) or a sanitizer report in err_path (KVTC_SANITIZE
 * builds print those and may still exit 0). */
static inline int test_system_checked(const char *cmd, const char *err_path) {
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    size_t n;
    char *err = test_read_file(err_path, &n);
    int san = err && (strstr(err, "Sanitizer") || strstr(err, "runtime error:"));
    free(err);
    return san ? -1 : WEXITSTATUS(st);
}

#define TEST_REPORT()                                                                  \
    (printf("%s: %d passed, %d failed\n", __FILE__, test_passed_, test_failed_),       \
     test_failed_ ? 1 : 0)

#endif
