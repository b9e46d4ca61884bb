/* test_locale.c - numbers in files do not depend on the process locale.
 * A host that calls setlocale(LC_ALL, "") in a locale whose decimal point is
 * a comma (de_DE.UTF-8) must write the same bytes as one in the "C" locale
 * and read files written by either. Skipped (exit 77) where that locale is
 * not installed (scripts/install-deps.sh generates it). */
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/cache_file.h"
#include "io/json.h"
#include "synth.h"
#include "test.h"
#include "util/number.h"

#define COMMA_LOCALE "de_DE.UTF-8"

static void use_locale(const char *name) {
    if (!setlocale(LC_ALL, name)) {
        fprintf(stderr, "setlocale(%s) failed\n", name);
        exit(1);
    }
}

static void test_helpers(void) {
    /* under the comma locale, the same text as snprintf under "C" */
    double values[] = {12.5, 0.1, 1.0 / 3.0, 6.02214076e23, 5e-324, 1.7976931348623157e308, -0.0, -1.25e-300};
    enum { N = sizeof values / sizeof values[0] };
    char want[N][64], buf[64];
    use_locale("C");
    for (int i = 0; i < N; i++) snprintf(want[i], sizeof want[i], "%.17g", values[i]);
    use_locale(COMMA_LOCALE);
    for (int i = 0; i < N; i++) {
        int n = kvi_format_g(buf, sizeof buf, 17, values[i]);
        CHECK_MSG(n == (int)strlen(want[i]) && strcmp(buf, want[i]) == 0, "%s, want %s", buf, want[i]);
        double back = 0;
        CHECK_MSG(kvi_parse_decimal(buf, &back) == 0 && memcmp(&back, &values[i], sizeof back) == 0,
                  "%s does not round-trip", buf);
    }
    /* like snprintf: the length it needs; truncated output still terminated */
    CHECK(kvi_format_g(buf, 3, 17, 12.5) == 4 && strcmp(buf, "12") == 0);
    double x = 0;
    CHECK(kvi_parse_decimal("2.75", &x) == 0 && x == 2.75);
    CHECK(kvi_parse_decimal("1e3x", &x) != 0);
    /* a comma is not a decimal point in files */
    CHECK(kvi_parse_decimal("2,75", &x) != 0);
    /* the host's locale is left as it was */
    snprintf(buf, sizeof buf, "%.1f", 1.5);
    CHECK(strcmp(buf, "1,5") == 0);
}

static void test_basis(const kvtc_basis *b) {
    use_locale("C");
    size_t nc = 0, nd = 0;
    void *in_c = synth_basis_bytes(b, &nc);
    use_locale(COMMA_LOCALE);
    void *in_de = synth_basis_bytes(b, &nd);
    CHECK(in_c && in_de);
    if (!in_c || !in_de) return;
    CHECK_MSG(nc == nd && memcmp(in_c, in_de, nc) == 0, "a basis written under %s differs from one under C",
              COMMA_LOCALE);
    /* either loads under either locale, to the same plans and geometry */
    for (int loc = 0; loc < 2; loc++) {
        use_locale(loc ? COMMA_LOCALE : "C");
        for (int file = 0; file < 2; file++) {
            kvtc_basis *r = NULL;
            kvtc_result rr = kvtc_basis_load(file ? in_de : in_c, file ? nd : nc, &r);
            CHECK_MSG(rr == KVTC_OK, "load (locale %d, file %d): %s", loc, file, kvtc_result_string(rr));
            if (rr) continue;
            CHECK(kvtc_basis_fingerprint(r) == kvtc_basis_fingerprint(b));
            CHECK(kvtc_basis_geometry(r)->rope_theta == kvtc_basis_geometry(b)->rope_theta);
            kvtc_plan_info a = {.struct_size = sizeof a}, c = {.struct_size = sizeof c};
            CHECK(kvtc_basis_plan_info(b, 0, &a) == KVTC_OK && kvtc_basis_plan_info(r, 0, &c) == KVTC_OK);
            CHECK(a.target_ratio == c.target_ratio && a.expected_error_k == c.expected_error_k &&
                  a.expected_error_v == c.expected_error_v);
            kvtc_basis_free(r);
        }
    }
    free(in_c);
    free(in_de);
}

static void test_cache_file(const kvtc_cache *c) {
    void *buf[2] = {NULL, NULL};
    size_t n[2] = {0, 0};
    use_locale("C");
    CHECK(cache_file_serialize(c, &buf[0], &n[0]) == KVTC_OK);
    use_locale(COMMA_LOCALE);
    CHECK(cache_file_serialize(c, &buf[1], &n[1]) == KVTC_OK);
    CHECK_MSG(n[0] == n[1] && memcmp(buf[0], buf[1], n[0]) == 0, "cache file metadata depends on the locale");
    for (int loc = 0; loc < 2; loc++) {
        use_locale(loc ? COMMA_LOCALE : "C");
        for (int i = 0; i < 2; i++) {
            cache_file f;
            kvtc_result r = cache_file_parse(buf[i], n[i], &f);
            CHECK_MSG(r == KVTC_OK, "cache parse (locale %d, file %d): %s", loc, i, kvtc_result_string(r));
            if (r) continue;
            CHECK(f.cache.geometry.rope_theta == c->geometry.rope_theta);
            CHECK(memcmp(f.cache.k, c->k, kvtc_cache_tensor_bytes(&c->geometry, c->dtype, c->n_tokens)) == 0);
            cache_file_free(&f);
        }
    }
    free(buf[0]);
    free(buf[1]);
}

static void test_json(void) {
    use_locale(COMMA_LOCALE);
    static const char text[] = "{\"a\": 1.5, \"b\": -2.5e-3}";
    json_value *v = json_parse(text, sizeof text - 1, NULL);
    CHECK(v != NULL);
    if (!v) return;
    const json_value *a = json_get(v, "a"), *b = json_get(v, "b");
    CHECK(a && a->type == JSON_NUMBER && a->number == 1.5);
    CHECK(b && b->type == JSON_NUMBER && b->number == -2.5e-3);
    json_free(v);
}

int main(void) {
    if (!setlocale(LC_ALL, COMMA_LOCALE)) {
        printf("SKIP: locale %s not installed (scripts/install-deps.sh generates it)\n", COMMA_LOCALE);
        return 77;
    }
    char probe[16];
    snprintf(probe, sizeof probe, "%.1f", 1.5);
    if (strcmp(probe, "1,5") != 0) {
        printf("SKIP: %s formats 1.5 as %s, not with a comma\n", COMMA_LOCALE, probe);
        return 77;
    }
    test_helpers();

    /* a non-integral ratio and theta, so their decimal points reach the files */
    kvtc_geometry g = synth_geometry(2, 2, 16, KVTC_ROPE_NEOX, 0, 10000.25f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F16, 200);
    const double ratios[] = {6.5};
    kvtc_basis *b = NULL;
    use_locale("C");
    CHECK(synth_calibrate(&sp, 2, 4, 16, ratios, 1, &b) == KVTC_OK);
    if (b) test_basis(b);
    synth_cache sc;
    sp.data_seed = 5;
    CHECK(synth_make(&sp, &sc) == 0);
    test_cache_file(&sc.c);
    test_json();
    synth_free(&sc);
    kvtc_basis_free(b);
    setlocale(LC_ALL, "C");
    return TEST_REPORT();
}
