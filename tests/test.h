/* test.h - a minimal test harness: CHECK records a failure and continues;
 * each test program ends with TEST_REPORT(), printing "N passed, N failed". */
#ifndef KVTC_TEST_H
#define KVTC_TEST_H

#include <stdio.h>
#include <stdlib.h>

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

#define TEST_REPORT()                                                                  \
    (printf("%s: %d passed, %d failed\n", __FILE__, test_passed_, test_failed_),       \
     test_failed_ ? 1 : 0)

#endif
