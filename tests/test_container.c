/* test_container.c - rejection of bad input: truncated and corrupted
 * streams (every byte offset), tampered fields with their checksums fixed
 * up (never OK unless the decode is identical), bad magic and versions,
 * basis/geometry mismatches, NaN inputs, corrupted and tampered basis
 * files; plus *_free(NULL) and kvtc_result_string. Every case runs on an
 * exact-size copy so that ASan sees any read past the input. */
#include <libdeflate.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/basis.h"
#include "synth.h"
#include "test.h"
#include "util/endian.h"
#include "util/result.h"

#define N_TOK 100
#define CHUNK 32

static kvtc_basis *g_basis;          /* calibrated on model seed 1234 */
static kvtc_geometry g_geo;
static uint8_t *g_stream;            /* valid stream of g_cache */
static size_t g_size;
static kvtc_stream_info g_info;
static uint8_t *g_ref_k, *g_ref_v;   /* reference decode */
static int64_t g_ref_pos[N_TOK];
static kvtc_decoder *g_dec;

static int g_nonfinite; /* set by try_decode: an OK decode produced NaN/Inf */

static int is_trunc_or_corrupt(kvtc_result r) { return r == KVTC_ERR_TRUNCATED || r == KVTC_ERR_CORRUPT; }

/* get_info + decompress on an exact-size copy of buf[0..size). Returns the
 * first non-OK result, or OK; *same = 1 when it decoded to the reference. */
static kvtc_result try_decode(const uint8_t *buf, size_t size, int *same, kvtc_result *info_r) {
    uint8_t *copy = malloc(size ? size : 1);
    if (size) memcpy(copy, buf, size);
    kvtc_stream_info in = {.struct_size = sizeof in};
    kvtc_result r = kvtc_stream_get_info(copy, size, &in);
    if (info_r) *info_r = r;
    if (same) *same = 0;
    kvtc_cache out;
    /* decode into a cache shaped like the valid stream, whatever the header says */
    synth_alloc_like(&g_geo, g_info.dtype, g_info.n_tokens, 1, &out);
    kvtc_result rd = kvtc_decompress(g_dec, copy, size, &out);
    if (r == KVTC_OK) r = rd;
    else if (rd == KVTC_OK) r = KVTC_ERR_INVALID_ARGUMENT + 1000; /* info failed, decode passed: inconsistent */
    g_nonfinite = 0;
    if (r == KVTC_OK)
        for (uint64_t i = 0; i < g_info.k_bytes / 2; i++) {
            float a = kvi_f16_to_f32(((uint16_t *)out.k)[i]), b = kvi_f16_to_f32(((uint16_t *)out.v)[i]);
            if (!isfinite(a) || !isfinite(b)) { g_nonfinite = 1; break; }
        }
    if (r == KVTC_OK && same)
        *same = memcmp(out.k, g_ref_k, (size_t)g_info.k_bytes) == 0 &&
                memcmp(out.v, g_ref_v, (size_t)g_info.v_bytes) == 0 &&
                memcmp(out.positions, g_ref_pos, sizeof g_ref_pos) == 0;
    synth_cache_free(&out);
    free(copy);
    return r;
}

static void fix_header_crc(uint8_t *b) { kvi_store_u32(b + 124, libdeflate_crc32(0, b, 124)); }
static void fix_table_crc(uint8_t *b) {
    kvi_store_u32(b + 108, libdeflate_crc32(0, b + 128, 6 * 24));
    fix_header_crc(b);
}
/* section s's CRC in the table, then the table and header CRCs */
static void fix_section_crc(uint8_t *b, int s) {
    uint8_t *e = b + 128 + 24 * s;
    uint64_t off = kvi_load_u64(e), size = kvi_load_u64(e + 8);
    kvi_store_u32(e + 16, libdeflate_crc32(0, b + off, (size_t)size));
    fix_table_crc(b);
}

static void setup(uint32_t codec) {
    g_geo = synth_geometry(2, 1, 32, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g_geo, KVTC_DTYPE_F16, 300);
    const double ratios[2] = {8, 16};
    if (!g_basis) CHECK(synth_calibrate(&sp, 2, 4, 16, ratios, 2, &g_basis) == KVTC_OK);
    int64_t pos[N_TOK];
    for (int t = 0; t < N_TOK; t++) pos[t] = 5000 + 3 * t;
    synth_params tp = sp;
    tp.n_tokens = N_TOK;
    tp.positions = pos;
    tp.data_seed = 77;
    synth_cache sc;
    CHECK(synth_make(&tp, &sc) == 0);
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = 16; /* a stored plan: the stream has no plan section */
    eo.n_sink = 4;
    eo.n_window = 16;
    eo.chunk_tokens = CHUNK;
    eo.entropy_codec = codec;
    CHECK(synth_compress(g_basis, &eo, &sc.c, &g_stream, &g_size) == KVTC_OK);
    g_info.struct_size = sizeof g_info;
    CHECK(kvtc_stream_get_info(g_stream, g_size, &g_info) == KVTC_OK);
    CHECK(g_info.n_chunks == 3 && g_info.has_positions && g_info.entropy_codec == codec);
    CHECK(kvtc_decoder_alloc(g_basis, NULL, &g_dec) == KVTC_OK);
    kvtc_cache out;
    CHECK(synth_alloc_like(&g_geo, KVTC_DTYPE_F16, N_TOK, 1, &out) == 0);
    CHECK(kvtc_decompress(g_dec, g_stream, g_size, &out) == KVTC_OK);
    g_ref_k = out.k;
    g_ref_v = out.v;
    memcpy(g_ref_pos, out.positions, sizeof g_ref_pos);
    CHECK(memcmp(g_ref_pos, pos, sizeof pos) == 0);
    free(out.positions);
    synth_free(&sc);
    int same = 0;
    CHECK(try_decode(g_stream, g_size, &same, NULL) == KVTC_OK && same);
}

/* ---- streams -------------------------------------------------------------- */

static void test_truncation(void) {
    int bad = 0;
    for (size_t n = 0; n < g_size; n++) {
        kvtc_result ri;
        kvtc_result r = try_decode(g_stream, n, NULL, &ri);
        /* an empty buffer carries no magic at all: BAD_MAGIC is fair there */
        int ok = n == 0 ? (is_trunc_or_corrupt(r) || r == KVTC_ERR_BAD_MAGIC) : is_trunc_or_corrupt(r);
        if (!ok) {
            if (bad++ < 5) fprintf(stderr, "  truncated to %zu: %s\n", n, kvtc_result_string(r));
        }
    }
    CHECK_MSG(bad == 0, "%d truncations not rejected as TRUNCATED/CORRUPT (stream %zu bytes)", bad, g_size);
    /* trailing garbage after a valid stream is ignored (the size is in the header) */
    uint8_t *longer = malloc(g_size + 7);
    memcpy(longer, g_stream, g_size);
    memset(longer + g_size, 0xEE, 7);
    int same = 0;
    CHECK(try_decode(longer, g_size + 7, &same, NULL) == KVTC_OK && same);
    free(longer);
}

static void test_flips(void) {
    uint8_t *b = malloc(g_size);
    int accepted = 0;
    const uint8_t masks[3] = {0xFF, 0x01, 0x80};
    for (size_t i = 0; i < g_size; i++)
        for (int m = 0; m < 3; m++) {
            memcpy(b, g_stream, g_size);
            b[i] ^= masks[m];
            kvtc_result r = try_decode(b, g_size, NULL, NULL);
            if (r == KVTC_OK) {
                if (accepted++ < 5) fprintf(stderr, "  flip of byte %zu (^%02x) accepted\n", i, masks[m]);
            }
        }
    CHECK_MSG(accepted == 0, "%d single-byte corruptions decoded as OK (stream %zu bytes)", accepted, g_size);
    free(b);
}

/* Tamper with every byte of the header, the table and the chunk index with
 * the checksums fixed up: never a crash, and a stream accepted must decode to
 * exactly the reference (fields that do not affect decoding: minor version,
 * the informative plan ratio). */
static void test_tamper_fixed_crc(void) {
    uint8_t *b = malloc(g_size);
    int silent = 0, accepted = 0;
    uint64_t idx_off = kvi_load_u64(g_stream + 128 + 24 * 4), idx_size = kvi_load_u64(g_stream + 128 + 24 * 4 + 8);
    CHECK(idx_size == 24ull * g_info.n_chunks);
    for (int region = 0; region < 3; region++) {
        size_t lo = region == 0 ? 0 : region == 1 ? 128 : (size_t)idx_off;
        size_t hi = region == 0 ? 124 : region == 1 ? 128 + 6 * 24 : (size_t)(idx_off + idx_size);
        for (size_t i = lo; i < hi; i++) {
            if (region == 0 && i == 108) i = 112; /* the table CRC is re-fixed anyway */
            for (int m = 0; m < 2; m++) {
                memcpy(b, g_stream, g_size);
                b[i] ^= m ? 0x01 : 0xFF;
                if (region == 0) fix_header_crc(b);
                else if (region == 1) fix_table_crc(b);
                else fix_section_crc(b, 4);
                int same = 0;
                kvtc_result r = try_decode(b, g_size, &same, NULL);
                if (r == KVTC_OK) {
                    if (getenv("KVTC_TEST_VERBOSE")) fprintf(stderr, "  accepted: region %d byte %zu mask %d\n", region, i, m);
                    accepted++;
                    if (!same) {
                        if (silent++ < 5) fprintf(stderr, "  region %d byte %zu ^%s: decoded OK to different data\n",
                                                  region, i, m ? "01" : "ff");
                    }
                }
            }
        }
    }
    CHECK_MSG(silent == 0, "%d tampered streams decoded OK to other data", silent);
    printf("tamper with fixed CRCs: %d accepted, all decoding identically\n", accepted);
    free(b);
}

/* Corrupt the entropy-coded chunk bytes and fix up the chunk's CRC: the
 * entropy decoder itself sees hostile input. It may decode (the data are
 * then "valid" by construction) or fail, but must never crash or read/write
 * out of bounds (run under ASan). */
static void test_chunk_fuzz(void) {
    uint8_t *b = malloc(g_size);
    const uint8_t *tab = g_stream + 128;
    uint64_t idx_off = kvi_load_u64(tab + 24 * 4), data_off = kvi_load_u64(tab + 24 * 5);
    uint64_t data_size = kvi_load_u64(tab + 24 * 5 + 8);
    int ok = 0, failed = 0, bad_code = 0, nonfinite = 0;
    for (uint64_t i = 0; i < data_size; i++)
        for (int m = 0; m < 2; m++) {
            memcpy(b, g_stream, g_size);
            b[data_off + i] ^= m ? 0x10 : 0xFF;
            for (uint32_t c = 0; c < g_info.n_chunks; c++) {
                uint8_t *e = b + idx_off + 24ull * c;
                uint64_t off = kvi_load_u64(e);
                uint32_t size = kvi_load_u32(e + 8);
                if (i >= off && i < off + size) kvi_store_u32(e + 12, libdeflate_crc32(0, b + data_off + off, size));
            }
            fix_section_crc(b, 4);
            kvtc_result r = try_decode(b, g_size, NULL, NULL);
            if (r == KVTC_OK) { ok++; nonfinite += g_nonfinite; }
            else if (r == KVTC_ERR_CORRUPT) failed++;
            else bad_code++;
        }
    CHECK_MSG(bad_code == 0, "%d corrupt chunks (valid CRC) gave a code other than CORRUPT", bad_code);
    printf("chunk bytes tampered with fixed CRC: %d decoded (%d of them to NaN/Inf), %d CORRUPT\n", ok, nonfinite,
           failed);
    free(b);
}

static void test_magic_version(void) {
    uint8_t *b = malloc(g_size);
    kvtc_stream_info in = {.struct_size = sizeof in};
    kvtc_cache out;
    synth_alloc_like(&g_geo, g_info.dtype, N_TOK, 0, &out);
    for (int i = 0; i < 8; i++) {
        memcpy(b, g_stream, g_size);
        b[i] ^= 0x20;
        CHECK(kvtc_stream_get_info(b, g_size, &in) == KVTC_ERR_BAD_MAGIC);
        CHECK(kvtc_decompress(g_dec, b, g_size, &out) == KVTC_ERR_BAD_MAGIC);
    }
    /* a basis file or any text is not a stream */
    size_t bn = 0;
    void *bb = synth_basis_bytes(g_basis, &bn);
    CHECK(kvtc_stream_get_info(bb, bn, &in) == KVTC_ERR_BAD_MAGIC);
    free(bb);
    CHECK(kvtc_stream_get_info("hello world, not kvtc", 21, &in) == KVTC_ERR_BAD_MAGIC);
    CHECK(kvtc_stream_get_info("\x89KVT", 4, &in) == KVTC_ERR_TRUNCATED);
    CHECK(kvtc_stream_get_info("\x89KVTC\r\n\x1a", 8, &in) == KVTC_ERR_TRUNCATED);

    /* major version 2 with a valid header CRC */
    memcpy(b, g_stream, g_size);
    kvi_store_u16(b + 8, 2);
    fix_header_crc(b);
    CHECK(kvtc_stream_get_info(b, g_size, &in) == KVTC_ERR_UNSUPPORTED_VERSION);
    CHECK(kvtc_decompress(g_dec, b, g_size, &out) == KVTC_ERR_UNSUPPORTED_VERSION);
    kvi_store_u16(b + 8, 0);
    fix_header_crc(b);
    CHECK(kvtc_stream_get_info(b, g_size, &in) == KVTC_ERR_UNSUPPORTED_VERSION);
    /* ...and without fixing the CRC it is still not accepted */
    memcpy(b, g_stream, g_size);
    kvi_store_u16(b + 8, 2);
    CHECK(kvtc_stream_get_info(b, g_size, &in) != KVTC_OK);
    /* a newer minor version of the same major is read */
    memcpy(b, g_stream, g_size);
    kvi_store_u16(b + 10, KVTC_FORMAT_VERSION_MINOR + 1);
    fix_header_crc(b);
    int same = 0;
    CHECK(try_decode(b, g_size, &same, NULL) == KVTC_OK && same);
    CHECK(kvtc_stream_get_info(b, g_size, &in) == KVTC_OK && in.version_minor == KVTC_FORMAT_VERSION_MINOR + 1);
    synth_cache_free(&out);
    free(b);
}

static void test_mismatch(void) {
    kvtc_stream_info in = {.struct_size = sizeof in};
    CHECK(kvtc_stream_get_info(g_stream, g_size, &in) == KVTC_OK);
    kvtc_cache out;
    const double ratios[2] = {8, 16};

    /* a basis calibrated on other data (another "model") */
    synth_params sp;
    synth_params_init(&sp, &g_geo, KVTC_DTYPE_F16, 300);
    sp.model_seed = 999;
    kvtc_basis *other = NULL;
    CHECK(synth_calibrate(&sp, 2, 4, 16, ratios, 2, &other) == KVTC_OK);
    CHECK(kvtc_basis_fingerprint(other) != kvtc_basis_fingerprint(g_basis));
    kvtc_decoder *d = NULL;
    CHECK(kvtc_decoder_alloc(other, NULL, &d) == KVTC_OK);
    synth_alloc_like(&g_geo, in.dtype, in.n_tokens, 0, &out);
    CHECK(kvtc_decompress(d, g_stream, g_size, &out) == KVTC_ERR_BASIS_MISMATCH);
    kvtc_decoder_free(d);
    kvtc_basis_free(other);

    /* the same transform without the stream's plan: the plan lookup fails */
    synth_params_init(&sp, &g_geo, KVTC_DTYPE_F16, 300);
    const double only8[1] = {8};
    kvtc_basis *b8 = NULL;
    CHECK(synth_calibrate(&sp, 2, 4, 16, only8, 1, &b8) == KVTC_OK);
    printf("basis with plan 8x only: same transform fingerprint: %s\n",
           kvtc_basis_fingerprint(b8) == kvtc_basis_fingerprint(g_basis) ? "yes" : "no");
    CHECK(kvtc_decoder_alloc(b8, NULL, &d) == KVTC_OK);
    CHECK(kvtc_decompress(d, g_stream, g_size, &out) == KVTC_ERR_BASIS_MISMATCH);
    kvtc_decoder_free(d);
    kvtc_basis_free(b8);
    synth_cache_free(&out);

    /* output caches of the wrong shape */
    struct {
        kvtc_geometry g;
        kvtc_dtype dt;
        uint64_t n;
    } bad[] = {
        {synth_geometry(3, 1, 32, KVTC_ROPE_NORM, 0, 10000.0f), KVTC_DTYPE_F16, N_TOK},
        {synth_geometry(2, 2, 32, KVTC_ROPE_NORM, 0, 10000.0f), KVTC_DTYPE_F16, N_TOK},
        {synth_geometry(2, 1, 16, KVTC_ROPE_NORM, 0, 10000.0f), KVTC_DTYPE_F16, N_TOK},
        {synth_geometry(2, 1, 32, KVTC_ROPE_NEOX, 0, 10000.0f), KVTC_DTYPE_F16, N_TOK},
        {synth_geometry(2, 1, 32, KVTC_ROPE_NORM, 16, 10000.0f), KVTC_DTYPE_F16, N_TOK},
        {synth_geometry(2, 1, 32, KVTC_ROPE_NORM, 0, 500000.0f), KVTC_DTYPE_F16, N_TOK},
        {synth_geometry(2, 1, 32, KVTC_ROPE_NORM, 0, 10000.0f), KVTC_DTYPE_BF16, N_TOK},
        {synth_geometry(2, 1, 32, KVTC_ROPE_NORM, 0, 10000.0f), KVTC_DTYPE_F32, N_TOK},
        {synth_geometry(2, 1, 32, KVTC_ROPE_NORM, 0, 10000.0f), KVTC_DTYPE_F16, N_TOK - 1},
        {synth_geometry(2, 1, 32, KVTC_ROPE_NORM, 0, 10000.0f), KVTC_DTYPE_F16, N_TOK + 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(synth_alloc_like(&bad[i].g, bad[i].dt, bad[i].n, 0, &out) == 0);
        kvtc_result r = kvtc_decompress(g_dec, g_stream, g_size, &out);
        CHECK_MSG(r == KVTC_ERR_GEOMETRY_MISMATCH, "bad output cache %zu: %s", i, kvtc_result_string(r));
        synth_cache_free(&out);
    }
    /* NULL tensors in a non-empty output */
    synth_alloc_like(&g_geo, in.dtype, in.n_tokens, 0, &out);
    void *k = out.k;
    out.k = NULL;
    CHECK(kvtc_decompress(g_dec, g_stream, g_size, &out) == KVTC_ERR_INVALID_ARGUMENT);
    out.k = k;
    CHECK(kvtc_decompress(NULL, g_stream, g_size, &out) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_decompress(g_dec, NULL, g_size, &out) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_decompress(g_dec, g_stream, g_size, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    synth_cache_free(&out);

    /* compressing a cache whose geometry differs from the basis' */
    kvtc_encoder *e = NULL;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.n_sink = 4;
    eo.n_window = 16;
    CHECK(kvtc_encoder_alloc(g_basis, &eo, &e) == KVTC_OK);
    for (size_t i = 0; i < 6; i++) {
        synth_params q;
        synth_params_init(&q, &bad[i].g, KVTC_DTYPE_F16, 200);
        synth_cache sc;
        CHECK(synth_make(&q, &sc) == 0);
        uint8_t *buf = malloc(1 << 20);
        size_t w = 0;
        CHECK(kvtc_compress_bound(e, &sc.c) == 0);
        kvtc_result r = kvtc_compress(e, &sc.c, buf, 1 << 20, &w);
        CHECK_MSG(r == KVTC_ERR_GEOMETRY_MISMATCH, "compress with geometry %zu: %s", i, kvtc_result_string(r));
        free(buf);
        synth_free(&sc);
    }

    /* NaN / Inf in coded tokens -> NUMERIC (for every dtype) */
    const kvtc_dtype dts[3] = {KVTC_DTYPE_F32, KVTC_DTYPE_F16, KVTC_DTYPE_BF16};
    for (int di = 0; di < 3; di++)
        for (int kind = 0; kind < 3; kind++) {
            synth_params q;
            synth_params_init(&q, &g_geo, dts[di], 120);
            synth_cache sc;
            CHECK(synth_make(&q, &sc) == 0);
            /* token 50 (coded), layer 1, dim 7, keys or values */
            uint64_t off = ((1ull * 1 + 0) * 120 + 50) * 32 + 7;
            double bad_val = kind == 0 ? NAN : kind == 1 ? INFINITY : -INFINITY;
            synth_store(kind == 2 ? sc.c.v : sc.c.k, dts[di], off, bad_val);
            size_t cap = 1 << 20, w = 0;
            uint8_t *buf = malloc(cap);
            kvtc_result r = kvtc_compress(e, &sc.c, buf, cap, &w);
            CHECK_MSG(r == KVTC_ERR_NUMERIC, "non-finite (dtype %d kind %d): %s", di, kind, kvtc_result_string(r));
            CHECK(kvtc_compress_bound(e, &sc.c) > 0); /* the bound does not scan values */
            free(buf);
            synth_free(&sc);
        }
    kvtc_encoder_free(e);
}

/* ---- basis files ----------------------------------------------------------- */

/* Rebuild a basis file with metadata key `key` set to `value` (NULL: removed). */
static void *retag_basis(const void *src, size_t n, const char *key, const char *value, size_t *out_n) {
    st_file f;
    if (st_parse(src, n, &f)) return NULL;
    st_writer *w = st_writer_alloc();
    int found = 0;
    for (uint32_t i = 0; i < f.n_meta; i++) {
        if (!strcmp(f.meta[i].key, key)) {
            found = 1;
            if (value) st_writer_add_meta(w, key, value);
        } else {
            st_writer_add_meta(w, f.meta[i].key, f.meta[i].value);
        }
    }
    if (!found && value) st_writer_add_meta(w, key, value);
    /* tensor data are unaligned in the parsed buffer: copy them */
    void **copies = calloc(f.n_tensors + 1, sizeof(void *));
    for (uint32_t i = 0; i < f.n_tensors; i++) {
        const st_tensor *t = &f.tensors[i];
        copies[i] = malloc(t->nbytes + 1);
        memcpy(copies[i], t->data, t->nbytes);
        st_writer_add_tensor(w, t->name, t->dtype, t->n_dims, t->shape, copies[i]);
    }
    size_t sz = st_writer_size(w);
    void *buf = malloc(sz);
    if (st_writer_write(w, buf, sz, out_n)) { free(buf); buf = NULL; }
    st_writer_free(w);
    for (uint32_t i = 0; i < f.n_tensors; i++) free(copies[i]);
    free(copies);
    st_file_free(&f);
    return buf;
}

static kvtc_result load_bytes(const void *buf, size_t n) {
    uint8_t *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, buf, n);
    kvtc_basis *b = (kvtc_basis *)(uintptr_t)1;
    kvtc_result r = kvtc_basis_load(copy, n, &b);
    if (r == KVTC_OK) kvtc_basis_free(b);
    else if (b != NULL) r = (kvtc_result)-1; /* *out must be NULL on failure */
    free(copy);
    return r;
}

static void test_basis_files(void) {
    size_t n = 0;
    uint8_t *bytes = synth_basis_bytes(g_basis, &n);
    CHECK(bytes != NULL && load_bytes(bytes, n) == KVTC_OK);
    uint64_t hdr = kvi_load_u64(bytes);
    size_t data_start = (size_t)(8 + hdr);
    CHECK(data_start < n);

    /* every truncation of the header; a stride through the data */
    int bad = 0;
    for (size_t len = 0; len < n; len += len < data_start + 64 ? 1 : 97) {
        if (load_bytes(bytes, len) == KVTC_OK) bad++;
    }
    CHECK_MSG(bad == 0, "%d truncated basis files loaded", bad);

    /* flipped bytes: every JSON byte, and a sample of the tensor data */
    /* Where the eigenvalue tensors lie: mean, weight and basis enter the
     * transform fingerprint, the eigenvalues do not. */
    size_t ev[2][2] = {{0, 0}, {0, 0}};
    {
        st_file f;
        CHECK(st_parse(bytes, n, &f) == KVTC_OK);
        int k = 0;
        for (uint32_t i = 0; i < f.n_tensors && k < 2; i++)
            if (strstr(f.tensors[i].name, "eigenvalues")) {
                ev[k][0] = (size_t)((const uint8_t *)f.tensors[i].data - bytes);
                ev[k][1] = ev[k][0] + (size_t)f.tensors[i].nbytes;
                k++;
            }
        st_file_free(&f);
    }
    /* bytes of the "plan.N.x":"value" entries of the JSON header */
    uint8_t *in_plan = calloc(n, 1);
    for (size_t i = 8; i + 6 < data_start; i++) {
        if (memcmp(bytes + i, "\"plan.", 6) != 0) continue;
        size_t j = i + 1, quotes = 1;
        while (j < data_start && quotes < 4) quotes += bytes[j++] == '"';
        memset(in_plan + i, 1, j - i);
        i = j - 1;
    }
    uint8_t *b = malloc(n);
    /* accepted flips by where they hit: 0 plan metadata (ratio, groups,
     * expected errors), 1 other JSON, 2 eigenvalues, 3 other tensor data */
    int accepted[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < n; i += i < data_start ? 1 : 3) {
        memcpy(b, bytes, n);
        b[i] ^= 0x01;
        if (load_bytes(b, n) != KVTC_OK) continue;
        int cat;
        if (i < data_start) {
            cat = in_plan[i] ? 0 : 1;
            if (cat == 1 || accepted[cat] < 3) {
                size_t s0 = i > 24 ? i - 24 : 0;
                fprintf(stderr, "  basis JSON flip at %zu loads OK: ...%.*s...\n", i, 48, (const char *)b + s0);
            }
        } else {
            cat = (i >= ev[0][0] && i < ev[0][1]) || (i >= ev[1][0] && i < ev[1][1]) ? 2 : 3;
        }
        accepted[cat]++;
    }
    free(b);
    free(in_plan);
    /* Everything that defines the transform is covered by its fingerprint: */
    CHECK_MSG(accepted[1] == 0, "%d bit flips in the basis JSON (outside the plan entries) loaded OK", accepted[1]);
    CHECK_MSG(accepted[3] == 0, "%d bit flips in mean/weight/basis tensors loaded OK", accepted[3]);
    /* Regression guard (content_hash): a flipped bit in "plan.0.k" would
     * silently change the bit allocation, in "plan.0.ratio" which plan a
     * ratio selects, in "plan.0.k_error" the reported error, and in the
     * eigenvalues; kvtc.h promises the content checksum is verified. */
    CHECK_MSG(accepted[0] == 0, "%d bit flips in plan metadata (plan.N.ratio/k/v/k_error/v_error) loaded OK", accepted[0]);
    CHECK_MSG(accepted[2] == 0, "%d bit flips in the eigenvalue tensors loaded OK", accepted[2]);

    /* tampered metadata values: each must be refused (never a crash) */
    char pbuf[64], pbad[64];
    uint32_t p = (uint32_t)synth_p(&g_geo);
    snprintf(pbuf, sizeof pbuf, "%u:0", p - 1);         /* sums to p - 1 */
    snprintf(pbad, sizeof pbad, "16:4,%u:0", p);        /* sums to p + 16 */
    const struct {
        const char *key, *value;
    } bad_meta[] = {
        {"n_layers", "0"}, {"n_layers", "3"}, {"n_layers", "-2"}, {"n_layers", "2x"}, {"n_layers", ""},
        {"n_layers", "99999999999"}, {"n_layers", NULL}, {"n_kv_heads", "0"}, {"head_dim", "16"},
        {"head_dim", "0"}, {"rope_dim", "33"}, {"rope_dim", "31"}, {"rope_type", "yarn"}, {"rope_type", NULL},
        {"rope_theta", "0"}, {"rope_theta", "-1"}, {"rope_theta", "nan"}, {"rope_theta", "inf"},
        {"rope_theta", "1e400"}, {"rope_theta", "10000.5"}, {"recompute_layers", "2"}, {"recompute_layers", "1"},
        {"rope_removed", "2"}, {"rope_removed", "0"}, {"format", "kvtc-other"}, {"format", NULL},
        {"format_version", "3"}, {"format_version", "1"}, {"format_version", "0"}, {"transform_fingerprint", "0000000000000000"},
        {"transform_fingerprint", NULL}, {"n_plans", "3"}, {"n_plans", "65"}, {"n_plans", "-1"},
        {"plan.0.k", pbuf}, {"plan.0.k", pbad}, {"plan.0.k", ""}, {"plan.0.k", "0:4"}, {"plan.0.k", "32:4,32:0"},
        {"plan.0.k", "16:9,48:0"}, {"plan.0.k", "16:4,,48:0"}, {"plan.0.k", "16:4,48:0,"}, {"plan.0.k", "16:-4,48:0"},
        {"plan.0.k", "16:4;48:0"}, {"plan.0.k", "4294967312:4,48:0"}, {"plan.0.k", NULL}, {"plan.1.v", "64:17"},
        {"plan.0.ratio", "0"}, {"plan.0.ratio", "-8"}, {"plan.0.ratio", "nan"}, {"plan.0.ratio", "abc"},
        {"plan.0.ratio", NULL}, {"plan.1.k_error", "x"}, {"plan.1.k_error", "inf"}, {"plan.1.v_error", NULL},
    };
    for (size_t i = 0; i < sizeof bad_meta / sizeof bad_meta[0]; i++) {
        size_t tn = 0;
        void *t = retag_basis(bytes, n, bad_meta[i].key, bad_meta[i].value, &tn);
        CHECK(t != NULL);
        if (!t) continue;
        kvtc_result r = load_bytes(t, tn);
        CHECK_MSG(r != KVTC_OK && r != (kvtc_result)-1, "basis with %s=%s: %s", bad_meta[i].key,
                  bad_meta[i].value ? bad_meta[i].value : "(removed)", kvtc_result_string(r));
        free(t);
    }
    /* control: rewriting without changes loads */
    {
        size_t tn = 0;
        void *t = retag_basis(bytes, n, "format", "kvtc-basis", &tn);
        CHECK(t && load_bytes(t, tn) == KVTC_OK);
        free(t);
    }
    /* specific codes */
    {
        size_t tn = 0;
        void *t = retag_basis(bytes, n, "format_version", "3", &tn);
        CHECK(load_bytes(t, tn) == KVTC_ERR_UNSUPPORTED_VERSION);
        free(t);
        t = retag_basis(bytes, n, "format", "something-else", &tn);
        CHECK(load_bytes(t, tn) == KVTC_ERR_BAD_MAGIC);
        free(t);
    }

    /* invalid tensor values with a consistent fingerprint: weight 0, NaN mean,
     * Inf basis entry */
    for (int kind = 0; kind < 3; kind++) {
        kvtc_basis *c = NULL;
        CHECK(kvtc_basis_load(bytes, n, &c) == KVTC_OK);
        if (kind == 0) c->k.weight[3] = 0.0f;
        if (kind == 1) c->v.mean[5] = NAN;
        if (kind == 2) c->k.basis[7] = INFINITY;
        basis_update_fingerprints(c);
        size_t tn = 0;
        void *t = synth_basis_bytes(c, &tn);
        kvtc_basis_free(c);
        CHECK(t != NULL);
        if (!t) continue;
        kvtc_result r = load_bytes(t, tn);
        CHECK_MSG(r != KVTC_OK, "basis with invalid tensor values (kind %d) loaded", kind);
        free(t);
    }
    CHECK(load_bytes("", 0) != KVTC_OK);
    CHECK(load_bytes(g_stream, g_size) != KVTC_OK);
    kvtc_basis *bx = NULL;
    CHECK(kvtc_basis_load(NULL, 10, &bx) == KVTC_ERR_INVALID_ARGUMENT);
    CHECK(kvtc_basis_load(bytes, n, NULL) == KVTC_ERR_INVALID_ARGUMENT);
    free(bytes);
}

static void test_misc(void) {
    kvtc_basis_free(NULL);
    kvtc_calibrator_free(NULL);
    kvtc_encoder_free(NULL);
    kvtc_decoder_free(NULL);
    /* every *_free(NULL) above is a no-op: getting here is that test */
    const char *names[KVI_RESULT_COUNT + 1];
    for (int i = 0; i <= KVI_RESULT_COUNT; i++) {
        names[i] = kvtc_result_string((kvtc_result)i);
        CHECK(names[i] != NULL && names[i][0] != 0);
    }
    int distinct = 1;
    for (int i = 0; i < KVI_RESULT_COUNT; i++)
        for (int j = i + 1; j < KVI_RESULT_COUNT; j++) distinct &= strcmp(names[i], names[j]) != 0;
    CHECK_MSG(distinct, "kvtc_result_string must name every code differently");
    /* code KVI_RESULT_COUNT is unknown: named differently from every known code */
    for (int i = 0; i < KVI_RESULT_COUNT; i++) CHECK(strcmp(names[i], names[KVI_RESULT_COUNT]) != 0);
    CHECK(kvtc_dtype_size(KVTC_DTYPE_F32) == 4 && kvtc_dtype_size(KVTC_DTYPE_F16) == 2 &&
          kvtc_dtype_size(KVTC_DTYPE_BF16) == 2);
    CHECK(kvtc_basis_plan_count(NULL) == 0 && kvtc_basis_fingerprint(NULL) == 0 && kvtc_basis_geometry(NULL) == NULL);
    CHECK(kvtc_calibrator_rows(NULL) == 0);
    CHECK(kvtc_basis_serialized_size(NULL) == 0);
}

static void teardown_stream(void) {
    kvtc_decoder_free(g_dec);
    free(g_stream);
    free(g_ref_k);
    free(g_ref_v);
    g_dec = NULL;
    g_stream = NULL;
    g_ref_k = g_ref_v = NULL;
}

int main(void) {
    /* the stream sweeps run for every entropy codec; the rest once */
    const uint32_t codecs[] = {KVTC_CODEC_DEFLATE, KVTC_CODEC_RANS};
    for (int ci = 1; ci >= 0; ci--) {
        setup(codecs[ci]);
        if (!g_basis || !g_stream || !g_dec) return TEST_REPORT();
        printf("codec %u: stream %zu bytes, %u chunks\n", codecs[ci], g_size, g_info.n_chunks);
        test_truncation();
        test_flips();
        test_tamper_fixed_crc();
        test_chunk_fuzz();
        if (ci) teardown_stream();
    }
    test_magic_version();
    test_mismatch();
    test_basis_files();
    test_misc();
    teardown_stream();
    kvtc_basis_free(g_basis);
    return TEST_REPORT();
}
