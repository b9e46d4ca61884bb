/*
 * test_gguf_corrupt.c - the GGUF reader and model loader on synthetic and
 * corrupted files: every GGUF value type, truncation at many offsets, bad
 * magic/version, absurd counts and lengths, tensor ranges, unknown types,
 * missing/ill-shaped tensors, wrong architecture, random header mutations
 * (never a crash: run under -DKVTC_SANITIZE=ON too), and F16/BF16/Q8_0/tied
 * variants of stories260K rewritten in memory.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "llama.h"
#include "test.h"

#define STORIES "data/stories260K.gguf"

/* ======================================================================== */
/* A growable byte buffer and GGUF writer helpers                           */
/* ======================================================================== */

typedef struct bytes {
    uint8_t *p;   /* [cap] */
    size_t n;     /* used */
    size_t cap;   /* allocated */
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n) nc *= 2;
        b->p = realloc(b->p, nc);
        b->cap = nc;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); } /* little-endian host */
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bytes *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_pad(bytes *b, size_t align) {
    static const uint8_t z[64] = {0};
    while (b->n % align) put(b, z, 1);
}

/* Offset of the first occurrence of a GGUF string (u64 length + bytes). */
static size_t find_gguf_string(const uint8_t *p, size_t n, const char *s) {
    size_t len = strlen(s);
    uint8_t pat[256];
    uint64_t l = len;
    memcpy(pat, &l, 8);
    memcpy(pat + 8, s, len);
    for (size_t i = 0; i + 8 + len <= n; i++)
        if (memcmp(p + i, pat, 8 + len) == 0) return i;
    return (size_t)-1;
}

static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t e = (int32_t)((x >> 23) & 0xFF) - 127 + 15;
    uint32_t man = x & 0x7FFFFFu;
    if (e >= 31) return (uint16_t)(sign | 0x7C00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into the exponent: fine */
    return (uint16_t)(sign | h);
}

static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    x += 0x7FFFu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ======================================================================== */
/* Synthetic file with every value type                                     */
/* ======================================================================== */

static void test_value_types(void) {
    bytes b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 1);  /* n_tensors */
    put_u64(&b, 16); /* n_kv */
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int32_t i32 = -7;
    float f32 = 1.5f;
    double f64 = -2.25;
    int64_t i64 = -5000000000LL;
    put_str(&b, "t.u8"); put_u32(&b, ENG_GGUF_VT_UINT8); put(&b, &u8, 1);
    put_str(&b, "t.i8"); put_u32(&b, ENG_GGUF_VT_INT8); put(&b, &i8, 1);
    put_str(&b, "t.u16"); put_u32(&b, ENG_GGUF_VT_UINT16); put(&b, &u16, 2);
    put_str(&b, "t.i16"); put_u32(&b, ENG_GGUF_VT_INT16); put(&b, &i16, 2);
    put_str(&b, "t.u32"); put_u32(&b, ENG_GGUF_VT_UINT32); put_u32(&b, 4000000000u);
    put_str(&b, "t.i32"); put_u32(&b, ENG_GGUF_VT_INT32); put(&b, &i32, 4);
    put_str(&b, "t.f32"); put_u32(&b, ENG_GGUF_VT_FLOAT32); put(&b, &f32, 4);
    put_str(&b, "t.bool"); put_u32(&b, ENG_GGUF_VT_BOOL); put(&b, "\1", 1);
    put_str(&b, "t.str"); put_u32(&b, ENG_GGUF_VT_STRING); put_str(&b, "hello");
    put_str(&b, "t.u64"); put_u32(&b, ENG_GGUF_VT_UINT64); put_u64(&b, 1ull << 40);
    put_str(&b, "t.i64"); put_u32(&b, ENG_GGUF_VT_INT64); put(&b, &i64, 8);
    put_str(&b, "t.f64"); put_u32(&b, ENG_GGUF_VT_FLOAT64); put(&b, &f64, 8);
    put_str(&b, "t.arr_i16");
    put_u32(&b, ENG_GGUF_VT_ARRAY); put_u32(&b, ENG_GGUF_VT_INT16); put_u64(&b, 3);
    int16_t a16[3] = {-1, 2, -3};
    put(&b, a16, 6);
    put_str(&b, "t.arr_str");
    put_u32(&b, ENG_GGUF_VT_ARRAY); put_u32(&b, ENG_GGUF_VT_STRING); put_u64(&b, 3);
    put_str(&b, "a"); put_str(&b, ""); put_str(&b, "ccc");
    put_str(&b, "t.arr_nested"); /* [[1, 2], ["x"]] : skipped, not readable */
    put_u32(&b, ENG_GGUF_VT_ARRAY); put_u32(&b, ENG_GGUF_VT_ARRAY); put_u64(&b, 2);
    put_u32(&b, ENG_GGUF_VT_UINT32); put_u64(&b, 2); put_u32(&b, 1); put_u32(&b, 2);
    put_u32(&b, ENG_GGUF_VT_STRING); put_u64(&b, 1); put_str(&b, "x");
    put_str(&b, "general.alignment"); put_u32(&b, ENG_GGUF_VT_UINT32); put_u32(&b, 64);
    /* one Q8_0 tensor of 64 values: two blocks */
    put_str(&b, "q");
    put_u32(&b, 1); put_u64(&b, 64); put_u32(&b, ENG_GGUF_TT_Q8_0); put_u64(&b, 0);
    put_pad(&b, 64);
    size_t data_at = b.n;
    for (int blk = 0; blk < 2; blk++) {
        uint16_t d = f32_to_f16(blk ? 0.5f : -0.25f);
        put(&b, &d, 2);
        for (int j = 0; j < 32; j++) {
            int8_t q = (int8_t)(j - 16);
            put(&b, &q, 1);
        }
    }

    char err[256];
    eng_gguf_file *gf = NULL;
    CHECK_MSG(eng_gguf_open_memory(b.p, b.n, &gf, err, sizeof(err)) == ENG_GGUF_OK, "%s", err);
    if (gf) {
        uint32_t u;
        float f;
        int bo;
        const char *s;
        size_t sl;
        CHECK(eng_gguf_get_u32(gf, "t.u8", &u) == 1 && u == 200);
        CHECK(eng_gguf_get_u32(gf, "t.i8", &u) == -1); /* negative */
        CHECK(eng_gguf_find_kv(gf, "t.i8")->num.i == -100);
        CHECK(eng_gguf_get_u32(gf, "t.u16", &u) == 1 && u == 60000);
        CHECK(eng_gguf_find_kv(gf, "t.i16")->num.i == -30000);
        CHECK(eng_gguf_get_u32(gf, "t.u32", &u) == 1 && u == 4000000000u);
        CHECK(eng_gguf_find_kv(gf, "t.i32")->num.i == -7);
        CHECK(eng_gguf_get_f32(gf, "t.f32", &f) == 1 && f == 1.5f);
        CHECK(eng_gguf_get_bool(gf, "t.bool", &bo) == 1 && bo == 1);
        CHECK(eng_gguf_get_str(gf, "t.str", &s, &sl) == 1 && sl == 5 && memcmp(s, "hello", 5) == 0);
        CHECK(eng_gguf_get_u32(gf, "t.u64", &u) == -1); /* does not fit */
        CHECK(eng_gguf_find_kv(gf, "t.u64")->num.u == (1ull << 40));
        CHECK(eng_gguf_find_kv(gf, "t.i64")->num.i == -5000000000LL);
        CHECK(eng_gguf_get_f32(gf, "t.f64", &f) == 1 && f == -2.25f);
        CHECK(eng_gguf_get_f32(gf, "t.str", &f) == -1 && eng_gguf_get_u32(gf, "absent", &u) == 0);
        const eng_gguf_kv *a = eng_gguf_find_kv(gf, "t.arr_i16");
        CHECK(a && a->len == 3 && eng_gguf_arr_num(a, 0) == -1 && eng_gguf_arr_num(a, 2) == -3);
        a = eng_gguf_find_kv(gf, "t.arr_str");
        CHECK(a && a->len == 3);
        if (a) {
            eng_gguf_arr_str(a, 2, &s, &sl);
            CHECK(sl == 3 && memcmp(s, "ccc", 3) == 0);
            eng_gguf_arr_str(a, 1, &s, &sl);
            CHECK(sl == 0);
        }
        a = eng_gguf_find_kv(gf, "t.arr_nested");
        CHECK(a && a->arr_type == ENG_GGUF_VT_ARRAY && a->len == 2);
        CHECK(gf->alignment == 64 && gf->data_start == data_at);
        const eng_gguf_tensor *t = eng_gguf_find_tensor(gf, "q");
        CHECK(t && t->type == ENG_GGUF_TT_Q8_0 && t->nbytes == 68);
        if (t) {
            float out[64];
            eng_gguf_tensor_to_f32(t, out);
            CHECK(out[0] == -0.25f * -16 && out[31] == -0.25f * 15 && out[32] == 0.5f * -16);
        }
        eng_gguf_close(gf);
    }

    /* Every truncation of this file fails cleanly. */
    int all = 1;
    for (size_t n = 0; n < b.n; n++) {
        eng_gguf_status st = eng_gguf_open_memory(b.p, n, &gf, err, sizeof(err));
        all &= st != ENG_GGUF_OK && gf == NULL && err[0] != '\0';
    }
    CHECK_MSG(all, "a truncated synthetic file was accepted");
    free(b.p);
}

static void test_half(void) {
    CHECK(eng_gguf_f16_to_f32(0x3C00) == 1.0f);
    CHECK(eng_gguf_f16_to_f32(0xC000) == -2.0f);
    CHECK(eng_gguf_f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(eng_gguf_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(eng_gguf_f16_to_f32(0x03FF) == ldexpf(1023.0f, -24));
    CHECK(isinf(eng_gguf_f16_to_f32(0x7C00)) && isnan(eng_gguf_f16_to_f32(0x7E00)));
    CHECK(signbit(eng_gguf_f16_to_f32(0x8000)));
    CHECK(eng_gguf_bf16_to_f32(0x3F80) == 1.0f && eng_gguf_bf16_to_f32(0xC040) == -3.0f);
    int ok = 1;
    for (uint32_t h = 0; h < 0x7C00; h++) ok &= f32_to_f16(eng_gguf_f16_to_f32((uint16_t)h)) == h;
    CHECK_MSG(ok, "f16 round trip");
}

/* ======================================================================== */
/* Corruptions of stories260K                                               */
/* ======================================================================== */

/* Load a modified copy; returns the eng_status and leaves the message in err. */
static int load_mod(const uint8_t *p, size_t n, char *err, size_t errlen) {
    int st = 12345;
    eng_model *m = eng_model_load_memory(p, n, &st, err, errlen);
    if (m) {
        CHECK(st == ENG_OK);
        eng_model_free(m);
    } else {
        CHECK(st != ENG_OK && err[0] != '\0');
    }
    return st;
}

/* A patched copy: 8 or 4 bytes of v at offset off. */
static int load_patched(const uint8_t *orig, size_t n, size_t off, const void *v, size_t vlen,
                        char *err, size_t errlen) {
    uint8_t *c = malloc(n);
    memcpy(c, orig, n);
    memcpy(c + off, v, vlen);
    int st = load_mod(c, n, err, errlen);
    free(c);
    return st;
}

#define EXPECT(st, code, substr)                                                       \
    do {                                                                               \
        CHECK_MSG((st) == (code) && strstr(err, substr), "status %d, message '%s'",    \
                  (st), err);                                                          \
    } while (0)

static void test_corruptions(const uint8_t *f, size_t n) {
    char err[512];
    int st = load_mod(f, n, err, sizeof(err));
    CHECK_MSG(st == ENG_OK, "%s", err);

    /* Locations in this file: header at 0, the first key at 24. */
    size_t tok_key = 24; /* "tokenizer.ggml.tokens" */
    size_t embd = find_gguf_string(f, n, "token_embd.weight");
    size_t q0 = find_gguf_string(f, n, "blk.0.attn_q.weight");
    size_t arch = find_gguf_string(f, n, "general.architecture");
    size_t onorm = find_gguf_string(f, n, "output_norm.weight");
    CHECK(embd != (size_t)-1 && q0 != (size_t)-1 && arch != (size_t)-1 && onorm != (size_t)-1);
    /* tensor info: name | n_dims(4) | ne(8 x n_dims) | type(4) | offset(8) */
    size_t embd_ndims = embd + 8 + 17, embd_ne0 = embd_ndims + 4;
    size_t embd_type = embd_ne0 + 16, embd_off = embd_type + 4;
    size_t q0_ne1 = q0 + 8 + 19 + 4 + 8;

    /* Truncation: every offset through the header, then a stride through data. */
    int all = 1, n_trunc = 0;
    for (size_t len = 0; len < n; len += len < 15000 ? (len < 200 ? 1 : 7) : 4099) {
        int s = load_mod(f, len, err, sizeof(err));
        all &= s == ENG_E_FORMAT && (strstr(err, "truncated") || strstr(err, "absurd") ||
                                       strstr(err, "out of range"));
        n_trunc++;
    }
    st = load_mod(f, n - 1, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "extends past the end");
    CHECK_MSG(all, "some truncation was accepted or misreported");
    printf("%d truncated copies rejected\n", n_trunc);

    uint32_t u32;
    uint64_t u64;
    st = load_patched(f, n, 0, "GGML", 4, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "bad magic");
    u32 = 1;
    st = load_patched(f, n, 4, &u32, 4, err, sizeof(err));
    EXPECT(st, ENG_E_UNSUPPORTED, "version 1");
    u32 = 4;
    st = load_patched(f, n, 4, &u32, 4, err, sizeof(err));
    EXPECT(st, ENG_E_UNSUPPORTED, "unsupported version");
    u32 = 3u << 24;
    st = load_patched(f, n, 4, &u32, 4, err, sizeof(err));
    EXPECT(st, ENG_E_UNSUPPORTED, "big-endian");
    u32 = 2; /* v2 has the v3 layout: still loads */
    st = load_patched(f, n, 4, &u32, 4, err, sizeof(err));
    CHECK_MSG(st == ENG_OK, "%s", err);

    u64 = 1ull << 60;
    st = load_patched(f, n, 8, &u64, 8, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "n_tensors");
    st = load_patched(f, n, 16, &u64, 8, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "n_kv");
    u64 = UINT64_MAX;
    st = load_patched(f, n, 16, &u64, 8, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "n_kv");
    u64 = 49; /* one tensor more than the file holds */
    st = load_patched(f, n, 8, &u64, 8, err, sizeof(err));
    CHECK(st == ENG_E_FORMAT);
    u64 = 1ull << 40; /* first key's length */
    st = load_patched(f, n, tok_key, &u64, 8, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "length");
    u32 = 99; /* first key's value type */
    st = load_patched(f, n, tok_key + 8 + 21, &u32, 4, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "unknown value type");
    u64 = 1ull << 59; /* token array count */
    st = load_patched(f, n, tok_key + 8 + 21 + 4 + 4, &u64, 8, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "cannot fit");
    u64 = 1ull << 50; /* first token string's length */
    st = load_patched(f, n, tok_key + 8 + 21 + 4 + 4 + 8, &u64, 8, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "length");

    u64 = (uint64_t)n; /* tensor offset past the end */
    st = load_patched(f, n, embd_off, &u64, 8, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "extends past the end");
    u64 = UINT64_MAX - 31; /* offset + size overflows */
    st = load_patched(f, n, embd_off, &u64, 8, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "extends past the end");
    u64 = 4; /* misaligned */
    st = load_patched(f, n, embd_off, &u64, 8, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "not a multiple");
    u32 = 77;
    st = load_patched(f, n, embd_type, &u32, 4, err, sizeof(err));
    EXPECT(st, ENG_E_UNSUPPORTED, "ggml type 77");
    u32 = 2; /* Q4_0: a real ggml type this engine does not read */
    st = load_patched(f, n, embd_type, &u32, 4, err, sizeof(err));
    EXPECT(st, ENG_E_UNSUPPORTED, "ggml type 2");
    u32 = 9;
    st = load_patched(f, n, embd_ndims, &u32, 4, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "dimensions");
    u64 = 1ull << 62; /* element count overflows */
    st = load_patched(f, n, embd_ne0, &u64, 8, err, sizeof(err));
    CHECK_MSG(st == ENG_E_FORMAT && (strstr(err, "overflow") || strstr(err, "past the end")),
              "%s", err);
    u64 = 0;
    st = load_patched(f, n, embd_ne0, &u64, 8, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "dimension 0 is 0");

    /* Model-level problems. */
    u64 = 32; /* blk.0.attn_q.weight [64, 32]: fits in the file, wrong shape */
    st = load_patched(f, n, q0_ne1, &u64, 8, err, sizeof(err));
    EXPECT(st, ENG_E_MODEL, "blk.0.attn_q.weight' has shape");
    st = load_patched(f, n, onorm + 8, "outpux_norm", 11, err, sizeof(err));
    EXPECT(st, ENG_E_MODEL, "missing required tensor 'output_norm.weight'");
    st = load_patched(f, n, q0 + 8, "blk.0.attn_k", 12, err, sizeof(err));
    EXPECT(st, ENG_E_FORMAT, "occurs twice");
    st = load_patched(f, n, arch + 8 + 20 + 4 + 8, "mamba", 5, err, sizeof(err));
    EXPECT(st, ENG_E_UNSUPPORTED, "architecture 'mamba'");
    size_t bc = find_gguf_string(f, n, "llama.block_count");
    st = load_patched(f, n, bc + 8, "llama.block_coun_", 17, err, sizeof(err));
    EXPECT(st, ENG_E_MODEL, "missing required key llama.block_count");
    size_t hk = find_gguf_string(f, n, "llama.attention.head_count_kv");
    u32 = 3; /* does not divide 8 heads */
    st = load_patched(f, n, hk + 8 + 29 + 4, &u32, 4, err, sizeof(err));
    EXPECT(st, ENG_E_MODEL, "does not divide");
    u32 = 2; /* divides, but then attn_k has the wrong shape */
    st = load_patched(f, n, hk + 8 + 29 + 4, &u32, 4, err, sizeof(err));
    EXPECT(st, ENG_E_MODEL, "attn_k.weight' has shape");

    st = load_mod(NULL, 0, err, sizeof(err));
    CHECK(st == ENG_E_FORMAT);
    st = 0;
    CHECK(eng_model_load_ex("data/does-not-exist.gguf", &st, err, sizeof(err)) == NULL);
    EXPECT(st, ENG_E_IO, "cannot open");

    /* Random mutations of the header: any outcome but a crash (ASan run). */
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    size_t hdr = embd_off + 8 + 48 * 60 < n ? 14200 : n;
    uint8_t *c = malloc(n);
    int accepted = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(c, f, n);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t at = (size_t)(rng % hdr);
            c[at] = (uint8_t)(rng >> 32);
        }
        int s = 12345;
        eng_model *m = eng_model_load_memory(c, n, &s, err, sizeof(err));
        accepted += m != NULL;
        CHECK(m ? s == ENG_OK : s < 0);
        eng_model_free(m);
    }
    printf("random header mutations: %d of 400 still loaded\n", accepted);
    free(c);
}

/* ======================================================================== */
/* F16 / BF16 / Q8_0 / tied variants rewritten from stories260K             */
/* ======================================================================== */

/* Rewrite the F32 file with 2-D tensors in `type` (Q8_0 only where ne0 % 32
 * == 0) and without tensor `drop` (or NULL). The metadata bytes are copied. */
static uint8_t *rewrite(const uint8_t *f, size_t n, uint32_t type, const char *drop,
                        size_t *out_n) {
    eng_gguf_file *gf = NULL;
    char err[256];
    if (eng_gguf_open_memory(f, n, &gf, err, sizeof(err))) return NULL;
    size_t kv_end = find_gguf_string(f, n, gf->tensors[0].name);
    bytes b = {0};
    put(&b, f, 16); /* magic, version, n_tensors (fixed below) */
    put_u64(&b, gf->n_kv);
    put(&b, f + 24, kv_end - 24);
    uint32_t *types = calloc(gf->n_tensors, sizeof(uint32_t));
    uint64_t off = 0, kept = 0;
    for (uint64_t i = 0; i < gf->n_tensors; i++) {
        const eng_gguf_tensor *t = &gf->tensors[i];
        if (drop && strcmp(t->name, drop) == 0) continue;
        types[i] = t->n_dims == 2 && !(type == ENG_GGUF_TT_Q8_0 && t->ne[0] % 32) ? type : ENG_GGUF_TT_F32;
        uint64_t nb = types[i] == ENG_GGUF_TT_F32 ? 4 * t->n_elements
                      : types[i] == ENG_GGUF_TT_Q8_0 ? t->n_elements / 32 * 34 : 2 * t->n_elements;
        put_str(&b, t->name);
        put_u32(&b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(&b, t->ne[d]);
        put_u32(&b, types[i]);
        put_u64(&b, off);
        off += (nb + 31) / 32 * 32;
        kept++;
    }
    memcpy(b.p + 8, &kept, 8);
    put_pad(&b, 32);
    for (uint64_t i = 0; i < gf->n_tensors; i++) {
        const eng_gguf_tensor *t = &gf->tensors[i];
        if (drop && strcmp(t->name, drop) == 0) continue;
        float *x = malloc(t->n_elements * sizeof(float));
        eng_gguf_tensor_to_f32(t, x);
        for (uint64_t j = 0; j < t->n_elements; j++) {
            if (types[i] == ENG_GGUF_TT_F32) {
                put(&b, &x[j], 4);
            } else if (types[i] == ENG_GGUF_TT_F16) {
                uint16_t h = f32_to_f16(x[j]);
                put(&b, &h, 2);
            } else if (types[i] == ENG_GGUF_TT_BF16) {
                uint16_t h = f32_to_bf16(x[j]);
                put(&b, &h, 2);
            } else if (j % 32 == 0) {
                float amax = 0.0f;
                for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(x[j + k]));
                float dd = amax / 127.0f, id = dd ? 1.0f / dd : 0.0f;
                uint16_t h = f32_to_f16(dd);
                put(&b, &h, 2);
                for (int k = 0; k < 32; k++) {
                    int8_t q = (int8_t)roundf(x[j + k] * id);
                    put(&b, &q, 1);
                }
            }
        }
        free(x);
        put_pad(&b, 32);
    }
    free(types);
    eng_gguf_close(gf);
    *out_n = b.n;
    return b.p;
}

/* Logits of a fixed prompt's last token. */
static int prompt_logits(const eng_model *m, float *out) {
    const char *text = "Once upon a time, there was a little dog";
    int32_t ids[64];
    int n = eng_tokenize(m, text, strlen(text), 1, ids, 64);
    eng_context *ctx = eng_context_alloc(m, 64, 1);
    float *lg = malloc((size_t)n * 512 * sizeof(float));
    int st = eng_decode(ctx, ids, (uint32_t)n, lg);
    memcpy(out, lg + (size_t)(n - 1) * 512, 512 * sizeof(float));
    free(lg);
    eng_context_free(ctx);
    return st;
}

static void test_variants(const uint8_t *f, size_t n) {
    char err[256];
    int st;
    eng_model *base = eng_model_load_memory(f, n, &st, err, sizeof(err));
    CHECK(base != NULL);
    if (!base) return;
    float ref[512], got[512];
    CHECK(prompt_logits(base, ref) == ENG_OK);
    struct {
        uint32_t type;
        const char *name;
        double tol;
    } v[] = {{ENG_GGUF_TT_F32, "f32", 0.0}, {ENG_GGUF_TT_F16, "f16", 0.05}, {ENG_GGUF_TT_BF16, "bf16", 0.5},
             {ENG_GGUF_TT_Q8_0, "q8_0", 0.3}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t rn;
        uint8_t *r = rewrite(f, n, v[i].type, NULL, &rn);
        CHECK(r != NULL);
        eng_model *m = r ? eng_model_load_memory(r, rn, &st, err, sizeof(err)) : NULL;
        CHECK_MSG(m != NULL, "%s: %s", v[i].name, err);
        if (m) {
            CHECK(prompt_logits(m, got) == ENG_OK);
            double md = 0.0;
            for (int j = 0; j < 512; j++) md = fmax(md, fabs((double)got[j] - ref[j]));
            printf("%s variant: max |dlogit| %.4f\n", v[i].name, md);
            CHECK_MSG(md <= v[i].tol, "%s: %g", v[i].name, md);
        }
        eng_model_free(m);
        free(r);
    }
    /* Without output.weight the embedding is reused as the output head. */
    size_t rn;
    uint8_t *r = rewrite(f, n, ENG_GGUF_TT_F32, "output.weight", &rn);
    eng_model *m = eng_model_load_memory(r, rn, &st, err, sizeof(err));
    CHECK_MSG(m && eng_model_hparams(m)->tied_output, "%s", err);
    if (m) CHECK(prompt_logits(m, got) == ENG_OK);
    eng_model_free(m);
    free(r);
    eng_model_free(base);
}

/* A directory given as the model (fopen succeeds on one and its "size" is
 * LONG_MAX): a plain error, not an allocation of 2^63 bytes (review of
 * issue 9: "out of memory: 9223372036854775807 bytes for 'data'"). */
static void test_directory(void) {
    char err[256] = "";
    eng_gguf_file *gf = (eng_gguf_file *)1;
    CHECK(eng_gguf_open("data", &gf, err, sizeof err) == ENG_GGUF_E_IO && gf == NULL);
    CHECK_MSG(strstr(err, "is a directory") != NULL, "message: %s", err);
}

int main(void) {
    test_directory();
    test_half();
    test_value_types();
    size_t n = 0;
    uint8_t *f = (uint8_t *)test_read_file(STORIES, &n);
    CHECK(f != NULL);
    if (f) {
        test_corruptions(f, n);
        test_variants(f, n);
    }
    free(f);
    return TEST_REPORT();
}
