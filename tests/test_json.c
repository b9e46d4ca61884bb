/* test_json.c - the strict JSON parser: valid and invalid corpora, escapes,
 * surrogate pairs, depth limit, numbers (int64 exactness, big values),
 * error positions, and a 1 MB document. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "io/json.h"
#include "test.h"

static json_value *parse(const char *s)
{
    return json_parse(s, strlen(s), NULL);
}

static int accepts(const char *s)
{
    json_value *v = parse(s);
    json_free(v);
    return v != NULL;
}

static void test_valid_corpus(void)
{
    static const char *ok[] = {
        "{}", "[]", " \t\r\n{} \t\r\n", "0", "-0", "1", "-1", "1.5", "-1.5e10", "1E+2", "1e-2", "0.0",
        "123456789", "true", "false", "null", "\"\"", "\"abc\"", "[1,2,3]", "{\"a\":1,\"b\":[true,false,null]}",
        "[[[]]]", "{\"a\":{\"b\":{\"c\":{}}}}", "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]", "\"\\u0041\"",
        "\"\\ud83d\\ude00\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "{\"a\":1,\"a\":2}", "[ 1 , 2 ]",
        "{ \"k\" : \"v\" }", "1e308", "4.9e-324", "1e-400", "\"\x7f\"",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) CHECK_MSG(accepts(ok[i]), "should accept: %s", ok[i]);
}

static void test_invalid_corpus(void)
{
    static const char *bad[] = {
        "", " ", "{", "}", "[", "]", "[1,]", "[,1]", "[1,,2]", "{\"a\":1,}", "{,}", "{\"a\"}", "{\"a\":}",
        "{a:1}", "{'a':1}", "{\"a\" 1}", "[1 2]", "01", "-01", "00", "+1", "1.", ".5", "-", "1e", "1e+",
        "1.e5", "0x10", "NaN", "Infinity", "-Infinity", "tru", "truee", "nul", "True", "\"abc", "\"\\x\"",
        "\"\\u12\"", "\"\\u12G4\"", "\"\\u0000\"", "\"\\ud83d\"", "\"\\ude00\"", "\"\\ud83d\\u0041\"",
        "\"\\ud83dx\"", "\"a\tb\"", "\"a\nb\"", "\"\x01\"", "[1] x", "[1][2]", "// c\n1", "/* c */ 1",
        "[1]/*x*/", "\xef\xbb\xbf{}", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xff\"",
        "\"\xc3\"", "\"\xe2\x82\"", "1e309", "-1e400", "[\"a\" \"b\"]", "{\"a\":1 \"b\":2}", "{1:2}",
        "\"\\", "\"\\u", "[-]", "[- 1]", "[1.5e]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK_MSG(!accepts(bad[i]), "should reject: %s", bad[i]);
    /* embedded NUL in the input */
    CHECK(json_parse("[1]\0", 4, NULL) == NULL);
    CHECK(json_parse("\"a\0b\"", 5, NULL) == NULL);
    /* NULL text with zero length is simply empty input */
    CHECK(json_parse(NULL, 0, NULL) == NULL);
    CHECK(json_parse(NULL, 5, NULL) == NULL);
}

static void test_structure(void)
{
    json_value *v = parse("{\"s\":\"x\",\"n\":-12.5,\"a\":[1,\"two\",[3]],\"o\":{\"k\":null},\"t\":true,\"e\":[],"
                          "\"eo\":{}}");
    CHECK(v != NULL);
    if (!v) return;
    CHECK(v->type == JSON_OBJECT && v->n == 7);
    const json_value *s = json_get(v, "s"), *n = json_get(v, "n"), *a = json_get(v, "a");
    CHECK(s && s->type == JSON_STRING && strcmp(s->string, "x") == 0);
    CHECK(n && n->type == JSON_NUMBER && n->number == -12.5 && !n->number_is_integer && !n->integer_fits);
    CHECK(a && a->type == JSON_ARRAY && a->n == 3);
    if (a && a->n == 3) {
        CHECK(a->items[0].type == JSON_NUMBER && a->items[0].integer == 1);
        CHECK(a->items[1].type == JSON_STRING && strcmp(a->items[1].string, "two") == 0);
        CHECK(a->items[2].type == JSON_ARRAY && a->items[2].n == 1 && a->items[2].items[0].integer == 3);
    }
    const json_value *o = json_get(v, "o");
    CHECK(o && o->type == JSON_OBJECT && json_get(o, "k") && json_get(o, "k")->type == JSON_NULL);
    CHECK(json_get(v, "t") && json_get(v, "t")->type == JSON_BOOL && json_get(v, "t")->boolean == 1);
    CHECK(json_get(v, "e") && json_get(v, "e")->n == 0 && json_get(v, "e")->items == NULL);
    CHECK(json_get(v, "eo") && json_get(v, "eo")->type == JSON_OBJECT && json_get(v, "eo")->n == 0);
    CHECK(json_get(v, "missing") == NULL);
    CHECK(json_get(a, "s") == NULL); /* not an object */
    CHECK(json_get(NULL, "s") == NULL);
    json_free(v);

    v = parse("{\"a\":1,\"a\":2}");
    CHECK(v && json_get(v, "a") && json_get(v, "a")->integer == 1); /* first match */
    json_free(v);
    json_free(NULL);
}

static void test_strings(void)
{
    struct {
        const char *in, *out;
    } cases[] = {
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t"},
        {"\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac"},
        {"\"\\u0001\\u001f\"", "\x01\x1f"},
        {"\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80"},     /* U+1F600 */
        {"\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf"},     /* U+10FFFF */
        {"\"\\ud800\\udc00\"", "\xf0\x90\x80\x80"},     /* U+10000 */
        {"\"\\uffff\"", "\xef\xbf\xbf"},
        {"\"\xe4\xb8\xad\xe6\x96\x87\"", "\xe4\xb8\xad\xe6\x96\x87"},
        {"\"a\\u0022b\"", "a\"b"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_value *v = parse(cases[i].in);
        CHECK_MSG(v && v->type == JSON_STRING && strcmp(v->string, cases[i].out) == 0, "string case %zu", i);
        json_free(v);
    }
    /* keys are decoded too */
    json_value *v = parse("{\"k\\u00e9y\\n\":1}");
    CHECK(v && json_get(v, "k\xc3\xa9y\n") != NULL);
    json_free(v);
}

static void test_depth(void)
{
    char buf[2 * (JSON_MAX_DEPTH + 2) + 1];
    for (int depth = JSON_MAX_DEPTH - 1; depth <= JSON_MAX_DEPTH + 1; depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++) buf[n++] = '[';
        for (int i = 0; i < depth; i++) buf[n++] = ']';
        json_value *v = json_parse(buf, n, NULL);
        CHECK_MSG((v != NULL) == (depth <= JSON_MAX_DEPTH), "array depth %d", depth);
        json_free(v);
    }
    /* objects count the same way */
    char ob[8 * (JSON_MAX_DEPTH + 1) + 8];
    size_t n = 0;
    for (int i = 0; i < JSON_MAX_DEPTH + 1; i++) n += (size_t)sprintf(ob + n, "{\"a\":");
    n += (size_t)sprintf(ob + n, "1");
    for (int i = 0; i < JSON_MAX_DEPTH + 1; i++) ob[n++] = '}';
    CHECK(json_parse(ob, n, NULL) == NULL);

    /* a million '[' must fail fast, without deep recursion */
    size_t big = 1000000;
    char *deep = malloc(big);
    CHECK(deep != NULL);
    if (deep) {
        memset(deep, '[', big);
        size_t pos = 0;
        CHECK(json_parse(deep, big, &pos) == NULL);
        CHECK(pos == JSON_MAX_DEPTH);
        free(deep);
    }
}

static void test_numbers(void)
{
    struct {
        const char *in;
        int is_int, fits;
        int64_t i;
        double d;
    } cases[] = {
        {"0", 1, 1, 0, 0.0},
        {"-0", 1, 1, 0, -0.0},
        {"42", 1, 1, 42, 42.0},
        {"-42", 1, 1, -42, -42.0},
        {"9007199254740993", 1, 1, 9007199254740993LL, 9007199254740992.0}, /* 2^53+1: exact in int64 */
        {"9223372036854775807", 1, 1, INT64_MAX, 9223372036854775807.0},
        {"-9223372036854775808", 1, 1, INT64_MIN, -9223372036854775808.0},
        {"9223372036854775808", 1, 0, 0, 9223372036854775808.0},
        {"-9223372036854775809", 1, 0, 0, -9223372036854775809.0},
        {"18446744073709551616", 1, 0, 0, 18446744073709551616.0},
        {"100000000000000000000000000000", 1, 0, 0, 1e29},
        {"1.0", 0, 0, 0, 1.0},
        {"1e2", 0, 0, 0, 100.0},
        {"-2.5E-3", 0, 0, 0, -2.5e-3},
        {"1.7976931348623157e308", 0, 0, 0, 1.7976931348623157e308},
        {"0.1", 0, 0, 0, 0.1},
        {"1e-400", 0, 0, 0, 0.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_value *v = parse(cases[i].in);
        CHECK_MSG(v && v->type == JSON_NUMBER, "number %s", cases[i].in);
        if (!v) continue;
        CHECK_MSG(v->number_is_integer == cases[i].is_int, "is_int %s", cases[i].in);
        CHECK_MSG(v->integer_fits == cases[i].fits, "fits %s", cases[i].in);
        if (cases[i].fits) CHECK_MSG(v->integer == cases[i].i, "integer %s", cases[i].in);
        CHECK_MSG(v->number == cases[i].d, "double %s = %.17g", cases[i].in, v->number);
        json_free(v);
    }
    json_value *v = parse("-0");
    CHECK(v && signbit(v->number));
    json_free(v);

    /* a 1000-digit number: parsed via a heap copy, no int64 */
    char big[1002];
    big[0] = '1';
    memset(big + 1, '0', 300);
    big[301] = '\0';
    v = parse(big);
    CHECK(v && v->number_is_integer && !v->integer_fits && v->number == 1e300);
    json_free(v);
    memset(big + 1, '0', 1000);
    big[1001] = '\0';
    CHECK(parse(big) == NULL); /* 1e1000 overflows a double */
    big[0] = '0';
    big[1] = '.';
    memset(big + 2, '5', 999);
    big[1001] = '\0';
    v = parse(big);
    CHECK(v && fabs(v->number - 0.5555555555555556) < 1e-15);
    json_free(v);
    /* numbers ending exactly at the end of input, and inside containers */
    v = parse("[1,-2,3.25,4e1]");
    CHECK(v && v->n == 4 && v->items[1].integer == -2 && v->items[2].number == 3.25 && v->items[3].number == 40.0);
    json_free(v);
}

static void test_error_pos(void)
{
    size_t pos = 999;
    CHECK(json_parse("[1,2,]", 6, &pos) == NULL && pos == 5);
    CHECK(json_parse("{\"a\":01}", 8, &pos) == NULL && pos == 6);
    CHECK(json_parse("[1] x", 5, &pos) == NULL && pos == 4);
    CHECK(json_parse("\"ab\x01\"", 5, &pos) == NULL && pos == 3);
    json_value *v = json_parse("[1]", 3, &pos);
    CHECK(v && pos == 0);
    json_free(v);
}

static void test_large(void)
{
    /* ~1 MB header-like object of many small tensors entries */
    size_t cap = 1200000, n = 0;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    if (!buf) return;
    buf[n++] = '{';
    int count = 0;
    while (n < 1000000) {
        n += (size_t)snprintf(buf + n, cap - n,
                              "%s\"layer.%d.k\\u00e9y\":{\"dtype\":\"F32\",\"shape\":[%d,4],\"data_offsets\":[%d,%d]}",
                              count ? "," : "", count, count, count * 16, count * 16 + 16);
        count++;
    }
    buf[n++] = '}';
    clock_t t0 = clock();
    json_value *v = json_parse(buf, n, NULL);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(v && v->n == (size_t)count);
    CHECK_MSG(secs < 1.0, "1 MB parse took %.3f s", secs);
    if (v) {
        char key[64];
        snprintf(key, sizeof key, "layer.%d.k\xc3\xa9y", count - 1);
        const json_value *e = json_get(v, key);
        CHECK(e && json_get(e, "data_offsets") && json_get(e, "data_offsets")->items[1].integer == count * 16);
    }
    json_free(v);

    /* the worst case for node count: [0,0,0,...] */
    n = 0;
    buf[n++] = '[';
    while (n < 1000000) {
        buf[n++] = '0';
        buf[n++] = ',';
    }
    buf[n - 1] = ']';
    v = json_parse(buf, n, NULL);
    CHECK(v && v->n == n / 2);
    json_free(v);
    free(buf);
}

int main(void)
{
    test_valid_corpus();
    test_invalid_corpus();
    test_structure();
    test_strings();
    test_depth();
    test_numbers();
    test_error_pos();
    test_large();
    return TEST_REPORT();
}
