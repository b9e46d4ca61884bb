/* lcpp_fixtures.h - the llama.cpp state-file fixtures of the tests: real
 * files written by two llama.cpp builds (tests/fixtures/llama.cpp/README.md).
 * The repository carries the smaller ones; the larger ones are read from
 * the shared fixture folder when this machine has it, and skipped otherwise. */
#ifndef KVTC_TESTS_LCPP_FIXTURES_H
#define KVTC_TESTS_LCPP_FIXTURES_H

#include <stdio.h>
#include <stdlib.h>

#include "test.h"

static const char *const lcpp_fixture_names[] = {
    "3f545be/eval27m-f16-vtrans1.ggsq",        "3f545be/eval27m-f16-vtrans0.ggsq",
    "3f545be/eval27m-q8_0-vtrans0.ggsq",       "3f545be/stories260k-f16-vtrans1.ggsq",
    "3f545be/stories260k-f16-vtrans0.ggsq",    "3f545be/stories260k-bf16-vtrans0.ggsq",
    "3f545be/eval27m-f16-vtrans1-capi.ggsn",   "3f545be/eval27m-f16-vtrans1-capi.ggsq",
    "c392e50/eval27m-f16-vtrans1.ggsq",        "c392e50/eval27m-q8_0-vtrans0.ggsq",
    "c392e50/stories260k-f16-vtrans1.ggsq",    "c392e50/eval27m-f16-vtrans1-capi.ggsn",
    "c392e50/eval27m-f16-vtrans1-capi.ggsq",
};
#define LCPP_N_FIXTURES (sizeof lcpp_fixture_names / sizeof lcpp_fixture_names[0])

static const char *const lcpp_fixture_dirs[] = {"tests/fixtures/llama.cpp", "/work/shared/fixtures/llama.cpp"};

/* Read fixture `name` (and, when sidecar != NULL, its NAME.json). NULL if
 * no folder has it. */
static inline char *lcpp_fixture_read(const char *name, size_t *len, char **sidecar, size_t *sidecar_len) {
    char path[512];
    for (size_t d = 0; d < sizeof lcpp_fixture_dirs / sizeof lcpp_fixture_dirs[0]; d++) {
        snprintf(path, sizeof path, "%s/%s", lcpp_fixture_dirs[d], name);
        char *b = test_read_file(path, len);
        if (!b) continue;
        if (sidecar) {
            snprintf(path, sizeof path, "%s/%s.json", lcpp_fixture_dirs[d], name);
            *sidecar = test_read_file(path, sidecar_len);
        }
        return b;
    }
    return NULL;
}

#endif
