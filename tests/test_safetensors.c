/* test_safetensors.c - safetensors reader and writer: round trips, a file in
 * the Python package's style, one rejection test per check with its exact
 * code, truncation at every byte, and random byte flips. */
#include <stdint.h>
#include <string.h>

#include "io/cache_file.h"
#include "io/safetensors.h"
#include "test.h"
#include "util/endian.h"

/* Build 8-byte length + header (padded with `pad` spaces) + data. */
static uint8_t *build(const char *header, size_t pad, const void *data, size_t data_len, size_t *size)
{
    size_t hl = strlen(header) + pad;
    *size = 8 + hl + data_len;
    uint8_t *b = malloc(*size ? *size : 1);
    if (!b) abort();
    kvi_store_u64(b, hl);
    memcpy(b + 8, header, strlen(header));
    memset(b + 8 + strlen(header), ' ', pad);
    if (data_len) memcpy(b + 8 + hl, data, data_len);
    return b;
}

static kvtc_result parse_hdr(const char *header, size_t data_len)
{
    static uint8_t zeros[4096];
    size_t size;
    uint8_t *b = build(header, 0, zeros, data_len, &size);
    st_file f;
    kvtc_result r = st_parse(b, size, &f);
    if (r == KVTC_OK) st_file_free(&f);
    else CHECK(f.n_tensors == 0 && f.tensors == NULL && f.n_meta == 0 && f.meta == NULL);
    free(b);
    return r;
}

#define EXPECT(hdr, dlen, code)                                                                      \
    do {                                                                                             \
        kvtc_result r_ = parse_hdr(hdr, dlen);                                                       \
        CHECK_MSG(r_ == (code), "%s: got %d (%s), want %d", hdr, (int)r_, kvtc_result_string(r_), \
                  (int)(code));                                                                      \
    } while (0)

static uint8_t *write_all(st_writer *w, size_t *size)
{
    *size = st_writer_size(w);
    uint8_t *b = malloc(*size);
    size_t written = 0;
    kvtc_result r = st_writer_write(w, b, *size, &written);
    CHECK(r == KVTC_OK && written == *size);
    return b;
}

static void test_dtypes(void)
{
    static const char *names[] = {"F32", "F16", "BF16", "F64", "I8", "U8", "I16", "I32", "I64", "BOOL"};
    static const size_t sizes[] = {4, 2, 2, 8, 1, 1, 2, 4, 8, 1};
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        CHECK(strcmp(st_dtype_name((st_dtype)i), names[i]) == 0);
        CHECK(st_dtype_size((st_dtype)i) == sizes[i]);
        st_dtype t;
        CHECK(st_dtype_from_name(names[i], &t) && t == (st_dtype)i);
    }
    CHECK(st_dtype_size(ST_DTYPE_COUNT) == 0 && st_dtype_name(ST_DTYPE_COUNT) == NULL);
    CHECK(!st_dtype_from_name("f32", NULL) && !st_dtype_from_name("F8_E4M3", NULL) && !st_dtype_from_name(NULL, NULL));
}

static void test_round_trip(void)
{
    float a[6] = {1, -2, 3.5f, 4, 5, 6};
    uint16_t h[3] = {0x3c00, 0xbc00, 0x7bff};
    uint16_t bf[2] = {0x3f80, 0x4000};
    int64_t i64[2] = {INT64_MIN, INT64_MAX};
    uint8_t bools[5] = {1, 0, 1, 1, 0};
    double scalar = 3.25;
    const char *q_name = "we\"ird\\na\xc3\xa9me/\xe2\x82\xac\xf0\x9f\x98\x80\ttab";

    st_writer *w = st_writer_alloc();
    CHECK(w != NULL);
    if (!w) return;
    uint64_t s23[2] = {2, 3}, s3[1] = {3}, s12[2] = {1, 2}, s2[1] = {2}, s5[1] = {5}, s0[2] = {4, 0};
    CHECK(st_writer_add_tensor(w, "layer.0.k", ST_F32, 2, s23, a) == KVTC_OK);
    CHECK(st_writer_add_tensor(w, "h", ST_F16, 1, s3, h) == KVTC_OK);
    CHECK(st_writer_add_tensor(w, q_name, ST_BF16, 2, s12, bf) == KVTC_OK);
    CHECK(st_writer_add_tensor(w, "empty", ST_F32, 2, s0, NULL) == KVTC_OK);
    CHECK(st_writer_add_tensor(w, "i64", ST_I64, 1, s2, i64) == KVTC_OK);
    CHECK(st_writer_add_tensor(w, "scalar", ST_F64, 0, NULL, &scalar) == KVTC_OK);
    CHECK(st_writer_add_tensor(w, "mask", ST_BOOL, 1, s5, bools) == KVTC_OK);
    CHECK(st_writer_add_meta(w, "format", "pt") == KVTC_OK);
    CHECK(st_writer_add_meta(w, "q\"uo\\te", "va\"l\\ue\n\x01\x1f\xc3\xa9\xe4\xb8\xad") == KVTC_OK);
    CHECK(st_writer_add_meta(w, "", "") == KVTC_OK);

    size_t size;
    uint8_t *buf = write_all(w, &size);
    uint64_t n = kvi_load_u64(buf);
    CHECK((8 + n) % 8 == 0);
    CHECK(buf[8] == '{');
    CHECK(size == 8 + n + 24 + 6 + 4 + 0 + 16 + 8 + 5);

    /* determinism: a second write and a second identical writer */
    size_t size2;
    uint8_t *buf2 = write_all(w, &size2);
    CHECK(size2 == size && memcmp(buf, buf2, size) == 0);
    free(buf2);
    st_writer *w2 = st_writer_alloc();
    st_writer_add_tensor(w2, "layer.0.k", ST_F32, 2, s23, a);
    st_writer_add_tensor(w2, "h", ST_F16, 1, s3, h);
    st_writer_add_tensor(w2, q_name, ST_BF16, 2, s12, bf);
    st_writer_add_tensor(w2, "empty", ST_F32, 2, s0, NULL);
    st_writer_add_tensor(w2, "i64", ST_I64, 1, s2, i64);
    st_writer_add_tensor(w2, "scalar", ST_F64, 0, NULL, &scalar);
    st_writer_add_tensor(w2, "mask", ST_BOOL, 1, s5, bools);
    st_writer_add_meta(w2, "format", "pt");
    st_writer_add_meta(w2, "q\"uo\\te", "va\"l\\ue\n\x01\x1f\xc3\xa9\xe4\xb8\xad");
    st_writer_add_meta(w2, "", "");
    buf2 = write_all(w2, &size2);
    CHECK(size2 == size && memcmp(buf, buf2, size) == 0);
    free(buf2);
    st_writer_free(w2);

    st_file f;
    kvtc_result r = st_parse(buf, size, &f);
    CHECK_MSG(r == KVTC_OK, "round trip parse: %d", (int)r);
    if (r == KVTC_OK) {
        CHECK(f.n_tensors == 7 && f.n_meta == 3);
        /* insertion order, contiguous offsets */
        static const char *order[] = {"layer.0.k", "h", NULL, "empty", "i64", "scalar", "mask"};
        const uint8_t *prev_end = buf + 8 + n;
        for (uint32_t i = 0; i < f.n_tensors && i < 7; i++) {
            CHECK(strcmp(f.tensors[i].name, order[i] ? order[i] : q_name) == 0);
            CHECK((const uint8_t *)f.tensors[i].data == prev_end);
            prev_end = (const uint8_t *)f.tensors[i].data + f.tensors[i].nbytes;
        }
        CHECK(prev_end == buf + size);
        const st_tensor *t = st_find(&f, "layer.0.k");
        CHECK(t && t->dtype == ST_F32 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 3 &&
              t->n_elements == 6 && t->nbytes == 24 && memcmp(t->data, a, 24) == 0);
        t = st_find(&f, "h");
        CHECK(t && t->dtype == ST_F16 && t->nbytes == 6 && memcmp(t->data, h, 6) == 0);
        t = st_find(&f, q_name);
        CHECK(t && t->dtype == ST_BF16 && t->n_dims == 2 && memcmp(t->data, bf, 4) == 0);
        t = st_find(&f, "empty");
        CHECK(t && t->n_dims == 2 && t->shape[0] == 4 && t->shape[1] == 0 && t->n_elements == 0 && t->nbytes == 0);
        t = st_find(&f, "i64");
        CHECK(t && t->dtype == ST_I64 && memcmp(t->data, i64, 16) == 0);
        t = st_find(&f, "scalar");
        CHECK(t && t->dtype == ST_F64 && t->n_dims == 0 && t->n_elements == 1 && memcmp(t->data, &scalar, 8) == 0);
        t = st_find(&f, "mask");
        CHECK(t && t->dtype == ST_BOOL && memcmp(t->data, bools, 5) == 0);
        CHECK(st_find(&f, "nope") == NULL);
        CHECK(st_meta_get(&f, "format") && strcmp(st_meta_get(&f, "format"), "pt") == 0);
        CHECK(st_meta_get(&f, "q\"uo\\te") &&
              strcmp(st_meta_get(&f, "q\"uo\\te"), "va\"l\\ue\n\x01\x1f\xc3\xa9\xe4\xb8\xad") == 0);
        CHECK(st_meta_get(&f, "") && st_meta_get(&f, "")[0] == '\0');
        CHECK(st_meta_get(&f, "absent") == NULL);
        st_file_free(&f);
        CHECK(f.tensors == NULL && f.n_tensors == 0);
        st_file_free(&f); /* twice is harmless */
    }
    free(buf);

    /* writer errors leave it unchanged */
    size_t before = st_writer_size(w);
    char longname[ST_MAX_NAME + 1];
    memset(longname, 'x', ST_MAX_NAME);
    longname[ST_MAX_NAME] = '\0';
    CHECK(st_writer_add_tensor(w, longname, ST_F32, 1, s3, a) == KVTC_ERR_INVALID_ARGUMENT);
    longname[ST_MAX_NAME - 1] = '\0'; /* 255 bytes: allowed */
    CHECK(st_writer_add_tensor(w, "h", ST_F32, 1, s3, a) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(st_writer_add_tensor(w, "__metadata__", ST_F32, 1, s3, a) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(st_writer_add_tensor(w, "bad\xff", ST_F32, 1, s3, a) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(st_writer_add_tensor(w, "nodata", ST_F32, 1, s3, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(st_writer_add_tensor(w, "dt", ST_DTYPE_COUNT, 1, s3, a) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(st_writer_add_tensor(w, NULL, ST_F32, 1, s3, a) == KVTC_ERR_INVALID_ARGUMENT);
    uint64_t s9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(st_writer_add_tensor(w, "nine", ST_F32, 9, s9, a) == KVTC_ERR_TOO_LARGE);
    uint64_t sbig[2] = {UINT64_C(1) << 40, UINT64_C(1) << 40};
    CHECK(st_writer_add_tensor(w, "big", ST_F32, 2, sbig, a) == KVTC_ERR_TOO_LARGE);
    CHECK(st_writer_add_meta(w, "format", "again") == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(st_writer_add_meta(w, "k", "\xc0\xaf") == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(st_writer_add_meta(w, NULL, "v") == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(st_writer_size(w) == before);
    CHECK(st_writer_add_tensor(w, longname, ST_U8, 0, NULL, a) == KVTC_OK);
    size_t written = 1;
    CHECK(st_writer_write(w, NULL, 0, &written) == KVTC_ERR_BUFFER_TOO_SMALL && written == st_writer_size(w));
    buf = malloc(st_writer_size(w));
    CHECK(st_writer_write(w, buf, st_writer_size(w) - 1, &written) == KVTC_ERR_BUFFER_TOO_SMALL);
    CHECK(st_writer_write(w, buf, st_writer_size(w), &written) == KVTC_OK && written == st_writer_size(w));
    r = st_parse(buf, written, &f);
    CHECK(r == KVTC_OK && f.n_tensors == 8 && st_find(&f, longname) && st_find(&f, longname)->nbytes == 1);
    st_file_free(&f);
    free(buf);
    st_writer_free(w);
    st_writer_free(NULL);

    /* an empty writer writes a valid empty file "{}" padded to 8 */
    w = st_writer_alloc();
    CHECK(st_writer_size(w) == 16);
    buf = write_all(w, &size);
    CHECK(memcmp(buf + 8, "{}      ", 8) == 0);
    CHECK(st_parse(buf, size, &f) == KVTC_OK && f.n_tensors == 0 && f.n_meta == 0);
    st_file_free(&f);
    free(buf);
    /* only metadata */
    CHECK(st_writer_add_meta(w, "a", "b") == KVTC_OK);
    buf = write_all(w, &size);
    CHECK(memcmp(buf + 8, "{\"__metadata__\":{\"a\":\"b\"}}", 26) == 0);
    CHECK(st_parse(buf, size, &f) == KVTC_OK && f.n_tensors == 0 && f.n_meta == 1);
    st_file_free(&f);
    free(buf);
    st_writer_free(w);

    /* the exact header text for one tensor */
    w = st_writer_alloc();
    st_writer_add_tensor(w, "x", ST_I32, 1, s2, i64);
    buf = write_all(w, &size);
    const char *expect = "{\"x\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t el = strlen(expect), padded = (el + 7) & ~(size_t)7;
    CHECK(kvi_load_u64(buf) == padded && memcmp(buf + 8, expect, el) == 0);
    for (size_t i = el; i < padded; i++) CHECK(buf[8 + i] == ' ');
    CHECK(size == 8 + padded + 8);
    free(buf);
    st_writer_free(w);
}

/* What the Python `safetensors` package writes for
 *   save_file({"weight": torch.zeros(2, 2), "bias": torch.zeros(2),
 *              "ids": torch.zeros(3, dtype=torch.int64),
 *              "none": torch.zeros(0, 3)}, "x.safetensors", {"format": "pt"})
 * (metadata first, compact JSON, sorted by dtype alignment then name,
 * header padded with spaces to a multiple of 8). */
static void test_python_style(void)
{
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"ids\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[0,24]},"
                      "\"bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
                      "\"none\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[32,32]},"
                      "\"weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[32,48]}}";
    size_t hl = strlen(hdr), pad = (8 - hl % 8) % 8;
    uint8_t data[48];
    for (int i = 0; i < 48; i++) data[i] = (uint8_t)i;
    size_t size;
    uint8_t *b = build(hdr, pad, data, 48, &size);
    st_file f;
    kvtc_result r = st_parse(b, size, &f);
    CHECK_MSG(r == KVTC_OK, "python-style: %d", (int)r);
    if (r == KVTC_OK) {
        CHECK(f.n_tensors == 4 && f.n_meta == 1);
        CHECK(strcmp(f.tensors[0].name, "ids") == 0 && strcmp(f.tensors[3].name, "weight") == 0);
        const st_tensor *t = st_find(&f, "weight");
        CHECK(t && t->dtype == ST_F32 && t->n_elements == 4 && t->data == b + 8 + hl + pad + 32);
        t = st_find(&f, "none");
        CHECK(t && t->n_elements == 0 && t->nbytes == 0 && t->n_dims == 2);
        CHECK(strcmp(st_meta_get(&f, "format"), "pt") == 0);
        st_file_free(&f);
    }
    free(b);
    /* whitespace-separated JSON (json.dumps default style) parses too */
    b = build("{\"a\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [0, 2]}}\n", 3, data, 2, &size);
    CHECK(st_parse(b, size, &f) == KVTC_OK && f.n_tensors == 1);
    st_file_free(&f);
    free(b);
}

static void test_rejections(void)
{
    st_file f;
    uint8_t small[16] = {0};
    /* empty file, 7 bytes */
    CHECK(st_parse(small, 0, &f) == KVTC_ERR_TRUNCATED);
    CHECK(st_parse(NULL, 0, &f) == KVTC_ERR_TRUNCATED);
    CHECK(st_parse(small, 7, &f) == KVTC_ERR_TRUNCATED);
    CHECK(st_parse(NULL, 8, &f) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(st_parse(small, 8, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    /* header length > file */
    size_t size;
    uint8_t *b = build("{}", 0, NULL, 0, &size);
    kvi_store_u64(b, 3);
    CHECK(st_parse(b, size, &f) == KVTC_ERR_TRUNCATED);
    /* header length huge (2^63), and just above the limit */
    kvi_store_u64(b, UINT64_C(1) << 63);
    CHECK(st_parse(b, size, &f) == KVTC_ERR_TOO_LARGE);
    kvi_store_u64(b, UINT64_MAX);
    CHECK(st_parse(b, size, &f) == KVTC_ERR_TOO_LARGE);
    kvi_store_u64(b, (uint64_t)ST_MAX_HEADER + 1);
    CHECK(st_parse(b, size, &f) == KVTC_ERR_TOO_LARGE);
    kvi_store_u64(b, 0); /* empty header */
    CHECK(st_parse(b, size, &f) == KVTC_ERR_BAD_MAGIC);
    free(b);
    /* header not JSON (not even '{'-led), JSON array, malformed JSON */
    EXPECT("PK\x03\x04 not json", 0, KVTC_ERR_BAD_MAGIC);
    EXPECT("[1,2,3]", 0, KVTC_ERR_BAD_MAGIC);
    EXPECT(" {}", 0, KVTC_ERR_BAD_MAGIC);
    {
        /* other kinds of files, whose first 8 bytes read as a huge header
         * length: "not safetensors" (bad magic), not "size too large", from
         * the parser and from the loaders built on it */
#define OTHER(lit) {lit, sizeof lit - 1}
        static const struct { const char *b; size_t n; } others[] = {
            OTHER("\x89KVTC\r\n\x1a\x01\x01\x00\x00 a kvtc stream's first bytes"),
            OTHER("GGUF\x03\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00"),
            OTHER("a text file, hello world\n"),
        };
#undef OTHER
        for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
            const char *o = others[i].b;
            size_t n = others[i].n;
            CHECK_MSG(st_parse(o, n, &f) == KVTC_ERR_BAD_MAGIC, "kind %zu", i);
            kvtc_basis *nb = NULL;
            CHECK_MSG(kvtc_basis_load(o, n, &nb) == KVTC_ERR_BAD_MAGIC && !nb, "basis, kind %zu", i);
            cache_file cf;
            CHECK_MSG(cache_file_parse(o, n, &cf) == KVTC_ERR_BAD_MAGIC, "cache, kind %zu", i);
        }
    }
    EXPECT("{\"a\":", 0, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],}}", 4, KVTC_ERR_CORRUPT);
    EXPECT("{}garbage", 0, KVTC_ERR_CORRUPT);
    {
        /* NUL padding is not JSON whitespace */
        uint8_t nulpad[8 + 8] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, 0, 0, 0, 0, 0};
        CHECK(st_parse(nulpad, sizeof nulpad, &f) == KVTC_ERR_CORRUPT);
        memset(nulpad + 10, ' ', 6);
        CHECK(st_parse(nulpad, sizeof nulpad, &f) == KVTC_OK);
        st_file_free(&f);
    }
    /* truncated data */
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 15, KVTC_ERR_TRUNCATED);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, KVTC_OK);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 20, KVTC_OK); /* trailing bytes */
    /* overlapping offsets */
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
           32, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
           32, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}",
           32, KVTC_ERR_CORRUPT);
    /* out of order but valid (with a gap), zero-size at the boundaries */
    EXPECT("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
           "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,16]},"
           "\"y\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}",
           32, KVTC_OK);
    /* end < begin */
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,0]}}", 16, KVTC_ERR_CORRUPT);
    /* size mismatch with shape */
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,1000000000000]}}", 16, KVTC_ERR_CORRUPT);
    /* shape product overflowing u64 (and the byte count overflowing) */
    EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
           KVTC_ERR_TOO_LARGE);
    EXPECT("{\"a\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0,
           KVTC_ERR_TOO_LARGE);
    /* ...unless a zero dim makes it empty */
    EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}", 0, KVTC_OK);
    /* a dim or offset too large for int64 */
    EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616],\"data_offsets\":[0,0]}}", 0,
           KVTC_ERR_TOO_LARGE);
    EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,99999999999999999999]}}", 0,
           KVTC_ERR_TOO_LARGE);
    /* negative dim, non-integer dims and offsets */
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[-0.0],\"data_offsets\":[0,0]}}", 0, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 8, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 8, KVTC_ERR_CORRUPT);
    /* 8 dims ok, 9 dims too many */
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, KVTC_OK);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, KVTC_ERR_TOO_LARGE);
    EXPECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,-2],\"data_offsets\":[0,8]}}", 8, KVTC_ERR_CORRUPT);
    /* unknown dtype, non-string dtype */
    EXPECT("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, KVTC_ERR_CORRUPT);
    /* duplicate tensor name (also written with an escape) */
    EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
           "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
           2, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
           "\"\\u0061\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
           2, KVTC_ERR_CORRUPT);
    /* metadata: non-string value, not an object, repeated, duplicate key */
    EXPECT("{\"__metadata__\":{\"format\":1}}", 0, KVTC_ERR_CORRUPT);
    EXPECT("{\"__metadata__\":{\"format\":null}}", 0, KVTC_ERR_CORRUPT);
    EXPECT("{\"__metadata__\":{\"n\":{\"x\":\"y\"}}}", 0, KVTC_ERR_CORRUPT);
    EXPECT("{\"__metadata__\":[\"a\"]}", 0, KVTC_ERR_CORRUPT);
    EXPECT("{\"__metadata__\":\"pt\"}", 0, KVTC_ERR_CORRUPT);
    EXPECT("{\"__metadata__\":{},\"__metadata__\":{}}", 0, KVTC_ERR_CORRUPT);
    EXPECT("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, KVTC_ERR_CORRUPT);
    EXPECT("{\"__metadata__\":{}}", 0, KVTC_OK);
    /* name too long (ST_MAX_NAME bytes), and the longest allowed */
    {
        char hdr[ST_MAX_NAME + 128];
        char name[ST_MAX_NAME + 1];
        memset(name, 'n', ST_MAX_NAME);
        name[ST_MAX_NAME] = '\0';
        snprintf(hdr, sizeof hdr, "{\"%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", name);
        EXPECT(hdr, 1, KVTC_ERR_TOO_LARGE);
        name[ST_MAX_NAME - 1] = '\0';
        snprintf(hdr, sizeof hdr, "{\"%s\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", name);
        EXPECT(hdr, 1, KVTC_OK);
    }
    /* tensor entry structure: unknown extra field, missing, repeated, not an object */
    EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":0}}", 1, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":[\"U8\",[1],[0,1]]}", 1, KVTC_ERR_CORRUPT);
    EXPECT("{\"a\":null}", 1, KVTC_ERR_CORRUPT);
    /* field order does not matter */
    EXPECT("{\"a\":{\"data_offsets\":[0,1],\"shape\":[1],\"dtype\":\"BOOL\"}}", 1, KVTC_OK);
    /* scalar (shape []) */
    EXPECT("{\"a\":{\"dtype\":\"I16\",\"shape\":[],\"data_offsets\":[0,2]}}", 2, KVTC_OK);
}

/* Parse, and when it succeeds check every invariant of the result. */
static kvtc_result parse_checked(const uint8_t *b, size_t size, st_file *f)
{
    kvtc_result r = st_parse(b, size, f);
    if (r != KVTC_OK) {
        CHECK(f->n_tensors == 0 && f->tensors == NULL && f->n_meta == 0 && f->meta == NULL);
        return r;
    }
    uint64_t n = kvi_load_u64(b);
    const uint8_t *ds = b + 8 + n, *de = b + size;
    for (uint32_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        int ok = (const uint8_t *)t->data >= ds && (const uint8_t *)t->data <= de &&
                 t->nbytes <= (uint64_t)(de - (const uint8_t *)t->data) && t->n_dims <= ST_MAX_DIMS &&
                 (unsigned)t->dtype < ST_DTYPE_COUNT && t->nbytes == t->n_elements * st_dtype_size(t->dtype) &&
                 memchr(t->name, '\0', ST_MAX_NAME) != NULL;
        CHECK(ok);
    }
    for (uint32_t i = 0; i < f->n_meta; i++) CHECK(f->meta[i].key && f->meta[i].value);
    return r;
}

static int same_file(const st_file *a, const st_file *b)
{
    if (a->n_tensors != b->n_tensors || a->n_meta != b->n_meta) return 0;
    for (uint32_t i = 0; i < a->n_tensors; i++)
        if (memcmp(&a->tensors[i], &b->tensors[i], sizeof a->tensors[i]) != 0) return 0;
    for (uint32_t i = 0; i < a->n_meta; i++)
        if (strcmp(a->meta[i].key, b->meta[i].key) || strcmp(a->meta[i].value, b->meta[i].value)) return 0;
    return 1;
}

static uint8_t *valid_file(size_t *size)
{
    static float data[64];
    for (int i = 0; i < 64; i++) data[i] = (float)i * 0.5f;
    st_writer *w = st_writer_alloc();
    uint64_t s1[2] = {4, 4}, s2[1] = {8}, s3[3] = {2, 2, 2}, s4[1] = {0};
    st_writer_add_meta(w, "format", "pt");
    st_writer_add_meta(w, "k\"\\", "\xc3\xa9\\u");
    st_writer_add_tensor(w, "a", ST_F32, 2, s1, data);
    st_writer_add_tensor(w, "e", ST_F16, 1, s4, NULL);
    st_writer_add_tensor(w, "b\xe2\x82\xac", ST_I16, 1, s2, data + 16);
    st_writer_add_tensor(w, "c", ST_I64, 3, s3, data + 20);
    *size = st_writer_size(w);
    uint8_t *b = malloc(*size);
    st_writer_write(w, b, *size, NULL);
    st_writer_free(w);
    return b;
}

static void test_truncation(void)
{
    size_t size;
    uint8_t *full = valid_file(&size);
    st_file f;
    CHECK(parse_checked(full, size, &f) == KVTC_OK);
    st_file_free(&f);
    int bad = 0;
    for (size_t cut = 0; cut < size; cut++) {
        /* a fresh exact-size copy so ASan sees any read past the end */
        uint8_t *b = malloc(cut ? cut : 1);
        memcpy(b, full, cut);
        kvtc_result r = parse_checked(b, cut, &f);
        if (r != KVTC_ERR_TRUNCATED && r != KVTC_ERR_CORRUPT) {
            bad++;
            fprintf(stderr, "cut at %zu: %d\n", cut, (int)r);
        }
        if (r == KVTC_OK) st_file_free(&f);
        free(b);
    }
    CHECK_MSG(bad == 0, "%d truncations not rejected cleanly", bad);
    free(full);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_byte_flips(void)
{
    size_t size;
    uint8_t *full = valid_file(&size);
    uint64_t hl = kvi_load_u64(full);
    int inconsistent = 0, accepted = 0, bad_code = 0;
    const int iters = 20000;
    for (int it = 0; it < iters; it++) {
        uint8_t *b = malloc(size);
        memcpy(b, full, size);
        int flips = 1 + (int)(rnd() % 3);
        for (int k = 0; k < flips; k++) {
            /* mostly the header (where the parsing is), sometimes anywhere */
            size_t pos = (rnd() % 4) ? 8 + (size_t)(rnd() % hl) : (size_t)(rnd() % size);
            uint64_t kind = rnd() % 3;
            if (kind == 0) b[pos] ^= (uint8_t)(1u << (rnd() % 8));
            else if (kind == 1) b[pos] = (uint8_t)rnd();
            else b[pos] = (uint8_t)"{}[]\",:0123456789-.e \\u"[rnd() % 24];
        }
        st_file f1, f2;
        kvtc_result r1 = parse_checked(b, size, &f1);
        kvtc_result r2 = parse_checked(b, size, &f2);
        if (r1 != r2 || (r1 == KVTC_OK && !same_file(&f1, &f2))) inconsistent++;
        if (r1 == KVTC_OK) accepted++;
        if (r1 != KVTC_OK && r1 != KVTC_ERR_CORRUPT && r1 != KVTC_ERR_TRUNCATED && r1 != KVTC_ERR_TOO_LARGE &&
            r1 != KVTC_ERR_BAD_MAGIC)
            bad_code++;
        if (r1 == KVTC_OK) st_file_free(&f1);
        if (r2 == KVTC_OK) st_file_free(&f2);
        free(b);
    }
    free(full);
    CHECK(inconsistent == 0);
    CHECK(bad_code == 0);
    printf("byte flips: %d of %d mutated files still parse\n", accepted, iters);
}

int main(void)
{
    test_dtypes();
    test_round_trip();
    test_python_style();
    test_rejections();
    test_truncation();
    test_byte_flips();
    return TEST_REPORT();
}
