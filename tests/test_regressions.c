/* test_regressions.c - inputs that once crashed or were wrongly accepted,
 * each fed as bytes and asserted to fail cleanly with a specific code.
 * One function per bug, named for what it guards; the input bytes are
 * spelled out so the test never depends on the fuzzers.
 *
 * geometry_product_wraps_64_bits: kvi_geometry_check computed
 *   n_layers * n_kv_heads * head_dim in 64 bits without bounding the
 *   factors, so 2^31 x 2^31 x 4 wrapped to 0 and passed the row-size limit.
 *   A cache file with that geometry (and no tokens) parsed as valid, a
 *   stream header with it passed validation with zero-size raw sections
 *   (k_bytes 0), and a decoder that matched it would have looped 2^62
 *   times in codec_raw_to_cache. Fixed in lib/util/cache.c (since moved to
 *   lib/util/cache_check.c: factors bounded by KVTC_MAX_ROW first);
 *   lib/format/basis.c now reports KVTC_ERR_TOO_LARGE
 *   for it as the cache file reader does. */
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/cache_file.h"
#include "kvtc.h"
#include "synth.h"
#include "test.h"

static void regression_geometry_product_wraps_64_bits_cache_file(void) {
    static const char json[] =
        "{\"k\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648,0,4],\"data_offsets\":[0,0]},"
        "\"v\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648,0,4],\"data_offsets\":[0,0]}}";
    size_t hl = sizeof json - 1, n = 8 + hl;
    uint8_t *b = malloc(n);
    uint64_t h = hl;
    memcpy(b, &h, 8);
    memcpy(b + 8, json, hl);
    cache_file cf;
    CHECK(cache_file_parse(b, n, &cf) == KVTC_ERR_TOO_LARGE);
    free(b);
    kvtc_geometry g = synth_geometry(1u << 31, 1u << 31, 4, KVTC_ROPE_NORM, 0, 10000.0f);
    CHECK(kvtc_cache_tensor_bytes(&g, KVTC_DTYPE_F32, 1) == 0);
    kvtc_calibrator *c = NULL;
    CHECK(kvtc_calibrator_alloc(&g, NULL, &c) == KVTC_ERR_TOO_LARGE);
    kvtc_calibrator_free(c);
}

static void regression_geometry_product_wraps_64_bits_stream_header(void) {
    kvtc_geometry g = synth_geometry(2, 2, 16, KVTC_ROPE_NORM, 0, 10000.0f);
    synth_params sp;
    synth_params_init(&sp, &g, KVTC_DTYPE_F32, 60);
    static const double ratios[1] = {4.0};
    kvtc_basis *b = NULL;
    CHECK(synth_calibrate(&sp, 1, 4, 16, ratios, 1, &b) == KVTC_OK);
    if (!b) return;
    /* an all-raw stream of 0 tokens: no sections but the (empty) raw ones */
    kvtc_cache empty;
    memset(&empty, 0, sizeof empty);
    empty.geometry = g;
    uint8_t *s = NULL;
    size_t n = 0;
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);
    eo.ratio = 4.0; /* the stored plan: no plan section */
    CHECK(synth_compress(b, &eo, &empty, &s, &n) == KVTC_OK && n == 272);
    if (s) {
        uint32_t v[4] = {1u << 31, 1u << 31, 4, 4}; /* n_layers, n_kv_heads, head_dim, rope_dim */
        memcpy(s + 20, v, sizeof v);
        uint32_t crc = (uint32_t)libdeflate_crc32(0, s, 124);
        memcpy(s + 124, &crc, 4);
        kvtc_stream_info info = {.struct_size = sizeof info};
        CHECK(kvtc_stream_get_info(s, n, &info) == KVTC_ERR_TOO_LARGE);
        kvtc_decoder *d = NULL;
        CHECK(kvtc_decoder_alloc(b, NULL, &d) == KVTC_OK);
        CHECK(kvtc_decompress(d, s, n, &empty) == KVTC_ERR_TOO_LARGE);
        kvtc_decoder_free(d);
    }
    free(s);

    /* the same geometry in basis metadata */
    size_t bn = 0;
    char *bb = synth_basis_bytes(b, &bn);
    CHECK(bb != NULL);
    if (bb) {
        {
            /* a new file: the JSON header with three values replaced */
            uint64_t hl;
            memcpy(&hl, bb, 8);
            size_t data_n = bn - 8 - (size_t)hl;
            char *json = malloc((size_t)hl + 64);
            memcpy(json, bb + 8, (size_t)hl);
            json[hl] = 0;
            char *out = malloc((size_t)hl + 128);
            const char *from[3] = {"\"n_layers\":\"2\"", "\"n_kv_heads\":\"2\"", "\"head_dim\":\"16\""};
            const char *to[3] = {"\"n_layers\":\"2147483648\"", "\"n_kv_heads\":\"2147483648\"", "\"head_dim\":\"4\""};
            size_t o = 0;
            for (const char *p = json; *p;) {
                int hit = 0;
                for (int k = 0; k < 3; k++)
                    if (!strncmp(p, from[k], strlen(from[k]))) {
                        memcpy(out + o, to[k], strlen(to[k]));
                        o += strlen(to[k]);
                        p += strlen(from[k]);
                        hit = 1;
                    }
                if (!hit) out[o++] = *p++;
            }
            CHECK(o == (size_t)hl + 17); /* all three replaced: +9 +9 -1 */
            while (o % 8) out[o++] = ' ';
            size_t nn = 8 + o + data_n;
            uint8_t *file = malloc(nn);
            uint64_t ol = o;
            memcpy(file, &ol, 8);
            memcpy(file + 8, out, o);
            memcpy(file + 8 + o, bb + 8 + hl, data_n);
            kvtc_basis *x = NULL;
            kvtc_result r = kvtc_basis_load(file, nn, &x);
            CHECK_MSG(r == KVTC_ERR_TOO_LARGE, "basis: %s", kvtc_result_string(r));
            kvtc_basis_free(x);
            free(file);
            free(out);
            free(json);
        }
        free(bb);
    }
    kvtc_basis_free(b);
}

int main(void) {
    regression_geometry_product_wraps_64_bits_cache_file();
    regression_geometry_product_wraps_64_bits_stream_header();
    return TEST_REPORT();
}
