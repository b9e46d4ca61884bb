/* test_hostile.c - hostile inputs to every reader, each with the specific
 * error it must give (never a crash; run under scripts/sanitize.sh too):
 *  - every stream header field set to 0, max and inconsistent values, with
 *    the header (and table) CRC recomputed so the field check must catch it;
 *    section table entries, chunk index entries and section bytes likewise;
 *  - streams truncated at every length (so at every section boundary);
 *  - sizes whose products overflow 64 bits: geometry in cache files, in
 *    basis metadata and in stream headers; safetensors shapes and offsets;
 *  - bases with NaN/Inf tensors (KVTC_ERR_NUMERIC) and bad metadata;
 *  - empty caches and caches shorter than sink + window (exact round trip);
 *  - another model's basis and mismatched output caches. */
#include <libdeflate.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/cache_file.h"
#include "io/safetensors.h"
#include "kvtc.h"
#include "synth.h"
#include "test.h"

#define N_TOK 40
#define SINK 2
#define WIN 4
#define CHUNK 8 /* 34 coded tokens: 5 chunks */

static kvtc_geometry G;
static kvtc_basis *BASIS;

static void st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void st64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static void resign(uint8_t *b) { /* table CRC, then header CRC */
    st32(b + 108, (uint32_t)libdeflate_crc32(0, b + 128, 6 * 24));
    st32(b + 124, (uint32_t)libdeflate_crc32(0, b, 124));
}

static uint8_t *make_stream(uint32_t codec, size_t *n) {
    int64_t pos[N_TOK];
    for (int t = 0; t < N_TOK; t++) pos[t] = 100 + 2 * t;
    synth_params sp;
    synth_params_init(&sp, &G, KVTC_DTYPE_F32, N_TOK);
    sp.positions = pos;
    synth_cache sc;
    CHECK(synth_make(&sp, &sc) == 0);
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = 4;
    eo.n_sink = SINK;
    eo.n_window = WIN;
    eo.chunk_tokens = CHUNK;
    eo.entropy_codec = codec;
    uint8_t *s = NULL;
    CHECK(synth_compress(BASIS, &eo, &sc.c, &s, n) == KVTC_OK);
    synth_free(&sc);
    return s;
}

/* get_info and decompress of buf; decompress into a cache shaped like the
 * original stream. */
static kvtc_result try_decode(const uint8_t *b, size_t n) {
    kvtc_decoder *d = NULL;
    if (kvtc_decoder_alloc(BASIS, NULL, &d) != KVTC_OK) return KVTC_ERR_OUT_OF_MEMORY;
    kvtc_cache o;
    if (synth_alloc_like(&G, KVTC_DTYPE_F32, N_TOK, 1, &o)) return KVTC_ERR_OUT_OF_MEMORY;
    kvtc_result r = kvtc_decompress(d, b, n, &o);
    synth_cache_free(&o);
    kvtc_decoder_free(d);
    return r;
}

typedef struct field_case {
    const char *what;
    uint32_t off, width; /* width 1, 2, 4, 8 */
    uint64_t value;
    kvtc_result info, decode;
} field_case;

#define F32BITS(x) ((uint64_t)kvi_f32_bits(x))
static uint64_t f64bits(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }

static void test_header_fields(const uint8_t *s, size_t n, uint32_t codec) {
    const kvtc_result OK = KVTC_OK, C = KVTC_ERR_CORRUPT, BM = KVTC_ERR_BASIS_MISMATCH,
                      TL = KVTC_ERR_TOO_LARGE, UV = KVTC_ERR_UNSUPPORTED_VERSION;
    const field_case cases[] = {
        {"version major 0", 8, 2, 0, UV, UV},
        {"version major max", 8, 2, 0xFFFF, UV, UV},
        {"version major 2", 8, 2, 2, UV, UV},
        {"version minor max (forward compatible)", 10, 2, 0xFFFF, OK, OK},
        {"header size 0", 12, 4, 0, C, C},
        {"header size max", 12, 4, UINT32_MAX, C, C},
        {"header size 127", 12, 4, 127, C, C},
        {"flags 0 (positions section present)", 16, 4, 0, C, C},
        {"flags max", 16, 4, UINT32_MAX, C, C},
        {"flags token ids without section", 16, 4, 3, C, C},
        {"n_layers 0", 20, 4, 0, C, C},
        {"n_layers max", 20, 4, UINT32_MAX, TL, TL},
        {"n_layers 3 (layout differs)", 20, 4, 3, C, C},
        {"n_kv_heads 0", 24, 4, 0, C, C},
        {"n_kv_heads max", 24, 4, UINT32_MAX, TL, TL},
        {"n_kv_heads 1 (layout differs)", 24, 4, 1, C, C},
        {"head_dim 0", 28, 4, 0, C, C},
        {"head_dim max", 28, 4, UINT32_MAX, TL, TL},
        {"head_dim 4097", 28, 4, 4097, TL, TL},
        {"head_dim 14 < rope_dim", 28, 4, 14, C, C},
        {"rope_dim 0 (= head_dim)", 32, 4, 0, OK, OK},
        {"rope_dim max", 32, 4, UINT32_MAX, C, C},
        {"rope_dim odd", 32, 4, 7, C, C},
        {"rope_dim 8 (another geometry)", 32, 4, 8, OK, BM},
        {"rope_type 3", 36, 1, 3, C, C},
        {"rope_type max", 36, 1, 255, C, C},
        {"rope_type none", 36, 1, 0, OK, BM},
        {"rope_type neox", 36, 1, 2, OK, BM},
        {"dtype 3", 37, 1, 3, C, C},
        {"dtype max", 37, 1, 255, C, C},
        {"dtype f16 (layout differs)", 37, 1, 1, C, C},
        {"codec 0", 38, 1, 0, C, C},
        {"codec 3", 38, 1, 3, C, C},
        {"codec max", 38, 1, 255, C, C},
        {"codec swapped", 38, 1, codec == KVTC_CODEC_RANS ? 1 : 2, OK, C},
        {"rope_removed 2", 39, 1, 2, C, C},
        {"rope_removed max", 39, 1, 255, C, C},
        {"rope_removed 0", 39, 1, 0, OK, BM},
        {"rope_theta 0", 40, 4, F32BITS(0.0f), C, C},
        {"rope_theta -1", 40, 4, F32BITS(-1.0f), C, C},
        {"rope_theta NaN", 40, 4, 0x7fc00000u, C, C},
        {"rope_theta Inf", 40, 4, 0x7f800000u, C, C},
        {"rope_theta max bits", 40, 4, UINT32_MAX, C, C},
        {"rope_theta other model", 40, 4, F32BITS(500000.0f), OK, BM},
        {"recompute_layers 1 without token ids", 44, 4, 1, C, C},
        {"recompute_layers max", 44, 4, UINT32_MAX, C, C},
        {"n_tokens 0", 48, 8, 0, C, C},
        {"n_tokens max", 48, 8, UINT64_MAX, TL, TL},
        {"n_tokens 2^40 + 1", 48, 8, (1ull << 40) + 1, TL, TL},
        {"n_tokens + 1", 48, 8, N_TOK + 1, C, C},
        {"n_tokens + 100", 48, 8, N_TOK + 100, C, C},
        {"n_sink 0", 56, 4, 0, C, C},
        {"n_sink max", 56, 4, UINT32_MAX, C, C},
        {"n_sink = n_tokens", 56, 4, N_TOK, C, C},
        {"n_window 0", 60, 4, 0, C, C},
        {"n_window max", 60, 4, UINT32_MAX, C, C},
        {"chunk_tokens 0", 64, 4, 0, C, C},
        {"chunk_tokens max", 64, 4, UINT32_MAX, C, C},
        {"chunk_tokens 65537", 64, 4, 65537, C, C},
        {"chunk_tokens 16 (n_chunks differs)", 64, 4, 16, C, C},
        {"chunk_tokens 7 (same n_chunks, chunk sizes differ)", 64, 4, 7, C, C},
        {"n_chunks 0", 68, 4, 0, C, C},
        {"n_chunks max", 68, 4, UINT32_MAX, C, C},
        {"n_chunks + 1", 68, 4, 6, C, C},
        {"transform fingerprint 0", 72, 8, 0, OK, BM},
        {"transform fingerprint max", 72, 8, UINT64_MAX, OK, BM},
        {"plan fingerprint 0", 80, 8, 0, OK, BM},
        {"plan fingerprint max", 80, 8, UINT64_MAX, OK, BM},
        {"plan ratio 0", 88, 8, 0, C, C},
        {"plan ratio -1", 88, 8, f64bits(-1.0), C, C},
        {"plan ratio NaN", 88, 8, 0x7ff8000000000000ull, C, C},
        {"plan ratio Inf", 88, 8, 0x7ff0000000000000ull, C, C},
        {"plan ratio huge (informative)", 88, 8, f64bits(1e300), OK, OK},
        {"total_size 0", 96, 8, 0, C, C},
        {"total_size max", 96, 8, UINT64_MAX, C, C},
        {"total_size + 1", 96, 8, n + 1, C, C},
        {"n_sections 0", 104, 4, 0, C, C},
        {"n_sections 5", 104, 4, 5, C, C},
        {"n_sections 7", 104, 4, 7, C, C},
        {"n_sections max", 104, 4, UINT32_MAX, C, C},
    };
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const field_case *fc = &cases[i];
        memcpy(b, s, n);
        uint64_t v = fc->value;
        memcpy(b + fc->off, &v, fc->width); /* little-endian host */
        resign(b);
        kvtc_stream_info info = {.struct_size = sizeof info};
        kvtc_result ri = kvtc_stream_get_info(b, n, &info);
        kvtc_result rd = try_decode(b, n);
        CHECK_MSG(ri == fc->info, "%s: info %s, want %s", fc->what, kvtc_result_string(ri),
                  kvtc_result_string(fc->info));
        CHECK_MSG(rd == fc->decode, "%s: decode %s, want %s", fc->what, kvtc_result_string(rd),
                  kvtc_result_string(fc->decode));
    }
    /* the CRCs themselves: header CRC, table CRC (header CRC recomputed) */
    memcpy(b, s, n);
    b[124] ^= 1;
    CHECK(kvtc_stream_get_info(b, n, &(kvtc_stream_info){.struct_size = sizeof(kvtc_stream_info)}) == KVTC_ERR_CORRUPT);
    memcpy(b, s, n);
    b[108] ^= 1;
    st32(b + 124, (uint32_t)libdeflate_crc32(0, b, 124));
    CHECK(kvtc_stream_get_info(b, n, &(kvtc_stream_info){.struct_size = sizeof(kvtc_stream_info)}) == KVTC_ERR_CORRUPT);
    /* magic: every byte */
    for (int i = 0; i < 8; i++) {
        memcpy(b, s, n);
        b[i] ^= 0x20;
        CHECK(kvtc_stream_get_info(b, n, &(kvtc_stream_info){.struct_size = sizeof(kvtc_stream_info)}) == KVTC_ERR_BAD_MAGIC);
        CHECK(try_decode(b, n) == KVTC_ERR_BAD_MAGIC);
    }
    /* reserved header bytes (112..123) and entry words are ignored, as
     * reserved fields are (a later minor version may use them) */
    memcpy(b, s, n);
    b[115] = 0xFF;
    resign(b);
    CHECK(kvtc_stream_get_info(b, n, &(kvtc_stream_info){.struct_size = sizeof(kvtc_stream_info)}) == KVTC_OK);
    free(b);
}

/* Section table entries: offset and size of each section at 0, max and
 * off by one; a section's bytes altered (CRC must catch it). */
static void test_section_table(const uint8_t *s, size_t n) {
    uint8_t *b = malloc(n);
    for (int sec = 0; sec < 6; sec++)
        for (int fld = 0; fld < 2; fld++) {
            uint64_t orig = ld64(s + 128 + 24 * sec + 8 * fld);
            const uint64_t vals[4] = {0, UINT64_MAX, orig + 1, orig - 1};
            for (int k = 0; k < 4; k++) {
                if (vals[k] == orig) continue;
                memcpy(b, s, n);
                st64(b + 128 + 24 * sec + 8 * fld, vals[k]);
                resign(b);
                kvtc_result r = kvtc_stream_get_info(b, n, &(kvtc_stream_info){.struct_size = sizeof(kvtc_stream_info)});
                CHECK_MSG(r == KVTC_ERR_CORRUPT, "section %d field %d value %llu: %s", sec, fld,
                          (unsigned long long)vals[k], kvtc_result_string(r));
                CHECK(try_decode(b, n) == KVTC_ERR_CORRUPT);
            }
        }
    /* one byte of each non-empty checksummed section flipped */
    for (int sec = 0; sec < 5; sec++) {
        uint64_t off = ld64(s + 128 + 24 * sec), size = ld64(s + 128 + 24 * sec + 8);
        if (!size) continue;
        memcpy(b, s, n);
        b[off + size / 2] ^= 0x10;
        CHECK_MSG(kvtc_stream_get_info(b, n, &(kvtc_stream_info){.struct_size = sizeof(kvtc_stream_info)}) == KVTC_ERR_CORRUPT, "section %d flip", sec);
        CHECK(try_decode(b, n) == KVTC_ERR_CORRUPT);
    }
    free(b);
}

/* Chunk index entries (with the index section's CRC recomputed): the
 * layout (back to back, token counts, payload bound) is checked with the
 * prefix (issue 9 item 4); chunk CRCs and exact payload sizes on decode. */
static void test_chunk_index(const uint8_t *s, size_t n) {
    uint64_t io = ld64(s + 128 + 24 * 4), is = ld64(s + 128 + 24 * 4 + 8);
    uint64_t dof = ld64(s + 128 + 24 * 5), ds = ld64(s + 128 + 24 * 5 + 8);
    CHECK(is == 5 * 24);
    uint8_t *b = malloc(n);
    struct { uint32_t off, width; uint64_t value; const char *what; } f[] = {
        {0, 8, UINT64_MAX, "offset max"}, {0, 8, ds, "offset = data size"}, {0, 8, ds + 1, "offset past data"},
        {8, 4, UINT32_MAX, "size max"}, {8, 4, 0, "size 0"}, {12, 4, 0, "crc 0"},
        {16, 4, 0, "n_tokens 0"}, {16, 4, UINT32_MAX, "n_tokens max"}, {16, 4, CHUNK + 1, "n_tokens + 1"},
        {20, 4, 0, "payload 0"}, {20, 4, UINT32_MAX, "payload max"}, {20, 4, 1, "payload 1"},
    };
    for (uint32_t e = 0; e < 5; e++)
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
            memcpy(b, s, n);
            memcpy(b + io + 24 * e + f[i].off, &f[i].value, f[i].width);
            uint32_t crc = (uint32_t)libdeflate_crc32(0, b + io, (size_t)is);
            st32(b + 128 + 24 * 4 + 16, crc);
            resign(b);
            int layout_ok = f[i].off >= 12 && f[i].off != 16; /* crc, payload 0/1 */
            if (f[i].off == 20 && f[i].value == UINT32_MAX) layout_ok = 0;
            kvtc_result ri = kvtc_stream_get_info(b, n, &(kvtc_stream_info){.struct_size = sizeof(kvtc_stream_info)});
            CHECK_MSG(ri == (layout_ok ? KVTC_OK : KVTC_ERR_CORRUPT), "chunk %u %s: info %s", e, f[i].what,
                      kvtc_result_string(ri));
            kvtc_result r = try_decode(b, n);
            CHECK_MSG(r == KVTC_ERR_CORRUPT, "chunk %u %s: %s", e, f[i].what, kvtc_result_string(r));
        }
    /* chunk bytes changed, CRC fixed: the entropy decoder or the size
     * check must reject it (a flip could decode; a cut chunk cannot) */
    memcpy(b, s, n);
    uint8_t *ent = b + io;
    uint32_t size;
    memcpy(&size, ent + 8, 4);
    size -= 1;
    memcpy(ent + 8, &size, 4);
    st32(ent + 12, (uint32_t)libdeflate_crc32(0, b + dof + ld64(ent), size));
    st32(b + 128 + 24 * 4 + 16, (uint32_t)libdeflate_crc32(0, b + io, (size_t)is));
    resign(b);
    CHECK(try_decode(b, n) == KVTC_ERR_CORRUPT);
    /* a chunk's bytes flipped without fixing its CRC */
    memcpy(b, s, n);
    b[dof + 1] ^= 1;
    CHECK(try_decode(b, n) == KVTC_ERR_CORRUPT);
    free(b);
}

static void test_truncation(const uint8_t *s, size_t n) {
    int bad = 0;
    for (size_t len = 0; len < n; len++) {
        kvtc_stream_info info = {.struct_size = sizeof info};
        kvtc_result want = len == 0 ? KVTC_ERR_BAD_MAGIC : KVTC_ERR_TRUNCATED;
        if (kvtc_stream_get_info(s, len, &info) != want) bad++;
        if (try_decode(s, len) != want) bad++;
    }
    CHECK_MSG(bad == 0, "%d truncations gave another code", bad);
    /* trailing bytes after total_size are ignored (streams may be embedded) */
    uint8_t *b = malloc(n + 7);
    memcpy(b, s, n);
    memset(b + n, 0xEE, 7);
    CHECK(try_decode(b, n + 7) == KVTC_OK);
    free(b);
}

/* ---- overflowing sizes ---------------------------------------------------- */

static uint8_t *st_bytes(const char *json, size_t data, size_t *n) {
    size_t hl = strlen(json);
    *n = 8 + hl + data;
    uint8_t *b = calloc(1, *n);
    st64(b, hl);
    memcpy(b + 8, json, hl);
    return b;
}

static kvtc_result parse_cache_json(const char *json, size_t data) {
    size_t n;
    uint8_t *b = st_bytes(json, data, &n);
    cache_file cf;
    kvtc_result r = cache_file_parse(b, n, &cf);
    if (r == KVTC_OK) cache_file_free(&cf);
    free(b);
    return r;
}

static void test_cache_file_overflow(void) {
    /* geometry whose product wraps 64 bits to 0 (2^31 * 2^31 * 4), with no
     * tokens so the tensors are empty */
    CHECK(parse_cache_json("{\"k\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648,0,4],\"data_offsets\":[0,0]},"
                           "\"v\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648,0,4],\"data_offsets\":[0,0]}}",
                           0) == KVTC_ERR_TOO_LARGE);
    CHECK(parse_cache_json("{\"k\":{\"dtype\":\"F16\",\"shape\":[4294967295,4294967295,0,4096],\"data_offsets\":[0,0]},"
                           "\"v\":{\"dtype\":\"F16\",\"shape\":[4294967295,4294967295,0,4096],\"data_offsets\":[0,0]}}",
                           0) == KVTC_ERR_TOO_LARGE);
    /* dims beyond u32 */
    CHECK(parse_cache_json("{\"k\":{\"dtype\":\"F32\",\"shape\":[4294967296,1,0,4],\"data_offsets\":[0,0]},"
                           "\"v\":{\"dtype\":\"F32\",\"shape\":[4294967296,1,0,4],\"data_offsets\":[0,0]}}",
                           0) == KVTC_ERR_CORRUPT);
    /* element count overflows u64 */
    CHECK(parse_cache_json("{\"k\":{\"dtype\":\"F32\",\"shape\":[65536,65536,65536,65536],\"data_offsets\":[0,16]}}",
                           16) == KVTC_ERR_TOO_LARGE);
    /* byte count overflows u64 (2^62 elements x 4 bytes) */
    CHECK(parse_cache_json("{\"k\":{\"dtype\":\"F32\",\"shape\":[1,1,4611686018427387904,1],\"data_offsets\":[0,16]}}",
                           16) == KVTC_ERR_TOO_LARGE);
    /* offsets beyond INT64_MAX, and past the data */
    CHECK(parse_cache_json("{\"k\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[18446744073709551611,18446744073709551615]}}",
                           16) == KVTC_ERR_TOO_LARGE);
    CHECK(parse_cache_json("{\"k\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 16) ==
          KVTC_ERR_TRUNCATED);
    /* n_tokens beyond the library's limit with an empty head: invalid geometry */
    CHECK(parse_cache_json("{\"k\":{\"dtype\":\"F32\",\"shape\":[1,1,2199023255553,0],\"data_offsets\":[0,0]},"
                           "\"v\":{\"dtype\":\"F32\",\"shape\":[1,1,2199023255553,0],\"data_offsets\":[0,0]}}",
                           0) == KVTC_ERR_CORRUPT);
    /* header length: max, past the file, zero (a '{' after it: a header
     * that is not JSON is bad magic before its length is judged) */
    uint8_t b[16] = {0};
    b[8] = '{';
    st64(b, UINT64_MAX);
    cache_file cf;
    CHECK(cache_file_parse(b, 16, &cf) == KVTC_ERR_TOO_LARGE);
    st64(b, 9);
    CHECK(cache_file_parse(b, 16, &cf) == KVTC_ERR_TRUNCATED);
    st64(b, 0);
    CHECK(cache_file_parse(b, 16, &cf) == KVTC_ERR_BAD_MAGIC);
    CHECK(cache_file_parse(b, 7, &cf) == KVTC_ERR_TRUNCATED);
    /* k and v disagree */
    CHECK(parse_cache_json("{\"k\":{\"dtype\":\"F32\",\"shape\":[1,1,1,2],\"data_offsets\":[0,8]},"
                           "\"v\":{\"dtype\":\"F16\",\"shape\":[1,1,1,2],\"data_offsets\":[8,12]}}",
                           16) == KVTC_ERR_CORRUPT);
    /* a valid cache file truncated at every length */
    {
        synth_params sp;
        synth_params_init(&sp, &G, KVTC_DTYPE_F16, 9);
        int64_t pos[9] = {5, 4, 3, 2, 1, 0, -1, -2, -3};
        sp.positions = pos;
        synth_cache sc;
        CHECK(synth_make(&sp, &sc) == 0);
        void *cb = NULL;
        size_t cn = 0;
        CHECK(cache_file_serialize(&sc.c, &cb, &cn) == KVTC_OK);
        int bad = 0;
        for (size_t len = 0; len < cn; len++)
            if (cache_file_parse(cb, len, &cf) != KVTC_ERR_TRUNCATED) bad++;
        CHECK_MSG(bad == 0, "%d truncated cache files gave another code", bad);
        CHECK(cache_file_parse(cb, cn, &cf) == KVTC_OK);
        cache_file_free(&cf);
        free(cb);
        synth_free(&sc);
    }
    /* the stream header with the wrapping geometry (CRC valid) */
    size_t n;
    uint8_t *s = make_stream(KVTC_CODEC_DEFLATE, &n);
    st32(s + 20, 1u << 31);
    st32(s + 24, 1u << 31);
    st32(s + 28, 4);
    st32(s + 32, 4);
    resign(s);
    CHECK(kvtc_stream_get_info(s, n, &(kvtc_stream_info){.struct_size = sizeof(kvtc_stream_info)}) == KVTC_ERR_TOO_LARGE);
    free(s);
}

/* ---- bases ----------------------------------------------------------------- */

/* The good basis re-written with one metadata value replaced (or the
 * float at tensor `tname`[idx] set to `bad`). */
static uint8_t *basis_variant(const uint8_t *good, size_t gn, const char *key, const char *value,
                              const char *tname, uint64_t idx, float bad, size_t *n) {
    st_file f;
    if (st_parse(good, gn, &f) != KVTC_OK) return NULL;
    st_writer *w = st_writer_alloc();
    float *copies[16] = {0};
    for (uint32_t i = 0; i < f.n_meta; i++)
        st_writer_add_meta(w, f.meta[i].key,
                           key && !strcmp(f.meta[i].key, key) ? value : f.meta[i].value);
    for (uint32_t i = 0; i < f.n_tensors && i < 16; i++) {
        const st_tensor *t = &f.tensors[i];
        copies[i] = malloc(t->nbytes + 4);
        memcpy(copies[i], t->data, t->nbytes);
        if (tname && !strcmp(t->name, tname) && idx < t->n_elements) copies[i][idx] = bad;
        st_writer_add_tensor(w, t->name, t->dtype, t->n_dims, t->shape, copies[i]);
    }
    *n = st_writer_size(w);
    uint8_t *b = malloc(*n);
    size_t wr;
    st_writer_write(w, b, *n, &wr);
    st_writer_free(w);
    for (int i = 0; i < 16; i++) free(copies[i]);
    st_file_free(&f);
    return b;
}

static kvtc_result load_variant(const uint8_t *good, size_t gn, const char *key, const char *value,
                                const char *tname, uint64_t idx, float bad) {
    size_t n = 0;
    uint8_t *b = basis_variant(good, gn, key, value, tname, idx, bad, &n);
    if (!b) return KVTC_ERR_OUT_OF_MEMORY;
    kvtc_basis *x = NULL;
    kvtc_result r = kvtc_basis_load(b, n, &x);
    CHECK(r != KVTC_OK || x != NULL);
    kvtc_basis_free(x);
    free(b);
    return r;
}

static void test_basis(void) {
    size_t gn = 0;
    uint8_t *good = synth_basis_bytes(BASIS, &gn);
    CHECK(good != NULL);
    CHECK(load_variant(good, gn, NULL, NULL, NULL, 0, 0) == KVTC_OK); /* the rewrite itself is faithful */
    const char *tensors[] = {"k.mean", "k.weight", "k.basis", "k.eigenvalues",
                             "v.mean", "v.weight", "v.basis", "v.eigenvalues"};
    for (int i = 0; i < 8; i++) {
        CHECK_MSG(load_variant(good, gn, NULL, NULL, tensors[i], 3, NAN) == KVTC_ERR_NUMERIC, "%s NaN", tensors[i]);
        CHECK_MSG(load_variant(good, gn, NULL, NULL, tensors[i], 0, INFINITY) == KVTC_ERR_NUMERIC, "%s Inf",
                  tensors[i]);
        CHECK_MSG(load_variant(good, gn, NULL, NULL, tensors[i], 1, -INFINITY) == KVTC_ERR_NUMERIC, "%s -Inf",
                  tensors[i]);
    }
    /* a weight of 0 or below (finite) is corrupt */
    CHECK(load_variant(good, gn, NULL, NULL, "k.weight", 2, 0.0f) == KVTC_ERR_CORRUPT);
    CHECK(load_variant(good, gn, NULL, NULL, "v.weight", 2, -1.0f) == KVTC_ERR_CORRUPT);
    /* a changed value under a valid fingerprint string */
    CHECK(load_variant(good, gn, NULL, NULL, "k.mean", 0, 123.0f) == KVTC_ERR_CORRUPT);
    struct { const char *key, *value; kvtc_result want; } m[] = {
        {"format", "kvtc-basiz", KVTC_ERR_BAD_MAGIC},
        {"format_version", "3", KVTC_ERR_UNSUPPORTED_VERSION}, {"format_version", "1", KVTC_ERR_CORRUPT},
        {"format_version", "0", KVTC_ERR_UNSUPPORTED_VERSION},
        {"format_version", "-1", KVTC_ERR_CORRUPT},
        {"format_version", "99999999999999999999999", KVTC_ERR_CORRUPT},
        {"n_layers", "0", KVTC_ERR_CORRUPT},
        {"n_layers", "4294967295", KVTC_ERR_TOO_LARGE},
        {"n_layers", "4294967296", KVTC_ERR_CORRUPT},
        {"n_layers", "-2", KVTC_ERR_CORRUPT},
        {"n_layers", "3", KVTC_ERR_CORRUPT},
        {"n_layers", "2147483648", KVTC_ERR_TOO_LARGE}, /* with n_kv_heads below: wraps */
        {"n_kv_heads", "0", KVTC_ERR_CORRUPT},
        {"n_kv_heads", "4294967295", KVTC_ERR_TOO_LARGE},
        {"head_dim", "0", KVTC_ERR_CORRUPT},
        {"head_dim", "4294967295", KVTC_ERR_TOO_LARGE},
        {"head_dim", "17", KVTC_ERR_CORRUPT},
        {"rope_dim", "15", KVTC_ERR_CORRUPT},
        {"rope_dim", "4294967295", KVTC_ERR_CORRUPT},
        {"rope_type", "rotary", KVTC_ERR_CORRUPT},
        {"rope_theta", "nan", KVTC_ERR_CORRUPT},
        {"rope_theta", "inf", KVTC_ERR_CORRUPT},
        {"rope_theta", "-5", KVTC_ERR_CORRUPT},
        {"rope_theta", "1e999", KVTC_ERR_CORRUPT},
        {"rope_theta", "", KVTC_ERR_CORRUPT},
        {"recompute_layers", "2", KVTC_ERR_CORRUPT},
        {"recompute_layers", "4294967295", KVTC_ERR_CORRUPT},
        {"rope_removed", "2", KVTC_ERR_CORRUPT},
        {"transform_fingerprint", "0000000000000000", KVTC_ERR_CORRUPT},
        {"transform_fingerprint", "", KVTC_ERR_CORRUPT},
        {"n_plans", "65", KVTC_ERR_CORRUPT},
        {"n_plans", "4294967295", KVTC_ERR_CORRUPT},
        {"n_plans", "4", KVTC_ERR_CORRUPT},
        {"plan.0.ratio", "0", KVTC_ERR_CORRUPT},
        {"plan.0.ratio", "-4", KVTC_ERR_CORRUPT},
        {"plan.0.ratio", "nan", KVTC_ERR_CORRUPT},
        {"plan.0.k", "", KVTC_ERR_CORRUPT},
        {"plan.0.k", "64:9", KVTC_ERR_CORRUPT},
        {"plan.0.k", "64:0,", KVTC_ERR_CORRUPT},
        {"plan.0.k", "63:0", KVTC_ERR_CORRUPT},
        {"plan.0.k", "65:0", KVTC_ERR_CORRUPT},
        {"plan.0.k", "4294967296:0", KVTC_ERR_CORRUPT},
        {"plan.0.k", "18446744073709551615:0", KVTC_ERR_CORRUPT},
        {"plan.0.k", "32:4,32:0", KVTC_ERR_CORRUPT}, /* quantized groups only 16/64/256/1024 */
        {"plan.0.k", "0:0,64:0", KVTC_ERR_CORRUPT},
        /* valid plans, but not the ones the content hash covers */
        {"plan.0.k", "64:16", KVTC_ERR_CORRUPT},
        {"plan.0.k", "64:0", KVTC_ERR_CORRUPT},
        {"plan.0.k_error", "x", KVTC_ERR_CORRUPT},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        kvtc_result r;
        if (!strcmp(m[i].value, "2147483648")) {
            /* two keys at once: n_layers = n_kv_heads = 2^31, head_dim 4 */
            size_t n1 = 0, n2 = 0, n3 = 0;
            uint8_t *b1 = basis_variant(good, gn, "n_layers", "2147483648", NULL, 0, 0, &n1);
            uint8_t *b2 = basis_variant(b1, n1, "n_kv_heads", "2147483648", NULL, 0, 0, &n2);
            uint8_t *b3 = basis_variant(b2, n2, "head_dim", "4", NULL, 0, 0, &n3);
            uint8_t *b4 = NULL;
            size_t n4 = 0;
            b4 = basis_variant(b3, n3, "rope_dim", "4", NULL, 0, 0, &n4);
            kvtc_basis *x = NULL;
            r = kvtc_basis_load(b4, n4, &x);
            kvtc_basis_free(x);
            free(b1); free(b2); free(b3); free(b4);
        } else {
            r = load_variant(good, gn, m[i].key, m[i].value, NULL, 0, 0);
        }
        CHECK_MSG(r == m[i].want, "basis %s = '%s': %s, want %s", m[i].key, m[i].value, kvtc_result_string(r),
                  kvtc_result_string(m[i].want));
    }
    /* truncated basis files */
    int bad = 0;
    for (size_t len = 0; len < gn; len += (len < 2000 ? 1 : 61)) {
        kvtc_basis *x = NULL;
        if (kvtc_basis_load(good, len, &x) != KVTC_ERR_TRUNCATED) bad++;
        kvtc_basis_free(x);
    }
    CHECK_MSG(bad == 0, "%d truncated bases gave another code", bad);
    free(good);
}

/* ---- empty and short caches ------------------------------------------------- */

static void test_short_caches(void) {
    const uint64_t lens[] = {0, 1, 2, 5, 19, 20, 21};
    for (int dt = 0; dt < 3; dt++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
            for (int with_pos = 0; with_pos < 2; with_pos++) {
                uint64_t n = lens[li];
                int64_t pos[32];
                for (uint64_t t = 0; t < n; t++) pos[t] = 7 - 3 * (int64_t)t;
                synth_params sp;
                synth_params_init(&sp, &G, (kvtc_dtype)dt, n);
                sp.positions = with_pos ? pos : NULL;
                synth_cache sc;
                CHECK(synth_make(&sp, &sc) == 0);
                if (n == 0) { free(sc.c.k); free(sc.c.v); sc.c.k = sc.c.v = NULL; }
                kvtc_encode_options eo;
                kvtc_encode_options_init(&eo);
                eo.n_sink = 4;
                eo.n_window = 16;
                uint8_t *s = NULL;
                size_t sn = 0;
                kvtc_result r = synth_compress(BASIS, &eo, &sc.c, &s, &sn);
                CHECK_MSG(r == KVTC_OK, "n %llu dtype %d: %s", (unsigned long long)n, dt, kvtc_result_string(r));
                kvtc_stream_info info = {.struct_size = sizeof info};
                CHECK(kvtc_stream_get_info(s, sn, &info) == KVTC_OK);
                CHECK(info.n_tokens == n);
                CHECK(info.n_coded_tokens == (n > 20 ? n - 20 : 0));
                CHECK(info.n_sink + info.n_window == (n > 20 ? 20 : n));
                kvtc_decoder *d = NULL;
                CHECK(kvtc_decoder_alloc(BASIS, NULL, &d) == KVTC_OK);
                kvtc_cache o;
                CHECK(synth_alloc_like(&G, (kvtc_dtype)dt, n, 1, &o) == 0);
                if (n == 0) { free(o.k); free(o.v); o.k = o.v = NULL; }
                CHECK(kvtc_decompress(d, s, sn, &o) == KVTC_OK);
                for (uint64_t t = 0; t < n; t++) {
                    if (t < info.n_sink || t >= n - info.n_window) CHECK(synth_token_equal(&sc.c, &o, t));
                    CHECK(o.positions[t] == (with_pos ? pos[t] : (int64_t)t));
                }
                synth_cache_free(&o);
                kvtc_decoder_free(d);
                free(s);
                synth_free(&sc);
            }
}

/* ---- another model's basis, mismatched caches --------------------------------- */

static void test_mismatch(void) {
    size_t n;
    uint8_t *s = make_stream(KVTC_CODEC_DEFLATE, &n);
    static const double ratios[2] = {4.0, 8.0};
    /* same geometry, other calibration data ("another fine-tune") */
    synth_params sp;
    synth_params_init(&sp, &G, KVTC_DTYPE_F32, 120);
    sp.model_seed = 99;
    kvtc_basis *other = NULL;
    CHECK(synth_calibrate(&sp, 2, 4, 16, ratios, 2, &other) == KVTC_OK);
    /* another geometry */
    kvtc_geometry g2 = synth_geometry(1, 4, 16, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp2;
    synth_params_init(&sp2, &g2, KVTC_DTYPE_F32, 120);
    kvtc_basis *geo2 = NULL;
    CHECK(synth_calibrate(&sp2, 2, 4, 16, ratios, 2, &geo2) == KVTC_OK);
    kvtc_basis *bases[2] = {other, geo2};
    for (int i = 0; i < 2; i++) {
        kvtc_decoder *d = NULL;
        CHECK(kvtc_decoder_alloc(bases[i], NULL, &d) == KVTC_OK);
        kvtc_cache o;
        CHECK(synth_alloc_like(&G, KVTC_DTYPE_F32, N_TOK, 0, &o) == 0);
        CHECK(kvtc_decompress(d, s, n, &o) == KVTC_ERR_BASIS_MISMATCH);
        synth_cache_free(&o);
        kvtc_decoder_free(d);
    }
    /* encoding a cache of another geometry */
    synth_params sp3;
    synth_params_init(&sp3, &g2, KVTC_DTYPE_F32, 30);
    synth_cache sc;
    CHECK(synth_make(&sp3, &sc) == 0);
    kvtc_encoder *e = NULL;
    CHECK(kvtc_encoder_alloc(BASIS, NULL, &e) == KVTC_OK);
    uint8_t tmp[64];
    size_t w = 0;
    CHECK(kvtc_compress(e, &sc.c, tmp, sizeof tmp, &w) == KVTC_ERR_GEOMETRY_MISMATCH);
    CHECK(kvtc_compress_bound(e, &sc.c) == 0);
    kvtc_encoder_free(e);
    synth_free(&sc);
    /* output caches that differ from the stream */
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(BASIS, NULL, &d) == KVTC_OK);
    kvtc_cache o;
    CHECK(synth_alloc_like(&g2, KVTC_DTYPE_F32, N_TOK, 0, &o) == 0);
    CHECK(kvtc_decompress(d, s, n, &o) == KVTC_ERR_GEOMETRY_MISMATCH);
    synth_cache_free(&o);
    CHECK(synth_alloc_like(&G, KVTC_DTYPE_F16, N_TOK, 0, &o) == 0);
    CHECK(kvtc_decompress(d, s, n, &o) == KVTC_ERR_GEOMETRY_MISMATCH);
    synth_cache_free(&o);
    CHECK(synth_alloc_like(&G, KVTC_DTYPE_F32, N_TOK - 1, 0, &o) == 0);
    CHECK(kvtc_decompress(d, s, n, &o) == KVTC_ERR_GEOMETRY_MISMATCH);
    synth_cache_free(&o);
    kvtc_decoder_free(d);
    kvtc_basis_free(other);
    kvtc_basis_free(geo2);
    free(s);
}

int main(void) {
    G = synth_geometry(2, 2, 16, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &G, KVTC_DTYPE_F32, 160);
    static const double ratios[3] = {2.0, 4.0, 8.0};
    CHECK(synth_calibrate(&sp, 2, 4, 16, ratios, 3, &BASIS) == KVTC_OK);
    if (!BASIS) return TEST_REPORT();
    for (int c = 0; c < 2; c++) {
        uint32_t codec = c ? KVTC_CODEC_RANS : KVTC_CODEC_DEFLATE;
        size_t n;
        uint8_t *s = make_stream(codec, &n);
        CHECK(try_decode(s, n) == KVTC_OK);
        test_header_fields(s, n, codec);
        test_section_table(s, n);
        test_chunk_index(s, n);
        test_truncation(s, n);
        free(s);
    }
    test_cache_file_overflow();
    test_basis();
    test_short_caches();
    test_mismatch();
    kvtc_basis_free(BASIS);
    return TEST_REPORT();
}
