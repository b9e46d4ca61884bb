/* test_abi.c - the promises of the public ABI (include/kvtc.h): the run-time
 * version matches the header, result-code values never change, and the
 * growable output structs (struct_size first) are filled only as far as the
 * caller's struct reaches. */
#include <stdio.h>
#include <string.h>

#include "kvtc.h"
#include "synth.h"
#include "test.h"
#include "util/out_struct.h"
#include "util/result.h"

static void test_version(void) {
    CHECK(kvtc_version_number() == KVTC_VERSION_NUMBER);
    CHECK(strcmp(kvtc_version_string(), KVTC_VERSION_STRING) == 0);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", KVTC_VERSION_MAJOR, KVTC_VERSION_MINOR, KVTC_VERSION_PATCH);
    CHECK_MSG(strcmp(kvtc_version_string(), want) == 0, "version string %s, macros say %s", kvtc_version_string(),
              want);
    CHECK(kvtc_version_number() ==
          (unsigned)(KVTC_VERSION_MAJOR * 10000 + KVTC_VERSION_MINOR * 100 + KVTC_VERSION_PATCH));
}

/* The values as kvtc 0.1.0 published them. Never edit a line of this table:
 * bindings and stored logs hold these numbers. New codes are appended. */
static void test_result_values(void) {
    static const struct { kvtc_result r; int value; } published[] = {
        {KVTC_OK, 0},                      {KVTC_ERR_INVALID_ARGUMENT, 1}, {KVTC_ERR_OUT_OF_MEMORY, 2},
        {KVTC_ERR_TOO_LARGE, 3},           {KVTC_ERR_BAD_MAGIC, 4},        {KVTC_ERR_UNSUPPORTED_VERSION, 5},
        {KVTC_ERR_TRUNCATED, 6},           {KVTC_ERR_CORRUPT, 7},          {KVTC_ERR_BASIS_MISMATCH, 8},
        {KVTC_ERR_GEOMETRY_MISMATCH, 9},   {KVTC_ERR_NO_PLAN, 10},         {KVTC_ERR_BUFFER_TOO_SMALL, 11},
        {KVTC_ERR_NEEDS_MODEL, 12},        {KVTC_ERR_UNSUPPORTED, 13},     {KVTC_ERR_NUMERIC, 14},
        {KVTC_ERR_IO, 15},                 {KVTC_ERR_CALLBACK, 16},        {KVTC_ERR_CUDA, 17},
    };
    size_t n = sizeof published / sizeof published[0];
    for (size_t i = 0; i < n; i++) CHECK_MSG((int)published[i].r == published[i].value, "code %zu moved", i);
    /* every known code has its own name; the first unknown one is "unknown" */
    CHECK(KVI_RESULT_COUNT >= (int)n);
    CHECK(strcmp(kvtc_result_string((kvtc_result)KVI_RESULT_COUNT), "unknown result code") == 0);
    for (int i = 0; i < KVI_RESULT_COUNT; i++)
        CHECK(strcmp(kvtc_result_string((kvtc_result)i), "unknown result code") != 0);
}

/* A caller compiled against a larger (future) struct, or one whose
 * struct_size is garbage: refused, nothing written (the library cannot know
 * how much memory the caller really has). */
typedef struct {
    kvtc_stream_info known;
    unsigned char future[40];
} future_stream_info;

typedef struct {
    kvtc_plan_info known;
    unsigned char future[24];
} future_plan_info;

static void test_growable_structs(void) {
    kvtc_geometry g = synth_geometry(2, 2, 16, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, 300);
    const double ratios[] = {8.0};
    kvtc_basis *b = NULL;
    CHECK(synth_calibrate(&sp, 2, 4, 16, ratios, 1, &b) == KVTC_OK);
    synth_cache sc;
    sp.data_seed = 77;
    CHECK(synth_make(&sp, &sc) == 0);
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = 8.0;
    eo.n_window = 16;
    uint8_t *s = NULL;
    size_t n = 0;
    CHECK(synth_compress(b, &eo, &sc.c, &s, &n) == KVTC_OK);

    kvtc_stream_info ref = {.struct_size = sizeof ref};
    CHECK(kvtc_stream_get_info(s, n, &ref) == KVTC_OK);
    CHECK(ref.struct_size == sizeof ref && ref.n_tokens == 300 && ref.stream_bytes == n);

    /* unset (0) or too small: refused, nothing written */
    kvtc_stream_info bad;
    memset(&bad, 0xab, sizeof bad);
    bad.struct_size = 0;
    CHECK(kvtc_stream_get_info(s, n, &bad) == KVTC_ERR_INVALID_ARGUMENT);
    bad.struct_size = KVI_STREAM_INFO_MIN_SIZE - 1;
    CHECK(kvtc_stream_get_info(s, n, &bad) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(bad.n_tokens == 0xababababababababull);

    future_stream_info fut;
    memset(&fut, 0xab, sizeof fut);
    fut.known.struct_size = sizeof fut;
    CHECK(kvtc_stream_get_info(s, n, &fut.known) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(fut.known.struct_size == sizeof fut && fut.known.n_tokens == 0xababababababababull);
    int untouched = 1;
    for (size_t i = 0; i < sizeof fut.future; i++) untouched &= fut.future[i] == 0xab;
    CHECK_MSG(untouched, "a refused struct must not be written");
    /* an uninitialized struct_size and a corrupt stream: the stream's error
     * may come first (kvtc.h says so), and nothing is written either way */
    {
        kvtc_stream_info junk;
        memset(&junk, 0xab, sizeof junk);
        s[0] ^= 0xff;
        kvtc_result jr = kvtc_stream_get_info(s, n, &junk);
        s[0] ^= 0xff;
        CHECK(jr == KVTC_ERR_BAD_MAGIC || jr == KVTC_ERR_INVALID_ARGUMENT);
        int same = 1;
        for (size_t i = 0; i < sizeof junk; i++) same &= ((const unsigned char *)&junk)[i] == 0xab;
        CHECK_MSG(same, "a refused struct must not be written");
    }

    kvtc_plan_info pref = {.struct_size = sizeof pref};
    CHECK(kvtc_basis_plan_info(b, 0, &pref) == KVTC_OK);
    CHECK(pref.target_ratio == 8.0 && pref.rank_k > 0);
    kvtc_plan_info pbad = {.struct_size = 0};
    CHECK(kvtc_basis_plan_info(b, 0, &pbad) == KVTC_ERR_INVALID_ARGUMENT);
    future_plan_info pf;
    memset(&pf, 0xcd, sizeof pf);
    pf.known.struct_size = sizeof pf;
    CHECK(kvtc_basis_plan_info(b, 0, &pf.known) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(pf.known.rank_v == 0xcdcdcdcdu);

    /* an older caller whose struct ends at the 0.1.0 fields: exactly those are written */
    unsigned char old[sizeof(kvtc_stream_info) + 8];
    memset(old, 0xee, sizeof old);
    size_t old_size = KVI_STREAM_INFO_MIN_SIZE;
    memcpy(old, &old_size, sizeof old_size);
    CHECK(kvtc_stream_get_info(s, n, (kvtc_stream_info *)(void *)old) == KVTC_OK);
    CHECK(memcmp(old + sizeof(size_t), (const unsigned char *)&ref + sizeof(size_t), old_size - sizeof(size_t)) == 0);
    untouched = 1;
    for (size_t i = old_size; i < sizeof old; i++) untouched &= old[i] == 0xee;
    CHECK_MSG(untouched, "bytes past the caller's struct_size must not be written");

    free(s);
    synth_free(&sc);
    kvtc_basis_free(b);
}

int main(void) {
    test_version();
    test_result_values();
    test_growable_structs();
    return TEST_REPORT();
}
